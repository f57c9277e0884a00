"""Report rollups: kept by the worker, summed by reports (docs/ledger.md, "Rollups").

``report_rollups`` holds what each (channel, SKU) contributed to net profit per day and
per month, in the organization's base currency, split and converted exactly as the raw
report does: the worker writes them with the report's own query
(``ReportQueries.rollup_rows``), so a sum of them is the report over those days, to the
minor unit. ``reserve_rollups`` (migration 0014) holds what the reserve reads: units sold
and returned per order day and SKU, the returns' ledger per entry day, order day and SKU
(``ReportQueries.reserve_unit_rows`` and ``reserve_ledger_rows``), built with the month's
net-profit rows, in the same transaction, retiring the same changed days.

Staying current without a hot row: triggers append the days a write changed to
``report_dirty`` (migration 0012); nothing else is written by a request. A report treats
those days as raw until the worker (:func:`compact`, or ``returnguard report rollup``)
has rebuilt their months, one month per transaction:

1. read, in the transaction's snapshot, the changed ranges that touch the month;
2. replace the month's rows with fresh ones, computed in the same snapshot;
3. delete those ranges, putting back the parts outside the month.

A range appended by a write the snapshot does not see survives step 3, so its days stay
raw until the next pass: a report never sums a row older than the facts it reads. Two
workers building one month collide on its ``report_rollup_months`` row or its ranges,
and the later one rolls back.
"""

from __future__ import annotations

import logging
import time as clock
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    String,
    Uuid,
    and_,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
)
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from returnguard.auth.models import Organization
from returnguard.kit.db import Database, one_snapshot, utcnow
from returnguard.ledger import repository as repo
from returnguard.ledger.models import LedgerEntry
from returnguard.ledger.rollup_models import (
    ReportDirty,
    ReportRollup,
    ReportRollupMonth,
    ReserveRollup,
)
from returnguard.ledger.rollup_plan import (
    EARLIEST,
    ReservePlan,
    Rollup,
    month_end,
    month_start,
    months,
    plan,
    reserve_plan,
)
from returnguard.orders.models import Order

log = logging.getLogger("returnguard.rollups")

_COLUMNS = (
    "period",
    "channel_id",
    "sku",
    "title",
    *repo.FIGURES,
    "missing_units",
    "missing_rates",
)


def _built(
    session: Session, organization_id: uuid.UUID, base: str, first: date, last: date
) -> set[date]:
    return set(
        session.scalars(
            select(ReportRollupMonth.month).where(
                ReportRollupMonth.organization_id == organization_id,
                ReportRollupMonth.base == base,
                ReportRollupMonth.month >= month_start(first),
                ReportRollupMonth.month <= last,
            )
        )
    )


def _changed(
    session: Session, organization_id: uuid.UUID, first: date, last: date
) -> list[tuple[date, date]]:
    changed = session.execute(
        select(ReportDirty.first_day, ReportDirty.last_day)
        .where(
            ReportDirty.organization_id == organization_id,
            ReportDirty.first_day <= last,
            ReportDirty.last_day >= first,
        )
        .distinct()
    )
    return [(a, b) for a, b in changed]


def report_plan(
    session: Session, organization_id: uuid.UUID, base: str, first: date, last: date
) -> Rollup:
    """What a net-profit report over ``first``..``last`` sums and what it reads raw, in
    the session's snapshot."""
    built = _built(session, organization_id, base, first, last)
    if not built:
        return Rollup(raw=[(first, last)])
    return plan(first, last, built, _changed(session, organization_id, first, last))


def reserve_report_plan(
    session: Session, organization_id: uuid.UUID, base: str, start: date, as_of: date, hold: date
) -> ReservePlan | None:
    """What a reserve over the orders of ``start``..``as_of`` sums and reads raw (its
    entries are those up to ``as_of``, whenever they occurred); None when nothing is
    rolled up, in the session's snapshot."""
    built = _built(session, organization_id, base, EARLIEST, as_of)
    if not built:
        return None
    changed = _changed(session, organization_id, EARLIEST, as_of)
    found = reserve_plan(start, as_of, hold, built, changed)
    return found if found.uses_rollups else None


# --- building ----------------------------------------------------------------------------


@dataclass
class RollupRun:
    """What one pass did: months rebuilt (organization, month), and how many failed."""

    built: list[tuple[uuid.UUID, date]] = field(default_factory=list)
    failed: int = 0
    seconds: float = 0.0
    unfinished: bool = False  # stopped by its budget with months still due


def _span(session: Session, org: uuid.UUID) -> tuple[date, date] | None:
    """The first and last day with an order or an entry of the organization."""
    orders = select(
        func.min(Order.ordered_at).label("lo"), func.max(Order.ordered_at).label("hi")
    ).where(Order.organization_id == org)
    entries = select(func.min(LedgerEntry.occurred_on), func.max(LedgerEntry.occurred_on)).where(
        LedgerEntry.organization_id == org
    )
    (o_lo, o_hi), (e_lo, e_hi) = session.execute(orders).one(), session.execute(entries).one()
    days = [d for d in (o_lo and o_lo.date(), o_hi and o_hi.date(), e_lo, e_hi) if d]
    if not days:
        return None
    return min(days), max(days)


