"""Topics are registered by the modules that own them; the outbox imports none of them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from returnguard.composition import default_handlers
from returnguard.config import Settings
from returnguard.kit.db import Database, utcnow
from returnguard.outbox.handlers import Handler, HandlerContext, Handlers, Outcome
from returnguard.outbox.models import OutboxMessage
from returnguard.outbox.worker import Worker
from tests.conftest import Tenant
from tests.outbox.conftest import make_due, messages


@dataclass
class Parcels:
    """A stand-in for a later module (a carrier, say) with its own outbox topic."""

    answers: list[Outcome] = field(default_factory=list)
    seen: list[tuple[dict[str, Any], int]] = field(default_factory=list)
    contexts: list[HandlerContext] = field(default_factory=list)

    def register(self, handlers: Handlers) -> None:
        handlers.register("test.parcel", self._handler)

    def _handler(self, context: HandlerContext) -> Handler:
        self.contexts.append(context)

        def handle(message_id: int, payload: dict[str, Any], attempt: int) -> Outcome:
            self.seen.append((payload, attempt))
            return self.answers.pop(0) if self.answers else Outcome(True)

        return handle


def queue(db: Database, tenant: Tenant, topic: str, payload: dict[str, Any]) -> None:
    with db.session() as session:
        session.add(
            OutboxMessage(
                organization_id=tenant.organization_id,
                topic=topic,
                payload=payload,
                next_attempt_at=utcnow(),
            )
        )


def worker_for(db: Database, handlers: Handlers, **settings: Any) -> Worker:
    return Worker(db, Settings(database_url=db.url, **settings), handlers=handlers)


def state(db: Database) -> dict[str, tuple[str, int, str | None]]:
    return {m.topic: (m.status, m.attempts, m.last_error) for m in messages(db)}


def test_a_topic_registered_outside_the_outbox_is_delivered_and_retried(
    db: Database, tenant: Tenant
) -> None:
    parcels = Parcels(answers=[Outcome(False, "carrier busy")])
    handlers = Handlers()
    parcels.register(handlers)
    queue(db, tenant, "test.parcel", {"parcel": "JJD0001"})
    worker = worker_for(db, handlers)
    try:
        assert worker.run_once() == 1
        assert state(db) == {"test.parcel": ("pending", 1, "carrier busy")}
        assert worker.run_once() == 0  # backing off

        make_due(db)
        assert worker.run_once() == 1
    finally:
        worker.close()
    assert parcels.seen == [({"parcel": "JJD0001"}, 1), ({"parcel": "JJD0001"}, 2)]
    assert state(db) == {"test.parcel": ("done", 2, None)}
    # The handler was made once, with the worker's own database and HTTP client.
    [context] = parcels.contexts
    assert context.db is db and context.http is worker.http


def test_an_unknown_topic_fails_with_its_name_and_the_loop_goes_on(
    db: Database, tenant: Tenant
) -> None:
    parcels = Parcels()
    handlers = Handlers()
    parcels.register(handlers)
    queue(db, tenant, "test.unknown", {"n": 1})
    queue(db, tenant, "test.parcel", {"parcel": "JJD0002"})
    worker = worker_for(db, handlers, webhook_max_attempts=2, worker_poll_seconds=0.05)
    stop = threading.Event()
    loop = threading.Thread(target=worker.run_forever, args=(stop,))
    loop.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(parcels.seen) < 1:
            time.sleep(0.05)
        make_due(db)  # the unknown topic's retry comes round while the loop runs
        queue(db, tenant, "test.parcel", {"parcel": "JJD0003"})
        while time.monotonic() < deadline and (
            len(parcels.seen) < 2 or state(db)["test.unknown"][0] != "dead"
        ):
            time.sleep(0.05)
    finally:
        stop.set()
        loop.join(10)
        worker.close()
    assert not loop.is_alive()
    error = "no handler for topic 'test.unknown' in this worker (it handles: test.parcel)"
    assert state(db)["test.unknown"] == ("dead", 2, error)
    assert [payload for payload, _ in parcels.seen] == [
        {"parcel": "JJD0002"},
        {"parcel": "JJD0003"},
    ]
    assert {(m.status, m.attempts) for m in messages(db) if m.topic == "test.parcel"} == {
        ("done", 1)
    }


def test_a_topic_has_one_handler() -> None:
    handlers = Handlers()
    Parcels().register(handlers)
    with pytest.raises(ValueError, match=re.escape("'test.parcel' already has a handler")):
        Parcels().register(handlers)


def test_the_application_handles_webhooks_and_provider_refunds() -> None:
    assert default_handlers().topics == ("refund.send", "webhook.deliver")


def _loaded_after(module: str) -> list[str]:
    """The returnguard modules a fresh interpreter has loaded after importing ``module``."""
    code = (
        f"import json, sys, {module}; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('returnguard'))))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr
    loaded: list[str] = json.loads(run.stdout)
    assert module in loaded
    return loaded


def test_the_outbox_worker_imports_no_module_that_registers_a_topic() -> None:
    loaded = _loaded_after("returnguard.outbox.worker")
    assert [m for m in loaded if m.startswith("returnguard.refunds")] == []
    assert "returnguard.composition" not in loaded
    assert "returnguard.outbox.webhooks" not in loaded


def test_the_refund_sender_does_not_import_the_outbox_worker() -> None:
    loaded = _loaded_after("returnguard.refunds.sender")
    assert "returnguard.outbox.worker" not in loaded
