"""Which parts of a net-profit period come from rollups and which from raw rows.

A month whose rollups are built can be summed from them: from its one monthly row per
(channel, SKU) when the period covers it whole and nothing in it changed since, else
from its daily rows for the days that did not change. Every other day is read raw.
Pure date arithmetic: ``ledger.rollups`` reads the facts, this decides.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Collection, Iterable, Sequence
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
