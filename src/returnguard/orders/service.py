"""Channels, products and orders: the facts returns are judged against."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from returnguard.audit import service as audit
from returnguard.auth.service import Actor
from returnguard.errors import Conflict, InvalidInput, NotFound
from returnguard.kit.db import insert_missing, new_id
from returnguard.kit.money import Money
from returnguard.kit.schemas import MoneyIn
from returnguard.orders import repository as repo
from returnguard.orders.models import Buyer, Channel, Order, OrderLine, Product
from returnguard.orders.schemas import BuyerIn, ChannelIn, OrderIn, OrderLineIn, ProductIn
from returnguard.policies import service as policies
from returnguard.refunds.models import FREED, Refund
from returnguard.returns import repository as returns_repo


class UnknownChannel(InvalidInput):
    code = "unknown_channel"


class OrderLineInUse(Conflict):
    code = "order_line_in_use"
    title = "Order line has returns"


class ChannelExists(Conflict):
    code = "channel_exists"


def _minor(money: MoneyIn | None) -> int:
    return money.minor if money is not None else 0


def create_channel(session: Session, actor: Actor, data: ChannelIn) -> Channel:
    problems = data.problems()
    if problems:
        raise InvalidInput(
            "; ".join(f"{p['field']}: {p['message']}" for p in problems), errors=problems
        )
    if repo.channel_by_code(session, actor.organization_id, data.code):
        raise ChannelExists(f"a channel with code {data.code!r} already exists")
    fields = data.model_dump(exclude={"return_label_cost", "handling_cost"})
    channel = Channel(
        organization_id=actor.organization_id,
        return_label_cost_minor=data.return_label_cost.minor if data.return_label_cost else None,
        handling_cost_minor=data.handling_cost.minor if data.handling_cost else None,
        **fields,
    )
    session.add(channel)
    session.flush()
    audit.record(
        session,
        actor,
        subject_type="channel",
        subject_id=channel.id,
        action="channel.created",
        after=data.model_dump(mode="json"),
    )
    # Every channel decides with a published policy from its first return on.
    policies.policy_for_channel(session, channel)
    return channel


def get_channel(session: Session, organization_id: uuid.UUID, code: str) -> Channel:
    channel = repo.channel_by_code(session, organization_id, code)
    if channel is None:
        raise NotFound(f"channel {code!r} not found")
    return channel


def upsert_product(session: Session, actor: Actor, data: ProductIn) -> tuple[Product, bool]:
    """Create or update a product by SKU; returns (product, created)."""
    product = repo.products_by_sku(session, actor.organization_id, [data.sku]).get(data.sku)
    created = product is None
    if product is None:
        insert_missing(
            session,
            Product,
            ("organization_id", "sku"),
            [{"id": new_id(), "organization_id": actor.organization_id, "sku": data.sku}],
        )
        product = repo.products_by_sku(session, actor.organization_id, [data.sku])[data.sku]
    before = _product_state(product) if not created else None
    product.title = data.title or product.title or ""
    product.asin = data.asin
    product.category = data.category
    product.hs_code = data.hs_code
    if data.unit_cost is not None:
        product.unit_cost_minor = data.unit_cost.minor
        product.cost_currency = data.unit_cost.currency
    session.flush()
    after = _product_state(product)
    if before != after:
        audit.record(
            session,
            actor,
            subject_type="product",
            subject_id=product.id,
            action="product.created" if created else "product.updated",
            before=before,
            after=after,
        )
    return product, created


def _product_state(p: Product) -> dict[str, Any]:
    return {
        "sku": p.sku,
        "title": p.title,
        "asin": p.asin,
        "category": p.category,
        "unit_cost_minor": p.unit_cost_minor,
        "cost_currency": p.cost_currency,
        "hs_code": p.hs_code,
    }


def get_order(session: Session, organization_id: uuid.UUID, order_id: uuid.UUID) -> Order:
    order = repo.order(session, organization_id, order_id)
    if order is None:
        raise NotFound(f"order {order_id} not found")
    return order


@dataclass(frozen=True)
class UpsertResult:
    order: Order
    created: bool
    changed: bool


def upsert_order(session: Session, actor: Actor, data: OrderIn) -> UpsertResult:
    """Create or update an order keyed by channel + external id; a repeat is not a duplicate."""
    problems = data.problems()
    if problems:
        raise InvalidInput(
            "; ".join(f"{p['field']}: {p['message']}" for p in problems), errors=problems
        )
    channel = repo.channel_by_code(session, actor.organization_id, data.channel)
    if channel is None:
        raise UnknownChannel.field("channel", f"no channel with code {data.channel!r}")
    order = repo.order_by_external_id(session, channel.id, data.external_id, lock=True)
    if order is None:
        try:
            with session.begin_nested():
                return _create_order(session, actor, channel, data)
        except IntegrityError:
            # Another request created the same order between our read and our insert.
            order = repo.order_by_external_id(session, channel.id, data.external_id, lock=True)
            if order is None:
                raise
    return _update_order(session, actor, channel, order, data)


def _buyer(session: Session, actor: Actor, channel: Channel, data: BuyerIn | None) -> Buyer | None:
    """The channel's buyer by external id, created if new: race-free (insert-or-fetch)."""
    if data is None:
        return None
    buyer = repo.buyer(session, actor.organization_id, channel.id, data.external_id)
    if buyer is None:
        insert_missing(
            session,
            Buyer,
            ("organization_id", "channel_id", "external_id"),
            [
                {
                    "id": new_id(),
                    "organization_id": actor.organization_id,
                    "channel_id": channel.id,
                    "external_id": data.external_id,
                }
            ],
        )
        buyer = repo.buyer(session, actor.organization_id, channel.id, data.external_id)
        assert buyer is not None
    buyer.email = data.email or buyer.email
    buyer.name = data.name or buyer.name
    buyer.country = data.country or buyer.country
    session.flush()
    return buyer


