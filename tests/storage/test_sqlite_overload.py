"""SQLite above capacity: readers never wait for the write lock, and a writer that cannot
get it answers 503 with Retry-After after a short wait instead of hanging for 30 s."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from returnguard.app import create_app
from returnguard.auth import service as auth
from returnguard.config import Settings
from returnguard.kit.db import Database
from returnguard.kit.migrate import upgrade
from tests.conftest import order_body

BUSY_MS = 400


@pytest.fixture
def busy_db(tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'busy.sqlite3'}"
    upgrade(url)
    database = Database(url, busy_timeout_ms=BUSY_MS)
    yield database
    database.dispose()


def test_readers_go_on_and_writers_get_503_while_the_write_lock_is_held(
    busy_db: Database, tmp_path: Path
) -> None:
    with busy_db.session() as session:
        org = auth.create_organization(session, "Busy GmbH", "EUR")
        _, key = auth.create_api_key(session, org.id, name="test", role="admin")
    headers = {"Authorization": f"Bearer {key}"}
    settings = Settings(
        database_url=busy_db.url, in_process_worker=False, storage_dir=str(tmp_path / "f")
    )
    with TestClient(create_app(settings, db=busy_db)) as client:
        r = client.post(
            "/api/v1/channels",
            json={
                "code": "amazon-de",
                "name": "Amazon DE",
                "marketplace": "amazon",
                "country": "DE",
                "currency": "EUR",
            },
            headers=headers,
        )
        assert r.status_code == 201, r.text
        # Another process (a long import, say) holds the write lock.
        holder = busy_db.engine.connect()  # its transaction begins IMMEDIATE
        holder.execute(text("UPDATE organizations SET name = name"))
        try:
            # The lock is held throughout: a reader that needed it would get 503.
            assert client.get("/healthz").status_code == 200
            assert client.get("/api/v1/returns", headers=headers).status_code == 200
            assert client.get("/api/v1/channels", headers=headers).status_code == 200

            started = time.monotonic()
            r = client.post("/api/v1/orders", json=order_body(), headers=headers)
            waited = time.monotonic() - started
            assert r.status_code == 503, r.text
            assert r.json()["code"] == "database_busy"
            assert r.headers["Retry-After"] == "1"
            assert r.headers["content-type"].startswith("application/problem+json")
            assert waited < 10, f"the writer was held {waited:.1f} s, not about {BUSY_MS} ms"
        finally:
            holder.rollback()
            holder.close()
        # The lock is free again: the same write goes through, nothing was half-written.
        r = client.post("/api/v1/orders", json=order_body(), headers=headers)
        assert r.status_code == 201, r.text
