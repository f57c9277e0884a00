"""Delivers outbox messages: claim a batch, do the work outside the transaction, record it.

Claiming sets a lease (`locked_until`) in a short transaction; on PostgreSQL the claim
uses `FOR UPDATE SKIP LOCKED` so many workers on many machines share the queue. If a
worker dies mid-delivery its lease runs out and another worker takes the message: at
least once delivery, so receivers de-duplicate on the event id.
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
from typing import Any

import httpx
from sqlalchemy import or_, select

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
        self.http = http or httpx.Client(timeout=settings.webhook_timeout_seconds)
        self.batch_size = batch_size
        self.worker_id = uuid.uuid4().hex[:8]
        self.handlers: dict[str, Handler] = {WEBHOOK_TOPIC: self.deliver_webhook}

    def claim(self) -> list[tuple[int, str, dict[str, Any], int]]:
        now = utcnow()
        lease = now + timedelta(seconds=self.settings.outbox_lease_seconds)
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
                claimed.append((row.id, row.topic, dict(row.payload), row.attempts))
            return claimed

    def run_once(self) -> int:
        """Deliver every message that is due now; returns how many were attempted."""
        claimed = self.claim()
        for message_id, topic, payload, attempt in claimed:
            handler = self.handlers.get(topic)
            if handler is None:
                outcome = Outcome(False, f"no handler for topic {topic!r}", retry=False)
            else:
                try:
                    outcome = handler(message_id, payload, attempt)
                except Exception as exc:  # a bug in one handler must not stop the queue
                    log.exception("outbox message %s failed", message_id)
                    outcome = Outcome(False, f"{type(exc).__name__}: {exc}")
            self._finish(message_id, attempt, outcome)
        return len(claimed)

    def _finish(self, message_id: int, attempt: int, outcome: Outcome) -> None:
        with self.db.session() as session:
            row = session.get(OutboxMessage, message_id)
            if row is None:
                return
            row.locked_until = None
            if outcome.ok:
                row.status, row.done_at, row.last_error = "done", utcnow(), None
            elif not outcome.retry or attempt >= self.settings.webhook_max_attempts:
                row.status, row.last_error = "dead", outcome.error
            else:
                row.last_error = outcome.error
                row.next_attempt_at = utcnow() + backoff(attempt)

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
        except httpx.HTTPError as exc:
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
        # 4xx other than 408/429 means the receiver rejects this event for good.
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
