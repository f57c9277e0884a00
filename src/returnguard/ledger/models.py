from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Mapped, Session, mapped_column

from returnguard.kit.db import Base, UTCDateTime, new_id, utcnow


class LedgerEntry(Base):
    """One money effect of a return, signed from the seller's side (see domain/ledger.py).

    Append-only: a row is never updated or deleted (the session refuses it, and on
    PostgreSQL a trigger does too); a correction is a new row that ``reverses`` it.
    """

    __tablename__ = "ledger_entries"
    __table_args__ = (
        # An automatic entry has a natural key (refund + kind + line, shipment, inspection
        # line…), so a replayed hook cannot book it twice. Manual entries have none.
        UniqueConstraint("organization_id", "natural_key"),
        CheckConstraint("amount_minor <> 0", name="amount_not_zero"),
        Index("ix_ledger_entries_organization_id_occurred_on", "organization_id", "occurred_on"),
        # The entry list pages newest booking first by (created_at, id) (migration 0011).
        Index("ix_ledger_entries_org_created", "organization_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(40))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    occurred_on: Mapped[date] = mapped_column(Date)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"), index=True)
    return_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("returns.id"), nullable=True, index=True
    )
    order_line_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("order_lines.id"), nullable=True
    )
    sku: Mapped[str | None] = mapped_column(String(128), nullable=True)
    channel_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("channels.id"))
    refund_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("refunds.id"), nullable=True, index=True
    )
    paid_by: Mapped[str | None] = mapped_column(String(16), nullable=True)
    source: Mapped[str | None] = mapped_column(String(32), nullable=True)
    memo: Mapped[str] = mapped_column(Text, default="")
    # How an automatic amount was worked out (units, unit cost, percent, rate…).
    details: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    natural_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reverses_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("ledger_entries.id"), nullable=True, unique=True
    )
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AppendOnlyViolation(RuntimeError):
    """Code tried to change or delete a ledger entry: a bug, never a user's mistake."""


@sa_event.listens_for(Session, "before_flush")
def _refuse_changes(session: Session, _context: Any, _instances: Any) -> None:
    for obj in session.deleted:
        if isinstance(obj, LedgerEntry):
            raise AppendOnlyViolation(
                f"ledger entry {obj.id} cannot be deleted; book a reversing entry instead"
            )
    for obj in session.dirty:
        if isinstance(obj, LedgerEntry) and session.is_modified(obj):
            raise AppendOnlyViolation(
                f"ledger entry {obj.id} cannot be changed; book a reversing entry instead"
            )
