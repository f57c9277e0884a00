"""All queries on the cost ledger live here (the reports' read queries too)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import date, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from returnguard.ledger.models import LedgerEntry
from returnguard.returns.models import Inspection, Receipt, Shipment


def get(session: Session, organization_id: uuid.UUID, entry_id: uuid.UUID) -> LedgerEntry | None:
    return session.scalar(
        select(LedgerEntry).where(
            LedgerEntry.id == entry_id, LedgerEntry.organization_id == organization_id
        )
    )


def reversal_of(session: Session, entry_id: uuid.UUID) -> LedgerEntry | None:
    return session.scalar(select(LedgerEntry).where(LedgerEntry.reverses_id == entry_id))


def existing_keys(session: Session, organization_id: uuid.UUID, keys: Iterable[str]) -> set[str]:
    wanted = list(keys)
    if not wanted:
        return set()
    rows = session.scalars(
        select(LedgerEntry.natural_key).where(
            LedgerEntry.organization_id == organization_id, LedgerEntry.natural_key.in_(wanted)
        )
    )
    return {key for key in rows if key is not None}


def list_entries(
    session: Session,
    organization_id: uuid.UUID,
    *,
    return_id: uuid.UUID | None = None,
    order_id: uuid.UUID | None = None,
    kinds: Sequence[str] = (),
    occurred_from: date | None = None,
    occurred_to: date | None = None,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[LedgerEntry]:
    """Newest booking first; ``after`` is the (created_at, id) of the last entry seen."""
    stmt = (
        select(LedgerEntry)
        .where(LedgerEntry.organization_id == organization_id)
        .order_by(LedgerEntry.created_at.desc(), LedgerEntry.id.desc())
        .limit(limit)
    )
    if return_id:
        stmt = stmt.where(LedgerEntry.return_id == return_id)
    if order_id:
        stmt = stmt.where(LedgerEntry.order_id == order_id)
    if kinds:
        stmt = stmt.where(LedgerEntry.kind.in_(kinds))
    if occurred_from:
        stmt = stmt.where(LedgerEntry.occurred_on >= occurred_from)
    if occurred_to:
        stmt = stmt.where(LedgerEntry.occurred_on <= occurred_to)
    if after:
        at, eid = after
        stmt = stmt.where(
            (LedgerEntry.created_at < at)
            | ((LedgerEntry.created_at == at) & (LedgerEntry.id < eid))
        )
    return list(session.scalars(stmt))


def entries_between(
    session: Session, organization_id: uuid.UUID, first: date, last: date
) -> list[LedgerEntry]:
    stmt = (
        select(LedgerEntry)
        .where(
            LedgerEntry.organization_id == organization_id,
            LedgerEntry.occurred_on >= first,
            LedgerEntry.occurred_on <= last,
        )
        .order_by(LedgerEntry.occurred_on, LedgerEntry.created_at, LedgerEntry.id)
    )
    return list(session.scalars(stmt))


def entries_of_returns(session: Session, return_ids: Iterable[uuid.UUID]) -> list[LedgerEntry]:
    ids = list(return_ids)
    if not ids:
        return []
    return list(session.scalars(select(LedgerEntry).where(LedgerEntry.return_id.in_(ids))))


def shipments(session: Session, return_id: uuid.UUID) -> list[Shipment]:
    stmt = select(Shipment).where(Shipment.return_id == return_id).order_by(Shipment.created_at)
    return list(session.scalars(stmt))


def inspections(session: Session, return_id: uuid.UUID) -> list[Inspection]:
    stmt = (
        select(Inspection)
        .where(Inspection.return_id == return_id)
        .order_by(Inspection.inspected_at, Inspection.id)
    )
    return list(session.scalars(stmt))


def first_receipt_at(session: Session, return_id: uuid.UUID) -> datetime | None:
    return session.scalar(
        select(func.min(Receipt.received_at)).where(Receipt.return_id == return_id)
    )
