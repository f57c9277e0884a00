"""Backtest a policy version over an organization's past returns (loads the cases in bulk)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from returnguard.domain.ledger import EntryKind
from returnguard.domain.policy.backtest import BacktestCase, BacktestReport, run_backtest
from returnguard.domain.policy.document import PolicyDocument
from returnguard.domain.policy.engine import Outcome, compile_policy
from returnguard.errors import InvalidInput
from returnguard.fx import service as fx
from returnguard.kit.money import Money
from returnguard.ledger.models import LedgerEntry
from returnguard.orders.models import Buyer, Channel, Order, Product
from returnguard.policies.facts import assemble_facts, evidence_counts
from returnguard.policies.models import PolicyVersion, ReturnDecision
from returnguard.returns.models import Return

CHUNK = 1000
MAX_SPAN_DAYS = 400


def _chunks(
    session: Session,
    organization_id: uuid.UUID,
    start: datetime,
    end: datetime,
    channel_id: uuid.UUID | None,
) -> Iterator[list[Return]]:
    stmt = (
        select(Return)
        .where(
            Return.organization_id == organization_id,
            Return.requested_at >= start,
            Return.requested_at < end,
        )
        .options(selectinload(Return.lines))
        .order_by(Return.requested_at, Return.id)
    )
    if channel_id is not None:
        stmt = stmt.where(Return.channel_id == channel_id)
    batch: list[Return] = []
    for ret in session.scalars(stmt.execution_options(yield_per=CHUNK)):
        batch.append(ret)
        if len(batch) == CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


def _cases(
    session: Session,
    returns: Sequence[Return],
    bands: frozenset[str],
    rates: dict[tuple[str, str, date], Decimal | None],
) -> list[BacktestCase]:
    """Build the facts of a chunk of returns with a handful of queries, not one per return."""
    orders = {
        o.id: o
        for o in session.scalars(
            select(Order)
            .where(Order.id.in_({r.order_id for r in returns}))
            .options(selectinload(Order.lines))
        )
    }
    channels = {
        c.id: c
        for c in session.scalars(
            select(Channel).where(Channel.id.in_({r.channel_id for r in returns}))
        )
    }
    buyer_ids = {o.buyer_id for o in orders.values() if o.buyer_id}
    buyers = {b.id: b for b in session.scalars(select(Buyer).where(Buyer.id.in_(buyer_ids)))}
    product_ids = {ln.product_id for o in orders.values() for ln in o.lines if ln.product_id}
    products = {
        p.id: p for p in session.scalars(select(Product).where(Product.id.in_(product_ids)))
    }
    return_ids = [r.id for r in returns]
    currencies = {r.id: r.currency for r in returns}
    # Distinct files, as a live decision counts them (the same photo twice counts once).
    evidence = evidence_counts(session, return_ids)
    # Earlier orders per buyer decide "first-time buyer"; counted once per chunk.
    first_order: dict[uuid.UUID, datetime] = dict(
        session.execute(  # type: ignore[arg-type]
            select(Order.buyer_id, func.min(Order.ordered_at))
            .where(Order.buyer_id.in_(buyer_ids))
            .group_by(Order.buyer_id)
        ).all()
    )
    # Restocking fees actually kept, from the cost ledger (net of reversals).
    fees: dict[uuid.UUID, int] = {}
    for fee_return, currency, kept in session.execute(
        select(LedgerEntry.return_id, LedgerEntry.currency, func.sum(LedgerEntry.amount_minor))
        .where(
            LedgerEntry.return_id.in_(return_ids),
            LedgerEntry.kind == EntryKind.RESTOCKING_FEE_KEPT.value,
        )
        .group_by(LedgerEntry.return_id, LedgerEntry.currency)
    ):
        if fee_return is not None and currency == currencies.get(fee_return):
            fees[fee_return] = int(kept or 0)
    decisions: dict[uuid.UUID, ReturnDecision] = {}
    for d in session.scalars(
        select(ReturnDecision)
        .where(ReturnDecision.return_id.in_(return_ids))
        .order_by(ReturnDecision.created_at)
    ):
        decisions[d.return_id] = d  # the latest wins
    cases = []
    for ret in returns:
        order = orders[ret.order_id]
        channel = channels[ret.channel_id]
        buyer = buyers.get(order.buyer_id) if order.buyer_id else None
        first_time = None
        if buyer is not None:
            first_time = first_order.get(buyer.id) == order.ordered_at
        facts = assemble_facts(
            ret, order, channel, buyer, products, evidence.get(ret.id, {}), first_time
        )
        if bands:
            facts.fx_rates = fx.rates_into(
                session, ret.organization_id, bands, ret.currency, ret.requested_at.date(), rates
            )
        decision = decisions.get(ret.id)
        fee_kept = Money.from_minor(fees.get(ret.id, 0), ret.currency).amount
        cases.append(_case(ret, channel, facts, decision, fee_kept))
    return cases


def _case(
    ret: Return,
    channel: Channel,
    facts: Any,
    decision: ReturnDecision | None,
    restocking_fee_kept: Decimal,
) -> BacktestCase:
    label = None
    if channel.return_label_cost_minor is not None and channel.currency == ret.currency:
        label = Money.from_minor(channel.return_label_cost_minor, ret.currency).amount
    actual: Outcome | None = None
    payer = None
    before_receipt = returnless = False
    if decision is not None:
        actual = Outcome(decision.outcome)
        settings = [line.get("settings", {}) for line in decision.lines]
        returnless = actual is Outcome.RETURNLESS_REFUND
        comes_back = actual not in (Outcome.REJECT, Outcome.RETURNLESS_REFUND)
        if comes_back and settings:
            payer = settings[0].get("return_shipping_paid_by")
            before_receipt = any(s.get("refund_before_receipt") for s in settings)
        before_receipt = before_receipt or returnless
    return BacktestCase(
        return_id=ret.id,
        number=ret.number,
        requested_at=ret.requested_at,
        currency=ret.currency,
        facts=facts,
        actual_outcome=actual,
        label_cost=label,
        actual_refund_before_receipt=before_receipt,
        actual_restocking_fee=restocking_fee_kept,
        actual_shipping_paid_by=payer,
        actual_returnless=returnless,
    )


def backtest(
    session: Session,
    organization_id: uuid.UUID,
    version: PolicyVersion,
    *,
    start: datetime,
    end: datetime,
    channel_id: uuid.UUID | None = None,
    keep_rows: int = 10_000,
) -> BacktestReport:
    """Run ``version`` over the returns requested in [start, end) beside what happened."""
    if end <= start:
        raise InvalidInput.field("to", "must be after from")
    if (end - start).days > MAX_SPAN_DAYS:
        raise InvalidInput.field("to", f"a backtest covers at most {MAX_SPAN_DAYS} days")
    policy = compile_policy(PolicyDocument.model_validate(version.document))
    bands = policy.document.band_currencies()
    rates: dict[tuple[str, str, date], Decimal | None] = {}

    def cases() -> Iterator[BacktestCase]:
        for chunk in _chunks(session, organization_id, start, end, channel_id):
            yield from _cases(session, chunk, bands, rates)

    return run_backtest(policy, cases(), keep_rows=keep_rows)
