"""Buyers over HTTP: look them up with their history, and keep the watchlist.

Taking a buyer off the watchlist is `POST …/watchlist/remove` with a JSON body rather
than `DELETE …/watchlist`: the reason is required, a DELETE body is dropped by many
clients and proxies, and a reason in the query string would end up in access logs.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import Field
from sqlalchemy.orm import Session

from returnguard.auth.permissions import Permission
from returnguard.auth.service import Actor
from returnguard.kit.deps import Reader, SessionDep, require
from returnguard.kit.problem import problem_responses
from returnguard.kit.schemas import OutModel, StrictModel
from returnguard.orders import buyers as service
from returnguard.orders import repository as repo
from returnguard.orders.models import Buyer, Channel
from returnguard.returns.schemas import EventOut

router = APIRouter(prefix="/api/v1", tags=["buyers"])

Flagger = Annotated[Actor, Depends(require(Permission.BUYERS_FLAG))]

WATCHLIST_ERRORS = problem_responses(401, 403, 404, 422)


class WatchlistIn(StrictModel):
    reason: str = Field(
        min_length=1,
        max_length=service.MAX_REASON_LENGTH,
        description="Why: kept with the buyer (when putting on) and in the event log",
    )


class WatchlistEntryIn(WatchlistIn):
    buyer_id: uuid.UUID
    watchlisted: bool = Field(default=True, description="false takes the buyer off")


class BuyerCountsOut(OutModel):
    orders: int
    returns: int
    refunds: int = Field(description="Refunds of the buyer's orders, in any status")


class BuyerOut(OutModel):
    id: uuid.UUID
    channel: str = Field(description="Code of the channel the buyer is known on")
    external_id: str
    email: str | None
    name: str | None
    country: str | None
    risk_level: str | None
    watchlisted: bool
    watchlist_reason: str | None
    created_at: datetime


class BuyerDetailOut(BuyerOut):
    counts: BuyerCountsOut


class BuyerPage(OutModel):
    items: list[BuyerOut]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page")


def _buyer_out(buyer: Buyer, channel_code: str) -> BuyerOut:
    return BuyerOut(
        id=buyer.id,
        channel=channel_code,
        external_id=buyer.external_id,
        email=buyer.email,
        name=buyer.name,
        country=buyer.country,
        risk_level=buyer.risk_level,
        watchlisted=buyer.watchlisted,
        watchlist_reason=buyer.watchlist_reason,
        created_at=buyer.created_at,
    )


def buyer_detail_out(session: Session, buyer: Buyer) -> BuyerDetailOut:
    channel = session.get(Channel, buyer.channel_id)
    counts = service.history(session, buyer)
    return BuyerDetailOut(
        **_buyer_out(buyer, channel.code if channel else "").model_dump(),
        counts=BuyerCountsOut(orders=counts.orders, returns=counts.returns, refunds=counts.refunds),
    )


@router.get("/buyers", response_model=BuyerPage, responses=problem_responses(401, 422))
def list_buyers(
    session: SessionDep,
    actor: Reader,
    watchlisted: bool | None = None,
    channel: Annotated[
        str | None, Query(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")
    ] = None,
    email: Annotated[
        str | None,
        Query(min_length=1, max_length=320, pattern=r"^[^\x00]+$", description="Exact match"),
    ] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> BuyerPage:
    """List buyers, newest first; `watchlisted=true` gives the watchlist."""
    page = service.list_buyers(
        session,
        actor.organization_id,
        watchlisted=watchlisted,
        channel=channel,
        email=email,
        cursor=cursor,
        limit=limit,
    )
    codes = {c.id: c.code for c in repo.channels(session, actor.organization_id)}
    return BuyerPage(
        items=[_buyer_out(b, codes.get(b.channel_id, "")) for b in page.items],
        next_cursor=page.next_cursor,
    )


@router.get(
    "/buyers/{buyer_id}", response_model=BuyerDetailOut, responses=problem_responses(401, 404)
)
def get_buyer(buyer_id: uuid.UUID, session: SessionDep, actor: Reader) -> BuyerDetailOut:
    """A buyer's profile: identity, risk, watchlist and how many orders, returns, refunds."""
    return buyer_detail_out(session, service.get_buyer(session, actor.organization_id, buyer_id))


@router.post(
    "/buyers/{buyer_id}/watchlist", response_model=BuyerDetailOut, responses=WATCHLIST_ERRORS
)
def watchlist_buyer(
    buyer_id: uuid.UUID, body: WatchlistIn, session: SessionDep, actor: Flagger
) -> BuyerDetailOut:
    """Put the buyer on the watchlist: no refund before a passed inspection from now on.

    Again with another reason replaces the reason.
    """
    buyer = service.set_watchlist(session, actor, buyer_id, on=True, reason=body.reason)
    return buyer_detail_out(session, buyer)


@router.post("/watchlist", response_model=BuyerDetailOut, responses=WATCHLIST_ERRORS)
def watchlist(body: WatchlistEntryIn, session: SessionDep, actor: Flagger) -> BuyerDetailOut:
    """Put a buyer on the watchlist (or, with `"watchlisted": false`, take them off):
    the same as `POST /buyers/{id}/watchlist` and `…/watchlist/remove`."""
    buyer = service.set_watchlist(
        session, actor, body.buyer_id, on=body.watchlisted, reason=body.reason
    )
    return buyer_detail_out(session, buyer)


@router.post(
    "/buyers/{buyer_id}/watchlist/remove",
    response_model=BuyerDetailOut,
    responses=WATCHLIST_ERRORS,
)
def unwatchlist_buyer(
    buyer_id: uuid.UUID, body: WatchlistIn, session: SessionDep, actor: Flagger
) -> BuyerDetailOut:
    """Take the buyer off the watchlist; the reason goes into the event log."""
    buyer = service.set_watchlist(session, actor, buyer_id, on=False, reason=body.reason)
    return buyer_detail_out(session, buyer)


@router.get(
    "/buyers/{buyer_id}/events",
    response_model=list[EventOut],
    responses=problem_responses(401, 404),
)
def buyer_events(buyer_id: uuid.UUID, session: SessionDep, actor: Reader) -> list[EventOut]:
    """The buyer's timeline: who put them on or took them off the watchlist, when and why."""
    service.get_buyer(session, actor.organization_id, buyer_id)
    rows = service.events(session, actor.organization_id, buyer_id)
    return [EventOut.model_validate(e) for e in rows]
