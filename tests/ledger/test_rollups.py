"""Net-profit rollups give the raw report's figures, and never a stale one.

The shops of ``test_reports_oracle`` are rolled up by the worker's own function; every
grouping over whole and partial months is compared with the Python oracle, then after
each kind of change the triggers must notice (an order, a line's price, an entry, a
rate, a product's cost, an approval, a deleted order), before and after the next pass.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import delete, func, select, update

from returnguard.domain.ledger import EntryKind, signed_amount
from returnguard.fx.models import FxRate
from returnguard.kit.db import Database
from returnguard.ledger import reports, rollups
from returnguard.ledger.models import LedgerEntry
from returnguard.ledger.rollup_models import ReportDirty, ReportRollup, ReportRollupMonth
from returnguard.ledger.rollup_plan import Rollup, merge, month_end, months, plan
from returnguard.orders.models import Channel, Order, OrderLine, Product
from returnguard.returns.models import Return, ReturnLine
from tests.ledger import oracle
from tests.ledger.test_reports_oracle import DAYS, FIRST_DAY, _at, _net, build_shop

WHOLE = (FIRST_DAY, FIRST_DAY + timedelta(days=DAYS))  # September and October, whole
PARTIAL = (FIRST_DAY + timedelta(days=10), FIRST_DAY + timedelta(days=35))

# --- the plan -----------------------------------------------------------------------------


def _expand(runs: Any, *, monthly: bool = False) -> list[date]:
    found = []
    for a, b in runs:
        for m in months(a, b) if monthly else ():
            found += [m + timedelta(days=i) for i in range((month_end(m) - m).days + 1)]
        if not monthly:
            found += [a + timedelta(days=i) for i in range((b - a).days + 1)]
    return found


day_in_2026 = st.dates(date(2025, 11, 1), date(2027, 2, 28))


@given(
    first=day_in_2026,
    length=st.integers(0, 300),
    built=st.sets(st.sampled_from(list(months(date(2025, 11, 1), date(2027, 2, 1))))),
    changed=st.lists(st.tuples(day_in_2026, st.integers(0, 40)), max_size=6),
)
def test_a_plan_covers_every_day_once_and_sums_only_what_is_current(
    first: date, length: int, built: set[date], changed: list[tuple[date, int]]
) -> None:
    last = first + timedelta(days=length)
    runs = [(a, a + timedelta(days=n)) for a, n in changed]
    p = plan(first, last, built, runs)
    whole, daily, raw = _expand(p.months, monthly=True), _expand(p.days), _expand(p.raw)
    every = whole + daily + raw
    assert sorted(every) == _expand([(first, last)])  # each day exactly once
    dirty = set(_expand(runs))
    for day in whole + daily:  # summed: built, and unchanged since
        assert day.replace(day=1) in built
        assert day not in dirty
    for a, b in p.months:  # whole months only, inside the period
        assert a >= first
        assert month_end(b) <= last
    for runs_ in (p.months, p.days, p.raw):  # in order, not touching (merged)
        assert runs_ == merge(runs_) or runs_ is p.months


def test_a_plan_by_example() -> None:
    sep, oct_, nov = date(2026, 9, 1), date(2026, 10, 1), date(2026, 11, 1)
    assert plan(sep, date(2026, 11, 30), {sep, oct_, nov}, []) == Rollup(months=[(sep, nov)])
    # Partial months come from their days; an unbuilt month is read raw.
    assert plan(date(2026, 9, 11), date(2026, 10, 6), {sep}, []) == Rollup(
        days=[(date(2026, 9, 11), date(2026, 9, 30))], raw=[(oct_, date(2026, 10, 6))]
    )
    # A changed day is raw, the rest of its month comes from its days.
    assert plan(sep, date(2026, 9, 30), {sep}, [(date(2026, 9, 15), date(2026, 9, 15))]) == (
        Rollup(
            days=[(sep, date(2026, 9, 14)), (date(2026, 9, 16), date(2026, 9, 30))],
            raw=[(date(2026, 9, 15), date(2026, 9, 15))],
        )
    )
    # A rate without an end date: every later day.
    assert plan(sep, date(2026, 10, 31), {sep, oct_}, [(date(2026, 10, 31), date.max)]) == (
        Rollup(
            months=[(sep, sep)],
            days=[(oct_, date(2026, 10, 30))],
            raw=[(date(2026, 10, 31), date(2026, 10, 31))],
        )
    )


# --- against the oracle -------------------------------------------------------------------


ROLLED_UP = [g for g in reports.GroupBy if g is not reports.GroupBy.ORDER]


def _compare(
    db: Database,
    org: uuid.UUID,
    *,
    expect_rollups: bool,
    groupings: Sequence[reports.GroupBy] = ROLLED_UP,
) -> list[Any]:
    """Every grouping over the whole and the partial period equals the oracle's; returns
    the oracle's figures (to tell that a change changed something)."""
    seen = []
    used = False
    with reports.reading(db) as session:
        for first, last in (WHOLE, PARTIAL):
            for group_by in groupings:
                expected = oracle.net_profit(
                    session, org, oracle.GroupBy(group_by.value), first, last
                )
                report = reports.net_profit(session, org, group_by, first, last)
                assert _net(report.collect()) == _net(expected), (group_by, first, last)
                fresh = reports.net_profit(session, org, group_by, first, last)
                assert fresh.missing_costs() == expected.missing_costs, (group_by, first, last)
                if report.rollup is not None:
                    used = used or bool(report.rollup.months or report.rollup.days)
                seen.append(_net(expected))
    assert used is expect_rollups
    return seen


