from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from sqlalchemy.orm import Session

from returnguard.auth.permissions import Permission
from returnguard.auth.service import Actor
from returnguard.kit.deps import Reader, SessionDep, require
from returnguard.kit.problem import problem_responses
from returnguard.kit.schemas import MoneyOut
from returnguard.orders import repository as repo
from returnguard.orders import service
from returnguard.orders.models import Buyer, Channel, Order, Product
from returnguard.orders.schemas import (
    BuyerOut,
    ChannelIn,
    ChannelOut,
    OrderIn,
    OrderLineOut,
    OrderOut,
    ProductIn,
    ProductOut,
)
from returnguard.returns import repository as returns_repo

router = APIRouter(prefix="/api/v1", tags=["orders"])
Writer = Annotated[Actor, Depends(require(Permission.ORDERS_WRITE))]


def order_out(session: Session, order: Order) -> OrderOut:

    channel = session.get(Channel, order.channel_id)
    buyer = session.get(Buyer, order.buyer_id) if order.buyer_id else None
    claimed = returns_repo.claimed_quantities(session, [ln.id for ln in order.lines])
    cur = order.currency
    return OrderOut(
        id=order.id,
        channel=channel.code if channel else "",
        external_id=order.external_id,
        currency=cur,
        ordered_at=order.ordered_at,
        delivered_at=order.delivered_at,
        ship_to_country=order.ship_to_country,
        buyer=BuyerOut.model_validate(buyer) if buyer else None,
        shipping=MoneyOut.from_minor(order.shipping_minor, cur),
        shipping_tax=MoneyOut.from_minor(order.shipping_tax_minor, cur),
        captured=MoneyOut.from_minor(order.captured_minor, cur),
        payment_reference=order.payment_reference,
        lines=[
            OrderLineOut(
                id=ln.id,
                external_id=ln.external_id,
                sku=ln.sku,
                title=ln.title,
                quantity=ln.quantity,
                unit_price=MoneyOut.from_minor(ln.unit_price_minor, cur),
                tax=MoneyOut.from_minor(ln.tax_minor, cur),
                discount=MoneyOut.from_minor(ln.discount_minor, cur),
                returned_quantity=claimed.get(ln.id, 0),
            )
            for ln in order.lines
        ],
        created_at=order.created_at,
        updated_at=order.updated_at,
    )


def channel_out(c: Channel) -> ChannelOut:
    def money(minor: int | None) -> MoneyOut | None:
        return None if minor is None else MoneyOut.from_minor(minor, c.currency)

    return ChannelOut(
        id=c.id,
        code=c.code,
        name=c.name,
        marketplace=c.marketplace,
        country=c.country,
        currency=c.currency,
        language=c.language,
        return_label_cost=money(c.return_label_cost_minor),
        handling_cost=money(c.handling_cost_minor),
        policy_id=c.policy_id,
        created_at=c.created_at,
    )


def product_out(p: Product) -> ProductOut:
    cost = (
        MoneyOut.from_minor(p.unit_cost_minor, p.cost_currency)
        if p.unit_cost_minor is not None and p.cost_currency
        else None
    )
    return ProductOut(
        id=p.id,
        sku=p.sku,
        title=p.title,
        asin=p.asin,
        category=p.category,
        unit_cost=cost,
        hs_code=p.hs_code,
    )


@router.post(
    "/channels",
    status_code=status.HTTP_201_CREATED,
    response_model=ChannelOut,
    responses=problem_responses(401, 403, 409, 422),
)
def create_channel(body: ChannelIn, session: SessionDep, actor: Writer) -> ChannelOut:
    """Register a sales channel (marketplace storefront or own shop)."""
    return channel_out(service.create_channel(session, actor, body))


@router.get("/channels", response_model=list[ChannelOut], responses=problem_responses(401))
def list_channels(session: SessionDep, actor: Reader) -> list[ChannelOut]:
    return [channel_out(c) for c in repo.channels(session, actor.organization_id)]


@router.post(
    "/products",
    response_model=ProductOut,
    responses={
        201: {"model": ProductOut, "description": "Created"},
        **problem_responses(401, 403, 422),
    },
)
def upsert_product(
    body: ProductIn, session: SessionDep, actor: Writer, response: Response
) -> ProductOut:
    """Create or update a product by SKU."""
    product, created = service.upsert_product(session, actor, body)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return product_out(product)


@router.post(
    "/orders",
    response_model=OrderOut,
    responses={
        201: {"model": OrderOut, "description": "Created"},
        **problem_responses(400, 401, 403, 409, 422),
    },
)
def upsert_order(body: OrderIn, session: SessionDep, actor: Writer, response: Response) -> OrderOut:
    """Create or update an order, keyed by channel + external order id.

    Sending the same order again updates it (200) instead of duplicating it (201 on create).
    """
    result = service.upsert_order(session, actor, body)
    response.status_code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
    return order_out(session, result.order)


@router.get("/orders/{order_id}", response_model=OrderOut, responses=problem_responses(401, 404))
def get_order(order_id: uuid.UUID, session: SessionDep, actor: Reader) -> OrderOut:
    return order_out(session, service.get_order(session, actor.organization_id, order_id))
