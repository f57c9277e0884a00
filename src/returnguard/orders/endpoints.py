from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status
from sqlalchemy.orm import Session

from returnguard.auth.permissions import Permission
from returnguard.auth.service import Actor
from returnguard.errors import InvalidInput, NotFound
from returnguard.kit.deps import Reader, SessionDep, require
from returnguard.kit.pagination import decode_cursor, encode_cursor
from returnguard.kit.problem import problem_responses
from returnguard.kit.schemas import IsoDay, MoneyOut
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
    OrderPage,
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
    return _order_out(order, channel.code if channel else "", buyer, claimed)


def orders_out(session: Session, orders: Sequence[Order]) -> list[OrderOut]:
    """The API views of many orders with a fixed number of queries, whatever their
    number: channel codes, buyers and units claimed by returns, each for all at once."""
    codes = repo.channel_codes(session, (o.channel_id for o in orders))
    buyers = repo.buyers_by_id(session, (o.buyer_id for o in orders if o.buyer_id))
    claimed = returns_repo.claimed_quantities(session, [ln.id for o in orders for ln in o.lines])
    return [
        _order_out(
            o,
            codes.get(o.channel_id, ""),
            buyers.get(o.buyer_id) if o.buyer_id else None,
            claimed,
        )
        for o in orders
    ]


def _order_out(
    order: Order, channel_code: str, buyer: Buyer | None, claimed: dict[uuid.UUID, int]
) -> OrderOut:
    cur = order.currency
    return OrderOut(
        id=order.id,
        channel=channel_code,
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


ChannelCode = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=64,
        pattern=r"^[a-z0-9][a-z0-9._-]*$",
        description="Code of one of your channels",
    ),
]


def _day_start(day: IsoDay) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def _channel_filter(
    session: Session, actor: Actor, code: str | None, channel_id: uuid.UUID | None
) -> uuid.UUID | None:
    """The channel the list is filtered by, from its code and/or id (both: the same one)."""
    found_id = None
    if code:
        found = repo.channel_by_code(session, actor.organization_id, code)
        if found is None:
            # A filter value, not the resource: 422 naming it, as GET /returns does.
            raise service.UnknownChannel.field("channel", f"no channel with code {code!r}")
        found_id = found.id
    if channel_id is not None:
        if repo.channel(session, actor.organization_id, channel_id) is None:
            raise service.UnknownChannel.field("channel_id", f"no channel with id {channel_id}")
        if found_id is not None and found_id != channel_id:
            raise InvalidInput.field("channel_id", f"is not the id of channel {code!r}")
        found_id = channel_id
    return found_id


@router.get("/orders", response_model=OrderPage, responses=problem_responses(401, 422))
def list_orders(
    session: SessionDep,
    actor: Reader,
    channel: ChannelCode = None,
    channel_id: Annotated[uuid.UUID | None, Query(description="Id of one of your channels")] = None,
    external_id: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=128,
            description="The marketplace's order id, exactly; unique per channel, so "
            "without `channel` it may match one order on each of several channels",
        ),
    ] = None,
    buyer_email: Annotated[
        str | None,
        Query(min_length=1, max_length=320, description="Exact match, case-insensitive"),
    ] = None,
    ordered_from: Annotated[
        IsoDay | None, Query(description="Ordered on or after this day (UTC)")
    ] = None,
    ordered_to: Annotated[
        IsoDay | None, Query(description="Ordered on or before this day (UTC, inclusive)")
    ] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> OrderPage:
    """List orders, newest first, by channel, marketplace order id, buyer email or the
    day they were ordered (UTC days, both ends included)."""
    if ordered_from is not None and ordered_to is not None and ordered_from > ordered_to:
        raise InvalidInput.field("ordered_to", f"{ordered_to} is before ordered_from")
    channel_filter = _channel_filter(session, actor, channel, channel_id)
    rows = repo.list_orders(
        session,
        actor.organization_id,
        channel_id=channel_filter,
        external_id=external_id,
        buyer_email=buyer_email,
        ordered_from=_day_start(ordered_from) if ordered_from else None,
        ordered_before=_day_start(ordered_to) + timedelta(days=1) if ordered_to else None,
        after=decode_cursor(cursor) if cursor else None,
        limit=limit + 1,
    )
    page = rows[:limit]
    return OrderPage(
        items=orders_out(session, page),
        next_cursor=encode_cursor(page[-1].ordered_at, page[-1].id) if len(rows) > limit else None,
    )


@router.get(
    "/channels/{code}/orders/{external_id}",
    response_model=OrderOut,
    responses=problem_responses(401, 404),
)
def get_order_by_external_id(
    code: Annotated[str, Path(max_length=64, description="Code of one of your channels")],
    external_id: Annotated[str, Path(max_length=128, description="The marketplace's order id")],
    session: SessionDep,
    actor: Reader,
) -> OrderOut:
    """The order a channel knows by this id (the `external_id` it was sent with)."""
    found = repo.channel_by_code(session, actor.organization_id, code)
    order = repo.order_by_external_id(session, found.id, external_id) if found else None
    if order is None:
        raise NotFound(f"no order {external_id!r} on channel {code!r}")
    return order_out(session, order)