def _products(session: Session, actor: Actor, lines: list[OrderLineIn]) -> dict[str, Product]:
    """The order's products by SKU, new ones created: race-free (insert-or-fetch, in SKU
    order, so concurrent first orders of the same new SKUs neither fail nor deadlock)."""
    skus = [line.sku for line in lines]
    known = repo.products_by_sku(session, actor.organization_id, skus)
    missing = {line.sku: line for line in lines if line.sku not in known}
    if missing:
        insert_missing(
            session,
            Product,
            ("organization_id", "sku"),
            [
                {
                    "id": new_id(),
                    "organization_id": actor.organization_id,
                    "sku": sku,
                    "title": line.title or "",
                    "asin": line.asin,
                    "category": line.category,
                }
                for sku, line in missing.items()
            ],
        )
        known = repo.products_by_sku(session, actor.organization_id, skus)
    return known


def _order_state(order: Order) -> dict[str, Any]:
    return {
        "external_id": order.external_id,
        "currency": order.currency,
        "ordered_at": order.ordered_at,
        "delivered_at": order.delivered_at,
        "ship_to_country": order.ship_to_country,
        "buyer_id": order.buyer_id,
        "shipping_minor": order.shipping_minor,
        "shipping_tax_minor": order.shipping_tax_minor,
        "captured_minor": order.captured_minor,
        "payment_reference": order.payment_reference,
        "lines": [
            {
                "external_id": ln.external_id,
                "sku": ln.sku,
                "quantity": ln.quantity,
                "unit_price_minor": ln.unit_price_minor,
                "tax_minor": ln.tax_minor,
                "discount_minor": ln.discount_minor,
            }
            for ln in sorted(order.lines, key=lambda ln: ln.position)
        ],
    }


def _apply_header(order: Order, data: OrderIn, buyer: Buyer | None) -> None:
    order.currency = data.currency
    order.ordered_at = data.ordered_at
    order.delivered_at = data.delivered_at
    order.ship_to_country = data.ship_to_country or (buyer.country if buyer else None)
    order.buyer_id = buyer.id if buyer else order.buyer_id
    order.shipping_minor = _minor(data.shipping)
    order.shipping_tax_minor = _minor(data.shipping_tax)
    order.captured_minor = data.captured.minor
    order.payment_reference = data.payment_reference or order.payment_reference


def _apply_line(line: OrderLine, data: OrderLineIn, position: int, product: Product) -> None:
    line.position = position
    line.sku = data.sku
    line.title = data.title or product.title
    line.quantity = data.quantity
    line.unit_price_minor = data.unit_price.minor
    line.tax_minor = _minor(data.tax)
    line.discount_minor = _minor(data.discount)
    line.product_id = product.id


