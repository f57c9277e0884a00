"""A real HTTP webhook receiver for the outbox tests, and a factory for workers.

The receiver is a ``ThreadingHTTPServer`` on 127.0.0.1 (port 0) that records every
request (path, headers, raw body) before answering. Tests script its answers per
path: a status code, or ``HANG`` to hold the connection open so the worker's HTTP
timeout fires, or ``Slow(seconds, status)`` to answer late.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select, update

from returnguard.composition import default_handlers
from returnguard.config import Settings
from returnguard.kit.db import Database, utcnow
from returnguard.outbox.models import OutboxMessage, WebhookDelivery
from returnguard.outbox.worker import Worker
from tests.conftest import Api

HANG = "hang"


@dataclass(frozen=True)
class Slow:
    seconds: float
    status: int = 200


Answer = int | str | Slow


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def event_id(self) -> str:
        return self.headers["returnguard-event-id"]


@dataclass
class Receiver:
    """What the webhook server has seen, and what it will answer next."""

    base_url: str = ""
    requests: list[Received] = field(default_factory=list)
    plans: dict[str, list[Answer]] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before every answer
    closing: threading.Event = field(default_factory=threading.Event)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def url(self, path: str = "/hook") -> str:
        return self.base_url + path

    def plan(self, path: str, *answers: Answer) -> None:
        """Answer the next requests to ``path`` with these, then 200 again."""
        with self.changed:
            self.plans.setdefault(path, []).extend(answers)

    def next_answer(self, path: str) -> Answer:
        with self.changed:
            queue = self.plans.get(path)
            return queue.pop(0) if queue else 200

    def record(self, request: Received) -> None:
        with self.changed:
            self.requests.append(request)
            self.changed.notify_all()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        """Block until at least ``count`` requests arrived; fail the test otherwise."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {count} webhook request(s) within {timeout}s, "
                        f"got {len(self.requests)}"
                    )
                self.changed.wait(left)
            return list(self.requests)

    def at(self, path: str) -> list[Received]:
        with self.changed:
            return [r for r in self.requests if r.path == path]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            receiver.record(Received(self.path, headers, body))
            answer = receiver.next_answer(self.path)
            if receiver.delay:
                time.sleep(receiver.delay)
            if answer == HANG:
                receiver.closing.wait(10)
                answer = 200
            elif isinstance(answer, Slow):
                receiver.closing.wait(answer.seconds)
                answer = answer.status
            assert isinstance(answer, int)
            payload = b'{"received":true}'
            try:
                self.send_response(answer)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:  # the worker gave up (timeout) and closed the socket
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    recv = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(recv))
    server.daemon_threads = True
    host, port = server.server_address[:2]
    recv.base_url = f"http://{host!s}:{port}"
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    yield recv
    recv.closing.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


WorkerFactory = Callable[..., Worker]


@pytest.fixture
def make_worker() -> Iterator[WorkerFactory]:
    """``make_worker(db, **settings)``: a Worker with a 0.5 s HTTP timeout; closed afterwards."""
    workers: list[Worker] = []

    def make(db: Database, *, batch_size: int = 20, **settings: Any) -> Worker:
        settings.setdefault("webhook_timeout_seconds", 0.5)
        worker = Worker(
            db,
            Settings(database_url=db.url, **settings),
            handlers=default_handlers(),
            batch_size=batch_size,
        )
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.close()


def register(api: Api, url: str, event_types: list[str] | None = None) -> dict[str, Any]:
    """Register a webhook endpoint through the API; returns the creation response."""
    r = api.post(
        "/api/v1/webhooks/endpoints",
        {"url": url, "event_types": event_types or ["*"], "description": "test receiver"},
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def messages(db: Database) -> list[OutboxMessage]:
    with db.session() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def deliveries(db: Database) -> list[WebhookDelivery]:
    """Every recorded delivery attempt, oldest first."""
    with db.session() as session:
        return list(
            session.scalars(
                select(WebhookDelivery).order_by(
                    WebhookDelivery.created_at, WebhookDelivery.attempt
                )
            )
        )


def make_due(db: Database) -> None:
    """Skip the backoff: every pending message becomes due now."""
    with db.session() as session:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.status == "pending")
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )
