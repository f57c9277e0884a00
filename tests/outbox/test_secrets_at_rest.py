"""Webhook signing secrets are stored encrypted, shown once, and still sign every delivery;
one that was changed or moved to another row signs nothing."""

from __future__ import annotations

import logging
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Table, insert, select, text, update

from returnguard.app import create_app
from returnguard.config import Settings
from returnguard.kit.db import Database, new_id, utcnow
from returnguard.kit.migrate import upgrade
from returnguard.kit.models import Base
from returnguard.kit.secrets import key_file_for
from returnguard.outbox.models import WebhookEndpoint
from returnguard.outbox.signing import SIGNATURE_HEADER, verify
from tests.conftest import Api, Tenant, make_tenant
from tests.outbox.conftest import Receiver, WorkerFactory, deliveries, register

ENDPOINTS = "/api/v1/webhooks/endpoints"


def stored_text(db: Database) -> str:
    """Every row of every table, as text: what someone reading the database would see."""
    parts: list[str] = []
    with db.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            parts.extend(str(tuple(row)) for row in conn.execute(select(table)))
    return "\n".join(parts)


def stored_secret(db: Database, endpoint_id: str) -> str:
    with db.session() as session:
        endpoint = session.get(WebhookEndpoint, uuid.UUID(endpoint_id))
        assert endpoint is not None
        return endpoint.secret


def _approved_return(api: Api) -> dict[str, Any]:
    api.channel()
    ret = api.open_return(api.order())
    assert api.post(f"/api/v1/returns/{ret['id']}/approve", {"note": "ok"}).status_code == 200
    return dict(ret)


