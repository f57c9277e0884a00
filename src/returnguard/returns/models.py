from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from returnguard.kit.db import Base, UTCDateTime, new_id, utcnow


class Return(Base):
    """An RMA. `status` is the workflow position; line quantities are the truth."""

    __tablename__ = "returns"
    # The list's filters, each ending in its keyset order (requested_at, id): a page is a
    # range scan of the index that stops after `limit` rows, never a sort of every match.
    # A list by order reads the order's few returns through ix_returns_order_id.
    __table_args__ = (
        UniqueConstraint("organization_id", "number"),
        Index("ix_returns_org_requested", "organization_id", "requested_at", "id"),
        Index("ix_returns_org_status_requested", "organization_id", "status", "requested_at", "id"),
        Index(
            "ix_returns_org_channel_requested",
            "organization_id",
            "channel_id",
            "requested_at",
            "id",
        ),
        Index(
            "ix_returns_org_channel_status_requested",
            "organization_id",
            "channel_id",
            "status",
            "requested_at",
            "id",
        ),
        # A buyer's returns by date: the buyer's history (migration 0011).
        Index("ix_returns_buyer_requested", "buyer_id", "requested_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    number: Mapped[str] = mapped_column(String(32))
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"), index=True)
    channel_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("channels.id"), index=True)
    buyer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("buyers.id"), nullable=True)
    status: Mapped[str] = mapped_column(String(32))
    # Bumped on every transition; lets clients and the conditional UPDATE detect races.
    version: Mapped[int] = mapped_column(Integer, default=1)
    currency: Mapped[str] = mapped_column(String(3))
    buyer_comment: Mapped[str] = mapped_column(Text, default="")
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    offer: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    lines: Mapped[list[ReturnLine]] = relationship(
        back_populates="ret", order_by="ReturnLine.position", cascade="all, delete-orphan"
    )


class ReturnLine(Base):
    __tablename__ = "return_lines"
    __table_args__ = (
        CheckConstraint("requested > 0", name="requested_positive"),
        CheckConstraint("approved >= 0 AND approved <= requested", name="approved_le_requested"),
        CheckConstraint("received >= 0 AND received <= approved", name="received_le_approved"),
        CheckConstraint("inspected >= 0 AND inspected <= received", name="inspected_le_received"),
        CheckConstraint("passed >= 0 AND passed <= inspected", name="passed_le_inspected"),
        CheckConstraint("refunded >= 0 AND refunded <= approved", name="refunded_le_approved"),
        # Money at risk starts from the few lines refunded beyond what was inspected
        # (migration 0014; the predicate is written as the report writes it).
        Index(
            "ix_return_lines_exposed",
            "organization_id",
            "return_id",
            postgresql_include=["id", "order_line_id", "received", "inspected"],
            postgresql_where=text("(refunded > inspected) IS TRUE"),
            sqlite_where=text("(refunded > inspected) IS 1"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    # Indexed: every view of a return, and every page of them, loads its lines by it.
    return_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("returns.id", ondelete="CASCADE"), index=True
    )
    order_line_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("order_lines.id"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    reason_code: Mapped[str] = mapped_column(String(32))
    comment: Mapped[str] = mapped_column(Text, default="")
    requested: Mapped[int] = mapped_column(Integer)
    approved: Mapped[int] = mapped_column(Integer, default=0)
    received: Mapped[int] = mapped_column(Integer, default=0)
    inspected: Mapped[int] = mapped_column(Integer, default=0)
    passed: Mapped[int] = mapped_column(Integer, default=0)
    refunded: Mapped[int] = mapped_column(Integer, default=0)

    ret: Mapped[Return] = relationship(back_populates="lines")


class Shipment(Base):
    __tablename__ = "return_shipments"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    return_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("returns.id", ondelete="CASCADE"), index=True
    )
    carrier: Mapped[str] = mapped_column(String(64))
    tracking_number: Mapped[str] = mapped_column(String(128))
    label_cost_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    label_cost_currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    label_paid_by: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Receipt(Base):
    """A parcel (or part of one) received at a return center."""

    __tablename__ = "return_receipts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    return_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("returns.id", ondelete="CASCADE"), index=True
    )
    lines: Mapped[list[Any]] = mapped_column()
    notes: Mapped[str] = mapped_column(Text, default="")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Inspection(Base):
    __tablename__ = "return_inspections"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    return_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("returns.id", ondelete="CASCADE"), index=True
    )
    outcome: Mapped[str] = mapped_column(String(16))
    lines: Mapped[list[Any]] = mapped_column()
    notes: Mapped[str] = mapped_column(Text, default="")
    inspected_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
