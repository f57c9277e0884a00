from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
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
from sqlalchemy.sql.expression import false

from returnguard.kit.db import Base, UTCDateTime, new_id, utcnow


class Channel(Base):
    """Where an order was sold: a marketplace storefront or an own shop."""

    __tablename__ = "channels"
    __table_args__ = (UniqueConstraint("organization_id", "code"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    marketplace: Mapped[str] = mapped_column(String(32))
    country: Mapped[str] = mapped_column(String(2))
    currency: Mapped[str] = mapped_column(String(3))
    language: Mapped[str] = mapped_column(String(16), default="en")
    # What bringing one parcel back costs, in the channel's currency: the policy offers a
    # returnless refund when an item is worth less than this.
    return_label_cost_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    handling_cost_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    policy_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("policies.id"), nullable=True)
    # Who pays refunds out for this channel; none means the manual provider.
    refund_provider_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("refund_providers.id"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (
        UniqueConstraint("organization_id", "sku"),
        CheckConstraint("unit_cost_minor >= 0", name="unit_cost_not_negative"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    sku: Mapped[str] = mapped_column(String(128))
    asin: Mapped[str | None] = mapped_column(String(16), nullable=True)
    title: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str | None] = mapped_column(String(128), nullable=True)
    unit_cost_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    cost_currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    hs_code: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Buyer(Base):
    """A buyer's identity on one channel (marketplaces give no cross-channel identity)."""

    __tablename__ = "buyers"
    # The buyer list pages newest first by (created_at, id), all of them or the watchlist:
    # each is a range of one index in that order (migration 0011).
    __table_args__ = (
        UniqueConstraint("organization_id", "channel_id", "external_id"),
        Index("ix_buyers_org_created", "organization_id", "created_at", "id"),
        Index(
            "ix_buyers_org_watchlisted_created",
            "organization_id",
            "watchlisted",
            "created_at",
            "id",
        ),
        # The order list's buyer_email filter: emails are kept as sent and compared
        # case-insensitively (migration 0015).
        Index("ix_buyers_org_email_lower", "organization_id", text("lower(email)")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    channel_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("channels.id"))
    external_id: Mapped[str] = mapped_column(String(128))
    email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    country: Mapped[str | None] = mapped_column(String(2), nullable=True)
    risk_level: Mapped[str | None] = mapped_column(String(16), nullable=True)
    watchlisted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    watchlist_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("channel_id", "external_id"),
        CheckConstraint("captured_minor >= 0", name="captured_not_negative"),
        CheckConstraint("shipping_minor >= 0", name="shipping_not_negative"),
        # Reports and the rollup worker read an organization's orders by day.
        Index("ix_orders_org_ordered_at", "organization_id", "ordered_at"),
        # A buyer's orders by date: the policy's first-time-buyer fact, the buyer's history
        # (migration 0011).
        Index("ix_orders_buyer_ordered", "buyer_id", "ordered_at"),
        # The order list by channel, newest first in its keyset order (migration 0015).
        Index("ix_orders_channel_ordered", "channel_id", "ordered_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    channel_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("channels.id"), index=True)
    external_id: Mapped[str] = mapped_column(String(128))
    buyer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("buyers.id"), nullable=True)
    currency: Mapped[str] = mapped_column(String(3))
    ordered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ship_to_country: Mapped[str | None] = mapped_column(String(2), nullable=True)
    shipping_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    shipping_tax_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    captured_minor: Mapped[int] = mapped_column(BigInteger)
    # The payment at the provider: a Shopify order id, a Stripe PaymentIntent, a PayPal
    # capture id. Provider refunds are sent against it.
    payment_reference: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    lines: Mapped[list[OrderLine]] = relationship(
        back_populates="order", order_by="OrderLine.position", cascade="all, delete-orphan"
    )


class OrderLine(Base):
    __tablename__ = "order_lines"
    __table_args__ = (
        UniqueConstraint("order_id", "external_id"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("unit_price_minor >= 0", name="unit_price_not_negative"),
        CheckConstraint("tax_minor >= 0", name="tax_not_negative"),
        CheckConstraint("discount_minor >= 0", name="discount_not_negative"),
        Index("ix_order_lines_org_sku", "organization_id", "sku"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer, default=0)
    external_id: Mapped[str] = mapped_column(String(128))
    product_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("products.id"), nullable=True)
    sku: Mapped[str] = mapped_column(String(128))
    title: Mapped[str] = mapped_column(Text, default="")
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_minor: Mapped[int] = mapped_column(BigInteger)
    # Totals for the whole line (all units), as the channel reported them.
    tax_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    discount_minor: Mapped[int] = mapped_column(BigInteger, default=0)

    order: Mapped[Order] = relationship(back_populates="lines")
