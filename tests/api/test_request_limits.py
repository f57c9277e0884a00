"""Limits before work: no body is read for an unauthenticated sender, bodies are capped
while they arrive, and an address that keeps failing authentication is refused.

The size tests drive the ASGI app directly with a `receive` that hands out the body in
chunks and counts what the app pulled, so they see exactly how much of a body the
server read (the test client would assemble the whole body first).
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from returnguard.app import create_app
from returnguard.config import Settings
from returnguard.kit.db import Database
from tests.api.test_bad_input import row_counts
from tests.conftest import Tenant, order_body

MIB = 1024 * 1024
CHUNK = b" " * (64 * 1024)


class Sent:
    """What an ASGI call answered, and how many body bytes the app pulled."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""
        self.read = 0


def call(
    app: FastAPI,
    path: str,
    *,
    total: int,
    headers: dict[str, str],
    declare_length: bool = True,
    client: str = "203.0.113.7",
    prefix: bytes = b"",
) -> Sent:
    """POST ``prefix`` and then spaces up to ``total`` bytes, in 64 KiB chunks."""
    sent = Sent()
    head = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    if declare_length:
        head.append((b"content-length", str(total).encode()))
    else:
        head.append((b"transfer-encoding", b"chunked"))
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": head,
        "client": (client, 40000),
        "server": ("testserver", 80),
    }
    remaining = total
    first = prefix

    async def receive() -> dict[str, Any]:
        nonlocal remaining, first
        if remaining <= 0:
            return {"type": "http.disconnect"}
        chunk = first or CHUNK[: min(len(CHUNK), remaining)]
        first = b""
        remaining -= len(chunk)
        sent.read += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": remaining > 0}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            sent.status = message["status"]
            sent.headers = {k.decode(): v.decode() for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            sent.body += message.get("body", b"")

    asyncio.run(app(scope, receive, send))
    return sent


def _app(db: Database, tmp_path: Path, **overrides: Any) -> FastAPI:
    settings = Settings(
        database_url=db.url,
        in_process_worker=False,
        storage_dir=str(tmp_path / "files"),
        **overrides,
    )
    return create_app(settings, db=db)


@pytest.fixture
def app(db: Database, tmp_path: Path) -> Iterator[FastAPI]:
    yield _app(db, tmp_path)


JSON = {"content-type": "application/json"}


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- authentication before the body --------------------------------------------------------


@pytest.mark.parametrize("declare_length", [True, False])
@pytest.mark.parametrize(
    "authorization", [None, "Bearer rg_000000000000_notakey", "Basic dXNlcjpwYXNz"]
)
def test_unauthenticated_200_mb_body_is_401_without_reading_it(
    app: FastAPI, authorization: str | None, declare_length: bool
) -> None:
    headers = JSON | ({"authorization": authorization} if authorization else {})
    before = _max_rss_mib()
    sent = call(
        app, "/api/v1/orders", total=200 * MIB, headers=headers, declare_length=declare_length
    )
    assert sent.status == 401, sent.body
    assert sent.headers["www-authenticate"] == "Bearer"
    assert sent.read == 0
    assert _max_rss_mib() - before < 50


def test_unauthenticated_multipart_upload_is_401_without_reading_it(app: FastAPI) -> None:
    headers = {"content-type": "multipart/form-data; boundary=b"}
    path = "/api/v1/returns/00000000-0000-4000-8000-000000000000/evidence"
    sent = call(app, path, total=150 * MIB, headers=headers, declare_length=False)
    assert sent.status == 401
    assert sent.read == 0


# --- body size limits ----------------------------------------------------------------------


def test_declared_oversized_json_is_413_before_reading(app: FastAPI, tenant: Tenant) -> None:
    headers = JSON | {"authorization": tenant.headers["Authorization"]}
    sent = call(app, "/api/v1/orders", total=200 * MIB, headers=headers)
    assert sent.status == 413, sent.body
    assert b'"body_too_large"' in sent.body
    assert sent.read == 0


def test_streamed_oversized_json_is_413_after_the_limit(
    app: FastAPI, tenant: Tenant, db: Database
) -> None:
    headers = JSON | {"authorization": tenant.headers["Authorization"]}
    before_rows = row_counts(db)
    before = _max_rss_mib()
    sent = call(app, "/api/v1/orders", total=200 * MIB, headers=headers, declare_length=False)
    assert sent.status == 413, sent.body
    assert b'"max_bytes":1048576' in sent.body
    # Reading stopped at the first chunk past 1 MiB.
    assert MIB < sent.read <= MIB + len(CHUNK)
    assert _max_rss_mib() - before < 50
    assert row_counts(db) == before_rows


def test_json_limit_is_a_setting(db: Database, tmp_path: Path, tenant: Tenant) -> None:
    app = _app(db, tmp_path, max_json_body_bytes=128 * 1024)
    headers = JSON | {"authorization": tenant.headers["Authorization"]}
    sent = call(app, "/api/v1/orders", total=200 * 1024, headers=headers)
    assert sent.status == 413
    assert b'"max_bytes":131072' in sent.body


def test_json_under_the_limit_is_read(client: TestClient, tenant: Tenant) -> None:
    client.post(
        "/api/v1/channels",
        json={
            "code": "amazon-de",
            "name": "amazon-de",
            "marketplace": "amazon",
            "country": "DE",
            "currency": "EUR",
        },
        headers=tenant.headers,
    )
    body = order_body()
    body["note_padding"] = "x" * (900 * 1024)  # unknown field: read, then refused as such
    r = client.post("/api/v1/orders", json=body, headers=tenant.headers)
    assert r.status_code == 422, r.text
    assert "note_padding" in [e["field"] for e in r.json()["errors"]]


def test_streamed_oversized_multipart_is_413_and_nothing_is_kept(
    db: Database, tmp_path: Path, tenant: Tenant
) -> None:
    app = _app(db, tmp_path, max_multipart_body_bytes=512 * 1024)
    headers = {
        "content-type": "multipart/form-data; boundary=b",
        "authorization": tenant.headers["Authorization"],
    }
    path = "/api/v1/returns/00000000-0000-4000-8000-000000000000/evidence"
    part = (
        b"--b\r\n"
        b'Content-Disposition: form-data; name="files"; filename="video.mp4"\r\n'
        b"Content-Type: video/mp4\r\n\r\n"
    )
    sent = call(app, path, total=150 * MIB, headers=headers, declare_length=False, prefix=part)
    assert sent.status == 413, sent.body
    assert sent.read <= 512 * 1024 + len(CHUNK)
    files = tmp_path / "files"
    assert not files.exists() or not any(files.rglob("*"))


# --- failed authentications ----------------------------------------------------------------


def test_repeated_failed_authentication_is_429_with_retry_after(
    db: Database, tmp_path: Path, tenant: Tenant
) -> None:
    app = _app(db, tmp_path, auth_failure_rate_limit="3/minute")
    with TestClient(app) as client:
        for _ in range(3):
            r = client.get("/api/v1/me", headers={"Authorization": "Bearer rg_nope_nope"})
            assert r.status_code == 401
        # Now even the right key waits: guessing must not go on.
        r = client.get("/api/v1/me", headers=tenant.headers)
        assert r.status_code == 429, r.text
        assert r.json()["code"] == "too_many_failed_authentications"
        assert 1 <= int(r.headers["Retry-After"]) <= 60


def test_failures_are_counted_per_client_address(
    db: Database, tmp_path: Path, tenant: Tenant
) -> None:
    app = _app(db, tmp_path, auth_failure_rate_limit="2/minute")
    bad = JSON | {"authorization": "Bearer rg_000000000000_notakey"}
    for _ in range(2):
        assert (
            call(app, "/api/v1/orders", total=2, headers=bad, client="198.51.100.1").status == 401
        )
    assert call(app, "/api/v1/orders", total=2, headers=bad, client="198.51.100.1").status == 429
    # Another address is not affected.
    good = JSON | {"authorization": tenant.headers["Authorization"]}
    assert call(app, "/api/v1/orders", total=2, headers=good, client="198.51.100.2").status == 400


def test_successful_requests_do_not_count(client: TestClient, tenant: Tenant) -> None:
    for _ in range(40):
        assert client.get("/api/v1/me", headers=tenant.headers).status_code == 200
