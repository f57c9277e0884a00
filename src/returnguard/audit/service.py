"""The event log: every change is recorded, append-only and hash-chained per organization.

Services call ``record()`` while they work; the events are written when the session
commits, in the same transaction. The chain head (on the organization row) is locked
last, just before commit, so the lock that serialises an organization's events is held
for the shortest time and always taken after every other row lock (no deadlocks).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.orm import Session

from returnguard.audit.models import Event
from returnguard.auth.actor import Actor
from returnguard.auth.models import Organization
from returnguard.kit.db import utcnow

GENESIS = "0" * 64
_PENDING_KEY = "returnguard.pending_events"


def jsonable(value: Any) -> Any:
    """Plain JSON values only, so what is stored is exactly what was hashed."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Enum):
        return jsonable(value.value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    raise TypeError(f"cannot record {type(value).__name__} in an event")


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass
class PendingEvent:
    organization_id: uuid.UUID
    actor: Actor
    subject_type: str
    subject_id: str
    action: str
    return_id: uuid.UUID | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    data: dict[str, Any] | None
    occurred_at: datetime = field(default_factory=utcnow)


def record(
    session: Session,
    actor: Actor,
    *,
    subject_type: str,
    subject_id: uuid.UUID | str,
    action: str,
    return_id: uuid.UUID | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """Queue an event; it is written, chained and hashed in this session's commit."""
    session.info.setdefault(_PENDING_KEY, []).append(
        PendingEvent(
            organization_id=actor.organization_id,
            actor=actor,
            subject_type=subject_type,
            subject_id=str(subject_id),
            action=action,
            return_id=return_id,
            before=jsonable(before),
            after=jsonable(after),
            data=jsonable(data),
        )
    )


def has_pending_events(session: Session) -> bool:
    return bool(session.info.get(_PENDING_KEY))


def hash_body(row: Event) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "organization_id": str(row.organization_id),
        "subject_type": row.subject_type,
        "subject_id": row.subject_id,
        "return_id": str(row.return_id) if row.return_id else None,
        "action": row.action,
        "actor_type": row.actor_type,
        "actor_id": row.actor_id,
        "actor_label": row.actor_label,
        "before": row.before,
        "after": row.after,
        "data": row.data,
        "occurred_at": row.occurred_at.isoformat(),
    }


def chain_hash(prev_hash: str, body: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical(body)).encode()).hexdigest()


def _write_pending(session: Session) -> None:
    pending: list[PendingEvent] = session.info.pop(_PENDING_KEY, [])
    if not pending:
        return
    session.flush()
    for org_id in sorted({p.organization_id for p in pending}, key=str):
        org = session.scalar(
            select(Organization)
            .where(Organization.id == org_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if org is None:
            raise LookupError(f"organization {org_id} vanished while recording events")
        seq, head = org.event_seq, org.event_head
        for p in (p for p in pending if p.organization_id == org_id):
            seq += 1
            row = Event(
                organization_id=org_id,
                seq=seq,
                subject_type=p.subject_type,
                subject_id=p.subject_id,
                return_id=p.return_id,
                action=p.action,
                actor_type=p.actor.actor_type,
                actor_id=p.actor.actor_id,
                actor_label=p.actor.label,
                before=p.before,
                after=p.after,
                data=p.data,
                occurred_at=p.occurred_at,
                prev_hash=head,
            )
            row.hash = chain_hash(head, hash_body(row))
            head = row.hash
            session.add(row)
        org.event_seq, org.event_head = seq, head


@sa_event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    _write_pending(session)


@sa_event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)


@dataclass(frozen=True)
class ChainReport:
    organization_id: uuid.UUID
    checked: int
    ok: bool
    broken_seq: int | None = None
    reason: str | None = None


def _iter_events(session: Session, organization_id: uuid.UUID) -> Iterator[Event]:
    stmt = (
        select(Event)
        .where(Event.organization_id == organization_id)
        .order_by(Event.seq)
        .execution_options(yield_per=2000)
    )
    yield from session.scalars(stmt)


def verify_chain(session: Session, organization_id: uuid.UUID) -> ChainReport:
    """Walk an organization's events in order; name the first link that does not hold."""
    org = session.get(Organization, organization_id)
    if org is None:
        raise LookupError(f"organization {organization_id} not found")
    expected_prev, expected_seq, checked = GENESIS, 1, 0
    for row in _iter_events(session, organization_id):
        if row.seq != expected_seq:
            return ChainReport(
                organization_id,
                checked,
                False,
                expected_seq,
                f"event #{expected_seq} is missing (next found is #{row.seq})",
            )
        if row.prev_hash != expected_prev:
            return ChainReport(
                organization_id,
                checked,
                False,
                row.seq,
                f"event #{row.seq} does not point at the hash of #{row.seq - 1}",
            )
        if chain_hash(row.prev_hash, hash_body(row)) != row.hash:
            return ChainReport(
                organization_id,
                checked,
                False,
                row.seq,
                f"event #{row.seq} was altered: its content no longer matches its hash",
            )
        expected_prev, expected_seq, checked = row.hash, expected_seq + 1, checked + 1
    if org.event_seq != checked or org.event_head != expected_prev:
        return ChainReport(
            organization_id,
            checked,
            False,
            checked + 1,
            f"the chain head expects {org.event_seq} event(s) but {checked} "
            "remain: events after the last one were deleted",
        )
    return ChainReport(organization_id, checked, True)


def events_for_return(
    session: Session, organization_id: uuid.UUID, return_id: uuid.UUID
) -> list[Event]:
    stmt = (
        select(Event)
        .where(Event.organization_id == organization_id, Event.return_id == return_id)
        .order_by(Event.seq)
    )
    return list(session.scalars(stmt))


def last_status_before(session: Session, return_id: uuid.UUID, action: str) -> str | None:
    """The return's status just before its latest ``action`` event (this transaction's
    events first, then the stored timeline), or None when it never took that action."""
    pending: list[PendingEvent] = session.info.get(_PENDING_KEY, [])
    for p in reversed(pending):
        if p.return_id == return_id and p.action == action:
            return (p.before or {}).get("status")
    before = session.scalar(
        select(Event.before)
        .where(Event.return_id == return_id, Event.action == action)
        .order_by(Event.seq.desc())
        .limit(1)
    )
    return before.get("status") if isinstance(before, dict) else None
