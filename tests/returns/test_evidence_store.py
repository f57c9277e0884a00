"""Evidence files through the API on either storage backend, and no orphans left behind.

On SQLite and PostgreSQL; the S3 backend talks to moto's standalone server (see
tests/storage/test_object_storage.py for why that one).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from returnguard.app import create_app
from returnguard.auth.actor import Actor
from returnguard.cli import app as cli
from returnguard.config import Settings
from returnguard.errors import InvalidInput
from returnguard.kit import storage
from returnguard.kit.db import Database
from returnguard.policies.models import Evidence
from returnguard.returns import evidence
from returnguard.returns.models import Return
from tests.conftest import Api, Tenant, make_tenant
from tests.media import jpeg_bytes, png_bytes
from tests.s3 import new_bucket, s3_endpoint, s3_settings

__all__ = ["s3_endpoint"]  # the fixture, imported for pytest


@pytest.fixture(params=["local", "s3"])
def settings(request: pytest.FixtureRequest, db: Database, tmp_path: Path) -> Settings:
    if request.param == "local":
        return Settings(database_url=db.url, in_process_worker=False, storage_dir=str(tmp_path))
    endpoint = request.getfixturevalue("s3_endpoint")
    return s3_settings(endpoint, new_bucket(endpoint), database_url=db.url, in_process_worker=False)


@pytest.fixture
def store(settings: Settings) -> storage.Store:
    return storage.from_settings(settings)


@pytest.fixture
def api(db: Database, tenant: Tenant, settings: Settings) -> Iterator[Api]:
    with TestClient(create_app(settings, db=db)) as client:
        the_api = Api(client, tenant)
        the_api.channel()
        yield the_api


def _keys(store: storage.Store) -> set[str]:
    return {k for k, _ in store.iter_keys()}


def _upload(api: Api, return_id: str, *files: tuple[str, bytes, str]) -> Any:
    return api.client.post(
        f"/api/v1/returns/{return_id}/evidence",
        files=[("files", f) for f in files],
        headers=api.tenant.headers,
    )


def test_a_photo_is_stored_once_and_downloads_as_an_attachment(
    api: Api, store: storage.Store
) -> None:
    ret = api.open_return(api.order("o-1"))
    photo = png_bytes(color=(9, 8, 7))
    first = _upload(api, ret["id"], ("kratzer.png", photo, "image/png"))
    again = _upload(api, ret["id"], ("same.png", photo, "image/png"))
    assert first.status_code == again.status_code == 201, first.text
    assert first.json()[0]["id"] == again.json()[0]["id"]
    assert _keys(store) == {hashlib.sha256(photo).hexdigest()}
    r = api.get(f"/api/v1/returns/{ret['id']}/evidence/{first.json()[0]['id']}/content")
    assert r.status_code == 200, r.text
    assert r.content == photo
    assert r.headers["content-type"] == "image/png"
    assert r.headers["content-length"] == str(len(photo))
    assert r.headers["content-disposition"].startswith('attachment; filename="kratzer.png"')


@pytest.mark.parametrize(
    ("name", "data", "says"),
    [
        ("empty.jpg", b"", "is empty"),
        ("setup.jpg", b"MZ\x90\x00\x03" + bytes(500), "is not a JPEG"),
    ],
)
def test_a_refused_file_is_a_4xx_naming_the_field_and_nothing_is_stored(
    api: Api, store: storage.Store, name: str, data: bytes, says: str
) -> None:
    ret = api.open_return(api.order("o-1"))
    r = _upload(
        api, ret["id"], ("good.jpg", jpeg_bytes(), "image/jpeg"), (name, data, "image/jpeg")
    )
    assert r.status_code == 422, r.text
    assert "files.1" in r.text and says in r.text
    assert _keys(store) == set()


def test_a_file_missing_from_storage_is_a_404_not_a_500(api: Api, store: storage.Store) -> None:
    ret = api.open_return(api.order("o-1"))
    [shown] = _upload(api, ret["id"], ("a.jpg", jpeg_bytes(), "image/jpeg")).json()
    store.delete(shown["sha256"])
    r = api.get(f"/api/v1/returns/{ret['id']}/evidence/{shown['id']}/content")
    assert r.status_code == 404
    assert "missing from storage" in r.text


def _rolled_back_upload(
    db: Database, store: storage.Store, tenant: Tenant, return_id: str, photo: bytes
) -> None:
    """An upload whose transaction fails after its file was stored."""
    actor = Actor.system(tenant.organization_id)
    with pytest.raises(RuntimeError), db.session() as session:
        ret = session.get(Return, uuid.UUID(return_id))
        assert ret is not None
        evidence.add_evidence(
            session,
            actor,
            ret,
            uploads=[evidence.Upload("p.png", "image/png", io.BytesIO(photo))],
            text=None,
            store=store,
            max_bytes=1_000_000,
        )
        raise RuntimeError("the request failed after the file was stored")


def test_a_rolled_back_upload_leaves_no_file_after_the_sweep(
    api: Api, db: Database, tenant: Tenant, store: storage.Store
) -> None:
    ret = api.open_return(api.order("o-1"))
    kept_photo, lost_photo = png_bytes(color=(1, 1, 1)), png_bytes(color=(2, 2, 2))
    assert _upload(api, ret["id"], ("kept.png", kept_photo, "image/png")).status_code == 201
    _rolled_back_upload(db, store, tenant, ret["id"], lost_photo)
    kept, lost = hashlib.sha256(kept_photo).hexdigest(), hashlib.sha256(lost_photo).hexdigest()
    assert _keys(store) == {kept, lost}
    assert api.get(f"/api/v1/returns/{ret['id']}/evidence").json()[0]["sha256"] == kept
    with db.session() as session:
        # Within the grace period the file may still be an upload about to commit.
        assert evidence.sweep_orphans(session, store, older_than=timedelta(hours=1)) == []
        assert evidence.sweep_orphans(session, store, older_than=timedelta(0)) == [lost]
    assert _keys(store) == {kept}


def test_a_file_another_organization_uses_is_never_swept(
    api: Api, db: Database, store: storage.Store, settings: Settings
) -> None:
    other = make_tenant(db, "Other Ltd")
    photo = png_bytes(color=(3, 3, 3))
    ret = api.open_return(api.order("o-1"))
    assert _upload(api, ret["id"], ("p.png", photo, "image/png")).status_code == 201
    with TestClient(create_app(settings, db=db)) as client:
        theirs = Api(client, other)
        theirs.channel()
        their_ret = theirs.open_return(theirs.order("o-9"))
        _rolled_back_upload(db, store, other, their_ret["id"], photo)  # same bytes, rolled back
    with db.session() as session:
        assert evidence.sweep_orphans(session, store, older_than=timedelta(0)) == []
    assert _keys(store) == {hashlib.sha256(photo).hexdigest()}


def test_the_sweep_command_removes_orphans(
    api: Api,
    db: Database,
    tenant: Tenant,
    store: storage.Store,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ret = api.open_return(api.order("o-1"))
    _rolled_back_upload(db, store, tenant, ret["id"], png_bytes(color=(4, 4, 4)))
    for field in ("storage_backend", "storage_dir", "s3_bucket", "s3_endpoint_url", "s3_region"):
        monkeypatch.setenv(f"RETURNGUARD_{field.upper()}", str(getattr(settings, field)))
    monkeypatch.setenv("RETURNGUARD_S3_ACCESS_KEY_ID", str(settings.s3_access_key_id))
    secret = settings.s3_secret_access_key
    monkeypatch.setenv(
        "RETURNGUARD_S3_SECRET_ACCESS_KEY", secret.get_secret_value() if secret else ""
    )
    runner = CliRunner()
    base = ["evidence", "sweep", "--database-url", db.url]
    dry = runner.invoke(cli, [*base, "--older-than", "0", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "1 orphaned file(s)" in dry.output and len(_keys(store)) == 1
    young = runner.invoke(cli, base)  # the default grace period: an hour
    assert young.exit_code == 0 and "removed 0 " in young.output
    swept = runner.invoke(cli, [*base, "--older-than", "0"])
    assert swept.exit_code == 0, swept.output
    assert "removed 1 orphaned file(s)" in swept.output
    assert _keys(store) == set()


def _row(db: Database, evidence_id: str) -> Evidence:
    with db.session() as session:
        found = session.get(Evidence, uuid.UUID(evidence_id))
        assert found is not None
        session.expunge(found)
        return found


def test_evidence_records_its_source_from_the_uploader_role(
    api: Api, db: Database, tenant: Tenant, store: storage.Store
) -> None:
    ret = api.open_return(api.order("o-1"))
    [by_agent] = _upload(api, ret["id"], ("a.png", png_bytes(color=(5, 5, 5)), "image/png")).json()
    inspector = dataclasses.replace(Actor.system(tenant.organization_id), role="inspector")
    with db.session() as session:
        found = session.get(Return, uuid.UUID(ret["id"]))
        assert found is not None
        photo = io.BytesIO(png_bytes(color=(6, 6, 6)))
        kw: dict[str, Any] = {"text": None, "store": store, "max_bytes": 10_000}
        upload = [evidence.Upload("b.png", "image/png", photo)]
        [by_inspector] = evidence.add_evidence(session, inspector, found, uploads=upload, **kw).new
        carrier = evidence.add_evidence(
            session, inspector, found, uploads=[], source="carrier", **kw | {"text": "Dented."}
        ).new[0]
        ids = by_inspector.id, carrier.id
    assert _row(db, by_agent["id"]).source == "agent"
    assert [_row(db, str(i)).source for i in ids] == ["inspector", "carrier"]
    assert by_agent["source"] == "agent"


def test_the_api_takes_and_answers_a_source(api: Api, store: storage.Store) -> None:
    ret = api.open_return(api.order("o-1"))
    photo = ("dent.png", png_bytes(color=(4, 3, 2)), "image/png")
    r = api.client.post(
        f"/api/v1/returns/{ret['id']}/evidence",
        files=[("files", photo)],
        data={"source": "carrier"},
        headers=api.tenant.headers,
    )
    assert r.status_code == 201, r.text
    assert r.json()[0]["source"] == "carrier"
    listed = api.get(f"/api/v1/returns/{ret['id']}/evidence").json()
    assert [e["source"] for e in listed] == ["carrier"]
    refused = api.client.post(
        f"/api/v1/returns/{ret['id']}/evidence",
        data={"text": "it came like this", "source": "courier pigeon"},
        headers=api.tenant.headers,
    )
    assert refused.status_code == 422, refused.text
    assert "source" in refused.text


def test_an_unknown_source_is_refused_naming_the_field(
    api: Api, db: Database, tenant: Tenant, store: storage.Store
) -> None:
    ret = api.open_return(api.order("o-1"))
    with db.session() as session:
        found = session.get(Return, uuid.UUID(ret["id"]))
        assert found is not None
        with pytest.raises(InvalidInput) as refused:
            evidence.add_evidence(
                session,
                Actor.system(tenant.organization_id),
                found,
                uploads=[],
                text="words",
                store=store,
                max_bytes=1000,
                source="courier pigeon",
            )
    assert str(refused.value).startswith("source: must be one of buyer, agent, inspector")


@pytest.mark.parametrize(
    "change", [{"sha256": "0" * 64}, {"storage_key": "0" * 64}, {"size": 1}, {"source": "buyer"}]
)
def test_attached_evidence_cannot_be_rewritten_in_the_database(
    api: Api, db: Database, change: dict[str, Any]
) -> None:
    ret = api.open_return(api.order("o-1"))
    [shown] = _upload(api, ret["id"], ("a.jpg", jpeg_bytes(), "image/jpeg")).json()
    with pytest.raises(DBAPIError, match="immutable"), db.session() as session:
        session.execute(
            update(Evidence).where(Evidence.id == uuid.UUID(shown["id"])).values(**change)
        )
    assert _row(db, shown["id"]).sha256 == shown["sha256"]
    with db.session() as session:  # the name a download is saved under stays correctable
        session.execute(
            update(Evidence).where(Evidence.id == uuid.UUID(shown["id"])).values(filename="b.jpg")
        )
    assert _row(db, shown["id"]).filename == "b.jpg"