def _due(session: Session, org: uuid.UUID, base: str) -> list[date]:
    """The months to (re)build: those with facts and no rollups in ``base`` yet, and
    those a change touched. Ranges that touch no such month are dropped."""
    span = _span(session, org)
    built = {
        month: b
        for month, b in session.execute(
            select(ReportRollupMonth.month, ReportRollupMonth.base).where(
                ReportRollupMonth.organization_id == org
            )
        )
    }
    wanted = set(months(*span)) if span else set()
    candidates = wanted | set(built)
    due = {m for m in wanted if built.get(m) != base}
    ranges = session.execute(
        select(ReportDirty.id, ReportDirty.first_day, ReportDirty.last_day).where(
            ReportDirty.organization_id == org
        )
    ).all()
    if not candidates:
        lo = hi = None
    else:
        lo, hi = min(candidates), month_end(max(candidates))
    stale = []
    for ident, a, b in ranges:
        if lo is None or hi is None or b < lo or a > hi:
            stale.append(ident)
            continue
        due.update(m for m in months(max(a, lo), min(b, hi)) if m in candidates)
    if stale:
        session.execute(delete(ReportDirty).where(ReportDirty.id.in_(stale)))
    return sorted(due)


def build_month(session: Session, org: uuid.UUID, base: str, month: date) -> None:
    """Replace the month's rollups with fresh ones and retire the changes they cover."""
    first, last = month_start(month), month_end(month)
    ranges = session.execute(
        select(ReportDirty.id, ReportDirty.first_day, ReportDirty.last_day).where(
            ReportDirty.organization_id == org,
            ReportDirty.first_day <= last,
            ReportDirty.last_day >= first,
        )
    ).all()
    # The month's row first: a second worker on this month waits here, then fails.
    row = session.get(ReportRollupMonth, (org, first), with_for_update=True)
    if row is None:
        session.add(
            ReportRollupMonth(organization_id=org, month=first, base=base, built_at=utcnow())
        )
    else:
        row.base, row.built_at = base, utcnow()
    session.flush()
    ru = ReportRollup
    session.execute(
        delete(ru).where(ru.organization_id == org, ru.period >= first, ru.period <= last)
    )
    queries = repo.ReportQueries(session, org, base)
    org_value, base_value = literal(org, Uuid), literal(base, String)
    daily = queries.rollup_rows(first, last).subquery("rollup_days")
    session.execute(
        insert(ru).from_select(
            ["organization_id", "base", "monthly", *_COLUMNS],
            select(org_value, base_value, literal(False, Boolean), *daily.c),
        )
    )
    sums = [cast(func.sum(getattr(ru, n)), ru.revenue.type).label(n) for n in _COLUMNS[4:]]
    session.execute(
        insert(ru).from_select(
            ["organization_id", "base", "monthly", *_COLUMNS],
            select(
                org_value,
                base_value,
                literal(True, Boolean),
                literal(first, Date),
                ru.channel_id,
                ru.sku,
                func.max(ru.title),
                *sums,
            )
            .where(
                ru.organization_id == org,
                ru.monthly.is_(False),
                ru.period >= first,
                ru.period <= last,
            )
            .group_by(ru.channel_id, ru.sku),
        )
    )
    _build_reserve_month(session, queries, org_value, base_value, first, last)
    if ranges:
        session.execute(delete(ReportDirty).where(ReportDirty.id.in_([r.id for r in ranges])))
        rest = [(a, first - timedelta(days=1)) for _, a, _ in ranges if a < first]
        rest += [(last + timedelta(days=1), b) for _, _, b in ranges if b > last]
        if rest:
            session.execute(
                insert(ReportDirty),
                [{"organization_id": org, "first_day": a, "last_day": b} for a, b in set(rest)],
            )


_RESERVE_COLUMNS = (
    "period",
    "entry_period",
    "sku",
    "units_sold",
    "units_returned",
    "ledger",
    "missing_rates",
)


