"""`returnguard serve` as an operator runs it: real processes on a free 127.0.0.1 port.

Each server runs in its own process group and is stopped with SIGTERM, as a process
manager stops it; whatever is left of the group afterwards is killed, so no test leaves
a server behind.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner

from returnguard.cli import app
from returnguard.kit.db import Database
from tests.conftest import make_tenant, order_body

RETURNGUARD = str(Path(sys.executable).parent / "returnguard")
START_TIMEOUT = 90.0  # spawning worker processes on a busy two-core machine is slow
STOP_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(done: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what()}")
        time.sleep(0.2)


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen[bytes]
    log_file: Path

    @property
    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.base_url + path, timeout=10, **kw)

    def post(self, path: str, json: Any, **kw: Any) -> httpx.Response:
        return httpx.post(self.base_url + path, json=json, timeout=10, **kw)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@contextmanager
def serving(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """``returnguard serve --host 127.0.0.1 --port <free> *args``, up and answering /healthz."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RETURNGUARD_")}
    environment |= {
        "RETURNGUARD_STORAGE_DIR": str(tmp_path / "files"),
        # The tests' receivers listen on loopback (refused in production: kit/egress.py).
        "RETURNGUARD_OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8,::1",
    } | (env or {})
    log_file = tmp_path / f"serve-{port}.log"
    with log_file.open("wb") as out:
        process = subprocess.Popen(
            [RETURNGUARD, "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            cwd=tmp_path,  # a stray default SQLite database would land here, not in the repo
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(f"http://127.0.0.1:{port}", process, log_file)

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"serve exited with {process.returncode}: {server.log}")
        try:
            return server.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(up, START_TIMEOUT, lambda: server.log)
        yield server
    finally:
        stopped = False
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
                deadline = time.monotonic() + STOP_TIMEOUT
                while _group_alive(process.pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
                stopped = not _group_alive(process.pid)
            except subprocess.TimeoutExpired:
                pass
        if _group_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(STOP_TIMEOUT)
        assert stopped, f"serve did not stop on SIGTERM within {STOP_TIMEOUT}s: {server.log}"


def test_serve_with_two_processes_on_postgresql(pg_db: Database, tmp_path: Path) -> None:
    tenant = make_tenant(pg_db)
    with serving(tmp_path, "--workers", "2", "--database-url", pg_db.url) as server:
        # The database given on the command line reached both processes.
        assert server.get("/healthz").json()["database"] == "postgresql"
        wait_until(
            lambda: server.log.count("Application startup complete.") == 2, 60, lambda: server.log
        )
        assert len(set(re.findall(r"Started server process \[(\d+)\]", server.log))) == 2

        for n in range(12):  # a new connection each: both processes get some
            forwarded = {"X-Forwarded-For": "203.0.113.7"} if n == 0 else {}
            me = server.get("/api/v1/me", headers=tenant.headers | forwarded)
            assert me.status_code == 200, me.text
            assert me.json()["organization_id"] == str(tenant.organization_id)
        assert server.get("/api/v1/me").status_code == 401

        log = server.log
    assert (
        "with 2 worker processes (uvloop event loop, httptools HTTP parser); "
        "outbox: run `returnguard worker`"
    ) in log
    # Behind a proxy on 127.0.0.1 (trusted by default) the client is the forwarded one.
    assert '203.0.113.7:0 - "GET /api/v1/me HTTP/1.1" 200' in log
    assert "Stopping parent process" in server.log


def test_serve_on_sqlite_is_one_process_that_also_delivers_the_outbox(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'returnguard.sqlite3'}"
    settings = {
        "RETURNGUARD_WORKER_POLL_SECONDS": "0.2",
        "RETURNGUARD_WEBHOOK_TIMEOUT_SECONDS": "2",
    }
    with serving(
        tmp_path, "--no-proxy-headers", env={"RETURNGUARD_DATABASE_URL": url} | settings
    ) as server:
        assert server.get("/healthz").json()["database"] == "sqlite"  # migrated at start
        db = Database(url)
        try:
            tenant = make_tenant(db)
        finally:
            db.dispose()
        headers = tenant.headers | {"X-Forwarded-For": "203.0.113.7"}
        nobody = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
        endpoint = server.post(
            "/api/v1/webhooks/endpoints", {"url": nobody, "event_types": ["*"]}, headers=headers
        )
        assert endpoint.status_code == 201, endpoint.text
        channel = {
            "code": "amazon-de",
            "name": "Amazon DE",
            "marketplace": "amazon",
            "country": "DE",
            "currency": "EUR",
        }
        assert server.post("/api/v1/channels", channel, headers=headers).status_code == 201
        order = server.post("/api/v1/orders", order_body(), headers=headers)
        assert order.status_code in (200, 201), order.text
        line = order.json()["lines"][0]["id"]
        opened = server.post(
            "/api/v1/returns",
            {
                "order_id": order.json()["id"],
                "decide": False,
                "lines": [{"order_line_id": line, "quantity": 1, "reason_code": "changed_mind"}],
            },
            headers=headers,
        )
        assert opened.status_code == 201, opened.text

        # The API process itself tried to deliver return.created (and recorded the failure).
        path = f"/api/v1/webhooks/endpoints/{endpoint.json()['id']}/deliveries"

        def attempted() -> list[Any]:
            items: list[Any] = server.get(path, headers=headers).json()
            return items

        wait_until(lambda: bool(attempted()), 30, lambda: server.log)
        delivery = attempted()[-1]  # the first attempt (newest first)
        assert delivery["event_type"] == "return.created"
        assert delivery["ok"] is False and "ConnectError" in delivery["error"]
        log = server.log
    assert (
        "with 1 worker process (uvloop event loop, httptools HTTP parser); "
        "outbox worker in this process"
    ) in log
    # --no-proxy-headers: the address is the connection's, whatever the header says.
    assert re.search(r'127\.0\.0\.1:\d+ - "POST /api/v1/returns HTTP/1\.1" 201', log), log
    assert "203.0.113.7" not in log
    assert len(re.findall(r"Started server process", log)) == 1


def test_serve_refuses_several_processes_on_sqlite(tmp_path: Path) -> None:
    database = tmp_path / "returnguard.sqlite3"
    result = CliRunner().invoke(
        app, ["serve", "--workers", "2", "--database-url", f"sqlite:///{database}"]
    )
    assert result.exit_code == 2
    assert "--workers 2 needs PostgreSQL" in result.stderr
    assert "RETURNGUARD_DATABASE_URL=postgresql://" in result.stderr
    assert not database.exists()  # refused before migrating or listening
