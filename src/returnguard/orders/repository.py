"""All queries on channels, products, buyers and orders live here."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import select
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
