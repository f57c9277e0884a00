"""The reports computed by the database give exactly the figures the Python reports gave.

Random shops (seeded, so a failure replays) with orders in five currencies, rates stored
directly, inverted and only through EUR, rates that make rounding ties and rates longer
than Python's 28 digits, products without a cost, lines worth nothing, discounts larger
than the line, returns in every state, refunds paid in parts, entries about a line, a
return or a whole order, reversals and entries in currencies without a rate. Every report
is computed by ``tests/ledger/oracle.py`` (the old implementation, one ORM object at a
time) and by ``returnguard.ledger.reports``; every figure, row and list must be equal.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import astuple
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    Table,
    insert,
    literal,
    select,
)
from sqlalchemy.orm import Session

from returnguard.auth import service as auth
from returnguard.domain.ledger import EntryKind, convert, signed_amount, split_signed
from returnguard.fx import service as fx
from returnguard.fx.models import FxRate
from returnguard.kit.db import Database
from returnguard.ledger import reports
from returnguard.ledger.models import LedgerEntry
from returnguard.ledger.repository import ReportQueries
from returnguard.orders.models import Channel, Order, OrderLine, Product
from returnguard.refunds.models import Refund
from returnguard.returns.models import Return, ReturnLine
from tests.ledger import oracle

FIRST_DAY = date(2026, 9, 1)
DAYS = 60
# Rates per (base, quote): plain ECB-like ones, ones whose inverse rounds on a tie
# (1 / 1.2 = 0.8333…: 3 x that is 2.5 in exact arithmetic), and one longer than 28 digits.
RATES: dict[tuple[str, str], list[str]] = {
    ("EUR", "USD"): ["1.0856", "1.2", "1.25", "1.08561234567890123456789012345", "1.1"],
    ("EUR", "JPY"): ["162.5", "158.37", "3"],
    ("EUR", "GBP"): ["0.8543", "0.86", "0.5"],
    ("KWD", "EUR"): ["2.98", "3.0125"],
    ("USD", "CHF"): ["0.88", "0.9"],
}
CURRENCIES = ["EUR", "USD", "JPY", "GBP", "KWD", "CHF", "SEK"]  # SEK: never a rate
KINDS = list(EntryKind)
STATUSES = [
    *("approved", "received", "inspected", "refunded", "closed", "cancelled"),
    *("rejected", "expired", "resolved", "requested", "in_transit"),
]


def _at(day: date, hour: int = 10) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=UTC)


def _day(rng: random.Random) -> date:
    return FIRST_DAY + timedelta(days=rng.randrange(DAYS))


def build_shop(
    session: Session,
    rng: random.Random,
    base: str,
    *,
    orders: int = 70,
    organization: uuid.UUID | None = None,
    foreign_costs: bool = True,
) -> uuid.UUID:
    name = f"Shop {rng.random()}"
    org = organization or auth.create_organization(session, name, base).id
    for (b, q), texts in RATES.items():
        for day in sorted({_day(rng) for _ in range(6)}):
            session.add(
                FxRate(organization_id=org, day=day, base=b, quote=q, rate=rng.choice(texts))
            )
    channels = []
    for code in ("EUR", "USD", "JPY", "GBP", "KWD", "CHF", "SEK"):
        channel = Channel(
            organization_id=org,
            code=f"shop-{code.lower()}",
            name=f"Shop {code}",
            marketplace="shopify",
            country="DE",
            currency=code,
        )
        session.add(channel)
        channels.append(channel)
    products: list[Product | None] = []
    for i in range(8):
        currencies = ["EUR", "USD", "JPY", "SEK", None] if foreign_costs else [base, None]
        cost_currency = rng.choice(currencies)
        product = Product(
            organization_id=org,
            sku=f"SKU-{i}",
            title=f"Product {i}",
            unit_cost_minor=rng.randrange(0, 5000) if cost_currency else None,
            cost_currency=cost_currency,
        )
        session.add(product)
        products.append(product)
    products.append(None)  # a SKU sold without any product row
    session.flush()

    for n in range(orders):
        channel = rng.choice(channels)
        day = _day(rng)
        order = Order(
            organization_id=org,
            channel_id=channel.id,
            external_id=f"{rng.choice(['A', 'b', 'Z', '1'])}-{n:04d}",
            currency=channel.currency,
            ordered_at=_at(day, rng.randrange(24)),
            captured_minor=rng.choice([0, rng.randrange(1, 10**6), 333, 1001]),
        )
        session.add(order)
        session.flush()
        lines = []
        for position in range(rng.choice([1, 1, 2, 3, 5])):
            chosen = rng.choice(products)
            sku = chosen.sku if chosen else "SKU-LOOSE"
            line = OrderLine(
                organization_id=org,
                order_id=order.id,
                position=position,
                external_id=f"l{position}",
                product_id=chosen.id if chosen else None,
                sku=sku,
                title=f"Product {sku[4:]}" if chosen else "Loose item",
                quantity=rng.randrange(1, 5),
                unit_price_minor=rng.choice([0, rng.randrange(1, 20000), 999]),
                tax_minor=rng.choice([0, rng.randrange(0, 500)]),
                discount_minor=rng.choice([0, 0, rng.randrange(0, 30000)]),
            )
            session.add(line)
            lines.append(line)
        session.flush()
        for _ in range(rng.choice([0, 0, 1, 2])):
            _order_entry(session, rng, org, order, channel)
        if rng.random() < 0.6:
            _return(session, rng, org, order, channel, lines, n)
    session.flush()
    return org


def _order_entry(
    session: Session, rng: random.Random, org: uuid.UUID, order: Order, channel: Channel
) -> None:
    kind = rng.choice(KINDS)
    session.add(
        LedgerEntry(
            organization_id=org,
            kind=kind.value,
            amount_minor=signed_amount(kind, rng.randrange(1, 9000)),
            currency=rng.choice([order.currency, "EUR", "USD", "SEK"]),
            occurred_on=_day(rng),
            order_id=order.id,
            channel_id=channel.id,
            created_by="test",
            created_at=_at(_day(rng)),
        )
    )


def _return(
    session: Session,
    rng: random.Random,
    org: uuid.UUID,
    order: Order,
    channel: Channel,
    lines: list[OrderLine],
    n: int,
) -> None:
    ret = Return(
        organization_id=org,
        number=f"R-{n}",
        order_id=order.id,
        channel_id=channel.id,
        status=rng.choice(STATUSES),
        currency=order.currency,
    )
    session.add(ret)
    session.flush()
    chosen = rng.sample(lines, rng.randrange(1, len(lines) + 1))
    return_lines = []
    for position, line in enumerate(chosen):
        requested = rng.randrange(1, line.quantity + 1)
        approved = rng.randrange(0, requested + 1)
        received = rng.randrange(0, approved + 1)
        inspected = rng.randrange(0, received + 1)
        rl = ReturnLine(
            organization_id=org,
            return_id=ret.id,
            order_line_id=line.id,
            position=position,
            reason_code="changed_mind",
            requested=requested,
            approved=approved,
            received=received,
            inspected=inspected,
            passed=inspected,
            refunded=0,  # the units of the refunds below that are not failed, as the guard keeps it
        )
        session.add(rl)
        return_lines.append((rl, line))
    session.flush()
    for k in range(rng.choice([0, 1, 1, 2])):
        status = rng.choice(["succeeded", "succeeded", "succeeded", "pending", "failed"])
        parts: list[dict[str, Any]] = []
        for rl, line in return_lines:
            # No more units than approved in refunds that hold them (not failed).
            quantity = min(rng.randrange(1, 4), rl.approved - rl.refunded)
            if rng.random() >= 0.8 or quantity <= 0:
                continue
            if status != "failed":
                rl.refunded += quantity
            parts.append(
                {
                    "return_line_id": str(rl.id),
                    "order_line_id": str(line.id),
                    "quantity": quantity,
                    "total": rng.choice([0, rng.randrange(1, 50000), 7]),
                    "restocking_fee": rng.choice([0, 150]),
                }
            )
        if not parts:
            continue
        settled = _at(_day(rng), rng.randrange(24))
        refund = Refund(
            organization_id=org,
            return_id=ret.id,
            order_id=order.id,
            idempotency_key=f"{ret.id}-{k}",
            request_hash="0" * 64,
            status=status,
            amount_minor=sum(int(p["total"]) for p in parts) + 1,
            currency=rng.choice([order.currency, order.currency, "EUR", "SEK"]),
            lines=parts,
            provider="manual",
            created_by="test",
            settled_at=settled if rng.random() < 0.8 else None,
            created_at=settled,
            updated_at=settled + timedelta(hours=rng.randrange(0, 30)),
        )
        session.add(refund)
    for _ in range(rng.randrange(0, 6)):
        kind = rng.choice(KINDS)
        rl, line = rng.choice(return_lines)
        about_line = rng.random() < 0.5
        entry = LedgerEntry(
            organization_id=org,
            kind=kind.value,
            amount_minor=signed_amount(kind, rng.choice([1, 2, 3, rng.randrange(1, 40000)])),
            currency=rng.choice([order.currency, order.currency, "EUR", "USD", "KWD", "SEK"]),
            occurred_on=_day(rng),
            order_id=order.id,
            return_id=ret.id,
            order_line_id=line.id if about_line else None,
            sku=line.sku if about_line else None,
            channel_id=channel.id,
            created_by="test",
            created_at=_at(_day(rng), rng.randrange(24)),
        )
        session.add(entry)
        if rng.random() < 0.15:
            session.flush()
            session.add(
                LedgerEntry(
                    organization_id=org,
                    kind=entry.kind,
                    amount_minor=-entry.amount_minor,
                    currency=entry.currency,
                    occurred_on=entry.occurred_on,
                    order_id=entry.order_id,
                    return_id=entry.return_id,
                    order_line_id=entry.order_line_id,
                    sku=entry.sku,
                    channel_id=entry.channel_id,
                    reverses_id=entry.id,
                    created_by="test",
                    created_at=entry.created_at + timedelta(days=1),
                )
            )


def _net(result: Any) -> Any:
    return (
        [(r.key, r.label, astuple(r.figures)) for r in result.rows],
        astuple(result.total),
        [astuple(m) for m in result.missing_rates],
        result.missing_costs,
    )


def _reserve(report: Any) -> Any:
    rows = [
        (
            r.sku,
            r.units_sold,
            r.units_returned,
            r.units_sold_hold,
            r.ledger_sum,
            r.rate_low,
            r.rate_high,
            r.loss_per_return,
            r.reserve_per_unit,
            r.reserve,
        )
        for r in report.rows
    ]
    return rows, sorted(astuple(m) for m in report.missing_rates), report.total_reserve


def _at_risk(buckets: Any, items: Any, missing: Any) -> Any:
    return (
        [
            (
                b.age,
                b.refunds if isinstance(b.refunds, int) else len(b.refunds),
                b.not_received_units,
                b.not_received,
                b.not_inspected_units,
                b.not_inspected,
            )
            for b in buckets
        ],
        [
            (
                i.refund_id,
                i.return_id,
                i.return_line_id,
                i.sku,
                i.currency,
                i.settled_on,
                i.age_days,
                i.age,
                astuple(i.exposure),
            )
            for i in items
        ],
        sorted(astuple(m) for m in missing),
    )


@pytest.mark.parametrize(
    ("seed", "base", "foreign_costs"),
    [(1, "EUR", True), (2, "GBP", True), (3, "EUR", False), (4, "JPY", True)],
)
def test_reports_match_the_python_oracle(
    db: Database, seed: int, base: str, foreign_costs: bool
) -> None:
    rng = random.Random(seed)
    with db.session() as session:
        org = build_shop(session, rng, base, foreign_costs=foreign_costs)
    periods = [
        (FIRST_DAY, FIRST_DAY + timedelta(days=DAYS)),
        (FIRST_DAY + timedelta(days=10), FIRST_DAY + timedelta(days=35)),
    ]
    compared = at_risk = 0
    with reports.reading(db) as session:
        for first, last in periods:
            for group_by in reports.GroupBy:
                expected = oracle.net_profit(
                    session, org, oracle.GroupBy(group_by.value), first, last
                )
                report = reports.net_profit(session, org, group_by, first, last)
                assert _net(report.collect()) == _net(expected), (group_by, first, last)
                # Without a pass over the rows first, the lists are queried directly.
                fresh = reports.net_profit(session, org, group_by, first, last)
                assert fresh.missing_costs() == expected.missing_costs
                assert [astuple(m) for m in fresh.missing_rates()] == [
                    astuple(m) for m in expected.missing_rates
                ]
                compared += len(expected.rows)
        for as_of in (FIRST_DAY + timedelta(days=30), FIRST_DAY + timedelta(days=DAYS + 5)):
            for lookback, hold in ((180, 30), (20, 7)):
                old = oracle.reserve(
                    session, org, as_of=as_of, lookback_days=lookback, hold_days=hold
                )
                new = reports.reserve(
                    session, org, as_of=as_of, lookback_days=lookback, hold_days=hold
                )
                assert _reserve(new) == _reserve(old), (as_of, lookback, hold)
            old_risk = oracle.money_at_risk(session, org, as_of=as_of)
            at_risk += len(old_risk.items)
            new_risk = reports.money_at_risk(session, org, as_of=as_of)
            assert _at_risk(
                new_risk.buckets, list(new_risk.items()), new_risk.missing_rates()
            ) == _at_risk(old_risk.buckets, old_risk.items, old_risk.missing_rates), as_of
    assert compared > 50  # the shop is not empty
    assert at_risk > 5  # and has refunds paid for goods not received or not inspected


def test_sql_rates_are_fx_rates(db: Database) -> None:
    """The rate each report uses for a (currency, day) is fx.rate's, digit for digit, and
    amounts convert to what rules.convert gives (ties, long and crossed rates included)."""
    rng = random.Random(7)
    with db.session() as session:
        org = build_shop(session, rng, "GBP")
    first, last = FIRST_DAY - timedelta(days=3), FIRST_DAY + timedelta(days=DAYS + 3)
    with reports.reading(db) as session:
        q = ReportQueries(session, org, "GBP")
        rates = q.rates(first, last)
        seen = set()
        for amount in (1, 3, 5, 7, 250, 99999, 123456789, -3, -250):
            stmt = select(
                rates.c.currency,
                rates.c.day,
                q.converted(rates, literal(amount), rates.c.currency).label("v"),
            )
            for currency, day, value in session.execute(stmt):
                rate = fx.rate(session, org, currency, "GBP", day)
                expected = None if rate is None else convert(amount, rate, currency, "GBP")
                assert value == expected, (currency, day, amount, rate)
                seen.add((currency, day))
        # Every currency with a rate into or out of GBP or EUR, every day of the calendar.
        # CHF is only stored against USD: fx.rate cannot use that either.
        assert {c for c, _ in seen} == {"EUR", "USD", "JPY", "KWD"}
        assert len(seen) == 4 * ((last - first).days + 1)
        assert fx.rate(session, org, "CHF", "GBP", last) is None


def test_largest_remainder_in_sql_is_allocate(db: Database) -> None:
    """``ReportQueries.allocated`` splits exactly like ``domain.refunds.allocate`` (signed):
    groups of 0 to 9 rows, zero and equal weights, negative and tiny totals."""
    rng = random.Random(11)
    scratch = Table(
        "alloc_scratch",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("k", Integer),
        Column("t", BigInteger),
        Column("w", BigInteger),
        Column("o1", Integer),
        Column("o2", Integer),
        prefixes=["TEMPORARY"],
    )
    groups: dict[int, tuple[int, list[int]]] = {}
    rows: list[dict[str, Any]] = []
    for k in range(600):
        total = rng.choice([rng.randrange(-(10**6), 10**6), 7, -3, 0, 1, 10**15])
        weights = [
            rng.choice([0, 0, 1, 3, rng.randrange(0, 1000), 10**12])
            for _ in range(rng.choice([0, 1, 2, 3, 4, 5, 9]))
        ]
        groups[k] = (total, weights)
        if not weights:
            rows.append({"id": len(rows), "k": k, "t": total, "w": None, "o1": 0, "o2": 0})
        for j, w in enumerate(weights):
            rows.append({"id": len(rows), "k": k, "t": total, "w": w, "o1": j // 2, "o2": j})
    with db.session() as session:
        scratch.create(session.connection())
        session.execute(insert(scratch), rows)
        q = ReportQueries(session, uuid.uuid4(), "EUR")
        source = select(scratch).cte("source")

        def siblings(row: Any) -> Any:
            other = scratch.alias()
            return select(other.c.w, other.c.o1, other.c.o2).where(other.c.k == row.k)

        parts = q.allocated(source, ("id",), siblings, "split")
        got: dict[int, list[int]] = {}
        stmt = (
            select(source.c.k, parts.c.part)
            .join(parts, parts.c.id == source.c.id)
            .order_by(source.c.id)
        )
        for k, part in session.execute(stmt):
            got.setdefault(k, []).append(int(part))
        scratch.drop(session.connection())
    for k, (total, weights) in groups.items():
        assert got[k] == (split_signed(total, weights) if weights else [total]), k