def _dirty(db: Database, org: uuid.UUID) -> int:
    with db.session(read_only=True) as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(ReportDirty)
                .where(ReportDirty.organization_id == org)
            )
            or 0
        )


def _shop(db: Database, seed: int, base: str = "EUR", orders: int = 70) -> uuid.UUID:
    with db.session() as session:
        return build_shop(session, random.Random(seed), base, orders=orders)


@pytest.mark.parametrize(("seed", "base"), [(11, "EUR"), (12, "GBP")])
def test_rolled_up_reports_match_the_oracle(db: Database, seed: int, base: str) -> None:
    org = _shop(db, seed, base)
    _compare(db, org, expect_rollups=False)  # nothing built yet: all raw
    run = rollups.compact(db)
    assert {m for o, m in run.built if o == org} == {date(2026, 9, 1), date(2026, 10, 1)}
    assert _dirty(db, org) == 0
    _compare(db, org, expect_rollups=True, groupings=list(reports.GroupBy))
    with db.session(read_only=True) as session:
        stored = session.scalar(
            select(func.sum(ReportRollup.revenue)).where(
                ReportRollup.organization_id == org, ReportRollup.monthly.is_(True)
            )
        )
        expected = oracle.net_profit(
            session,
            org,
            oracle.GroupBy.MONTH,
            date(2026, 9, 1),
            date(2026, 10, 31),
        ).total.revenue
    assert int(stored or 0) == expected
    # A second pass has nothing to do.
    assert rollups.compact(db).built == []


def _some(session: Any, stmt: Any) -> Any:
    return session.scalars(stmt.limit(1)).one()


CHANGES = ["order", "line", "entry", "rate", "cost", "approval", "delete", "moved_order"]


