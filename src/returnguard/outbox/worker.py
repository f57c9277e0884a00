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
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NamedTuple

import httpx
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from returnguard.config import Settings
from returnguard.kit.db import Database, utcnow
from returnguard.outbox.models import OutboxMessage, WebhookDelivery, WebhookEndpoint
from returnguard.outbox.service import WEBHOOK_TOPIC, backoff
from returnguard.outbox.signing import SIGNATURE_HEADER, sign

log = logging.getLogger("returnguard.worker")


@dataclass(frozen=True)
class Outcome:
    ok: bool
    error: str | None = None
    retry: bool = True


# (outbox message id, payload, attempt number) -> outcome
Handler = Callable[[int, dict[str, Any], int], Outcome]


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
        http: httpx.Client | None = None,
        batch_size: int = 20,
    ) -> None:
        self.db = db
        self.settings = settings
        self._owns_http = http is None
        self.http = http or httpx.Client(timeout=settings.webhook_timeout_seconds)
        self.batch_size = batch_size
        self.worker_id = uuid.uuid4().hex[:8]
        # Imported here: the refund sender builds on this module's Outcome.
        from returnguard.refunds.sender import RefundSender
        from returnguard.refunds.service import REFUND_TOPIC

        self.handlers: dict[str, Handler] = {
            WEBHOOK_TOPIC: self.deliver_webhook,
            REFUND_TOPIC: RefundSender(db, self.http).handle,
        }

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
        handler = self.handlers.get(claim.topic)
        if handler is None:
            outcome = Outcome(False, f"no handler for topic {claim.topic!r}", retry=False)
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

    def deliver_webhook(self, message_id: int, payload: dict[str, Any], attempt: int) -> Outcome:
        with self.db.session() as session:
            endpoint = session.get(WebhookEndpoint, uuid.UUID(payload["endpoint_id"]))
            if endpoint is None or not endpoint.active:
                return Outcome(False, "endpoint removed or disabled", retry=False)
            url, secret, org_id = endpoint.url, endpoint.secret, endpoint.organization_id
            endpoint_id = endpoint.id
        event = payload["event"]
        body = json.dumps(event, separators=(",", ":"), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "ReturnGuard-Webhooks/1",
            "ReturnGuard-Event-Id": event["id"],
            "ReturnGuard-Event-Type": event["type"],
            SIGNATURE_HEADER: sign(secret, body),
        }
        started = time.monotonic()
        status_code: int | None = None
        error: str | None = None
        try:
            response = self.http.post(url, content=body, headers=headers)
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            error = f"{type(exc).__name__}: {exc}"
        elapsed = int((time.monotonic() - started) * 1000)
        with self.db.session() as session:
            session.add(
                WebhookDelivery(
                    organization_id=org_id,
                    endpoint_id=endpoint_id,
                    outbox_id=message_id,
                    webhook_event_id=event["id"],
                    event_type=event["type"],
                    attempt=attempt,
                    status_code=status_code,
                    ok=error is None,
                    error=error,
                    duration_ms=elapsed,
                )
            )
        # A 4xx means the receiver rejects this event for good, except 408 (timeout),
        # 409 (conflict, e.g. the receiver is busy with the same event) and 429 (rate limit).
        permanent = (
            status_code is not None
            and 400 <= status_code < 500
            and status_code not in (408, 409, 429)
        )
        return Outcome(error is None, error, retry=not permanent)

    def run_forever(self, stop: threading.Event, wake: threading.Event | None = None) -> None:
        log.info("outbox worker %s started", self.worker_id)
        while not stop.is_set():
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

    def __init__(self, db: Database, settings: Settings) -> None:
        self.worker = Worker(db, settings)
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
