"""All queries on channels, products, buyers and orders live here."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload

from returnguard.orders.models import Buyer, Channel, Order, OrderLine, Product


def channel_by_code(session: Session, organization_id: uuid.UUID, code: str) -> Channel | None:
    return session.scalar(
        select(Channel).where(Channel.organization_id == organization_id, Channel.code == code)
    )


def channels(session: Session, organization_id: uuid.UUID) -> list[Channel]:
    return list(
        session.scalars(
            select(Channel).where(Channel.organization_id == organization_id).order_by(Channel.code)
        )
    )


def products_by_sku(
    session: Session, organization_id: uuid.UUID, skus: Iterable[str]
) -> dict[str, Product]:
    wanted = list(set(skus))
    if not wanted:
        return {}
    rows = session.scalars(
        select(Product).where(Product.organization_id == organization_id, Product.sku.in_(wanted))
    )
    return {p.sku: p for p in rows}


def buyer(
    session: Session, organization_id: uuid.UUID, channel_id: uuid.UUID, external_id: str
) -> Buyer | None:
    return session.scalar(
        select(Buyer).where(
            Buyer.organization_id == organization_id,
            Buyer.channel_id == channel_id,
            Buyer.external_id == external_id,
        )
    )


def order(
    session: Session, organization_id: uuid.UUID, order_id: uuid.UUID, *, lock: bool = False
) -> Order | None:
    stmt = (
        select(Order)
        .where(Order.id == order_id, Order.organization_id == organization_id)
        .options(selectinload(Order.lines))
    )
    if lock:
        stmt = stmt.with_for_update(of=Order).execution_options(populate_existing=True)
    return session.scalar(stmt)


def order_by_external_id(
    session: Session, channel_id: uuid.UUID, external_id: str, *, lock: bool = False
) -> Order | None:
    stmt = (
        select(Order)
        .where(Order.channel_id == channel_id, Order.external_id == external_id)
        .options(selectinload(Order.lines))
    )
    if lock:
        stmt = stmt.with_for_update(of=Order).execution_options(populate_existing=True)
    return session.scalar(stmt)


def channel_codes(session: Session, channel_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The codes of many channels in one query (a page of returns shows them)."""
    ids = list(set(channel_ids))
    if not ids:
        return {}
    rows = session.execute(select(Channel.id, Channel.code).where(Channel.id.in_(ids)))
    return {channel_id: code for channel_id, code in rows}


def line_skus(session: Session, order_line_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The SKUs of many order lines in one query (a page of returns shows them)."""
    ids = list(set(order_line_ids))
    if not ids:
        return {}
    rows = session.execute(select(OrderLine.id, OrderLine.sku).where(OrderLine.id.in_(ids)))
    return {line_id: sku for line_id, sku in rows}


def list_orders(
    session: Session,
    organization_id: uuid.UUID,
    *,
    channel_id: uuid.UUID | None = None,
    external_id: str | None = None,
    buyer_email: str | None = None,
    ordered_from: datetime | None = None,
    ordered_before: datetime | None = None,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[Order]:
    """Newest first by (ordered_at, id), lines loaded in one query for the page;
    ``after`` is the pair of the last order seen, ``ordered_before`` is exclusive.

    Each filter reads an index: the organization's orders by date
    (ix_orders_org_ordered_at), a channel's (ix_orders_channel_ordered), the unique key
    on (channel_id, external_id) probed once per channel of the organization, or the
    buyers with the email (ix_buyers_org_email_lower) and their orders
    (ix_orders_buyer_ordered)."""
    where = [Order.organization_id == organization_id]
    if channel_id is not None:
        where.append(Order.channel_id == channel_id)
    elif external_id is not None:
        # External ids are unique per channel, not per organization: naming the
        # organization's channels lets the unique key answer without its first column.
        where.append(
            Order.channel_id.in_(
                select(Channel.id).where(Channel.organization_id == organization_id)
            )
        )
    if external_id is not None:
        where.append(Order.external_id == external_id)
    if buyer_email is not None:
        # Emails are stored as the channel sent them; the buyer list compares them the
        # same way (orders/buyers.py).
        where.append(
            Order.buyer_id.in_(
                select(Buyer.id).where(
                    Buyer.organization_id == organization_id,
                    func.lower(Buyer.email) == buyer_email.lower(),
                )
            )
        )
    if ordered_from is not None:
        where.append(Order.ordered_at >= ordered_from)
    if ordered_before is not None:
        where.append(Order.ordered_at < ordered_before)
    if after is not None:
        at, oid = after
        # The first term bounds the index range; the second skips the ties already seen.
        where.append(Order.ordered_at <= at)
        where.append(or_(Order.ordered_at < at, Order.id < oid))
    stmt = (
        select(Order)
        .where(*where)
        .options(selectinload(Order.lines))
        .order_by(Order.ordered_at.desc(), Order.id.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))


def channel(session: Session, organization_id: uuid.UUID, channel_id: uuid.UUID) -> Channel | None:
    return session.scalar(
        select(Channel).where(Channel.id == channel_id, Channel.organization_id == organization_id)
    )


def buyers_by_id(session: Session, buyer_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Buyer]:
    """Many buyers in one query (a page of orders shows them)."""
    ids = list(set(buyer_ids))
    if not ids:
        return {}
    return {b.id: b for b in session.scalars(select(Buyer).where(Buyer.id.in_(ids)))}
