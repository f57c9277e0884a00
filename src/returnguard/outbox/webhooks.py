"""Delivers `webhook.deliver` messages: one signed POST to one endpoint per attempt.

Every attempt is recorded as a `WebhookDelivery` (shown by the deliveries API). The
message itself (done, retried, dead) is recorded by the worker from the outcome.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from returnguard.kit.db import Database
from returnguard.kit.secrets import (
    Keyring,
    SecretUnreadable,
    key_id_of,
    keyring_for,
    warn_if_unsealed,
)
from returnguard.outbox.handlers import Handler, HandlerContext, Handlers, Outcome
from returnguard.outbox.models import WebhookDelivery, WebhookEndpoint
from returnguard.outbox.service import WEBHOOK_TOPIC, endpoint_secret
from returnguard.outbox.signing import SIGNATURE_HEADER, sign

log = logging.getLogger("returnguard.webhooks")


def register(handlers: Handlers) -> None:
    """Deliver webhook events queued by `publish_webhook_event`."""
    handlers.register(WEBHOOK_TOPIC, _sender)


def _sender(context: HandlerContext) -> Handler:
    keyring = keyring_for(context.settings, context.db.url)
    try:
        _check_secrets(context.db, keyring)
    except SQLAlchemyError as exc:  # only a warning: the worker starts all the same
        log.warning("could not check stored secrets: %s", type(exc).__name__)
    return WebhookSender(context.db, context.http, keyring).handle


def _check_secrets(db: Database, keyring: Keyring) -> None:
    """At worker start: warn about secrets left in plain text or under a missing key."""
    with db.session(read_only=True) as session:
        found = [key_id_of(s) for s in session.scalars(select(WebhookEndpoint.secret))]
    warn_if_unsealed("webhook endpoint secret(s)", found, keyring)


class WebhookSender:
    def __init__(self, db: Database, http: httpx.Client, keyring: Keyring) -> None:
        self.db = db
        self.http = http
        self.keyring = keyring

    def handle(self, message_id: int, payload: dict[str, Any], attempt: int) -> Outcome:
        with self.db.session() as session:
            endpoint = session.get(WebhookEndpoint, uuid.UUID(payload["endpoint_id"]))
            if endpoint is None or not endpoint.active:
                return Outcome(False, "endpoint removed or disabled", retry=False)
            secret: str | None = None
            error: str | None = None
            try:
                secret = endpoint_secret(self.keyring, endpoint)
            except SecretUnreadable as exc:
                # Nothing is sent unsigned or signed with a wrong secret. The attempt is
                # logged and retried: configuring the missing key lets the next through.
                error = f"signing secret unreadable: {exc}"
                log.error("webhook not sent: %s", exc)
            url, org_id = endpoint.url, endpoint.organization_id
            endpoint_id = endpoint.id
        event = payload["event"]
        started = time.monotonic()
        status_code: int | None = None
        if secret is not None:
            body = json.dumps(event, separators=(",", ":"), sort_keys=True).encode()
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "ReturnGuard-Webhooks/1",
                "ReturnGuard-Event-Id": event["id"],
                "ReturnGuard-Event-Type": event["type"],
                SIGNATURE_HEADER: sign(secret, body),
            }
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
