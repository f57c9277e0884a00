"""Buyers as agents see them: their history in counts, and the watchlist.

The watchlist flag is read live by the refund guard (no money before a passed
inspection) and by the policy engine on its next decision; this module is the only
place that sets it, always with a written reason and an event.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from returnguard.audit import service as audit
from returnguard.audit.models import Event
from returnguard.auth.actor import Actor
from returnguard.errors import InvalidInput, NotFound
from returnguard.kit.pagination import decode_cursor, encode_cursor
from returnguard.orders import repository as repo
from returnguard.orders.models import Buyer, Order
from returnguard.orders.service import UnknownChannel
from returnguard.refunds.models import Refund
from returnguard.returns.models import Return

MAX_REASON_LENGTH = 2000


@dataclass(frozen=True)
class BuyerHistory:
    orders: int
    returns: int
    refunds: int


@dataclass(frozen=True)
class BuyerPage:
    items: list[Buyer]
    next_cursor: str | None


def get_buyer(
    session: Session, organization_id: uuid.UUID, buyer_id: uuid.UUID, *, lock: bool = False
) -> Buyer:
    """The organization's buyer; another tenant's buyer is as unknown as a made-up id."""
    stmt = select(Buyer).where(Buyer.id == buyer_id, Buyer.organization_id == organization_id)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    buyer = session.scalar(stmt)
    if buyer is None:
        raise NotFound(f"buyer {buyer_id} not found")
    return buyer


def history(session: Session, buyer: Buyer) -> BuyerHistory:
    """How many orders, returns and refunds (any status) the buyer has."""
    org = buyer.organization_id
    orders = session.scalar(
        select(func.count(Order.id)).where(Order.organization_id == org, Order.buyer_id == buyer.id)
    )
    returns = session.scalar(
        select(func.count(Return.id)).where(
            Return.organization_id == org, Return.buyer_id == buyer.id
        )
    )
    # Through the order, as the refund guard sees the buyer.
    refunds = session.scalar(
        select(func.count(Refund.id))
        .join(Order, Order.id == Refund.order_id)
        .where(Refund.organization_id == org, Order.buyer_id == buyer.id)
    )
    return BuyerHistory(orders=orders or 0, returns=returns or 0, refunds=refunds or 0)


def list_buyers(
    session: Session,
    organization_id: uuid.UUID,
    *,
    watchlisted: bool | None = None,
    channel: str | None = None,
    email: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> BuyerPage:
    """The organization's buyers, newest first, a page at a time (as returns are listed)."""
    stmt = (
        select(Buyer)
        .where(Buyer.organization_id == organization_id)
        .order_by(Buyer.created_at.desc(), Buyer.id.desc())
        .limit(limit + 1)
    )
    if watchlisted is not None:
        stmt = stmt.where(Buyer.watchlisted == watchlisted)
    if channel:
        found = repo.channel_by_code(session, organization_id, channel)
        if found is None:
            # A filter value, not the resource: 422 naming it, as GET /returns does.
            raise UnknownChannel.field("channel", f"no channel with code {channel!r}")
        stmt = stmt.where(Buyer.channel_id == found.id)
    if email:
        stmt = stmt.where(func.lower(Buyer.email) == email.lower())
    if cursor:
        at, bid = decode_cursor(cursor)
        # The first term bounds the index range (ix_buyers_org_created); the second skips
        # the ties already seen.
        stmt = stmt.where(Buyer.created_at <= at, (Buyer.created_at < at) | (Buyer.id < bid))
    rows = list(session.scalars(stmt))
    page = rows[:limit]
    return BuyerPage(
        page, encode_cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None
    )


def _reason(reason: str) -> str:
    text = reason.strip()
    if not text:
        raise InvalidInput.field("reason", "must not be blank")
    if len(text) > MAX_REASON_LENGTH:
        raise InvalidInput.field("reason", f"must be at most {MAX_REASON_LENGTH} characters")
    if "\x00" in text:
        raise InvalidInput.field("reason", "must not contain NUL (U+0000) characters")
    return text


def _watch_state(buyer: Buyer) -> dict[str, Any]:
    return {"watchlisted": buyer.watchlisted, "watchlist_reason": buyer.watchlist_reason}


def set_watchlist(
    session: Session, actor: Actor, buyer_id: uuid.UUID, *, on: bool, reason: str
) -> Buyer:
    """Put a buyer on the watchlist or take them off, always with a reason and an event.

    Idempotent: asking for the state the buyer is already in changes nothing and records
    nothing; putting a watchlisted buyer on again with another reason replaces the reason.
    """
    text = _reason(reason)
    # Locked so that two agents changing the same buyer are serialised and each event's
    # `before` is what the other one left.
    buyer = get_buyer(session, actor.organization_id, buyer_id, lock=True)
    before = _watch_state(buyer)
    buyer.watchlisted = on
    buyer.watchlist_reason = text if on else None
    after = _watch_state(buyer)
    if after == before:
        return buyer
    session.flush()
    audit.record(
        session,
        actor,
        subject_type="buyer",
        subject_id=buyer.id,
        action="buyer.watchlisted" if on else "buyer.unwatchlisted",
        before=before,
        after=after,
        data={"reason": text},
    )
    return buyer


def events(session: Session, organization_id: uuid.UUID, buyer_id: uuid.UUID) -> list[Event]:
    """The buyer's own timeline (watchlist changes), oldest first."""
    stmt = (
        select(Event)
        .where(
            Event.organization_id == organization_id,
            Event.subject_type == "buyer",
            Event.subject_id == str(buyer_id),
        )
        .order_by(Event.seq)
    )
    return list(session.scalars(stmt))