def _build_reserve_month(
    session: Session,
    queries: repo.ReportQueries,
    org_value: Any,
    base_value: Any,
    first: date,
    last: date,
) -> None:
    """The reserve's rollups of a month: units by order day, ledger by entry day (each
    with its order day), then their monthly sums (order months for the ledger)."""
    rr = ReserveRollup
    org = org_value.value
    session.execute(
        delete(rr).where(
            rr.organization_id == org,
            or_(
                and_(rr.entry_period.is_(None), rr.period >= first, rr.period <= last),
                and_(rr.entry_period >= first, rr.entry_period <= last),
            ),
        )
    )
    columns = ["organization_id", "base", "monthly", *_RESERVE_COLUMNS]
    units = queries.reserve_unit_rows([(first, last)]).subquery("reserve_units")
    u = units.c
    no_day = literal(None, Date)
    zero = literal(0, BigInteger)
    session.execute(
        insert(rr).from_select(
            columns,
            select(
                org_value,
                base_value,
                literal(False, Boolean),
                u.day,
                no_day,
                u.sku,
                u.units_sold,
                u.units_returned,
                zero,
                zero,
            ),
        )
    )
    ledger = queries.reserve_ledger_rows([(first, last)]).subquery("reserve_ledger")
    lg = ledger.c
    session.execute(
        insert(rr).from_select(
            columns,
            select(
                org_value,
                base_value,
                literal(False, Boolean),
                lg.day,
                lg.entry_day,
                lg.sku,
                zero,
                zero,
                lg.ledger,
                lg.missing_rates,
            ),
        )
    )
    daily = and_(rr.organization_id == org, rr.monthly.is_(False))
    wide = rr.units_sold.type

    def total(column: Any) -> Any:
        return cast(func.sum(column), wide)

    session.execute(
        insert(rr).from_select(
            columns,
            select(
                org_value,
                base_value,
                literal(True, Boolean),
                literal(first, Date),
                no_day,
                rr.sku,
                total(rr.units_sold),
                total(rr.units_returned),
                zero,
                zero,
            )
            .where(daily, rr.entry_period.is_(None), rr.period >= first, rr.period <= last)
            .group_by(rr.sku),
        )
    )
    order_month = queries.month_start_of(rr.period)
    session.execute(
        insert(rr).from_select(
            columns,
            select(
                org_value,
                base_value,
                literal(True, Boolean),
                order_month,
                literal(first, Date),
                rr.sku,
                zero,
                zero,
                total(rr.ledger),
                total(rr.missing_rates),
            )
            .where(daily, rr.entry_period >= first, rr.entry_period <= last)
            .group_by(order_month, rr.sku),
        )
    )


def compact(
    db: Database,
    organization_id: uuid.UUID | None = None,
    *,
    budget_seconds: float | None = None,
    on_month: Callable[[uuid.UUID, date, float], None] | None = None,
) -> RollupRun:
    """Rebuild every month that is due, of one organization or all; with a budget, stop
    starting new months once it is spent (the next pass goes on)."""
    run = RollupRun()
    started = clock.monotonic()
    for org, base in _organizations(db, organization_id):
        with db.session() as session:
            one_snapshot(session)
            due = _due(session, org, base)
        for month in due:
            if budget_seconds is not None and clock.monotonic() - started > budget_seconds:
                run.seconds, run.unfinished = clock.monotonic() - started, True
                return run
            t0 = clock.monotonic()
            try:
                with db.session() as session:
                    one_snapshot(session)
                    build_month(session, org, base, month)
            except (IntegrityError, DBAPIError) as exc:
                # Another worker built it (or changed its ranges) first: next pass.
                log.info("rollup of %s for %s skipped: %s", month, org, exc.orig)
                run.failed += 1
                continue
            run.built.append((org, month))
            if on_month is not None:
                on_month(org, month, clock.monotonic() - t0)
        if due:
            # What is left of the ranges beyond the built months (a rate's "until further
            # notice") touches nothing: dropped now, not at the next pass.
            with db.session() as session:
                one_snapshot(session)
                _due(session, org, base)
    run.seconds = clock.monotonic() - started
    return run


def _organizations(
    db: Database, organization_id: uuid.UUID | None
) -> Iterator[tuple[uuid.UUID, str]]:
    with db.session(read_only=True) as session:
        stmt = select(Organization.id, Organization.base_currency).order_by(Organization.id)
        if organization_id is not None:
            stmt = stmt.where(Organization.id == organization_id)
        found = [(org, base) for org, base in session.execute(stmt)]
    yield from found


class RollupSchedule:
    """Runs :func:`compact` from a loop that calls ``tick()`` often (the outbox worker's),
    every ``interval``; a pass stops starting months after ``budget`` so the loop's other
    work goes on, and the next tick continues at once. Failures are logged and retried."""

    def __init__(
        self,
        db: Database,
        interval: timedelta,
        *,
        budget: timedelta = timedelta(seconds=10),
        clock_fn: Callable[[], float] = clock.monotonic,
    ) -> None:
        self.db = db
        self.interval = interval.total_seconds()
        self.budget = budget.total_seconds()
        self.clock = clock_fn
        self._next = clock_fn()  # the first tick runs at once

    def tick(self) -> RollupRun | None:
        """A pass if it is time; None when it was not."""
        now = self.clock()
        if now < self._next:
            return None
        try:
            run = compact(self.db, budget_seconds=self.budget)
        except Exception:
            log.exception("rebuilding report rollups failed; retrying in %ss", self.interval)
            self._next = self.clock() + self.interval
            return RollupRun(failed=1)
        for org, month in run.built:
            log.info("report rollups of %s rebuilt for organization %s", month, org)
        # Out of budget with months left: go on at the next tick.
        self._next = self.clock() + (0 if run.unfinished else self.interval)
        return run