def _change(db: Database, org: uuid.UUID, what: str, rng: random.Random) -> None:
    with db.session() as session:
        if what == "order":
            channel = _some(
                session,
                select(Channel).where(Channel.organization_id == org).order_by(Channel.code),
            )
            order = Order(
                organization_id=org,
                channel_id=channel.id,
                external_id="NEW-1",
                currency=channel.currency,
                ordered_at=_at(FIRST_DAY + timedelta(days=20)),
                captured_minor=123_456,
            )
            session.add(order)
            session.flush()
            session.add(
                OrderLine(
                    organization_id=org,
                    order_id=order.id,
                    position=0,
                    external_id="l0",
                    sku="SKU-NEW",
                    title="New product",
                    quantity=2,
                    unit_price_minor=61_728,
                )
            )
        elif what == "line":
            # Lines of orders with whole-order entries: their revenue splits change, and
            # so do the splits of those entries (on the entries' own days).
            lines = session.scalars(
                select(OrderLine)
                .where(
                    OrderLine.organization_id == org,
                    OrderLine.unit_price_minor > 0,
                    select(LedgerEntry.id)
                    .where(LedgerEntry.order_id == OrderLine.order_id, LedgerEntry.sku.is_(None))
                    .exists(),
                )
                .join(Order, Order.id == OrderLine.order_id)
                .order_by(Order.external_id, OrderLine.position)  # the same lines every run
                .limit(10)
            ).all()
            for line in lines:
                line.unit_price_minor = line.unit_price_minor * 7 + 1
        elif what == "entry":
            order = _some(
                session,
                select(Order).where(Order.organization_id == org).order_by(Order.external_id),
            )
            kind = EntryKind.RETURN_LABEL
            session.add(
                LedgerEntry(
                    organization_id=org,
                    kind=kind.value,
                    amount_minor=signed_amount(kind, 4_321),
                    currency=order.currency,
                    occurred_on=FIRST_DAY + timedelta(days=40),
                    order_id=order.id,
                    channel_id=order.channel_id,
                    created_by="test",
                    created_at=_at(FIRST_DAY + timedelta(days=40)),
                )
            )
        elif what == "rate":
            # A new rate in the middle of September: every later day of USD changes.
            session.add(
                FxRate(
                    organization_id=org,
                    day=FIRST_DAY + timedelta(days=3),
                    base="EUR",
                    quote="USD",
                    rate="1.7",
                )
            )
            session.execute(
                delete(FxRate).where(
                    FxRate.organization_id == org,
                    FxRate.base == "EUR",
                    FxRate.quote == "USD",
                    FxRate.day > FIRST_DAY + timedelta(days=3),
                )
            )
        elif what == "cost":
            session.execute(
                update(Product)
                .where(Product.organization_id == org, Product.sku.in_(["SKU-1", "SKU-2"]))
                .values(unit_cost_minor=Product.unit_cost_minor * 3 + 17, cost_currency="EUR")
            )
        elif what == "approval":
            # Lines of returns with several lines and whole-return entries, which are split
            # over the lines by approved (else requested) units: their weights change.
            siblings = (
                select(ReturnLine.return_id)
                .group_by(ReturnLine.return_id)
                .having(func.count() > 1)
                .scalar_subquery()
            )
            return_lines = session.scalars(
                select(ReturnLine)
                .where(
                    ReturnLine.organization_id == org,
                    ReturnLine.return_id.in_(siblings),
                    select(LedgerEntry.id)
                    .where(
                        LedgerEntry.return_id == ReturnLine.return_id,
                        LedgerEntry.sku.is_(None),
                    )
                    .exists(),
                )
                .join(Return, Return.id == ReturnLine.return_id)
                .order_by(Return.number, ReturnLine.position)  # the same lines every run
                .limit(20)
            ).all()
            for rl in return_lines:
                if rl.approved < rl.requested:  # more units approved
                    rl.approved = rl.requested
                elif rl.approved > max(rl.refunded, rl.received):  # fewer, never below
                    rl.approved = max(rl.refunded, rl.received)  # what was refunded or came
        elif what == "delete":
            # An order nothing else refers to.
            order = _some(
                session,
                select(Order)
                .where(
                    Order.organization_id == org,
                    ~select(LedgerEntry.id).where(LedgerEntry.order_id == Order.id).exists(),
                    ~select(ReturnLine.id)
                    .join(OrderLine, OrderLine.id == ReturnLine.order_line_id)
                    .where(OrderLine.order_id == Order.id)
                    .exists(),
                    Order.captured_minor > 0,
                )
                .order_by(Order.external_id),
            )
            session.delete(order)
        elif what == "moved_order":
            # An order's day is corrected (an import fixing a time zone).
            order = _some(
                session,
                select(Order)
                .where(Order.organization_id == org, Order.captured_minor > 0)
                .order_by(Order.external_id),
            )
            order.ordered_at = order.ordered_at + timedelta(days=rng.choice([25, -25]))


