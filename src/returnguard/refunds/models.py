from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.expression import false, true

from returnguard.kit.db import Base, UTCDateTime, new_id, utcnow

# A refund's statuses. Failed and cancelled refunds free their amount and units again;
# every other status holds them.
GRANTED, PENDING, SUCCEEDED = "granted", "pending", "succeeded"
FAILED, CANCELLED = "failed", "cancelled"
FREED = (FAILED, CANCELLED)


class RefundProvider(Base):
    """A payment account refunds are paid out through: manual, Shopify, Stripe or PayPal.

    ``settings`` holds what is not secret (shop domain, API base URL and version);
    ``credentials`` the token or keys as JSON, sealed (kit/secrets.py, bound to this row;
    open with `refunds.accounts.credentials_of`), never shown again after they are saved.
    """

    __tablename__ = "refund_providers"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    settings: Mapped[dict[str, Any]] = mapped_column()
    credentials: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Refund(Base):
    """Money given back to a buyer for a return.

    granted → pending (sent to the provider) → succeeded | failed; a granted refund
    that is not sent can be cancelled. Granted, pending and succeeded refunds count
    against what the order may still refund; failed and cancelled ones free their
    amount and units again.
    """

    __tablename__ = "refunds"
    __table_args__ = (
        UniqueConstraint("organization_id", "idempotency_key"),
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint(
            "unsent_minor >= 0 AND unsent_minor < amount_minor", name="unsent_within_amount"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    return_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("returns.id"), index=True)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # Per return line: units and the breakdown (item, tax, discount, shipping, fee, total).
    lines: Mapped[list[Any]] = mapped_column()
    return_shipping_deduction_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    reason: Mapped[str] = mapped_column(Text, default="")
    override_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    provider: Mapped[str] = mapped_column(String(32))
    provider_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("refund_providers.id"), nullable=True
    )
    provider_status: Mapped[str | None] = mapped_column(String(32), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    failure_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Deciding is not paying: who granted it, whether a second person must send it.
    granted_by_id: Mapped[str] = mapped_column(String(200), default="", server_default="")
    four_eyes: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    four_eyes_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    sent_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    sent_by_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    provider_reference: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # Of amount_minor, what the provider could not be asked for: its unit or step is
    # coarser (TWD without decimals at PayPal, KWD in tens of fils at Stripe), so the
    # amount was rounded down. What the buyer got is amount_minor - unsent_minor.
    unsent_minor: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # A provider answer ReturnGuard could not read (unknown shape or status), verbatim.
    provider_response: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    failure: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