def test_a_webhook_secret_is_shown_once_stored_encrypted_and_still_signs(
    api: Api,
    db: Database,
    receiver: Receiver,
    make_worker: WorkerFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    created = register(api, receiver.url("/hook"))
    secret = created["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    sealed = stored_secret(db, created["id"])
    assert sealed.startswith("v1:") and secret not in sealed

    ret = _approved_return(api)
    worker = make_worker(db)
    assert worker.run_once() == 2
    for request in receiver.wait_for(2):
        verify(secret, request.body, request.headers[SIGNATURE_HEADER.lower()])
        assert secret not in request.body.decode()

    answers = [
        api.get(ENDPOINTS),
        api.get(f"{ENDPOINTS}/{created['id']}"),
        api.client.patch(
            f"{ENDPOINTS}/{created['id']}", json={"description": "x"}, headers=api.tenant.headers
        ),
        api.get(f"{ENDPOINTS}/{created['id']}/deliveries"),
        api.get(f"/api/v1/returns/{ret['id']}/events"),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert secret not in answer.text and sealed not in answer.text
    assert "secret" not in api.get(f"{ENDPOINTS}/{created['id']}").json()
    assert secret not in stored_text(db)  # not in events, outbox payloads, deliveries
    assert secret not in caplog.text
    with db.session() as session:
        endpoint = session.get(WebhookEndpoint, uuid.UUID(created["id"]))
        assert secret not in repr(endpoint)


def _swap_secrets(db: Database, first: str, second: str) -> None:
    """What someone who can write to the database could do: exchange two sealed values."""
    a, b = stored_secret(db, first), stored_secret(db, second)
    table = cast(Table, WebhookEndpoint.__table__)
    with db.engine.begin() as conn:
        conn.execute(update(table).where(table.c.id == uuid.UUID(first)).values(secret=b))
        conn.execute(update(table).where(table.c.id == uuid.UUID(second)).values(secret=a))


def test_a_secret_moved_from_another_tenant_or_changed_signs_nothing(
    api: Api,
    db: Database,
    client: TestClient,
    receiver: Receiver,
    make_worker: WorkerFactory,
) -> None:
    other = Api(client, make_tenant(db, "Other GmbH"))
    mine = register(api, receiver.url("/mine"))
    theirs = register(other, receiver.url("/theirs"))
    _swap_secrets(db, mine["id"], theirs["id"])
    _approved_return(api)
    _approved_return(other)

    assert make_worker(db).run_once() == 4
    assert receiver.requests == []  # nothing sent signed with the other tenant's secret
    attempts = deliveries(db)
    assert len(attempts) == 4 and not any(a.ok for a in attempts)
    for attempt in attempts:
        assert attempt.error is not None and "does not open" in attempt.error
        assert str(attempt.endpoint_id) in attempt.error
    r = api.get(f"{ENDPOINTS}/{mine['id']}/deliveries")
    assert "signing secret unreadable" in r.json()[0]["error"]
    assert mine["secret"] not in r.text and theirs["secret"] not in r.text


def test_a_changed_ciphertext_signs_nothing(
    api: Api, db: Database, receiver: Receiver, make_worker: WorkerFactory
) -> None:
    created = register(api, receiver.url("/hook"))
    sealed = stored_secret(db, created["id"])
    table = cast(Table, WebhookEndpoint.__table__)
    changed = sealed[:-6] + ("AAAAAA" if not sealed.endswith("AAAAAA") else "BBBBBB")
    with db.engine.begin() as conn:
        conn.execute(
            update(table).where(table.c.id == uuid.UUID(created["id"])).values(secret=changed)
        )
    _approved_return(api)
    assert make_worker(db).run_once() == 2
    assert receiver.requests == []
    assert all("does not open" in (a.error or "") for a in deliveries(db))


def _plain_endpoint(db: Database, tenant: Tenant, url: str, secret: str) -> uuid.UUID:
    """An endpoint as it was stored before migration 0013 marked it (``plain:``)."""
    endpoint_id = new_id()
    with db.engine.begin() as conn:
        conn.execute(
            insert(cast(Table, WebhookEndpoint.__table__)).values(
                id=endpoint_id,
                organization_id=tenant.organization_id,
                url=url,
                secret="plain:" + secret,
                event_types=["*"],
                active=True,
                description="from before encryption",
                created_at=utcnow(),
            )
        )
    return endpoint_id


def test_a_secret_from_before_encryption_still_signs_and_the_worker_warns(
    api: Api,
    db: Database,
    tenant: Tenant,
    receiver: Receiver,
    make_worker: WorkerFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "whsec_from-before-0013-" + uuid.uuid4().hex
    _plain_endpoint(db, tenant, receiver.url("/old"), secret)
    caplog.set_level(logging.WARNING)
    worker = make_worker(db)
    assert "1 webhook endpoint secret(s) stored in plain text" in caplog.text
    assert "returnguard secrets rotate" in caplog.text and secret not in caplog.text
    _approved_return(api)
    assert worker.run_once() == 2
    for request in receiver.wait_for(2):
        verify(secret, request.body, request.headers[SIGNATURE_HEADER.lower()])


@pytest.fixture
def keyless(db: Database, tmp_path: Path) -> Iterator[Api]:
    """The API of a server started without RETURNGUARD_SECRET_KEYS."""
    settings = Settings(
        database_url=db.url,
        in_process_worker=False,
        storage_dir=str(tmp_path / "files"),
        secret_keys=None,
    )
    with TestClient(create_app(settings, db=db)) as client:
        yield Api(client, make_tenant(db, "Keyless GmbH"))


@pytest.mark.postgresql_only
def test_without_a_key_postgresql_stores_no_secret_and_says_which_setting(
    keyless: Api, db: Database, make_worker: WorkerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    make_worker(db, secret_keys=None)
    assert "RETURNGUARD_SECRET_KEYS is not set: new webhook endpoint secret(s)" in caplog.text
    r = keyless.post(ENDPOINTS, {"url": "https://hooks.example.com/rg", "event_types": ["*"]})
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["code"] == "secret_key_missing"
    assert "RETURNGUARD_SECRET_KEYS" in problem["detail"]
    assert "returnguard secrets keygen" in problem["detail"]
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM webhook_endpoints")).scalar_one() == 0
        assert (
            conn.execute(
                text("SELECT count(*) FROM events WHERE action LIKE 'webhook%'")
            ).scalar_one()
            == 0
        )


def test_without_a_key_sqlite_keeps_a_key_file_beside_the_database(
    tmp_path: Path, receiver: Receiver, make_worker: WorkerFactory
) -> None:
    """A fresh `returnguard serve` on SQLite needs no setting: the first secret stored makes
    the database's own key (0600, beside the database file), which the worker uses."""
    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    upgrade(url)
    db = Database(url)
    key_file = tmp_path / "fresh.sqlite3.secret-keys"
    settings = Settings(
        database_url=url, in_process_worker=False, storage_dir=str(tmp_path), secret_keys=None
    )
    try:
        with TestClient(create_app(settings, db=db)) as client:
            api = Api(client, make_tenant(db))
            assert not key_file.exists()
            created = register(api, receiver.url("/hook"))
            assert key_file_for(url) == key_file
            assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
            assert stored_secret(db, created["id"]).startswith("v1:")
            _approved_return(api)
        assert make_worker(db, secret_keys=None).run_once() == 2
        for request in receiver.wait_for(2):
            verify(created["secret"], request.body, request.headers[SIGNATURE_HEADER.lower()])
    finally:
        db.dispose()