@pytest.mark.parametrize("what", CHANGES)
def test_every_change_is_noticed_before_and_after_the_next_pass(db: Database, what: str) -> None:
    org = _shop(db, 13, orders=45)
    rollups.compact(db)
    before = _compare(db, org, expect_rollups=True)
    _change(db, org, what, random.Random(5))
    assert _dirty(db, org) > 0, "the trigger appended no range"
    # Raw for what changed, rollups for the rest: still the oracle's figures. (A unit
    # cost counts for every sale whenever it was: every day is read raw.)
    after = _compare(db, org, expect_rollups=what != "cost")
    assert after != before, "the change changed no figure: the test proves nothing"
    rollups.compact(db)
    assert _dirty(db, org) == 0
    assert _compare(db, org, expect_rollups=True) == after


@pytest.mark.postgresql_only
def test_a_change_committed_during_a_build_stays_raw(db: Database) -> None:
    """The worker's snapshot does not see a write that commits while it builds: that
    write's range survives the build, so its day is read raw, never from a stale row."""
    org = _shop(db, 14)
    rollups.compact(db)
    month = date(2026, 9, 1)
    with db.session() as building:
        building.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        building.execute(select(1))  # the snapshot starts here
        _change(db, org, "order", random.Random(1))  # commits on its own connection
        with db.session() as touch:  # make the month due without the new order
            touch.add(ReportDirty(organization_id=org, first_day=month, last_day=month))
        rollups.build_month(building, org, "EUR", month)
    with db.session(read_only=True) as session:
        p = rollups.report_plan(session, org, "EUR", *WHOLE)
    assert (FIRST_DAY + timedelta(days=20),) * 2 in [tuple(r) for r in p.raw]
    _compare(db, org, expect_rollups=True)


def test_a_base_currency_change_reads_raw_until_rebuilt(db: Database) -> None:
    org = _shop(db, 15)
    rollups.compact(db)
    from returnguard.auth.models import Organization

    with db.session() as session:
        session.execute(
            update(Organization).where(Organization.id == org).values(base_currency="GBP")
        )
    _compare(db, org, expect_rollups=False)
    run = rollups.compact(db)
    assert len(run.built) == 2
    _compare(db, org, expect_rollups=True)
    with db.session(read_only=True) as session:
        bases = set(
            session.scalars(
                select(ReportRollupMonth.base).where(ReportRollupMonth.organization_id == org)
            )
        )
        assert bases == {"GBP"}


def test_the_worker_loop_rebuilds_months_and_reports_use_them(db: Database) -> None:
    import threading
    import time

    from returnguard.config import Settings
    from returnguard.outbox.handlers import Handlers
    from returnguard.outbox.worker import Worker

    org = _shop(db, 16)
    settings = Settings(
        database_url=db.url, worker_poll_seconds=0.05, checkpoint_interval_seconds=0
    )
    worker = Worker(db, settings, handlers=Handlers())
    assert worker.rollups is not None
    stop = threading.Event()
    loop = threading.Thread(target=worker.run_forever, args=(stop,))
    loop.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with db.session(read_only=True) as session:
                if len(rollups.report_plan(session, org, "EUR", *WHOLE).months) == 1:
                    break
            time.sleep(0.1)
    finally:
        stop.set()
        loop.join(30)
        worker.close()
    with db.session(read_only=True) as session:
        assert rollups.report_plan(session, org, "EUR", *WHOLE) == Rollup(
            months=[(date(2026, 9, 1), date(2026, 10, 1))]
        )
    _compare(db, org, expect_rollups=True)
    off = Worker(db, Settings(database_url=db.url, rollup_interval_seconds=0), handlers=Handlers())
    assert off.rollups is None
    off.close()


def test_the_rollup_command(db: Database) -> None:
    from typer.testing import CliRunner

    from returnguard.cli import app

    org = _shop(db, 17)
    runner = CliRunner()
    first = runner.invoke(app, ["report", "rollup", "--org", str(org), "--database-url", db.url])
    assert first.exit_code == 0, first.output
    assert f"{org}: 2026-09 rebuilt in" in first.output
    assert f"{org}: 2026-10 rebuilt in" in first.output
    again = runner.invoke(app, ["report", "rollup", "--database-url", db.url])
    assert again.exit_code == 0, again.output
    assert "nothing to rebuild" in again.output
    unknown = runner.invoke(
        app, ["report", "rollup", "--org", str(uuid.uuid4()), "--database-url", db.url]
    )
    assert unknown.exit_code == 2
    assert "not found" in unknown.output
