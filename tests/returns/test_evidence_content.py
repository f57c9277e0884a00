"""Evidence is judged by its bytes: what a file is, whether it decodes, whether it is new.

Through the HTTP API, on SQLite and PostgreSQL. The returns are defective items under the
default policy, which waits for 2 photos and a written explanation.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from returnguard.kit.db import Database
from returnguard.policies.models import Evidence
from tests.conftest import Api
from tests.media import (
    bomb_png_bytes,
    heic_bytes,
    jpeg_bytes,
    mov_bytes,
    mp4_bytes,
    pdf_bytes,
    png_bytes,
    truncated_png_bytes,
    webm_bytes,
    webp_bytes,
)

File = tuple[str, bytes, str]


@pytest.fixture(autouse=True)
def _channel(api: Api) -> None:
    api.channel()


def _defective_return(api: Api, external_id: str = "o-1") -> dict[str, Any]:
    """A 40 EUR mug reported defective three days after delivery: awaiting evidence."""
    now = datetime.now(UTC)
    order = api.order(
        external_id,
        price="40.00",
        quantity=1,
        ordered_at=(now - timedelta(days=10)).isoformat(),
        delivered_at=(now - timedelta(days=3)).isoformat(),
    )
    line = {"order_line_id": order["lines"][0]["id"], "quantity": 1, "reason_code": "defective"}
    r = api.post("/api/v1/returns", {"order_id": order["id"], "lines": [line]})
    assert r.status_code == 201, r.text
    ret = dict(r.json())
    assert ret["status"] == "awaiting_evidence"
    return ret


def _upload(api: Api, ret: dict[str, Any], *files: File, text: str | None = None) -> Any:
    return api.client.post(
        f"/api/v1/returns/{ret['id']}/evidence",
        files=[("files", f) for f in files],
        data={"text": text} if text else None,
        headers=api.tenant.headers,
    )


def _evidence(api: Api, ret: dict[str, Any]) -> list[dict[str, Any]]:
    r = api.get(f"/api/v1/returns/{ret['id']}/evidence")
    assert r.status_code == 200
    return list(r.json())


def _status(api: Api, ret: dict[str, Any]) -> str:
    return str(api.get(f"/api/v1/returns/{ret['id']}").json()["status"])


def _reasons(api: Api, ret: dict[str, Any]) -> list[str]:
    return list(api.get(f"/api/v1/returns/{ret['id']}/decision").json()["reasons"])


def _refusal(r: Any) -> tuple[str, str]:
    assert r.status_code == 422, r.text
    error = r.json()["errors"][0]
    return error["field"], error["message"]


def test_text_declared_as_a_png_is_refused_naming_the_file(api: Api) -> None:
    ret = _defective_return(api)
    fake = b"definitely not a photo!\n"
    assert len(fake) == 24
    field, message = _refusal(_upload(api, ret, ("crack.png", fake, "image/png")))
    assert field == "files.0"
    assert "'crack.png'" in message and "PNG" in message
    assert _evidence(api, ret) == []
    assert _status(api, ret) == "awaiting_evidence"


def test_one_refused_file_keeps_nothing_of_the_upload(api: Api) -> None:
    ret = _defective_return(api)
    r = _upload(
        api,
        ret,
        ("good.png", png_bytes(), "image/png"),
        ("good.jpg", jpeg_bytes(), "image/jpeg"),
        ("bad.jpg", b"\xff\xd8\xff" + b"\0" * 64, "image/jpeg"),
        text="The handle came off.",
    )
    field, message = _refusal(r)
    assert field == "files.2" and "'bad.jpg'" in message
    assert _evidence(api, ret) == []
    assert _status(api, ret) == "awaiting_evidence"
    events = [e["action"] for e in api.get(f"/api/v1/returns/{ret['id']}/events").json()]
    assert "return.evidence_added" not in events


def test_a_truncated_png_is_refused(api: Api) -> None:
    ret = _defective_return(api)
    field, message = _refusal(_upload(api, ret, ("half.png", truncated_png_bytes(), "image/png")))
    assert field == "files.0"
    assert "'half.png'" in message and "damaged or truncated" in message
    assert _evidence(api, ret) == []


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize(
    "side",
    [
        9_000,  # 81 MP: above ReturnGuard's 64 MP limit, below Pillow's
        12_000,  # 144 MP: where Pillow only warns
        20_000,  # 400 MP: where Pillow itself refuses
    ],
)
def test_a_decompression_bomb_is_refused(api: Api, side: int) -> None:
    ret = _defective_return(api)
    bomb = bomb_png_bytes(side, side)
    assert len(bomb) < 100_000  # a few kilobytes that would decode to hundreds of MB
    field, message = _refusal(_upload(api, ret, ("bomb.png", bomb, "image/png")))
    assert field == "files.0"
    assert "'bomb.png'" in message and "64000000 pixels" in message
    assert _evidence(api, ret) == []


@pytest.mark.parametrize("declared", ["application/octet-stream", "image/png"])
def test_a_real_jpeg_is_kept_with_its_real_type_whatever_was_declared(
    api: Api, declared: str
) -> None:
    ret = _defective_return(api)
    r = _upload(api, ret, ("IMG_0001.png", jpeg_bytes(), declared))
    assert r.status_code == 201, r.text
    [shown] = r.json()
    assert (shown["kind"], shown["content_type"]) == ("photo", "image/jpeg")
    assert shown["filename"] == "IMG_0001.png"
    [kept] = _evidence(api, ret)
    assert (kept["id"], kept["content_type"]) == (shown["id"], "image/jpeg")


@pytest.mark.parametrize(
    ("make", "content_type"),
    [(png_bytes, "image/png"), (webp_bytes, "image/webp"), (heic_bytes, "image/heic")],
)
def test_every_accepted_photo_format_counts_as_a_photo(
    api: Api, make: Any, content_type: str
) -> None:
    ret = _defective_return(api)
    r = _upload(api, ret, ("photo", make(), "application/octet-stream"))
    assert r.status_code == 201, r.text
    assert [(e["kind"], e["content_type"]) for e in r.json()] == [("photo", content_type)]


def test_the_same_photo_twice_counts_once(api: Api) -> None:
    ret = _defective_return(api)
    photo = png_bytes(color=(10, 200, 10))
    first = _upload(api, ret, ("a.png", photo, "image/png"), text="Cracked along the rim.")
    assert first.status_code == 201, first.text
    [kept, _text] = first.json()
    assert _status(api, ret) == "awaiting_evidence"
    assert _reasons(api, ret) == ["evidence required: 1 more photo(s)"]

    # The same bytes again, under another name and type: answered with the evidence the
    # return already has, not kept or counted again.
    again = _upload(api, ret, ("copy.jpg", photo, "image/jpeg"))
    assert again.status_code == 201, again.text
    assert [e["id"] for e in again.json()] == [kept["id"]]
    assert again.json()[0]["filename"] == "a.png"
    twice = _upload(api, ret, ("x.png", photo, "image/png"), ("y.png", photo, "image/png"))
    assert [e["id"] for e in twice.json()] == [kept["id"], kept["id"]]

    assert [e["kind"] for e in _evidence(api, ret)] == ["photo", "text"]
    assert _status(api, ret) == "awaiting_evidence"
    assert _reasons(api, ret) == ["evidence required: 1 more photo(s)"]
    events = [e["action"] for e in api.get(f"/api/v1/returns/{ret['id']}/events").json()]
    assert events.count("return.evidence_added") == 1

    # A second, different photo completes the evidence.
    r = _upload(api, ret, ("b.png", png_bytes(color=(200, 10, 10)), "image/png"))
    assert r.status_code == 201, r.text
    assert _status(api, ret) == "approved"


def test_the_same_photo_twice_in_one_upload_counts_once(api: Api) -> None:
    ret = _defective_return(api)
    photo = jpeg_bytes()
    r = _upload(
        api, ret, ("a.jpg", photo, "image/jpeg"), ("b.jpg", photo, "image/jpeg"), text="Broken."
    )
    assert r.status_code == 201, r.text
    photos = [e for e in r.json() if e["kind"] == "photo"]
    assert len(photos) == 2 and photos[0]["id"] == photos[1]["id"]
    assert len(_evidence(api, ret)) == 2  # one photo, one text
    assert _status(api, ret) == "awaiting_evidence"


def test_two_different_photos_and_a_text_move_the_return_on(api: Api) -> None:
    ret = _defective_return(api)
    r = _upload(
        api,
        ret,
        ("front.jpg", jpeg_bytes(color=(1, 2, 3)), "image/jpeg"),
        ("back.jpg", jpeg_bytes(color=(250, 250, 250)), "image/jpeg"),
        text="The glaze is cracked all around.",
    )
    assert r.status_code == 201, r.text
    assert [e["kind"] for e in r.json()] == ["photo", "photo", "text"]
    assert _status(api, ret) == "approved"


def test_the_same_photo_counts_on_each_return_it_is_sent_to(api: Api) -> None:
    first = _defective_return(api, "o-1")
    second = _defective_return(api, "o-2")
    photo = png_bytes()
    for ret in (first, second):
        r = _upload(api, ret, ("a.png", photo, "image/png"))
        assert r.status_code == 201, r.text
        assert [e["kind"] for e in _evidence(api, ret)] == ["photo"]


@pytest.mark.parametrize(
    ("make", "content_type"),
    [(mp4_bytes, "video/mp4"), (mov_bytes, "video/quicktime"), (webm_bytes, "video/webm")],
)
def test_a_video_is_recognised_by_its_container(api: Api, make: Any, content_type: str) -> None:
    ret = _defective_return(api)
    r = _upload(api, ret, ("clip.bin", make(), "application/octet-stream"))
    assert r.status_code == 201, r.text
    assert [(e["kind"], e["content_type"]) for e in r.json()] == [("video", content_type)]
    # A video is no photo: the policy still waits for two.
    assert _status(api, ret) == "awaiting_evidence"
    assert "2 more photo(s)" in _reasons(api, ret)[0]


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("noise.mp4", random.Random(14).randbytes(4096)),
        ("cut.mp4", mp4_bytes()[:-10]),
        ("cut.webm", webm_bytes()[:12]),
        ("film.mkv", webm_bytes(doc_type=b"matroska")),
    ],
)
def test_bytes_that_are_no_video_are_refused(api: Api, name: str, data: bytes) -> None:
    ret = _defective_return(api)
    field, message = _refusal(_upload(api, ret, (name, data, "video/mp4")))
    assert field == "files.0" and f"'{name}'" in message
    assert _evidence(api, ret) == []


def test_a_pdf_is_a_document_never_a_photo(api: Api) -> None:
    ret = _defective_return(api)
    r = _upload(api, ret, ("receipt.jpg", pdf_bytes(), "image/jpeg"))
    assert r.status_code == 201, r.text
    assert [(e["kind"], e["content_type"]) for e in r.json()] == [("document", "application/pdf")]
    assert "2 more photo(s)" in _reasons(api, ret)[0]


def test_the_status_reason_matches_the_new_decision_after_evidence(api: Api) -> None:
    ret = _defective_return(api)
    r = _upload(api, ret, ("a.png", png_bytes(), "image/png"), text="Cracked.")
    assert r.status_code == 201, r.text
    after = api.get(f"/api/v1/returns/{ret['id']}").json()
    assert after["status_reason"] == "evidence required: 1 more photo(s)"


def test_the_policy_counts_distinct_files_even_when_a_race_kept_two_rows(
    api: Api, db: Database
) -> None:
    """Two uploads of one photo racing past the duplicate check leave two rows with the
    same SHA-256; the policy still sees one photo."""
    ret = _defective_return(api)
    r = _upload(api, ret, ("a.png", png_bytes(), "image/png"), text="Cracked.")
    assert r.status_code == 201, r.text
    kept = r.json()[0]
    with db.session() as session:
        session.add(
            Evidence(
                organization_id=api.tenant.organization_id,
                return_id=uuid.UUID(ret["id"]),
                kind="photo",
                filename="a-again.png",
                content_type="image/png",
                size=kept["size"],
                sha256=kept["sha256"],
                storage_key=kept["sha256"],
                uploaded_by="race",
            )
        )
    assert [e["kind"] for e in _evidence(api, ret)].count("photo") == 2
    r = api.post(f"/api/v1/returns/{ret['id']}/decide", {})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "awaiting_evidence"
    decision = api.get(f"/api/v1/returns/{ret['id']}/decision").json()
    assert decision["reasons"] == ["evidence required: 1 more photo(s)"]
    assert decision["facts"]["evidence"]["photos"] == 1
