"""All queries on returns live here."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import and_, case, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased, selectinload

from returnguard.domain.returns import ReturnStatus
from returnguard.returns.models import Inspection, Receipt, Return, ReturnLine, Shipment

# Returns in these statuses no longer hold any units of their order lines.
RELEASED = (ReturnStatus.REJECTED, ReturnStatus.CANCELLED, ReturnStatus.EXPIRED)
# Before a decision the requested units are held; after it, the approved ones.
UNDECIDED = (
    ReturnStatus.REQUESTED,
    ReturnStatus.AWAITING_EVIDENCE,
    ReturnStatus.PENDING_REVIEW,
    ReturnStatus.OFFERED,
)


def claimed_quantities(
    session: Session, order_line_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """Units of each order line already taken by returns that still hold them."""
    ids = list(order_line_ids)
    if not ids:
        return {}
    # A dispute can be opened before any decision. Until a decision has approved some
    # units (every decision approves at least one), the requested ones stay held.
    other = aliased(ReturnLine)
    disputed_undecided = and_(
        Return.status == ReturnStatus.DISPUTED.value,
        ~exists().where(other.return_id == Return.id, other.approved > 0),
    )
    held = case(
        (
            or_(Return.status.in_([s.value for s in UNDECIDED]), disputed_undecided),
            ReturnLine.requested,
        ),
        else_=ReturnLine.approved,
    )
    stmt = (
        select(ReturnLine.order_line_id, func.coalesce(func.sum(held), 0))
        .join(Return, Return.id == ReturnLine.return_id)
        .where(
            ReturnLine.order_line_id.in_(ids),
            Return.status.not_in([s.value for s in RELEASED]),
        )
        .group_by(ReturnLine.order_line_id)
    )
    found = {row[0]: int(row[1]) for row in session.execute(stmt)}
    return {i: found.get(i, 0) for i in ids}


def referenced_order_lines(session: Session, order_line_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """Order lines that any return (open or finished) refers to."""
    ids = list(order_line_ids)
    if not ids:
        return set()
    stmt = select(ReturnLine.order_line_id).where(ReturnLine.order_line_id.in_(ids)).distinct()
    return set(session.scalars(stmt))


def get(
    session: Session, organization_id: uuid.UUID, return_id: uuid.UUID, *, lock: bool = False
) -> Return | None:
    stmt = (
        select(Return)
        .where(Return.id == return_id, Return.organization_id == organization_id)
        .options(selectinload(Return.lines))
    )
    if lock:
        stmt = stmt.with_for_update(of=Return).execution_options(populate_existing=True)
    return session.scalar(stmt)


def number_taken(session: Session, organization_id: uuid.UUID, number: str) -> bool:
    stmt = select(Return.id).where(
        Return.organization_id == organization_id, Return.number == number
    )
    return session.scalar(stmt) is not None


def compare_and_set_status(
    session: Session, ret: Return, expected: str, new: str, expected_version: int
) -> bool:
    """Move the status only if nobody else moved it first; False when we lost the race."""
    result = session.execute(
        update(Return)
        .where(
            Return.id == ret.id,
            Return.status == expected,
            Return.version == expected_version,
        )
        .values(status=new, version=expected_version + 1)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def list_returns(
    session: Session,
    organization_id: uuid.UUID,
    *,
    statuses: Sequence[str] = (),
    order_id: uuid.UUID | None = None,
    channel_id: uuid.UUID | None = None,
    requested_from: datetime | None = None,
    requested_to: datetime | None = None,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[Return]:
    stmt = (
        select(Return)
        .where(Return.organization_id == organization_id)
        .options(selectinload(Return.lines))
        .order_by(Return.requested_at.desc(), Return.id.desc())
        .limit(limit)
    )
    if statuses:
        stmt = stmt.where(Return.status.in_(statuses))
    if order_id:
        stmt = stmt.where(Return.order_id == order_id)
    if channel_id:
        stmt = stmt.where(Return.channel_id == channel_id)
    if requested_from:
        stmt = stmt.where(Return.requested_at >= requested_from)
    if requested_to:
        stmt = stmt.where(Return.requested_at < requested_to)
    if after:
        at, rid = after
        stmt = stmt.where(
            (Return.requested_at < at) | ((Return.requested_at == at) & (Return.id < rid))
        )
    return list(session.scalars(stmt))


def shipments(session: Session, return_id: uuid.UUID) -> list[Shipment]:
    stmt = select(Shipment).where(Shipment.return_id == return_id).order_by(Shipment.created_at)
    return list(session.scalars(stmt))


def receipts(session: Session, return_id: uuid.UUID) -> list[Receipt]:
    stmt = select(Receipt).where(Receipt.return_id == return_id).order_by(Receipt.received_at)
    return list(session.scalars(stmt))


def inspections(session: Session, return_id: uuid.UUID) -> list[Inspection]:
    stmt = (
        select(Inspection)
        .where(Inspection.return_id == return_id)
        .order_by(Inspection.inspected_at)
    )
    return list(session.scalars(stmt))
