"""Gather what the policy engine may know about a return, from the database."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict
from decimal import Decimal
from typing import Any

from sqlalchemy import distinct, event, func, select
from sqlalchemy.orm import Session, SessionTransaction

from returnguard.audit.service import jsonable
from returnguard.domain.policy.document import RiskLevel
from returnguard.domain.policy.engine import EvidenceFacts, LineFacts, ReturnFacts
from returnguard.domain.reasons import ReasonCode
from returnguard.kit.money import Money
from returnguard.orders.models import Buyer, Channel, Order, OrderLine, Product
from returnguard.policies.models import Evidence
from returnguard.returns import repository as returns_repo
from returnguard.returns.models import Return


def _unit_value(line: OrderLine, currency: str) -> Decimal:
    """What one unit cost the buyer: price plus its share of tax, less its discount."""
    total = line.unit_price_minor * line.quantity + line.tax_minor - line.discount_minor
    return Money.from_minor(max(total, 0) // line.quantity, currency).amount


def _risk(buyer: Buyer | None) -> RiskLevel | None:
    if buyer is None or buyer.risk_level is None:
        return None
    try:
        return RiskLevel(buyer.risk_level)
    except ValueError:
        return None


def _first_time(session: Session, order: Order) -> bool | None:
    if order.buyer_id is None:
        return None
    earlier = session.scalar(
        select(func.count())
        .select_from(Order)
        .where(
            Order.buyer_id == order.buyer_id,
            Order.id != order.id,
            Order.ordered_at < order.ordered_at,
        )
    )
    return not earlier


def return_facts(session: Session, ret: Return) -> ReturnFacts:
    order = session.get(Order, ret.order_id)
    channel = session.get(Channel, ret.channel_id)
    if order is None or channel is None:
        raise LookupError(f"return {ret.id} lost its order or channel")
    buyer = session.get(Buyer, order.buyer_id) if order.buyer_id else None
    products = {
        p.id: p
        for p in session.scalars(
            select(Product).where(
                Product.id.in_([ln.product_id for ln in order.lines if ln.product_id])
            )
        )
    }
    if returns_repo.inserted_here(session, ret.id) and not _evidence_added(session, ret.id):
        kinds: dict[str, int] = {}  # a return this transaction made, with no evidence yet
    else:
        kinds = evidence_counts(session, [ret.id]).get(ret.id, {})
    return assemble_facts(ret, order, channel, buyer, products, kinds, _first_time(session, order))


# Returns this transaction added evidence to (as rows flushed): see _evidence_added.
_EVIDENCE_ADDED = "returnguard.policies.evidence_added"


@event.listens_for(Session, "before_flush")
def _note_evidence(session: Session, _context: Any, _instances: Any) -> None:
    for obj in session.new:
        if isinstance(obj, Evidence):
            added: set[uuid.UUID] = session.info.setdefault(_EVIDENCE_ADDED, set())
            added.add(obj.return_id)


@event.listens_for(Session, "after_transaction_end")
def _forget_evidence(session: Session, transaction: SessionTransaction) -> None:
    # Only at the transaction's end: forgetting at a savepoint's would skip counting
    # evidence flushed before it.
    if transaction.parent is None:
        session.info.pop(_EVIDENCE_ADDED, None)


def _evidence_added(session: Session, return_id: uuid.UUID) -> bool:
    """Whether this transaction added evidence to the return, flushed or not yet."""
    if return_id in session.info.get(_EVIDENCE_ADDED, ()):
        return True
    return any(isinstance(obj, Evidence) and obj.return_id == return_id for obj in session.new)


_FILE_KINDS = ("photo", "video", "document")


def evidence_counts(
    session: Session, return_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[str, int]]:
    """Evidence per return and kind: distinct files (by SHA-256) for photos, videos and
    documents, so the same bytes twice count once; written texts by row."""
    counts: dict[uuid.UUID, dict[str, int]] = {}
    if not return_ids:
        return counts
    for return_id, kind, rows, files in session.execute(
        select(
            Evidence.return_id,
            Evidence.kind,
            func.count(),
            func.count(distinct(Evidence.sha256)),
        )
        .where(Evidence.return_id.in_(return_ids))
        .group_by(Evidence.return_id, Evidence.kind)
    ):
        counts.setdefault(return_id, {})[kind] = int(files if kind in _FILE_KINDS else rows)
    return counts


def assemble_facts(
    ret: Return,
    order: Order,
    channel: Channel,
    buyer: Buyer | None,
    products: dict[uuid.UUID, Product],
    evidence_kinds: dict[str, int],
    first_time_buyer: bool | None,
) -> ReturnFacts:
    """The engine's facts from already-loaded rows (shared by decisions and backtests)."""
    days = None
    if order.delivered_at is not None:
        days = max((ret.requested_at.date() - order.delivered_at.date()).days, 0)
    cost = None
    if channel.currency == order.currency and (
        channel.return_label_cost_minor is not None or channel.handling_cost_minor is not None
    ):
        cost = Money.from_minor(
            (channel.return_label_cost_minor or 0) + (channel.handling_cost_minor or 0),
            order.currency,
        ).amount
    order_lines = {ln.id: ln for ln in order.lines}
    lines = []
    for rl in ret.lines:
        ol = order_lines[rl.order_line_id]
        product = products.get(ol.product_id) if ol.product_id else None
        lines.append(
            LineFacts(
                line_id=str(rl.id),
                sku=ol.sku,
                category=product.category if product else None,
                reason_code=ReasonCode(rl.reason_code),
                unit_value=_unit_value(ol, order.currency),
                quantity=rl.requested,
            )
        )
    written = (
        bool(evidence_kinds.get("text"))
        or bool(ret.buyer_comment.strip())
        or any(ln.comment.strip() for ln in ret.lines)
    )
    return ReturnFacts(
        channel=channel.code,
        marketplace_country=channel.country,
        buyer_country=(buyer.country if buyer and buyer.country else order.ship_to_country),
        currency=order.currency,
        days_since_delivery=days,
        buyer_risk=_risk(buyer),
        watchlisted=bool(buyer and buyer.watchlisted),
        first_time_buyer=first_time_buyer,
        cost_to_return=cost,
        lines=lines,
        evidence=EvidenceFacts(
            photos=evidence_kinds.get("photo", 0),
            videos=evidence_kinds.get("video", 0),
            explanation=written,
        ),
    )


def facts_json(facts: ReturnFacts) -> dict[str, Any]:
    return dict(jsonable(asdict(facts)))