def _create_order(session: Session, actor: Actor, channel: Channel, data: OrderIn) -> UpsertResult:
    buyer = _buyer(session, actor, channel, data.buyer)
    products = _products(session, actor, data.lines)
    order = Order(
        organization_id=actor.organization_id, channel_id=channel.id, external_id=data.external_id
    )
    _apply_header(order, data, buyer)
    for position, line_in in enumerate(data.lines):
        line = OrderLine(organization_id=actor.organization_id, external_id=line_in.external_id)
        _apply_line(line, line_in, position, products[line_in.sku])
        order.lines.append(line)
    session.add(order)
    session.flush()
    audit.record(
        session,
        actor,
        subject_type="order",
        subject_id=order.id,
        action="order.created",
        after=_order_state(order),
    )
    return UpsertResult(order, created=True, changed=True)


def _refund_conflicts(
    session: Session, order: Order, data: OrderIn, by_ext: dict[str, OrderLine]
) -> list[dict[str, str]]:
    """Once money went back, what was paid is fixed: refunds were computed from it, and the
    captured amount can never drop below what was refunded (DESIGN.md invariant 1)."""
    live = list(
        session.scalars(
            select(Refund).where(Refund.order_id == order.id, Refund.status.not_in(FREED))
        )
    )
    if not live:
        return []
    errors = []
    spent = sum(r.amount_minor for r in live)
    if data.captured.minor < spent:
        errors.append(
            {
                "field": "captured",
                "message": f"cannot drop below the {Money.from_minor(spent, order.currency)} "
                "already refunded",
            }
        )
    if (_minor(data.shipping), _minor(data.shipping_tax)) != (
        order.shipping_minor,
        order.shipping_tax_minor,
    ):
        errors.append({"field": "shipping", "message": "cannot change: the order has refunds"})
    refunded_lines = {str(part["order_line_id"]) for r in live for part in r.lines}
    for i, line_in in enumerate(data.lines):
        existing = by_ext.get(line_in.external_id)
        if existing is None or str(existing.id) not in refunded_lines:
            continue
        paid = (existing.unit_price_minor, existing.tax_minor, existing.discount_minor)
        if (line_in.unit_price.minor, _minor(line_in.tax), _minor(line_in.discount)) != paid:
            errors.append(
                {
                    "field": f"lines.{i}.unit_price",
                    "message": "cannot change price, tax or discount: the line has refunds",
                }
            )
    return errors


def _update_order(
    session: Session, actor: Actor, channel: Channel, order: Order, data: OrderIn
) -> UpsertResult:
    before = _order_state(order)
    claimed = returns_repo.claimed_quantities(session, [ln.id for ln in order.lines])
    if data.currency != order.currency and any(claimed.values()):
        raise OrderLineInUse(
            "currency: cannot change the currency of an order that has returns",
            errors=[{"field": "currency", "message": "cannot change: the order has returns"}],
        )
    by_ext = {ln.external_id: ln for ln in order.lines}
    incoming = {ln.external_id for ln in data.lines}
    errors: list[dict[str, str]] = []
    # Even a rejected or cancelled return keeps its history: its lines stay attached.
    referenced = returns_repo.referenced_order_lines(session, [ln.id for ln in order.lines])
    for ext, line in by_ext.items():
        if ext not in incoming and line.id in referenced:
            errors.append(
                {"field": "lines", "message": f"line {ext!r} has returns and cannot be removed"}
            )
    for i, line_in in enumerate(data.lines):
        existing = by_ext.get(line_in.external_id)
        if existing is not None and line_in.quantity < claimed.get(existing.id, 0):
            errors.append(
                {
                    "field": f"lines.{i}.quantity",
                    "message": f"{claimed[existing.id]} unit(s) are already being "
                    f"returned; quantity cannot drop to {line_in.quantity}",
                }
            )
    errors.extend(_refund_conflicts(session, order, data, by_ext))
    if errors:
        raise OrderLineInUse(
            "; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors
        )
    buyer = _buyer(session, actor, channel, data.buyer)
    products = _products(session, actor, data.lines)
    _apply_header(order, data, buyer)
    for ext in list(by_ext):
        if ext not in incoming:
            order.lines.remove(by_ext.pop(ext))
    for position, line_in in enumerate(data.lines):
        existing = by_ext.get(line_in.external_id)
        if existing is None:
            existing = OrderLine(
                organization_id=actor.organization_id, external_id=line_in.external_id
            )
            order.lines.append(existing)
        _apply_line(existing, line_in, position, products[line_in.sku])
    session.flush()
    after = _order_state(order)
    changed = before != after
    if changed:
        audit.record(
            session,
            actor,
            subject_type="order",
            subject_id=order.id,
            action="order.updated",
            before=before,
            after=after,
        )
    return UpsertResult(order, created=False, changed=changed)
