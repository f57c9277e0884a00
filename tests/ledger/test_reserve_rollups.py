"""Reserve rollups give the raw reserve's figures, and never a stale one.

The shops of ``test_reports_oracle`` are rolled up by the worker's own function; reserves
over windows of whole months, partial months and a hold period inside a month are
compared with the Python oracle before a build, after it, after each kind of change the
triggers must notice (a sale, a line, an entry of a return, a rate, an approval, a return
cancelled, a deleted order, an order moved to another day) and after the next pass.
"""

from __future__ import annotations

import random
import uuid
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select

from returnguard.domain.ledger import EntryKind, signed_amount
from returnguard.kit.db import Database
from returnguard.ledger import reports, rollups
from returnguard.ledger.models import LedgerEntry
from returnguard.ledger.rollup_models import ReserveRollup
from returnguard.ledger.rollup_plan import reserve_plan
from returnguard.returns.models import Return, ReturnLine
from tests.ledger import oracle
from tests.ledger.test_reports_oracle import FIRST_DAY, _reserve
from tests.ledger.test_rollups import _change, _dirty, _shop

# (as_of, lookback, hold): months whole in the window and in the hold period, partial
# months (mostly wanted ones are monthly rows less some days), a hold period starting
# inside a month, a window longer than the shop.
CASES = [
    (FIRST_DAY + timedelta(days=65), 180, 30),
    (date(2026, 10, 31), 61, 31),
    (FIRST_DAY + timedelta(days=30), 20, 7),
    (FIRST_DAY + timedelta(days=45), 40, 10),
    (date(2026, 10, 20), 80, 30),  # a whole order month, an entry month less its last days
]


def _compare(db: Database, org: uuid.UUID, *, expect_rollups: bool | None) -> list[Any]:
    """Every case equals the oracle's; ``expect_rollups``: whether each used rollups
    (None: not checked, a change may leave a whole short window raw)."""
    seen = []
    with reports.reading(db) as session:
        for as_of, lookback, hold in CASES:
            expected = oracle.reserve(
                session, org, as_of=as_of, lookback_days=lookback, hold_days=hold
            )
            got = reports.reserve(session, org, as_of=as_of, lookback_days=lookback, hold_days=hold)
            assert _reserve(got) == _reserve(expected), (as_of, lookback, hold)
            start = as_of - timedelta(days=lookback - 1)
            held = as_of - timedelta(days=hold - 1)
            used = rollups.reserve_report_plan(session, org, "EUR", start, as_of, held)
            if expect_rollups is not None:
                assert (used is not None) is expect_rollups, (as_of, lookback, hold)
            seen.append(_reserve(expected))
    return seen


def _reserve_change(db: Database, org: uuid.UUID, what: str) -> None:
    """Changes only the reserve reads (the net-profit ones come from test_rollups)."""
    with db.session() as session:
        returns = (
            select(Return)
            .where(
                Return.organization_id == org,
                Return.status.not_in(["cancelled", "expired", "rejected"]),
                select(ReturnLine.id)
                .where(ReturnLine.return_id == Return.id, ReturnLine.approved > 0)
                .exists(),
            )
            .order_by(Return.number)
        )
        if what == "return_entry":
            ret = session.scalars(returns.limit(1)).one()
            kind = EntryKind.HANDLING_FEE
            session.add(
                LedgerEntry(
                    organization_id=org,
                    kind=kind.value,
                    amount_minor=signed_amount(kind, 98_765),
                    currency="EUR",
                    occurred_on=FIRST_DAY + timedelta(days=25),
                    order_id=ret.order_id,
                    return_id=ret.id,
                    channel_id=ret.channel_id,
                    created_by="test",
                )
            )
        elif what == "cancelled":
            for ret in session.scalars(returns.limit(5)):
                ret.status = "cancelled"


CHANGES = ["order", "line", "rate", "approval", "delete", "moved_order"]
RESERVE_CHANGES = ["return_entry", "cancelled"]


def test_rolled_up_reserves_match_the_oracle_through_every_change(db: Database) -> None:
    org = _shop(db, 21, orders=60)
    before = _compare(db, org, expect_rollups=False)  # nothing built yet: all raw
    rollups.compact(db)
    assert _dirty(db, org) == 0
    with db.session(read_only=True) as session:
        stored = session.scalar(
            select(func.count())
            .select_from(ReserveRollup)
            .where(ReserveRollup.organization_id == org)
        )
    assert stored
    assert _compare(db, org, expect_rollups=True) == before
    rng = random.Random(5)
    changed = 0
    for what in CHANGES + RESERVE_CHANGES:
        if what in CHANGES:
            _change(db, org, what, rng)
        else:
            _reserve_change(db, org, what)
        assert _dirty(db, org) > 0, (what, "the trigger appended no range")
        # Raw for what changed, rollups for the rest: still the oracle's figures.
        after = _compare(db, org, expect_rollups=None)
        changed += after != before
        rollups.compact(db)
        assert _dirty(db, org) == 0
        assert _compare(db, org, expect_rollups=True) == after, what
        before = after
    assert changed >= 6, "the changes changed too few figures: the test proves little"


def test_a_reserve_plan_reads_each_day_once() -> None:
    built = {date(2026, m, 1) for m in range(1, 13)}
    today = (date(2026, 11, 30),) * 2
    p = reserve_plan(date(2026, 6, 4), date(2026, 11, 30), date(2026, 11, 1), built, [today])
    # Mostly wanted months: their monthly rows less the daily rows of the other days.
    assert p.unit_months == [(date(2026, 6, 1), date(2026, 11, 1))]
    assert p.unit_less == [(date(2026, 6, 1), date(2026, 6, 3)), today]
    assert p.unit_days == []
    assert p.unit_raw == [today]
    assert p.entry_months == [(date(2026, 1, 1), date(2026, 11, 1))]
    assert p.entry_less == [today]
    assert p.order_months == [(date(2026, 6, 1), date(2026, 11, 1))]
    assert p.order_less == [(date(2026, 6, 1), date(2026, 6, 3))]
    assert p.entry_raw[-1] == today
    # A month mostly not wanted is read by day; one the hold period starts inside too.
    q = reserve_plan(date(2026, 6, 20), date(2026, 9, 30), date(2026, 9, 10), built, [])
    assert q.unit_months == [(date(2026, 7, 1), date(2026, 8, 1))]
    assert q.unit_days == [
        (date(2026, 6, 20), date(2026, 6, 30)),
        (date(2026, 9, 1), date(2026, 9, 30)),
    ]
    assert q.unit_less == []
