"""Durable outbox: side effects are rows written with the change that caused them.

Webhook events fan out here, at write time, into one outbox message per subscribed
endpoint; the worker (outbox/worker.py) delivers each with retries and backoff.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
from sqlalchemy import Table, bindparam, event, func, select, update
from sqlalchemy.orm import Session, SessionTransaction

from returnguard.audit import service as audit
from returnguard.audit.service import jsonable
from returnguard.auth.actor import Actor
from returnguard.errors import InvalidInput, NotFound
from returnguard.kit.db import new_id, utcnow
from returnguard.kit.egress import Egress
from returnguard.kit.secrets import Keyring, Place, StoredSecrets, default_keyring
from returnguard.outbox.models import OutboxMessage, WebhookDelivery, WebhookEndpoint

WEBHOOK_TOPIC = "webhook.deliver"
EVENT_TYPES = ("return.created", "return.status_changed")
_NOTIFY_KEY = "returnguard.outbox_written"


# An organization's active endpoints and what they subscribe to, read once per
# transaction (a return's creation and its decision publish two events) and never kept
# beyond it: an endpoint added, changed or disabled by another process is seen by the
# next transaction, as it was when each event read them. Columns of the table, not
# entities: nothing but the id and the subscriptions is needed here.
_ENDPOINTS_KEY = "returnguard.outbox.endpoints"
_endpoints_table = cast(Table, WebhookEndpoint.__table__)
_ACTIVE_ENDPOINTS = select(_endpoints_table.c.id, _endpoints_table.c.event_types).where(
    _endpoints_table.c.organization_id == bindparam("organization_id"),
    _endpoints_table.c.active.is_(True),
)
Subscriptions = list[tuple[uuid.UUID, list[Any]]]


def _endpoint_pending(session: Session) -> bool:
    return any(
        isinstance(obj, WebhookEndpoint) for obj in (*session.new, *session.dirty, *session.deleted)
    )


def _subscriptions(session: Session, organization_id: uuid.UUID) -> Subscriptions:
    if _endpoint_pending(session):
        # A query on the table does not flush the session itself; the flush forgets what
        # was read before (below).
        session.flush()
    read: dict[uuid.UUID, Subscriptions] = session.info.setdefault(_ENDPOINTS_KEY, {})
    found = read.get(organization_id)
    if found is None:
        rows = session.execute(_ACTIVE_ENDPOINTS, {"organization_id": organization_id})
        found = read[organization_id] = [(row[0], list(row[1])) for row in rows]
    return found


@event.listens_for(Session, "after_transaction_end")
def _forget_subscriptions(session: Session, transaction: SessionTransaction) -> None:
    # The transaction's end, or a savepoint's (what it wrote is gone with it).
    if transaction.parent is None or transaction.nested:
        session.info.pop(_ENDPOINTS_KEY, None)


@event.listens_for(Session, "before_flush")
def _endpoints_written(session: Session, _context: Any, _instances: Any) -> None:
    # An endpoint written in this transaction (by this module or any other code) is read
    # again by the next event.
    if _ENDPOINTS_KEY in session.info and _endpoint_pending(session):
        session.info.pop(_ENDPOINTS_KEY, None)


def publish_webhook_event(
    session: Session, organization_id: uuid.UUID, event_type: str, data: dict[str, Any]
) -> str:
    """Queue ``event_type`` for every active endpoint subscribed to it; returns the event id."""
    event_id = "evt_" + uuid.uuid4().hex
    created = utcnow()
    for endpoint_id, event_types in _subscriptions(session, organization_id):
        if event_type not in event_types and "*" not in event_types:
            continue
        session.add(
            OutboxMessage(
                organization_id=organization_id,
                topic=WEBHOOK_TOPIC,
                payload={
                    "endpoint_id": str(endpoint_id),
                    "event": {
                        "id": event_id,
                        "type": event_type,
                        "created_at": created.isoformat(),
                        "organization_id": str(organization_id),
                        "data": jsonable(data),
                    },
                },
                next_attempt_at=created,
            )
        )
        mark_outbox_written(session)
    return event_id


def mark_outbox_written(session: Session) -> None:
    """Wake the in-process worker after this transaction commits."""
    session.info[_NOTIFY_KEY] = True


def wrote_outbox(session: Session) -> bool:
    return bool(session.info.pop(_NOTIFY_KEY, False))


def backoff(attempt: int) -> timedelta:
    """Delay before retry number ``attempt`` (1-based): 10 s, 20 s, 40 s … capped at 6 h."""
    return timedelta(seconds=min(10 * 2 ** (attempt - 1), 6 * 3600))


def _check_url(url: str, egress: Egress) -> str:
    """Accept an absolute http(s) URL with a host that the worker's HTTP client can use.

    A malformed URL (bad IPv6 literal, port out of range, spaces or control characters)
    is a validation error here rather than a crash now or a failed delivery later.
    """
    message = "must be an absolute http:// or https:// URL"
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise InvalidInput.field("url", message + " without spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError when the port is out of range
        parsed = httpx.URL(url)
    except (ValueError, httpx.InvalidURL):
        raise InvalidInput.field("url", message) from None
    if parts.scheme not in {"http", "https"} or not parsed.host:
        raise InvalidInput.field("url", message)
    egress.check_url(url, "url")
    return url


def _check_event_types(event_types: list[str]) -> list[str]:
    unknown = [t for t in event_types if t not in EVENT_TYPES and t != "*"]
    if unknown:
        raise InvalidInput.field(
            "event_types", f"unknown event type(s) {unknown}; known: {list(EVENT_TYPES)} or '*'"
        )
    if not event_types:
        raise InvalidInput.field("event_types", "subscribe to at least one event type")
    return list(dict.fromkeys(event_types))


def create_endpoint(
    session: Session,
    actor: Actor,
    *,
    url: str,
    event_types: list[str],
    description: str = "",
    egress: Egress,
    keyring: Keyring | None = None,
) -> tuple[WebhookEndpoint, str]:
    """Register a webhook endpoint; its URL must lead to an address we may call. Returns
    the endpoint and its signing secret, which is stored only sealed (``keyring``; by
    default the environment's settings)."""
    keyring = keyring or default_keyring(str(session.get_bind().engine.url))
    endpoint = WebhookEndpoint(
        id=new_id(),
        organization_id=actor.organization_id,
        url=_check_url(url, egress),
        event_types=_check_event_types(event_types),
        description=description,
    )
    plain = "whsec_" + secrets.token_urlsafe(32)
    endpoint.secret = keyring.seal(plain, secret_place(endpoint))
    session.add(endpoint)
    session.flush()
    audit.record(
        session,
        actor,
        subject_type="webhook_endpoint",
        subject_id=endpoint.id,
        action="webhook_endpoint.created",
        after={
            "url": endpoint.url,
            "event_types": endpoint.event_types,
            "description": endpoint.description,
        },
    )
    return endpoint, plain


# What `returnguard secrets rotate` re-encrypts here.
STORED_SECRETS = StoredSecrets("webhook endpoint secrets", "webhook_endpoints", "secret")


def secret_place(endpoint: WebhookEndpoint) -> Place:
    """Where an endpoint's sealed secret belongs: it opens on this row only."""
    return STORED_SECRETS.place(endpoint.organization_id, endpoint.id)


def endpoint_secret(keyring: Keyring, endpoint: WebhookEndpoint) -> str:
    """The endpoint's signing secret in clear, or SecretUnreadable naming the row."""
    return keyring.open(endpoint.secret, secret_place(endpoint))


def _endpoint_state(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {
        "url": endpoint.url,
        "event_types": list(endpoint.event_types),
        "description": endpoint.description,
        "active": endpoint.active,
    }


def _drop_queued(session: Session, endpoint: WebhookEndpoint, why: str) -> int:
    """Messages queued for ``endpoint`` and not yet delivered are not delivered (dead,
    saying why); returns how many."""
    result = session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.organization_id == endpoint.organization_id,
            OutboxMessage.topic == WEBHOOK_TOPIC,
            OutboxMessage.status == "pending",
            OutboxMessage.payload["endpoint_id"].as_string() == str(endpoint.id),
        )
        .values(status="dead", last_error=why, locked_until=None)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def update_endpoint(
    session: Session,
    actor: Actor,
    endpoint_id: uuid.UUID,
    *,
    egress: Egress,
    active: bool | None = None,
    url: str | None = None,
    event_types: list[str] | None = None,
    description: str | None = None,
) -> tuple[WebhookEndpoint, int]:
    """Change an endpoint; disabling it also stops the messages already queued for it.
    Returns (endpoint, messages that will not be delivered)."""
    endpoint = get_endpoint(session, actor.organization_id, endpoint_id, lock=True)
    before = _endpoint_state(endpoint)
    if url is not None:
        endpoint.url = _check_url(url, egress)
    if event_types is not None:
        endpoint.event_types = _check_event_types(event_types)
    if description is not None:
        endpoint.description = description
    if active is not None:
        endpoint.active = active
    after = _endpoint_state(endpoint)
    dropped = 0
    if before["active"] and not endpoint.active:
        dropped = _drop_queued(session, endpoint, "endpoint disabled")
    if after != before:
        session.flush()
        audit.record(
            session,
            actor,
            subject_type="webhook_endpoint",
            subject_id=endpoint.id,
            action="webhook_endpoint.updated",
            before=before,
            after=after,
            data={"undelivered": dropped} if dropped else None,
        )
    return endpoint, dropped


def delete_endpoint(session: Session, actor: Actor, endpoint_id: uuid.UUID) -> int:
    """Remove an endpoint and its delivery log; what was queued for it is not delivered.
    Returns how many queued messages will not be delivered."""
    endpoint = get_endpoint(session, actor.organization_id, endpoint_id, lock=True)
    before = _endpoint_state(endpoint)
    dropped = _drop_queued(session, endpoint, "endpoint deleted")
    session.delete(endpoint)
    session.flush()
    audit.record(
        session,
        actor,
        subject_type="webhook_endpoint",
        subject_id=endpoint_id,
        action="webhook_endpoint.deleted",
        before=before,
        data={"undelivered": dropped} if dropped else None,
    )
    return dropped


def get_endpoint(
    session: Session, organization_id: uuid.UUID, endpoint_id: uuid.UUID, *, lock: bool = False
) -> WebhookEndpoint:
    stmt = select(WebhookEndpoint).where(
        WebhookEndpoint.id == endpoint_id, WebhookEndpoint.organization_id == organization_id
    )
    if lock:
        stmt = stmt.with_for_update()
    endpoint = session.scalar(stmt)
    if endpoint is None:
        raise NotFound(f"webhook endpoint {endpoint_id} not found")
    return endpoint


def list_endpoints(session: Session, organization_id: uuid.UUID) -> list[WebhookEndpoint]:
    return list(
        session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.organization_id == organization_id)
            .order_by(WebhookEndpoint.created_at)
        )
    )


def list_deliveries(
    session: Session, organization_id: uuid.UUID, endpoint_id: uuid.UUID, limit: int = 100
) -> list[WebhookDelivery]:
    get_endpoint(session, organization_id, endpoint_id)
    return list(
        session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint_id)
            .order_by(WebhookDelivery.created_at.desc())
            .limit(limit)
        )
    )


def pending_count(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status == "pending")
        )
        or 0
    )
