"""Which parts of a net-profit period come from rollups and which from raw rows.

A month whose rollups are built can be summed from them: from its one monthly row per
(channel, SKU) when the period covers it whole and nothing in it changed since, else
from its daily rows for the days that did not change. Every other day is read raw.
Pure date arithmetic: ``ledger.rollups`` reads the facts, this decides.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

Days = Sequence[tuple[date, date]]
"""Runs of days, each (first, last) inclusive, in order and not overlapping."""

_DAY = timedelta(days=1)


def month_start(day: date) -> date:
    return day.replace(day=1)


def month_end(day: date) -> date:
    if day.month == 12:
        return day.replace(day=31)
    return day.replace(month=day.month + 1, day=1) - _DAY


def months(first: date, last: date) -> Iterable[date]:
    """The first day of every month from ``first``'s to ``last``'s."""
    m = month_start(first)
    while m <= last:
        yield m
        if m.month == 12:
            if m.year == date.max.year:
                return
            m = m.replace(year=m.year + 1, month=1)
        else:
            m = m.replace(month=m.month + 1)


def merge(runs: Iterable[tuple[date, date]]) -> list[tuple[date, date]]:
    """Overlapping or touching runs joined, in order."""
    merged: list[tuple[date, date]] = []
    for a, b in sorted(runs):
        if merged and (merged[-1][1] == date.max or a <= merged[-1][1] + _DAY):
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _add(runs: list[tuple[date, date]], a: date, b: date) -> None:
    """Append a..b (later than every run), joined to the last run if they touch."""
    if runs and runs[-1][1] + _DAY == a:
        runs[-1] = (runs[-1][0], b)
    else:
        runs.append((a, b))


@dataclass(frozen=True, slots=True)
class Rollup:
    """``months``: runs of month starts summed from monthly rows; ``days``: runs of days
    summed from daily rows; ``raw``: runs of days read from orders and entries."""

    months: Days = field(default_factory=list)
    days: Days = field(default_factory=list)
    raw: Days = field(default_factory=list)


def plan(
    first: date, last: date, built: Collection[date], changed: Iterable[tuple[date, date]]
) -> Rollup:
    """Split ``first``..``last`` given the months whose rollups are ``built`` (their first
    days) and the runs of days ``changed`` since they were."""
    dirty = merge(changed)
    starts = [a for a, _ in dirty]
    whole: list[tuple[date, date]] = []
    daily: list[tuple[date, date]] = []
    raw: list[tuple[date, date]] = []
    for m in months(first, last):
        lo, hi = max(first, m), min(last, month_end(m))
        if m not in built:
            _add(raw, lo, hi)
            continue
        # The changed runs that overlap lo..hi: from the last one starting by lo on.
        i = max(bisect_right(starts, lo) - 1, 0)
        overlaps = []
        while i < len(dirty) and dirty[i][0] <= hi:
            a, b = dirty[i]
            if b >= lo:
                overlaps.append((max(a, lo), min(b, hi)))
            i += 1
        if not overlaps and lo == m and hi == month_end(m):
            # Consecutive months make one run of month starts (a month is at most 31 days).
            if whole and (m - whole[-1][1]).days <= 31:
                whole[-1] = (whole[-1][0], m)
            else:
                whole.append((m, m))
            continue
        day: date | None = lo
        for a, b in overlaps:
            if day is not None and day < a:
                _add(daily, day, a - _DAY)
            _add(raw, a, b)
            day = b + _DAY if b < hi else None
        if day is not None:
            _add(daily, day, hi)
    return Rollup(months=whole, days=daily, raw=raw)


# --- the reserve --------------------------------------------------------------------------

EARLIEST = date(1900, 1, 1)
"""No day the application stores is earlier (the API refuses them)."""


@dataclass(frozen=True, slots=True)
class ReservePlan:
    """Where a reserve over the order days ``start``..``as_of`` reads what.

    Units (by order day): ``unit_months`` from monthly rows (each wholly inside or outside
    the hold period) less the daily rows of ``unit_less`` (the days of those months not
    wanted: outside the window, or changed since), ``unit_days`` from daily rows,
    ``unit_raw`` from orders. Ledger (by entry day, up to ``as_of``): monthly rows for the
    entry months ``entry_months`` and the order months ``order_months`` (mostly in the
    window) less the daily rows of their entry days ``entry_less`` and order days
    ``order_less`` (not wanted), daily rows for ``entry_days`` and for the other order days
    of the ``entry_months``, raw entries for ``entry_raw``.
    """

    start: date
    as_of: date
    hold: date
    unit_months: Days = field(default_factory=list)
    unit_days: Days = field(default_factory=list)
    unit_raw: Days = field(default_factory=list)
    unit_less: Days = field(default_factory=list)
    entry_months: Days = field(default_factory=list)
    order_months: Days = field(default_factory=list)
    order_less: Days = field(default_factory=list)
    entry_days: Days = field(default_factory=list)
    entry_less: Days = field(default_factory=list)
    entry_raw: Days = field(default_factory=list)

    @property
    def uses_rollups(self) -> bool:
        return bool(self.unit_months or self.unit_days or self.entry_months or self.entry_days)


def _month_runs(starts: Iterable[date]) -> list[tuple[date, date]]:
    runs: list[tuple[date, date]] = []
    for m in sorted(starts):
        if runs and (m - runs[-1][1]).days <= 31:
            runs[-1] = (runs[-1][0], m)
        else:
            runs.append((m, m))
    return runs


def _month_starts(runs: Days) -> list[date]:
    return [m for a, b in runs for m in months(a, b)]


def _mostly(
    days: Days,
) -> Iterator[tuple[date, list[tuple[date, date]], list[tuple[date, date]] | None]]:
    """Per month of ``days`` (runs of wanted days of built months): the month, its wanted
    runs and, when most of the month is wanted, the runs of its other days (outside the
    period, or changed since), else None. Most wanted: its monthly rows less the daily
    rows of the other days read fewer rows than the daily rows of the wanted ones (and the
    difference is exact: a monthly row is the sum of the daily rows of the same build)."""
    by_month: dict[date, list[tuple[date, date]]] = {}
    for a, b in days:
        for m in months(a, b):
            by_month.setdefault(m, []).append((max(a, m), min(b, month_end(m))))
    for m, wanted in sorted(by_month.items()):
        count = sum((b - a).days + 1 for a, b in wanted)
        if (month_end(m) - m).days + 1 - count >= count:
            yield m, wanted, None
            continue
        unwanted = []
        day = m
        for a, b in sorted(wanted):
            if day < a:
                unwanted.append((day, a - _DAY))
            day = b + _DAY
        if day <= month_end(m):
            unwanted.append((day, month_end(m)))
        yield m, wanted, unwanted


def reserve_plan(
    start: date,
    as_of: date,
    hold: date,
    built: Collection[date],
    changed: Iterable[tuple[date, date]],
) -> ReservePlan:
    """Split a reserve's order days ``start``..``as_of`` (hold period from ``hold``) and its
    entry days (up to ``as_of``) given the months ``built`` and the days ``changed``."""
    changed = list(changed)
    units = plan(start, as_of, built, changed)
    whole: list[date] = []
    days: list[tuple[date, date]] = []
    less: list[tuple[date, date]] = []
    for m in _month_starts(units.months):
        if m < hold <= month_end(m):  # the hold period starts inside: by day
            days.append((m, month_end(m)))
        else:
            whole.append(m)
    for m, wanted, unwanted in _mostly(units.days):
        if unwanted is None or m < hold <= month_end(m):
            days += wanted
        else:
            whole.append(m)
            less += unwanted
    entries = plan(EARLIEST, as_of, built, changed)
    entry_months = _month_starts(entries.months)
    entry_days: list[tuple[date, date]] = []
    entry_less: list[tuple[date, date]] = []
    for m, wanted, unwanted in _mostly(entries.days):
        if unwanted is None:
            entry_days += wanted
        else:  # the month's monthly rows less the daily rows of its other days
            entry_months.append(m)
            entry_less += unwanted
    order_months: list[date] = []
    order_less: list[tuple[date, date]] = []
    for m, _, unwanted in _mostly([(start, as_of)]):
        if unwanted is not None:  # mostly in the window: its days outside are taken off
            order_months.append(m)
            order_less += unwanted
    return ReservePlan(
        start=start,
        as_of=as_of,
        hold=hold,
        unit_months=_month_runs(whole),
        unit_days=merge(days),
        unit_less=merge(less),
        unit_raw=list(units.raw),
        entry_months=_month_runs(entry_months),
        order_months=_month_runs(order_months),
        order_less=merge(order_less),
        entry_days=merge(entry_days),
        entry_less=merge(entry_less),
        entry_raw=list(entries.raw),
    )
