"""Evidence files come back as they were stored: the bytes, the content type their bytes
were recognised as, always as an attachment under a name that is safe to save.

Through the HTTP API, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from returnguard.kit.db import Database
from returnguard.policies.models import Evidence
from tests.conftest import Api, Tenant, add_key, make_tenant
from tests.media import jpeg_bytes, pdf_bytes, png_bytes


def _content(ret: dict[str, Any], evidence_id: str) -> str:
    return f"/api/v1/returns/{ret['id']}/evidence/{evidence_id}/content"


def _return(api: Api, external_id: str = "o-1") -> dict[str, Any]:
    return dict(api.open_return(api.order(external_id)))


def _upload(api: Api, ret: dict[str, Any], *files: tuple[str, bytes, str]) -> list[Any]:
    r = api.client.post(
        f"/api/v1/returns/{ret['id']}/evidence",
        files=[("files", f) for f in files],
        headers=api.tenant.headers,
    )
    assert r.status_code == 201, r.text
    return list(r.json())


def _rename(db: Database, evidence_id: str, filename: str) -> None:
    """Store a name as a client that writes raw part headers could send it."""
    with db.session() as session:
        session.execute(
            update(Evidence).where(Evidence.id == uuid.UUID(evidence_id)).values(filename=filename)
        )


def _get(api: Api, path: str, headers: dict[str, str]) -> Any:
    return api.client.get(path, headers=api.tenant.headers | headers)


def _disposition(header: str) -> tuple[str, str, str]:
    """(type, filename, filename* decoded) of a Content-Disposition we sent."""
    kind, fallback, extended = (part.strip() for part in header.split(";"))
    assert fallback.startswith('filename="') and fallback.endswith('"'), header
    assert extended.startswith("filename*=UTF-8''"), header
    return kind, fallback[len('filename="') : -1], unquote(extended[len("filename*=UTF-8''") :])


@pytest.fixture(autouse=True)
def _channel(api: Api) -> None:
    api.channel()


def test_download_gives_the_stored_bytes_with_the_detected_type(api: Api) -> None:
    ret = _return(api)
    photo = png_bytes(color=(1, 2, 3))
    # The client claims HTML: the content decides, and the download says PNG.
    [shown] = _upload(api, ret, ("photo.png", photo, "text/html"))
    r = api.get(_content(ret, shown["id"]))
    assert r.status_code == 200, r.text
    assert r.content == photo
    assert r.headers["content-type"] == "image/png"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "private"
    assert r.headers["etag"] == f'"{hashlib.sha256(photo).hexdigest()}"'
    assert r.headers["content-length"] == str(len(photo))
    assert _disposition(r.headers["content-disposition"]) == (
        "attachment",
        "photo.png",
        "photo.png",
    )


def test_a_file_larger_than_one_chunk_arrives_whole(api: Api) -> None:
    ret = _return(api)
    document = pdf_bytes() + b"%" + bytes(range(256)) * 4096  # about 1 MiB
    [shown] = _upload(api, ret, ("statement.pdf", document, "application/pdf"))
    r = api.get(_content(ret, shown["id"]))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    assert r.content == document


def test_if_none_match_with_the_etag_is_304_without_a_body(api: Api) -> None:
    ret = _return(api)
    [shown] = _upload(api, ret, ("a.jpg", jpeg_bytes(), "image/jpeg"))
    first = api.get(_content(ret, shown["id"]))
    etag = first.headers["etag"]
    r = _get(api, _content(ret, shown["id"]), {"If-None-Match": etag})
    assert r.status_code == 304
    assert r.content == b""
    assert r.headers["etag"] == etag
    other = _get(api, _content(ret, shown["id"]), {"If-None-Match": 'W/"other", "x"'})
    assert other.status_code == 200 and other.content == first.content
    weak = _get(api, _content(ret, shown["id"]), {"If-None-Match": f'"x", W/{etag}'})
    assert weak.status_code == 304


HOSTILE_NAMES = [
    # (stored name, fallback filename=, filename* decoded)
    ("../../etc/passwd.png", "passwd.png", "passwd.png"),
    ("C:\\Users\\anna\\Desktop\\bild.png", "bild.png", "bild.png"),
    ('say "cheese".png', "say cheese.png", "say cheese.png"),
    (
        "a.png\r\nSet-Cookie: session=stolen",
        "a.pngSet-Cookie_ session_stolen.png",
        "a.pngSet-Cookie: session=stolen.png",
    ),
    ("Überweisung 100%;.png", "Uberweisung 100.png", "Überweisung 100%;.png"),
    ("照片.png", "evidence.png", "照片.png"),
    ("invoice\u202egnp.exe", "invoicegnp.exe.png", "invoicegnp.exe.png"),
    ("report.html", "report.html.png", "report.html.png"),
    ("...", "evidence.png", "evidence.png"),
    ("", "evidence.png", "evidence.png"),
]


@pytest.mark.parametrize(("stored", "fallback", "extended"), HOSTILE_NAMES)
def test_hostile_file_names_become_safe_attachment_names(
    api: Api, db: Database, stored: str, fallback: str, extended: str
) -> None:
    ret = _return(api)
    [shown] = _upload(api, ret, ("photo.png", png_bytes(), "image/png"))
    _rename(db, shown["id"], stored)
    r = api.get(_content(ret, shown["id"]))
    assert r.status_code == 200, r.text
    header = r.headers["content-disposition"]
    assert "\r" not in header and "\n" not in header
    assert "set-cookie" not in {k.lower() for k in r.headers}
    kind, got_fallback, got_extended = _disposition(header)
    assert kind == "attachment"
    assert got_fallback == fallback
    assert got_fallback.isascii() and '"' not in got_fallback and "/" not in got_fallback
    assert got_extended == extended
    assert not {"/", "\\", '"', "\r", "\n", "\u202e"} & set(got_extended)


def test_any_role_that_lists_evidence_can_download_it(api: Api, db: Database) -> None:
    ret = _return(api)
    [shown] = _upload(api, ret, ("a.png", png_bytes(), "image/png"))
    for role in ("inspector", "finance", "agent"):
        reader = Api(api.client, add_key(db, api.tenant, role))
        assert reader.get(f"/api/v1/returns/{ret['id']}/evidence").status_code == 200
        r = reader.get(_content(ret, shown["id"]))
        assert r.status_code == 200, (role, r.text)


def test_another_organizations_evidence_is_404(api: Api, db: Database, client: TestClient) -> None:
    ret = _return(api)
    [shown] = _upload(api, ret, ("a.png", png_bytes(), "image/png"))
    other: Tenant = make_tenant(db, "Other GmbH")
    stranger = Api(client, other)
    r = stranger.get(_content(ret, shown["id"]))
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "not_found"
    # Nor through a return of its own.
    stranger.channel()
    own = _return(stranger)
    assert stranger.get(_content(own, shown["id"])).status_code == 404
    assert api.get(_content(ret, shown["id"])).status_code == 200


def test_evidence_under_another_return_or_text_is_404(api: Api) -> None:
    first, second = _return(api, "o-1"), _return(api, "o-2")
    [photo] = _upload(api, first, ("a.png", png_bytes(), "image/png"))
    r = api.get(_content(second, photo["id"]))
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    assert api.get(_content(first, str(uuid.uuid4()))).status_code == 404
    written = api.client.post(
        f"/api/v1/returns/{first['id']}/evidence",
        data={"text": "the handle came off"},
        headers=api.tenant.headers,
    )
    assert written.status_code == 201, written.text
    [text] = written.json()
    r = api.get(_content(first, text["id"]))
    assert r.status_code == 404
    assert "text" in r.json()["detail"]


def test_a_stored_file_gone_from_storage_is_a_problem_not_a_crash(api: Api, tmp_path: Path) -> None:
    ret = _return(api)
    [shown] = _upload(api, ret, ("a.png", png_bytes(), "image/png"))
    key = shown["sha256"]
    # The client fixture keeps uploads under the test's own folder.
    (tmp_path / "files" / key[:2] / key).unlink()
    r = api.get(_content(ret, shown["id"]))
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
