"""Delivers outbox messages: claim a batch, do the work outside the transaction, record it.

Claiming sets a lease (`locked_until`) in a short transaction; on PostgreSQL the claim
uses `FOR UPDATE SKIP LOCKED` so many workers on many machines share the queue. If a
worker dies mid-delivery its lease runs out and another worker takes the message: at
least once delivery, so receivers de-duplicate on the event id.

A batch is worked through one message at a time, so the lease taken at claim time may
run out before the last messages of a slow batch get their turn. Right before working
on a message the worker therefore renews its lease, and skips the message if another
worker has claimed it in the meantime (its ``attempts`` moved on). The outcome is only
written while the message is still ours, so a worker that lost its lease mid-request
cannot overwrite what the new owner recorded.

What a message means is not known here: each topic's handler is registered by the
module that owns it (outbox/handlers.py). A message whose topic this worker has no
handler for fails like an unreachable receiver (retried with backoff, dead after the
last attempt, the error naming the topic): during a rolling deploy a newer release may
queue a topic before every worker knows it, and a worker that does will then take it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

import httpx
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from returnguard.audit.checkpoints import CheckpointSchedule
from returnguard.config import Settings
from returnguard.kit.db import Database, utcnow
from returnguard.kit.egress import Egress, guarded_client
from returnguard.outbox.handlers import Handler, HandlerContext, Handlers, Outcome
from returnguard.outbox.models import OutboxMessage
from returnguard.outbox.service import backoff

if TYPE_CHECKING:
    from returnguard.ledger.rollups import RollupSchedule

log = logging.getLogger("returnguard.worker")


class Claim(NamedTuple):
    """A message this worker leased; ``attempt`` is the 1-based attempt it is making."""

    message_id: int
    topic: str
    payload: dict[str, Any]
    attempt: int


class Worker:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        handlers: Handlers | None = None,
        http: httpx.Client | None = None,
        batch_size: int = 20,
    ) -> None:
        """``handlers``: what to run per topic (default: the application's own set)."""
        if handlers is None:
            # Imported only here: the composition root imports the modules that register
            # handlers, and they build on this package.
            from returnguard.composition import default_handlers

            handlers = default_handlers()
        self.db = db
        self.settings = settings
        self._owns_http = http is None
        # Every call goes to a URL a seller gave us: through the egress check.
        self.http = http or guarded_client(
            Egress.from_settings(settings), timeout=settings.webhook_timeout_seconds
        )
        self.batch_size = batch_size
        self.worker_id = uuid.uuid4().hex[:8]
        self.handlers: dict[str, Handler] = handlers.bind(
            HandlerContext(db=db, settings=settings, http=self.http)
        )
        self.processed = 0  # attempts made (messages worked on) since start
        # The loop also seals the event log's new chain heads (docs/audit.md): writers
        # of several workers coordinate per organization, so each may run it.
        self.checkpoints = (
            CheckpointSchedule(
                db,
                settings.audit_key_bytes,
                timedelta(seconds=settings.checkpoint_interval_seconds),
            )
            if settings.checkpoint_interval_seconds
            else None
        )
        # And it rebuilds the net-profit rollups of months that changed (docs/ledger.md, "Rollups"):
        # a month at a time, each in its own transaction, so several workers may too.
        self.rollups: RollupSchedule | None = None
        if settings.rollup_interval_seconds:
            # Imported here, like the handlers: the ledger builds on modules that register
            # topics, which this package must not load.
            from returnguard.ledger.rollups import RollupSchedule

            self.rollups = RollupSchedule(db, timedelta(seconds=settings.rollup_interval_seconds))

    def close(self) -> None:
        """Release the HTTP connection pool (if the worker created it)."""
        if self._owns_http:
            self.http.close()

    def _lease(self) -> timedelta:
        return timedelta(seconds=self.settings.outbox_lease_seconds)

    def claim(self) -> list[Claim]:
        """Lease up to ``batch_size`` due messages and count the attempt on each."""
        now = utcnow()
        lease = now + self._lease()
        with self.db.session() as session:
            rows = session.scalars(
                select(OutboxMessage)
                .where(
                    OutboxMessage.status == "pending",
                    OutboxMessage.next_attempt_at <= now,
                    or_(OutboxMessage.locked_until.is_(None), OutboxMessage.locked_until < now),
                )
                .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
                .limit(self.batch_size)
                .with_for_update(skip_locked=True)
            ).all()
            claimed = []
            for row in rows:
                row.locked_until = lease
                row.attempts += 1
                claimed.append(Claim(row.id, row.topic, dict(row.payload), row.attempts))
            return claimed

    def run_once(self) -> int:
        """Deliver every message that is due now; returns how many were claimed."""
        claimed = self.claim()
        for claim in claimed:
            self.process(claim)
        return len(claimed)

    def process(self, claim: Claim) -> Outcome | None:
        """Work on one claimed message; None if the lease was lost to another worker."""
        if not self._renew(claim):
            log.warning(
                "outbox message %s: lease lost before attempt %s; skipped",
                claim.message_id,
                claim.attempt,
            )
            return None
        self.processed += 1
        handler = self.handlers.get(claim.topic)
        if handler is None:
            known = ", ".join(sorted(self.handlers)) or "none"
            outcome = Outcome(
                False, f"no handler for topic {claim.topic!r} in this worker (it handles: {known})"
            )
            log.error("outbox message %s: %s", claim.message_id, outcome.error)
        else:
            try:
                outcome = handler(claim.message_id, claim.payload, claim.attempt)
            except Exception as exc:  # a bug in one handler must not stop the queue
                log.exception("outbox message %s failed", claim.message_id)
                outcome = Outcome(False, f"{type(exc).__name__}: {exc}")
        self._finish(claim, outcome)
        return outcome

    def _owned(self, session: Session, claim: Claim) -> OutboxMessage | None:
        row = session.get(OutboxMessage, claim.message_id, with_for_update=True)
        if row is None or row.status != "pending" or row.attempts != claim.attempt:
            return None
        return row

    def _renew(self, claim: Claim) -> bool:
        with self.db.session() as session:
            row = self._owned(session, claim)
            if row is None:
                return False
            row.locked_until = utcnow() + self._lease()
            return True

    def _finish(self, claim: Claim, outcome: Outcome) -> None:
        with self.db.session() as session:
            row = self._owned(session, claim)
            if row is None:
                log.warning(
                    "outbox message %s: lease lost during attempt %s; outcome not recorded",
                    claim.message_id,
                    claim.attempt,
                )
                return
            row.locked_until = None
            if outcome.ok:
                row.status, row.done_at, row.last_error = "done", utcnow(), None
            elif not outcome.retry or claim.attempt >= self.settings.webhook_max_attempts:
                row.status, row.last_error = "dead", outcome.error
            else:
                row.last_error = outcome.error
                row.next_attempt_at = utcnow() + backoff(claim.attempt)

    def run_forever(self, stop: threading.Event, wake: threading.Event | None = None) -> None:
        log.info("outbox worker %s started", self.worker_id)
        while not stop.is_set():
            if self.checkpoints is not None:
                self.checkpoints.tick()  # logs and retries its own failures
            if self.rollups is not None:
                self.rollups.tick()  # likewise
            try:
                busy = self.run_once()
            except Exception:
                log.exception("outbox worker loop failed; retrying")
                busy = 0
            if busy:
                continue
            if wake is not None:
                wake.wait(self.settings.worker_poll_seconds)
                wake.clear()
            else:
                stop.wait(self.settings.worker_poll_seconds)
        log.info("outbox worker %s stopped", self.worker_id)


class InProcessWorker:
    """Runs the worker in a background thread of the API process (embedded default)."""

    def __init__(
        self, db: Database, settings: Settings, *, handlers: Handlers | None = None
    ) -> None:
        self.worker = Worker(db, settings, handlers=handlers)
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.thread = threading.Thread(
            target=self.worker.run_forever,
            args=(self.stop, self.wake),
            name="returnguard-outbox",
            daemon=True,
        )

    def start(self) -> None:
        self.thread.start()

    def notify(self) -> None:
        self.wake.set()

    def shutdown(self, timeout: float = 10.0) -> None:
        self.stop.set()
        self.wake.set()
        self.thread.join(timeout)
        if not self.thread.is_alive():
            self.worker.close()
