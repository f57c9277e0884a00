"""All queries on the cost ledger live here (the reports' read queries too)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Date,
    Integer,
    Numeric,
    String,
    Text,
    Uuid,
    and_,
    case,
    cast,
    false,
    func,
    join,
    literal,
    literal_column,
    null,
    or_,
    select,
    text,
    true,
    tuple_,
    type_coerce,
    union,
    union_all,
)
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.selectable import CTE, CompoundSelect, Select

from returnguard.domain import ledger as rules
from returnguard.fx.models import FxRate
from returnguard.kit.db import UTCDateTime
from returnguard.kit.money import known_currencies, minor_digits
from returnguard.ledger.models import LedgerEntry
from returnguard.ledger.rollup_models import ReportRollup, ReserveRollup
from returnguard.ledger.rollup_plan import Days, ReservePlan, Rollup, merge, month_end
from returnguard.orders.models import Channel, Order, OrderLine, Product
from returnguard.refunds.models import Refund
from returnguard.returns.models import Inspection, Receipt, Return, ReturnLine, Shipment


def get(session: Session, organization_id: uuid.UUID, entry_id: uuid.UUID) -> LedgerEntry | None:
    return session.scalar(
        select(LedgerEntry).where(
            LedgerEntry.id == entry_id, LedgerEntry.organization_id == organization_id
        )
    )


def reversal_of(session: Session, entry_id: uuid.UUID) -> LedgerEntry | None:
    return session.scalar(select(LedgerEntry).where(LedgerEntry.reverses_id == entry_id))


def existing_keys(session: Session, organization_id: uuid.UUID, keys: Iterable[str]) -> set[str]:
    wanted = list(keys)
    if not wanted:
        return set()
    rows = session.scalars(
        select(LedgerEntry.natural_key).where(
            LedgerEntry.organization_id == organization_id, LedgerEntry.natural_key.in_(wanted)
        )
    )
    return {key for key in rows if key is not None}


def list_entries(
    session: Session,
    organization_id: uuid.UUID,
    *,
    return_id: uuid.UUID | None = None,
    order_id: uuid.UUID | None = None,
    kinds: Sequence[str] = (),
    occurred_from: date | None = None,
    occurred_to: date | None = None,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[LedgerEntry]:
    """Newest booking first; ``after`` is the (created_at, id) of the last entry seen."""
    stmt = (
        select(LedgerEntry)
        .where(LedgerEntry.organization_id == organization_id)
        .order_by(LedgerEntry.created_at.desc(), LedgerEntry.id.desc())
        .limit(limit)
    )
    if return_id:
        stmt = stmt.where(LedgerEntry.return_id == return_id)
    if order_id:
        stmt = stmt.where(LedgerEntry.order_id == order_id)
    if kinds:
        stmt = stmt.where(LedgerEntry.kind.in_(kinds))
    if occurred_from:
        stmt = stmt.where(LedgerEntry.occurred_on >= occurred_from)
    if occurred_to:
        stmt = stmt.where(LedgerEntry.occurred_on <= occurred_to)
    if after:
        at, eid = after
        stmt = stmt.where(
            (LedgerEntry.created_at < at)
            | ((LedgerEntry.created_at == at) & (LedgerEntry.id < eid))
        )
    return list(session.scalars(stmt))


def shipments(session: Session, return_id: uuid.UUID) -> list[Shipment]:
    stmt = select(Shipment).where(Shipment.return_id == return_id).order_by(Shipment.created_at)
    return list(session.scalars(stmt))


def inspections(session: Session, return_id: uuid.UUID) -> list[Inspection]:
    stmt = (
        select(Inspection)
        .where(Inspection.return_id == return_id)
        .order_by(Inspection.inspected_at, Inspection.id)
    )
    return list(session.scalars(stmt))


def first_receipt_at(session: Session, return_id: uuid.UUID) -> datetime | None:
    return session.scalar(
        select(func.min(Receipt.received_at)).where(Receipt.return_id == return_id)
    )


# --- report queries -----------------------------------------------------------------------
#
# The reports are computed by the database: one statement per figure table, grouped and
# summed in SQL, rows streamed out. What Python did per order before is done per row here:
#
# - conversion at the rate of the amount's own day (fx.service.rate: the day's stored rate
#   or the latest before it, else the inverse pair, else a cross through EUR), rounded half
#   away from zero per amount exactly like rules.convert (Decimal, 28 significant digits).
#   The rates are looked up once per (currency, day) the report needs, then joined.
#   PostgreSQL computes them in `numeric`; SQLite, which has no decimal type, calls two
#   small Python functions registered on its connection (the same code as fx.rate).
# - largest-remainder splits (an order's revenue over its lines, a label over the return's
#   lines) with window functions: the floor of each share, then one more unit to the
#   largest remainders, the earlier line first on a tie (domain.refunds.allocate).
#
# No statement carries a list of ids: what belongs together is joined.

EUR = "EUR"
# Python's default decimal context, in which fx.rate divides and rules.convert multiplies.
_PRECISION = 28
# A rate with at most this many significant digits times any 64-bit amount is exact in
# 28 digits, so the product needs no rounding before the final one.
_SHORT_RATE_DIGITS = 9
_NOT_RETURNED = ("cancelled", "expired", "rejected")
_NO_GOODS_EXPECTED = ("resolved",)


def effective_rate(
    currency: str,
    base: str,
    direct: str | None,
    inverse: str | None,
    to_eur: str | None,
    eur_to: str | None,
    eur_to_base: str | None,
    base_to_eur: str | None,
) -> Decimal | None:
    """``fx.rate(currency -> base)`` from the stored rates it would have found (as text):
    the pair itself, its inverse, else (neither being EUR) currency->EUR x EUR->base, each
    leg direct or inverted. Same arithmetic, same context, so the same Decimal."""
    if currency == base:
        return Decimal(1)
    if direct is not None:
        return Decimal(direct)
    if inverse is not None:
        return Decimal(1) / Decimal(inverse)
    if EUR in (currency, base):
        return None
    first = Decimal(to_eur) if to_eur is not None else None
    if first is None and eur_to is not None:
        first = Decimal(1) / Decimal(eur_to)
    second = Decimal(eur_to_base) if eur_to_base is not None else None
    if second is None and base_to_eur is not None:
        second = Decimal(1) / Decimal(base_to_eur)
    if first is None or second is None:
        return None
    return first * second


@lru_cache(maxsize=4096)
def _decimal(text: str) -> Decimal:
    return Decimal(text)


def _sqlite_rate(
    currency: str,
    base: str,
    direct: str | None,
    inverse: str | None,
    to_eur: str | None,
    eur_to: str | None,
    eur_to_base: str | None,
    base_to_eur: str | None,
) -> str | None:
    rate = effective_rate(currency, base, direct, inverse, to_eur, eur_to, eur_to_base, base_to_eur)
    return None if rate is None else str(rate)


def _sqlite_convert(amount: int | None, rate: str | None, currency: str, base: str) -> int | None:
    if amount is None or rate is None:
        return None
    return rules.convert(amount, _decimal(rate), currency, base)


def _mul_div(a: int | None, b: int | None, c: int | None) -> int | None:
    return None if a is None or b is None or not c else a * b // c


def _mul_mod(a: int | None, b: int | None, c: int | None) -> int | None:
    return None if a is None or b is None or not c else a * b % c


def _register_sqlite_functions(session: Session) -> None:
    # Per connection, and cheap: SQLite keeps the last definition of a name.
    raw: Any = session.connection().connection.driver_connection
    raw.create_function("rg_fx_rate", 8, _sqlite_rate, deterministic=True)
    raw.create_function("rg_fx_convert", 4, _sqlite_convert, deterministic=True)
    # SQLite integers are 64-bit: products that would overflow are done in Python.
    raw.create_function("rg_mul_div", 3, _mul_div, deterministic=True)
    raw.create_function("rg_mul_mod", 3, _mul_mod, deterministic=True)


def _non_default_digits() -> dict[str, int]:
    """Currencies whose minor unit is not a hundredth (JPY 0, KWD 3), written into SQL."""
    found: dict[str, int] = {}
    for code in sorted(known_currencies()):
        digits = minor_digits(code)
        if digits != 2:
            assert code.isalpha() and code.isupper() and len(code) == 3
            found[code] = digits
    return found


_DIGITS = _non_default_digits()


def _start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _on_days(days: Days, day: Any) -> Any:
    return or_(*(and_(day >= a, day <= b) for a, b in days))


def _at_days(days: Days, timestamp: Any) -> Any:
    return or_(
        *(and_(timestamp >= _start(a), timestamp < _start(b + timedelta(days=1))) for a, b in days)
    )


def days_first(days: CTE) -> Any:
    """The first day of a calendar (its anchor)."""
    return select(func.min(days.c.day)).scalar_subquery()


def _kind_parts(kind: Any, amount: Any) -> tuple[Any, Any, Any]:
    """An entry's signed amount as (refunds, return costs, recoveries), costs positive."""

    def of(category: rules.Category) -> list[str]:
        return [k.value for k, c in rules.CATEGORY.items() if c is category]

    refunds = case((kind.in_(of(rules.Category.REFUND)), -amount), else_=0)
    costs = case((kind.in_(of(rules.Category.COST)), -amount), else_=0)
    recoveries = case((kind.in_(of(rules.Category.RECOVERY)), amount), else_=0)
    return refunds, costs, recoveries


def _line_value() -> Any:
    value = (
        OrderLine.unit_price_minor * OrderLine.quantity
        + OrderLine.tax_minor
        - OrderLine.discount_minor
    )
    return case((value > 0, value), else_=0)


def _units_for_weight(line: Any = ReturnLine) -> Any:
    # A return line weighs its approved units, or its requested ones before a decision.
    return case((line.approved != 0, line.approved), else_=line.requested)


def _order_line_weights(order_id: Any) -> Select[Any]:
    """The lines of an order as (weight, o1, o2) for :meth:`ReportQueries.allocated`."""
    line = aliased(OrderLine)
    value = line.unit_price_minor * line.quantity + line.tax_minor - line.discount_minor
    return select(
        case((value > 0, value), else_=0).label("w"),
        line.position.label("o1"),
        line.id.label("o2"),
    ).where(line.order_id == order_id)


# What the reports read of an entry (not its memo, details or natural key).
_ENTRY_COLUMNS = (
    LedgerEntry.id,
    LedgerEntry.kind,
    LedgerEntry.amount_minor,
    LedgerEntry.currency,
    LedgerEntry.occurred_on,
    LedgerEntry.order_id,
    LedgerEntry.return_id,
    LedgerEntry.order_line_id,
    LedgerEntry.sku,
    LedgerEntry.channel_id,
    LedgerEntry.created_at,
)

# Below this, two factors multiply within 64 bits (3037000499**2 < 2**63).
_SAFE_FACTOR = 3_037_000_499


FIGURES = ("revenue", "cost_of_goods", "refunds", "return_costs", "recoveries")
REPORT_WORK_MEM = "64MB"


class ReportQueries:
    """The report statements for one organization and base currency, on its database."""

    def __init__(self, session: Session, organization_id: uuid.UUID, base: str) -> None:
        self.session = session
        self.org = organization_id
        self.base = base
        self.pg = session.get_bind().dialect.name == "postgresql"
        self._foreign: bool | None = None
        if self.pg:
            # JIT-compiling these statements (wide CASE expressions, estimated costly) takes
            # far longer than running them: 17 of 24 s on 75,000 orders. For this
            # transaction only.
            session.execute(text("SET LOCAL jit = off"))
            # The window sorts and hash joins over all lines of the period stay in memory
            # instead of spilling to disk (per sort or hash, for this transaction only).
            session.execute(text(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'"))
            # Rows stream through a server-side cursor, which PostgreSQL plans for a fast
            # first row by default; a report reads every row.
            session.execute(text("SET LOCAL cursor_tuple_fraction = 1.0"))
        else:
            _register_sqlite_functions(session)

    # -- dialect helpers -------------------------------------------------------------------

    def day_of(self, timestamp: Any) -> Any:
        """The UTC calendar day of a stored timestamp."""
        if self.pg:
            return cast(func.timezone("UTC", timestamp), Date)
        return type_coerce(func.date(timestamp), Date)

    def month_of(self, day: Any) -> Any:
        if self.pg:
            return func.to_char(day, "YYYY-MM")
        return func.strftime("%Y-%m", day)

    def in_code_order(self, text: Any) -> Any:
        """Sorted like Python sorts str (by code point), not by the server's locale."""
        return text.collate("C") if self.pg else text

    def _wide(self, value: Any) -> Any:
        # Products of amounts and weights may pass 2**63 on PostgreSQL: numeric is exact.
        return cast(value, Numeric) if self.pg else value

    def _div(self, a: Any, b: Any) -> Any:
        """a // b for a >= 0, b > 0."""
        return func.div(a, b) if self.pg else type_coerce(a, BigInteger) // b

    def _mod(self, a: Any, b: Any) -> Any:
        return func.mod(a, b) if self.pg else a % b

    def execute(self, stmt: Any, *, stream: bool = False, lookups: bool = False) -> Any:
        """Run a report statement (``stream``: rows fetched as they are read). ``lookups``:
        it reads a few rows of large tables by key (money at risk), so on PostgreSQL it is
        planned with random reads costed as the cached reads they are (``random_page_cost``
        1.1 for this statement only): index lookups, not scans of every refund and return.
        A streamed statement is planned when its cursor opens, so the setting can go back
        at once."""
        if not (lookups and self.pg):
            return self._execute(stmt, stream)
        get = text("SELECT current_setting('random_page_cost')")
        put = text("SELECT set_config('random_page_cost', :value, true)")
        before = self.session.execute(get).scalar_one()
        self.session.execute(put, {"value": "1.1"})
        try:
            return self._execute(stmt, stream)
        finally:
            self.session.execute(put, {"value": before})

    def _execute(self, stmt: Any, stream: bool) -> Any:
        if stream:
            return self.session.execute(stmt, execution_options={"yield_per": 2000})
        return self.session.execute(stmt)

    # -- exchange rates --------------------------------------------------------------------

    def calendar(self, first: Any, last: date, name: str) -> CTE:
        """Every day from ``first`` (a date or a scalar subquery) to ``last``."""
        if self.pg:
            start: Any = cast(literal(first, Date) if isinstance(first, date) else first, Date)
        else:
            start = type_coerce(first if not isinstance(first, date) else literal(first), Date)
        days = select(start.label("day")).cte(name, recursive=True)
        following = (
            days.c.day + 1 if self.pg else type_coerce(func.date(days.c.day, "+1 day"), Date)
        )
        return days.union_all(select(following).where(days.c.day < last))

    def rates(self, first: Any, last: date, name: str = "rates", only: Days | None = None) -> CTE:
        """The rate into the base currency of every currency that has one, on every day from
        ``first`` to ``last``: columns ``currency``, ``day``, ``rate`` (NULL when none is
        known that day) and, on PostgreSQL, ``short`` (see :meth:`converted`).

        fx.rate in SQL: per stored pair the latest rate on or before each day (carried
        forward over the calendar with a window, no lookup per day), then the pair itself,
        else its inverse, else (neither being EUR) through EUR.
        """
        org = FxRate.organization_id == self.org
        stored = (
            select(FxRate.base, FxRate.quote).where(org).group_by(FxRate.base, FxRate.quote)
        ).cte(f"{name}_stored")
        hubs = [self.base] if self.base == EUR else [self.base, EUR]
        # The pairs a lookup can use: into or out of the base currency or EUR.
        pairs = (
            select(stored.c.base, stored.c.quote)
            .where(or_(stored.c.base.in_(hubs), stored.c.quote.in_(hubs)))
            .cte(f"{name}_pairs")
            .prefix_with("MATERIALIZED")
        )
        days = self.calendar(first, last, f"{name}_days")
        if only is not None:
            # Only the days asked for; a stored rate between them still carries forward.
            days = select(days.c.day).where(_on_days(only, days.c.day)).cte(f"{name}_only")
        p = pairs.c
        grid = select(
            p.base, p.quote, days.c.day, literal(2).label("kind"), null().label("rate")
        ).select_from(pairs.join(days, true()))
        in_range = (
            select(FxRate.base, FxRate.quote, FxRate.day, literal(1), FxRate.rate)
            .join(pairs, and_(p.base == FxRate.base, p.quote == FxRate.quote))
            .where(org, FxRate.day >= days_first(days), FxRate.day <= last)
        )
        before = aliased(FxRate)
        seed = select(
            p.base,
            p.quote,
            days_first(days),
            literal(0),
            select(before.rate)
            .where(
                before.organization_id == self.org,
                before.base == p.base,
                before.quote == p.quote,
                before.day < days_first(days),
            )
            .order_by(before.day.desc())
            .limit(1)
            .scalar_subquery(),
        )
        points = union_all(grid, in_range, seed).cte(f"{name}_points")
        pt = points.c
        series = (pt.base, pt.quote)
        # Each stored rate opens a group that runs until the next one: the days in it
        # take its rate. (A running count of non-NULL rates numbers the groups.)
        numbered = select(
            *pt,
            func.count(pt.rate)
            .over(partition_by=series, order_by=(pt.day, pt.kind), rows=(None, 0))
            .label("grp"),
        ).cte(f"{name}_numbered")
        n = numbered.c
        filled = select(
            n.base,
            n.quote,
            n.day,
            n.kind,
            func.max(n.rate).over(partition_by=(n.base, n.quote, n.grp)).label("rate"),
        ).cte(f"{name}_filled")
        asof = (
            select(filled.c.base, filled.c.quote, filled.c.day, filled.c.rate)
            .where(filled.c.kind == 2)
            .cte(f"{name}_asof")
            .prefix_with("MATERIALIZED")
        )
        currencies = union(
            select(p.base.label("currency")).where(p.base != self.base),
            select(p.quote).where(p.quote != self.base),
        ).subquery(f"{name}_currencies")
        needed = select(currencies.c.currency, days.c.day).select_from(
            currencies.join(days, true())
        )
        needed_q = needed.subquery(f"{name}_needed")
        cur, day = needed_q.c.currency, needed_q.c.day
        base, eur = literal(self.base), literal(EUR)
        legs = [(cur, base), (base, cur)]
        if self.base != EUR:
            legs += [(cur, eur), (eur, cur), (eur, base), (base, eur)]
        joined: Any = needed_q
        found_rates = []
        for i, (b, q) in enumerate(legs):
            leg = asof.alias(f"{name}_leg{i}")
            joined = joined.outerjoin(
                leg, and_(leg.c.base == b, leg.c.quote == q, leg.c.day == day)
            )
            found_rates.append(leg.c.rate.label(f"r{i}"))
        found_rates += [null().label(f"r{i}") for i in range(len(legs), 6)]
        found = select(cur.label("currency"), day.label("day"), *found_rates).select_from(joined)
        found_cte = found.cte(f"{name}_found").prefix_with("MATERIALIZED")
        if not self.pg:
            rate = func.rg_fx_rate(
                found_cte.c.currency, literal(self.base), *(found_cte.c[f"r{i}"] for i in range(6))
            )
            return (
                select(
                    found_cte.c.currency, found_cte.c.day, type_coerce(rate, String).label("rate")
                )
                .cte(name)
                .prefix_with("MATERIALIZED")
            )
        return self._pg_rates(found_cte, name)

    def _pg_rates(self, found: CTE, name: str) -> CTE:
        def number(text: Any) -> Any:
            return cast(text, Numeric)

        def inverted(text: Any) -> Any:
            # Decimal(1) / inverse: 45 decimals, then 28 significant digits like Python.
            return _pg_significant(cast(literal_column("1"), Numeric(60, 45)) / number(text))

        r = found.c
        direct = func.coalesce(number(r.r0), inverted(r.r1))
        if self.base != EUR:
            legs = (
                select(
                    r.currency,
                    r.day,
                    direct.label("direct"),
                    func.coalesce(number(r.r2), inverted(r.r3)).label("first"),
                    func.coalesce(number(r.r4), inverted(r.r5)).label("second"),
                )
            ).cte(f"{name}_legs")
            crossed = case(
                (legs.c.currency != EUR, _pg_significant(legs.c.first * legs.c.second)),
                else_=null(),
            )
            rate = select(
                legs.c.currency, legs.c.day, func.coalesce(legs.c.direct, crossed).label("r")
            ).cte(f"{name}_rate")
        else:
            rate = select(r.currency, r.day, direct.label("r")).cte(f"{name}_rate")
        digits = case(
            *((rate.c.currency == literal_column(f"'{code}'"), n) for code, n in _DIGITS.items()),
            else_=2,
        )
        # The minor-unit shift goes into the rate: scaling by a power of ten changes no
        # significant digit, so rounding the product afterwards is the same.
        shift = minor_digits(self.base) - digits
        scaled = rate.c.r * func.power(cast(literal(10), Numeric), shift)
        significant = func.length(
            func.ltrim(func.replace(cast(func.trim_scale(scaled), Text), ".", ""), "0")
        )
        return (
            select(
                rate.c.currency,
                rate.c.day,
                scaled.label("rate"),
                (significant <= _SHORT_RATE_DIGITS).label("short"),
            )
            .cte(name)
            .prefix_with("MATERIALIZED")
        )

    def on_rate(self, rates: Any, currency: Any, day: Any) -> Any:
        # Amounts in the base currency need no rate (nor their day worked out).
        return and_(rates.c.currency == currency, rates.c.day == case((currency != self.base, day)))

    def converted(self, rates: Any, amount: Any, currency: Any) -> Any:
        """``amount`` (minor units of ``currency``) in the base currency, with ``rates``
        outer-joined on (currency, day) by :meth:`on_rate`; NULL when no rate is known."""
        if not self.pg:
            value = func.rg_fx_convert(amount, rates.c.rate, currency, literal(self.base))
            return case((currency == self.base, amount), else_=type_coerce(value, BigInteger))
        product = amount * rates.c.rate
        rounded = case(
            (rates.c.rate.is_(None), null()),
            (rates.c.short, func.round(product)),
            else_=func.round(_pg_significant_signed(product)),
        )
        return case((currency == self.base, amount), else_=cast(rounded, BigInteger))

    # -- largest remainder -----------------------------------------------------------------

    def _mul_div_mod(self, a: Any, b: Any, c: Any) -> tuple[Any, Any]:
        """(a * b // c, a * b % c) for a, b >= 0, c > 0: in 64-bit integers where the
        product fits, exactly (numeric, or Python on SQLite) where it would not."""
        a, b = type_coerce(a, BigInteger), type_coerce(b, BigInteger)
        limit: Any = literal_column(str(_SAFE_FACTOR))
        small = and_(a < limit, b < limit)
        big_div: Any
        big_mod: Any
        if self.pg:
            wide = cast(a, Numeric) * b
            big_div, big_mod = (
                cast(func.div(wide, c), BigInteger),
                cast(func.mod(wide, c), BigInteger),
            )
        else:
            big_div = type_coerce(func.rg_mul_div(a, b, c), BigInteger)
            big_mod = type_coerce(func.rg_mul_mod(a, b, c), BigInteger)
        return (
            case((small, (a * b) // c), else_=big_div),
            case((small, (a * b) % c), else_=big_mod),
        )

    def allocated(
        self,
        rows: Any,
        keep: Sequence[str],
        siblings: Callable[[Any], Select[Any]],
        name: str,
    ) -> CTE:
        """Split each ``t`` (signed) among the rows of its ``k`` in proportion to ``w``
        (ties: ``o1``, ``o2`` ascending), into ``part``; the ``keep`` columns pass through.

        ``domain.refunds.allocate`` in SQL: floors first, then one more unit each to the
        largest remainders; all-zero weights split evenly. A ``k`` whose only row has a NULL
        ``w`` (nothing to split over, from an outer join) keeps the whole ``t``.

        One sort and one window pass: a row sees the weights of up to two rows before and
        after it (``lag``/``lead``), which is all of its group when the group has at most
        three rows (nearly every order and return); from those its floor, the units left
        over and its rank among the remainders follow. Larger groups count the same over
        ``siblings(row)``: their (``w``, ``o1``, ``o2``), correlated to the row.
        """
        c = rows.c

        def over(fn: Any) -> Any:
            # One window for all: a single sort, a single pass (lag/lead ignore the frame).
            return fn.over(partition_by=c.k, order_by=(c.o1, c.o2), rows=(None, None))

        first = select(
            *(c[n] for n in keep),
            c.k,
            c.t,
            c.o1,
            c.o2,
            c.w,
            # PostgreSQL sums bigints as numeric: back to bigint, so "/" stays integer.
            cast(over(func.sum(c.w)), BigInteger).label("ws"),
            over(func.count(c.w)).label("n"),
            *(
                over(getattr(func, fn)(c.w, offset)).label(f"{fn}{offset}")
                for fn in ("lag", "lead")
                for offset in (1, 2)
            ),
        ).cte(f"{name}_window")
        f = first.c
        even = f.ws == 0  # all weights zero: every row weighs one

        def weight(w: Any) -> Any:
            # A neighbour that is not there has no weight; a lone row without a candidate
            # (n = 0) weighs one, so it keeps the whole total.
            if w is f.w:
                return case((f.n == 0, 1), (even, 1), else_=w)
            return case((w.is_(None), null()), (even, 1), else_=w)

        neighbours = ("lag1", "lag2", "lead1", "lead2")
        middle = select(
            *(f[n] for n in keep),
            f.k,
            f.t,
            f.o1,
            f.o2,
            f.n,
            even.label("even"),
            type_coerce(func.abs(f.t), BigInteger).label("total"),
            case((f.n == 0, 1), (even, f.n), else_=f.ws).label("weights"),
            weight(f.w).label("w_me"),
            *(weight(f[side]).label(f"w_{side}") for side in neighbours),
        ).cte(f"{name}_weights")
        m = middle.c
        columns = [*(m[n] for n in keep), m.k, m.t, m.o1, m.o2, m.n, m.even, m.total, m.weights]
        alone = m.n <= 1  # most orders and returns: nothing to split, the row keeps it all
        for side in ("me", *neighbours):
            div, mod = self._mul_div_mod(m.total, m[f"w_{side}"], m.weights)
            if side == "me":
                div, mod = case((alone, m.total), else_=div), case((alone, 0), else_=mod)
            else:
                div, mod = case((alone, null()), else_=div), case((alone, null()), else_=mod)
            columns += [div.label(f"fl_{side}"), mod.label(f"rem_{side}")]
        second = select(*columns).cte(f"{name}_floors")
        s = second.c
        me = s.rem_me
        # Earlier rows win a tie (domain.refunds.allocate sorts by (-remainder, index)).
        beaten_by = (
            case((s.rem_lag1 >= me, 1), else_=0)
            + case((s.rem_lag2 >= me, 1), else_=0)
            + case((s.rem_lead1 > me, 1), else_=0)
            + case((s.rem_lead2 > me, 1), else_=0)
        )
        floors = (
            s.fl_me
            + func.coalesce(s.fl_lag1, 0)
            + func.coalesce(s.fl_lag2, 0)
            + func.coalesce(s.fl_lead1, 0)
            + func.coalesce(s.fl_lead2, 0)
        )
        # Correlated to the row: aggregates over its group's rows (the same FROM and WHERE
        # as ``siblings``, other columns).
        group = siblings(s)
        sib = group.selected_columns
        sib_w = case((s.even, 1), else_=sib.w)
        sib_div, sib_mod = self._mul_div_mod(s.total, sib_w, s.weights)
        floors_all = group.with_only_columns(func.sum(sib_div)).scalar_subquery()
        beaten_all = (
            group.with_only_columns(func.count())
            .where(
                or_(
                    sib_mod > me,
                    and_(sib_mod == me, tuple_(sib.o1, sib.o2) < tuple_(s.o1, s.o2)),
                )
            )
            .scalar_subquery()
        )
        few = s.n <= 3
        extra = case(
            (few, case((beaten_by < s.total - floors, 1), else_=0)),
            else_=case((beaten_all < s.total - floors_all, 1), else_=0),
        )
        part = s.fl_me + extra
        return select(*(s[n] for n in keep), case((s.t < 0, -part), else_=part).label("part")).cte(
            name
        )

    def entry_sku_parts(
        self, entries: Any, name: str, extra: Sequence[str] = ()
    ) -> CompoundSelect[Any]:
        """Converted entries (``id``, ``kind``, ``order_id``, ``return_id``, ``sku``,
        ``order_line_id``, ``amount``) as (``kind``, ``sku``, ``title``, ``part``), then
        the ``extra`` columns of each entry.

        An entry about a line goes to its SKU; one about a whole return is split over the
        return's lines by unit price x units (approved, else requested); one about a whole
        order over the order's lines by value; with nothing to split over, to SKU "".
        """
        e = entries.c
        # No title here: the SKU's sales carry it (net_profit looks up the rest).
        direct = select(
            e.kind,
            e.sku.label("sku"),
            type_coerce(null(), String).label("title"),
            e.amount.label("part"),
            *(e[n] for n in extra),
        ).where(e.sku.is_not(None), e.amount.is_not(None))
        return_lines = join(ReturnLine, OrderLine, OrderLine.id == ReturnLine.order_line_id)
        by_return = (
            select(
                e.kind,
                e.order_id,
                e.return_id,
                e.id.label("k"),
                e.amount.label("t"),
                (OrderLine.unit_price_minor * _units_for_weight()).label("w"),
                ReturnLine.position.label("o1"),
                ReturnLine.id.label("o2"),
                OrderLine.sku,
                OrderLine.title,
                *(e[n] for n in extra),
            )
            .select_from(entries)
            .outerjoin(
                return_lines,
                and_(ReturnLine.return_id == e.return_id, OrderLine.order_id == e.order_id),
            )
            .where(e.sku.is_(None), e.return_id.is_not(None), e.amount.is_not(None))
        ).cte(f"{name}_by_return")

        def return_siblings(row: Any) -> Select[Any]:
            rl, ol = aliased(ReturnLine), aliased(OrderLine)
            return (
                select(
                    (ol.unit_price_minor * _units_for_weight(rl)).label("w"),
                    rl.position.label("o1"),
                    rl.id.label("o2"),
                )
                .select_from(ol)
                .join(rl, rl.order_line_id == ol.id)
                .where(ol.order_id == row.order_id, rl.return_id == row.return_id)
            )

        by_order = (
            select(
                e.kind,
                e.order_id,
                e.id.label("k"),
                e.amount.label("t"),
                _line_value().label("w"),
                OrderLine.position.label("o1"),
                OrderLine.id.label("o2"),
                OrderLine.sku,
                OrderLine.title,
                *(e[n] for n in extra),
            )
            .select_from(entries)
            .outerjoin(OrderLine, OrderLine.order_id == e.order_id)
            .where(e.sku.is_(None), e.return_id.is_(None), e.amount.is_not(None))
        ).cte(f"{name}_by_order")

        def order_siblings(row: Any) -> Select[Any]:
            return _order_line_weights(row.order_id)

        keep = ("kind", "sku", "title", *extra)
        shares = [
            self.allocated(
                by_return, (*keep, "order_id", "return_id"), return_siblings, f"{name}_split_return"
            ),
            self.allocated(by_order, (*keep, "order_id"), order_siblings, f"{name}_split_order"),
        ]
        return union_all(
            direct,
            *(
                select(
                    x.c.kind,
                    func.coalesce(x.c.sku, "").label("sku"),
                    x.c.title,
                    x.c.part,
                    *(x.c[n] for n in extra),
                )
                for x in shares
            ),
        )

    # -- net profit ------------------------------------------------------------------------

    def _orders(self, first: date, last: date, days: Days | None = None) -> CTE:
        """The organization's orders placed on ``first``..``last`` (only on ``days``, when
        given)."""
        when = _at_days(days if days is not None else [(first, last)], Order.ordered_at)
        return (
            select(
                Order.id.label("order_id"),
                Order.channel_id,
                Order.currency,
                Order.captured_minor,
                Order.ordered_at,
                self.day_of(Order.ordered_at).label("day"),
            )
            .where(Order.organization_id == self.org, when)
            .cte("np_orders")
            .prefix_with("NOT MATERIALIZED")
        )

    def _entries(self, first: date, last: date, days: Days | None = None) -> CTE:
        when = _on_days(days if days is not None else [(first, last)], LedgerEntry.occurred_on)
        return (
            select(*_ENTRY_COLUMNS)
            .where(LedgerEntry.organization_id == self.org, when)
            .cte("np_entries")
            .prefix_with("NOT MATERIALIZED")
        )

    def _product_cost(self) -> tuple[Any, Any]:
        """(the line's product has a unit cost, the cost of the line's units)."""
        known = and_(
            Product.id.is_not(None),
            Product.unit_cost_minor.is_not(None),
            Product.cost_currency.is_not(None),
            Product.cost_currency != "",
        )
        return known, Product.unit_cost_minor * OrderLine.quantity

    def _net_profit_parts(
        self, group_by: str, first: date, last: date, days: Days | None = None
    ) -> tuple[CTE, CTE, CTE, Any, Any]:
        orders, entries = self._orders(first, last, days), self._entries(first, last, days)
        o, e = orders.c, entries.c
        if days:  # rates for the days read, not the whole period
            first, last = days[0][0], days[-1][1]
        rates = self.rates(first, last, only=days if days and len(days) > 1 else None)
        order_rate = rates.alias("order_rate")
        revenue = (
            select(*o, self.converted(order_rate, o.captured_minor, o.currency).label("revenue"))
            .select_from(orders)
            .outerjoin(order_rate, self.on_rate(order_rate, o.currency, o.day))
            .cte("np_revenue")
            .prefix_with("NOT MATERIALIZED")
        )
        entry_rate = rates.alias("entry_rate")
        converted = (
            select(
                e.id,
                e.kind,
                e.order_id,
                e.return_id,
                e.sku,
                e.order_line_id,
                e.channel_id,
                e.occurred_on,
                e.currency,
                e.amount_minor,
                e.created_at,
                self.converted(entry_rate, e.amount_minor, e.currency).label("amount"),
            )
            .select_from(entries)
            .outerjoin(entry_rate, self.on_rate(entry_rate, e.currency, e.occurred_on))
            .cte("np_converted")
            .prefix_with("NOT MATERIALIZED")
        )
        return rates, revenue, converted, orders, entries

    def _foreign_costs(self) -> bool:
        """Whether any product's unit cost is in another currency than the base one."""
        if self._foreign is None:
            self._foreign = bool(
                self.session.scalar(
                    select(literal(1))
                    .where(
                        Product.organization_id == self.org,
                        Product.cost_currency.is_not(None),
                        Product.cost_currency != "",
                        Product.cost_currency != self.base,
                    )
                    .limit(1)
                )
            )
        return self._foreign

    def _with_cost(
        self, stmt: Select[Any], rates: CTE, cost: Any, day: Any
    ) -> tuple[Select[Any], Any]:
        """(the statement, the converted cost): the rates are joined only when some cost
        is in a foreign currency (usually none is: no join over every line for nothing)."""
        if not self._foreign_costs():
            return stmt, cost
        cost_rate = rates.alias("cost_rate")
        joined = stmt.outerjoin(cost_rate, self.on_rate(cost_rate, Product.cost_currency, day))
        return joined, self.converted(cost_rate, cost, Product.cost_currency)

    def _cost_lines(self, revenue: CTE, rates: CTE, *columns: Any) -> Select[Any]:
        """The lines of orders whose revenue converted, with their product's cost."""
        known, cost = self._product_cost()
        r = revenue.c
        base = (
            select(literal(1))
            .select_from(revenue)
            .join(OrderLine, OrderLine.order_id == r.order_id)
            .outerjoin(
                Product,
                and_(Product.id == OrderLine.product_id, Product.organization_id == self.org),
            )
        )
        stmt, converted = self._with_cost(base, rates, cost, r.day)
        return stmt.with_only_columns(
            *columns, known.label("known"), case((known, converted)).label("cost")
        ).where(r.revenue.is_not(None))

    def net_profit(
        self, group_by: str, first: date, last: date, rollup: Rollup | None = None
    ) -> Select[Any]:
        """One row per group: ``key`` (and ``label`` where SQL knows it), the five figures,
        ``missing_units`` (units without a cost) and ``missing_rates`` (amounts left out).
        A row with a NULL key gathers what could not be converted; it sorts first.

        With ``rollup`` (not by order), the stored rows of its months and days are summed
        and only its ``raw`` days are read from orders and entries."""
        if rollup is None or group_by == "order" or not (rollup.months or rollup.days):
            rollup = Rollup(raw=[(first, last)])
        contributions: Any = self._raw_contributions(group_by, first, last, rollup.raw)
        if rollup.months or rollup.days:
            stored = self._rolled_up(group_by, rollup)
            # Flat: SQLite takes no parenthesised compound select inside another.
            branches = [] if contributions is None else list(contributions.selects)
            contributions = union_all(*branches, stored) if branches else stored
        return self._net_profit_groups(group_by, contributions)

    def _raw_contributions(
        self, group_by: str, first: date, last: date, days: Days
    ) -> CompoundSelect[Any] | None:
        if not days:
            return None
        rates, revenue, converted, _, _ = self._net_profit_parts(group_by, first, last, days)
        r, c = revenue.c, converted.c
        zero = literal(0)
        if group_by == "sku":
            contributions: CompoundSelect[Any] = self._sku_contributions(revenue, converted, rates)
        else:

            def key_of(order_or_entry: Any, day: Any) -> Any:
                if group_by == "order":
                    return order_or_entry.order_id
                if group_by == "channel":
                    return order_or_entry.channel_id
                return self.month_of(day)

            lines = self._cost_lines(
                revenue, rates, key_of(r, r.day).label("g"), OrderLine.quantity
            )
            lines_q = lines.cte("np_lines")
            l_ = lines_q.c
            refunds, costs, recoveries = _kind_parts(c.kind, c.amount)
            contributions = union_all(
                select(
                    case((r.revenue.is_not(None), key_of(r, r.day))).label("g"),
                    null().label("title"),
                    func.coalesce(r.revenue, 0).label("revenue"),
                    zero.label("cost_of_goods"),
                    zero.label("refunds"),
                    zero.label("return_costs"),
                    zero.label("recoveries"),
                    zero.label("missing_units"),
                    case((r.revenue.is_(None), 1), else_=0).label("missing_rates"),
                ),
                select(
                    l_.g,
                    null(),
                    zero,
                    func.coalesce(l_.cost, 0),
                    zero,
                    zero,
                    zero,
                    case((l_.known, 0), else_=l_.quantity),
                    case((and_(l_.known, l_.cost.is_(None)), 1), else_=0),
                ),
                select(
                    case((c.amount.is_not(None), key_of(c, c.occurred_on))),
                    null(),
                    zero,
                    zero,
                    func.coalesce(refunds, 0),
                    func.coalesce(costs, 0),
                    func.coalesce(recoveries, 0),
                    zero,
                    case((c.amount.is_(None), 1), else_=0),
                ),
            )
        return contributions

    def _net_profit_groups(self, group_by: str, contributions: Any) -> Select[Any]:
        parts = contributions.cte("np_parts")
        p = parts.c
        # Text keys group in code-point order: the order they are listed in, and no
        # locale-aware comparisons on the way.
        key = self.in_code_order(p.g) if group_by in ("sku", "month") else p.g
        grouped = (
            select(
                key.label("g"),
                func.max(p.title).label("title"),
                *(func.sum(p[name]).label(name) for name in FIGURES),
                func.sum(p.missing_units).label("missing_units"),
                func.sum(p.missing_rates).label("missing_rates"),
            )
            .group_by(key)
            .cte("np_groups")
        )
        g = grouped.c
        figures = [g[name] for name in FIGURES]
        tail = [g.missing_units, g.missing_rates]
        if group_by == "order":
            return (
                select(g.g.label("key"), Order.external_id.label("label"), *figures, *tail)
                .select_from(grouped)
                .outerjoin(Order, Order.id == g.g)
                .order_by(g.g.is_not(None), self.in_code_order(Order.external_id), g.g)
            )
        if group_by == "channel":
            return (
                select(
                    func.coalesce(Channel.code, cast(g.g, String)).label("key"),
                    Channel.name.label("label"),
                    *figures,
                    *tail,
                )
                .select_from(grouped)
                .outerjoin(Channel, Channel.id == g.g)
                .order_by(g.g.is_not(None), self.in_code_order(Channel.code))
            )
        if group_by == "sku":
            # A SKU with entries but no sale in the period: its title from its order lines.
            # Looked up in the lines' own collation, so the (organization, SKU) index
            # serves it (equal text is equal in every collation).
            wanted = g.g.collate("default") if self.pg else g.g
            titles = (
                select(OrderLine.sku.label("sku"), func.max(OrderLine.title).label("title"))
                .where(
                    OrderLine.organization_id == self.org,
                    OrderLine.sku.in_(select(wanted).where(g.title.is_(None), g.g != "")),
                )
                .group_by(OrderLine.sku)
                .cte("np_titles")
            )
            return (
                select(
                    g.g.label("key"),
                    func.coalesce(g.title, titles.c.title).label("label"),
                    *figures,
                    *tail,
                )
                .select_from(grouped)
                .outerjoin(titles, titles.c.sku == g.g)
                .order_by(g.g.is_not(None), g.g)
            )
        return select(g.g.label("key"), g.title.label("label"), *figures, *tail).order_by(
            g.g.is_not(None), self.in_code_order(g.g)
        )

    def _sku_contributions(
        self, revenue: CTE, converted: CTE, rates: CTE, *, by_day: bool = False
    ) -> Any:
        """Per SKU (``g``): the revenue split over the orders' lines, their cost, the
        entries split likewise; with ``by_day``, per (``day``, ``channel_id``, ``g``)."""
        r, c = revenue.c, converted.c
        known, cost = self._product_cost()
        zero = literal(0)
        dims = ("day", "channel_id") if by_day else ()
        # Each order's converted revenue over its lines by value.
        base = (
            select(literal(1))
            .select_from(revenue)
            .outerjoin(OrderLine, OrderLine.order_id == r.order_id)
            .outerjoin(
                Product,
                and_(Product.id == OrderLine.product_id, Product.organization_id == self.org),
            )
        )
        stmt, converted_cost = self._with_cost(base, rates, cost, r.day)
        lines = (
            stmt.with_only_columns(
                r.order_id.label("k"),
                r.revenue.label("t"),
                _line_value().label("w"),
                OrderLine.position.label("o1"),
                OrderLine.id.label("o2"),
                func.coalesce(OrderLine.sku, "").label("sku"),
                OrderLine.title,
                OrderLine.quantity,
                case((OrderLine.id.is_not(None), known), else_=true()).label("known"),
                case((known, converted_cost)).label("cost"),
                *((r.day.label("day"), r.channel_id.label("channel_id")) if by_day else ()),
            ).where(r.revenue.is_not(None))
        ).cte("np_sku_lines")
        shares = self.allocated(
            lines,
            ("sku", "title", "quantity", "known", "cost", *dims),
            lambda row: _order_line_weights(row.k),
            "np_revenue_split",
        )
        s = shares.c
        entry_parts = self.entry_sku_parts(
            converted, "np_entries", ("occurred_on", "channel_id") if by_day else ()
        ).cte("np_entry_parts")
        ep = entry_parts.c
        refunds, costs, recoveries = _kind_parts(ep.kind, ep.part)
        s_dims = (s.day, s.channel_id) if by_day else ()
        ep_group = (ep.occurred_on, ep.channel_id) if by_day else ()
        ep_dims = (ep.occurred_on.label("day"), ep.channel_id) if by_day else ()
        r_dims = (r.day, r.channel_id) if by_day else ()
        c_dims = (c.occurred_on, c.channel_id) if by_day else ()
        # Each branch sums per SKU first: the union to group is then a few rows per SKU.
        return union_all(
            select(
                *s_dims,
                s.sku.label("g"),
                func.max(s.title).label("title"),
                func.sum(s.part).label("revenue"),
                func.sum(func.coalesce(s.cost, 0)).label("cost_of_goods"),
                zero.label("refunds"),
                zero.label("return_costs"),
                zero.label("recoveries"),
                func.sum(case((s.known, 0), else_=s.quantity)).label("missing_units"),
                func.sum(
                    case((and_(s.known, s.cost.is_(None), s.quantity.is_not(None)), 1), else_=0)
                ).label("missing_rates"),
            ).group_by(*s_dims, s.sku),
            select(
                *ep_dims,
                ep.sku,
                func.max(ep.title),
                zero,
                zero,
                func.sum(refunds),
                func.sum(costs),
                func.sum(recoveries),
                zero,
                zero,
            ).group_by(*ep_group, ep.sku),
            select(*r_dims, null(), null(), zero, zero, zero, zero, zero, zero, literal(1)).where(
                r.revenue.is_(None)
            ),
            select(*c_dims, null(), null(), zero, zero, zero, zero, zero, zero, literal(1)).where(
                c.amount.is_(None)
            ),
        )

    def rollup_rows(self, first: date, last: date) -> Select[Any]:
        """What each (day, channel, SKU) contributed on ``first``..``last``: the rows the
        worker stores in ``report_rollups`` (``sku`` NULL: what could not be converted)."""
        rates, revenue, converted, _, _ = self._net_profit_parts("sku", first, last)
        parts = self._sku_contributions(revenue, converted, rates, by_day=True).cte("rl_parts")
        p = parts.c
        return select(
            p.day.label("period"),
            p.channel_id,
            p.g.label("sku"),
            func.max(p.title).label("title"),
            *(cast(func.sum(p[name]), BigInteger).label(name) for name in FIGURES),
            cast(func.sum(p.missing_units), BigInteger).label("missing_units"),
            cast(func.sum(p.missing_rates), BigInteger).label("missing_rates"),
        ).group_by(p.day, p.channel_id, p.g)

    def _rolled_up(self, group_by: str, rollup: Rollup) -> Select[Any]:
        """The stored rows of ``rollup`` as contributions to ``group_by``'s groups."""
        ru = ReportRollup
        converted = ru.sku.is_not(None)
        key: Any
        if group_by == "sku":
            key = ru.sku
        elif group_by == "channel":
            key = case((converted, ru.channel_id))
        else:
            key = case((converted, self.month_of(ru.period)))
        periods = []
        if rollup.months:
            periods.append(and_(ru.monthly.is_(True), _on_days(rollup.months, ru.period)))
        if rollup.days:
            periods.append(and_(ru.monthly.is_(False), _on_days(rollup.days, ru.period)))
        return select(
            key.label("g"),
            (ru.title if group_by == "sku" else type_coerce(null(), String)).label("title"),
            *(getattr(ru, name) for name in FIGURES),
            ru.missing_units,
            ru.missing_rates,
        ).where(ru.organization_id == self.org, ru.base == self.base, or_(*periods))

    def net_profit_missing_rates(self, first: date, last: date) -> tuple[Select[Any], Select[Any]]:
        """Orders and product costs (in order), then entries, that could not be converted:
        (what, id, currency, day, amount_minor)."""
        rates, revenue, converted, _, _ = self._net_profit_parts("order", first, last)
        r, c = revenue.c, converted.c
        orders = select(
            literal("order").label("what"),
            r.order_id.label("id"),
            r.currency,
            r.day,
            r.captured_minor.label("amount_minor"),
            r.ordered_at.label("s1"),
            r.order_id.label("s2"),
            literal(0).label("s3"),
            literal(0).label("s4"),
        ).where(r.revenue.is_(None))
        lines = self._cost_lines(
            revenue,
            rates,
            literal("cost").label("what"),
            OrderLine.id.label("id"),
            Product.cost_currency.label("currency"),
            r.day,
            (Product.unit_cost_minor * OrderLine.quantity).label("amount_minor"),
            r.ordered_at.label("s1"),
            r.order_id.label("s2"),
            literal(1).label("s3"),
            OrderLine.position.label("s4"),
        ).cte("np_missing_costs")
        m = lines.c
        costs = select(
            m.what, m.id, m.currency, m.day, m.amount_minor, m.s1, m.s2, m.s3, m.s4
        ).where(m.known, m.cost.is_(None))
        both = union_all(orders, costs).subquery("np_missing")
        b = both.c
        first_part = select(b.what, b.id, b.currency, b.day, b.amount_minor).order_by(
            b.s1, b.s2, b.s3, b.s4, b.id
        )
        second_part = (
            select(
                literal("entry").label("what"),
                c.id,
                c.currency,
                c.occurred_on.label("day"),
                c.amount_minor,
            )
            .where(c.amount.is_(None))
            .order_by(c.occurred_on, c.created_at, c.id)
        )
        return first_part, second_part

    def net_profit_missing_costs(self, first: date, last: date) -> Select[Any]:
        """Units sold without a unit cost, per SKU (orders whose revenue converted)."""
        rates, revenue, _, _, _ = self._net_profit_parts("order", first, last)
        lines = self._cost_lines(revenue, rates, OrderLine.sku, OrderLine.quantity).subquery()
        return (
            select(lines.c.sku, func.sum(lines.c.quantity))
            .where(~lines.c.known)
            .group_by(lines.c.sku)
            .order_by(self.in_code_order(lines.c.sku))
        )

    # -- return-risk reserve ---------------------------------------------------------------

    def reserve(
        self, start: datetime, end: datetime, hold_start: datetime, as_of: date
    ) -> Select[Any]:
        """Per SKU sold in [start, end) (rows with ``part`` 0): units sold, sold since
        ``hold_start``, returned (approved, of returns still going ahead), and the converted
        ledger of those returns up to ``as_of``; then (``part`` 1) the entries of those
        returns that could not be converted (id, currency, day, amount_minor)."""
        sold_lines = (
            select(
                OrderLine.id,
                OrderLine.sku,
                OrderLine.quantity,
                (Order.ordered_at >= hold_start).label("hold"),
            )
            .join(Order, Order.id == OrderLine.order_id)
            .where(
                Order.organization_id == self.org,
                Order.ordered_at >= start,
                Order.ordered_at < end,
            )
            .cte("rs_lines")
        )
        s = sold_lines.c
        sold = (
            select(
                s.sku,
                func.sum(s.quantity).label("units_sold"),
                func.sum(case((s.hold, s.quantity), else_=0)).label("units_sold_hold"),
            )
            .group_by(s.sku)
            .cte("rs_sold")
        )
        returned_lines = (
            select(ReturnLine.return_id, s.sku, ReturnLine.approved)
            .join(sold_lines, s.id == ReturnLine.order_line_id)
            .join(Return, Return.id == ReturnLine.return_id)
            .where(Return.status.not_in(_NOT_RETURNED), ReturnLine.approved > 0)
            .cte("rs_returned_lines")
        )
        rl = returned_lines.c
        returned = (
            select(rl.sku, func.sum(rl.approved).label("units_returned"))
            .group_by(rl.sku)
            .cte("rs_returned")
        )
        entries = (
            select(*_ENTRY_COLUMNS)
            .where(
                LedgerEntry.return_id.in_(select(rl.return_id)),
                LedgerEntry.occurred_on <= as_of,
            )
            .cte("rs_entries")
        )
        e = entries.c
        rates = self.rates(select(func.min(e.occurred_on)).scalar_subquery(), as_of)
        converted = (
            select(
                e.id,
                e.kind,
                e.order_id,
                e.return_id,
                e.sku,
                e.order_line_id,
                e.currency,
                e.occurred_on,
                e.amount_minor,
                e.created_at,
                self.converted(rates, e.amount_minor, e.currency).label("amount"),
            )
            .select_from(entries)
            .outerjoin(rates, self.on_rate(rates, e.currency, e.occurred_on))
            .cte("rs_converted")
        )
        parts = self.entry_sku_parts(converted, "rs_entries").cte("rs_parts")
        ledger = (
            select(parts.c.sku, func.sum(parts.c.part).label("ledger_sum"))
            .group_by(parts.c.sku)
            .cte("rs_ledger")
        )
        rows = (
            select(
                literal(0).label("part"),
                sold.c.sku,
                sold.c.units_sold,
                sold.c.units_sold_hold,
                func.coalesce(returned.c.units_returned, 0).label("units_returned"),
                func.coalesce(ledger.c.ledger_sum, 0).label("ledger_sum"),
                type_coerce(null(), Uuid).label("id"),
                type_coerce(null(), String).label("currency"),
                type_coerce(null(), Date).label("day"),
                type_coerce(null(), BigInteger).label("amount_minor"),
                type_coerce(null(), UTCDateTime).label("created_at"),
            )
            .select_from(sold)
            .outerjoin(returned, returned.c.sku == sold.c.sku)
            .outerjoin(ledger, ledger.c.sku == sold.c.sku)
        )
        c = converted.c
        missing = select(
            literal(1),
            null(),
            null(),
            null(),
            null(),
            null(),
            c.id,
            c.currency,
            c.occurred_on,
            c.amount_minor,
            c.created_at,
        ).where(c.amount.is_(None))
        # One statement, so the pipeline runs once: the SKUs (part 0), then the entries
        # that could not be converted (part 1).
        both = union_all(rows, missing).subquery("rs_result")
        b = both.c
        return select(
            b.part,
            b.sku,
            b.units_sold,
            b.units_sold_hold,
            b.units_returned,
            b.ledger_sum,
            b.id,
            b.currency,
            b.day,
            b.amount_minor,
        ).order_by(b.part, b.day, b.created_at, b.id)

    # -- return-risk reserve from rollups --------------------------------------------------

    def month_start_of(self, day: Any) -> Any:
        """The first day of ``day``'s month."""
        if self.pg:
            return cast(func.date_trunc("month", day), Date)
        return type_coerce(func.date(day, "start of month"), Date)

    def reserve_unit_rows(self, days: Days) -> Select[Any]:
        """Per (order day, SKU) of the orders placed on ``days``: ``units_sold`` and
        ``units_returned`` (approved on returns still going ahead), as the reserve counts
        them."""
        day = self.day_of(Order.ordered_at).label("day")
        placed = and_(Order.organization_id == self.org, _at_days(days, Order.ordered_at))
        sold = (
            select(
                day,
                OrderLine.sku.label("sku"),
                OrderLine.quantity.label("sold"),
                literal(0).label("returned"),
            )
            .join(Order, Order.id == OrderLine.order_id)
            .where(placed)
        )
        returned = (
            select(day, OrderLine.sku, literal(0), ReturnLine.approved)
            .select_from(ReturnLine)
            .join(OrderLine, OrderLine.id == ReturnLine.order_line_id)
            .join(Order, Order.id == OrderLine.order_id)
            .join(Return, Return.id == ReturnLine.return_id)
            .where(placed, Return.status.not_in(_NOT_RETURNED), ReturnLine.approved > 0)
        )
        u = union_all(sold, returned).subquery("rs_units")
        return select(
            u.c.day,
            u.c.sku,
            cast(func.sum(u.c.sold), BigInteger).label("units_sold"),
            cast(func.sum(u.c.returned), BigInteger).label("units_returned"),
        ).group_by(u.c.day, u.c.sku)

    def reserve_ledger_rows(
        self, entry_days: Days, order_window: tuple[date, date] | None = None
    ) -> Select[Any]:
        """Per (entry day, order day, SKU): the converted ledger of returns still going
        ahead (with approved units) that occurred on ``entry_days`` (of orders placed in
        ``order_window``, when given), split over the returns' lines as the reserve splits
        it; ``sku`` NULL counts the entries without a rate (``missing_rates``). A return's
        lines are lines of its order, so the order's day is the return's."""
        order_day = self.day_of(Order.ordered_at)
        approved = (
            select(ReturnLine.id)
            .where(ReturnLine.return_id == Return.id, ReturnLine.approved > 0)
            .exists()
        )
        when = [
            LedgerEntry.organization_id == self.org,
            _on_days(entry_days, LedgerEntry.occurred_on),
            Return.status.not_in(_NOT_RETURNED),
            approved,
        ]
        if order_window is not None:
            when.append(_at_days([order_window], Order.ordered_at))
        entries = (
            select(*_ENTRY_COLUMNS, order_day.label("order_day"))
            .join(Return, Return.id == LedgerEntry.return_id)
            .join(Order, Order.id == Return.order_id)
            .where(*when)
            .cte("rr_entries")
        )
        e = entries.c
        rates = self.rates(
            select(func.min(e.occurred_on)).scalar_subquery(), entry_days[-1][1], "rr_rates"
        )
        converted = (
            select(
                e.id,
                e.kind,
                e.order_id,
                e.return_id,
                e.sku,
                e.order_line_id,
                e.occurred_on,
                e.order_day,
                self.converted(rates, e.amount_minor, e.currency).label("amount"),
            )
            .select_from(entries)
            .outerjoin(rates, self.on_rate(rates, e.currency, e.occurred_on))
            .cte("rr_converted")
        )
        parts = self.entry_sku_parts(converted, "rr_entries", ("occurred_on", "order_day")).cte(
            "rr_parts"
        )
        p, c = parts.c, converted.c
        zero = literal(0)
        split = select(
            p.occurred_on.label("entry_day"),
            p.order_day.label("day"),
            p.sku.label("sku"),
            p.part.label("ledger"),
            zero.label("missing"),
        )
        missing = select(
            c.occurred_on, c.order_day, type_coerce(null(), String), zero, literal(1)
        ).where(c.amount.is_(None))
        both = union_all(split, missing).subquery("rr_ledger")
        b = both.c
        return select(
            b.entry_day,
            b.day,
            b.sku,
            cast(func.sum(b.ledger), BigInteger).label("ledger"),
            cast(func.sum(b.missing), BigInteger).label("missing_rates"),
        ).group_by(b.entry_day, b.day, b.sku)

    def reserve_from_rollups(self, plan: ReservePlan) -> Select[Any]:
        """The reserve's figures per SKU (``sku``, ``units_sold``, ``units_sold_hold``,
        ``units_returned``, ``ledger_sum``, ``sold``: sold in the window, ``missing``:
        entries without a rate) from the rollups of ``plan`` and raw rows for its raw
        days: the same figures :meth:`reserve` computes from raw rows alone."""
        rr = ReserveRollup
        zero = literal(0)
        window = (plan.start, plan.as_of)
        stored = and_(rr.organization_id == self.org, rr.base == self.base)
        branches: list[Select[Any]] = []
        names = ("sku", "units_sold", "hold", "units_returned", "ledger", "missing", "sold")

        def row(*values: Any) -> Any:
            return [v.label(n) for v, n in zip(values, names, strict=True)]

        unit_periods = []
        if plan.unit_months:
            unit_periods.append(and_(rr.monthly.is_(True), _on_days(plan.unit_months, rr.period)))
        daily_units = [*plan.unit_days, *plan.unit_less]
        if daily_units:
            unit_periods.append(
                and_(rr.monthly.is_(False), _on_days(merge(daily_units), rr.period))
            )
        if unit_periods:
            # The daily rows of ``unit_less`` are taken off their months' monthly rows.
            sign: Any = (
                case(
                    (and_(rr.monthly.is_(False), _on_days(plan.unit_less, rr.period)), -1), else_=1
                )
                if plan.unit_less
                else literal(1)
            )
            branches.append(
                select(
                    *row(
                        rr.sku,
                        sign * rr.units_sold,
                        sign * case((rr.period >= plan.hold, rr.units_sold), else_=0),
                        sign * rr.units_returned,
                        zero,
                        zero,
                        literal(1),
                    )
                ).where(stored, rr.entry_period.is_(None), or_(*unit_periods))
            )
        entry_periods = []
        if plan.entry_months and plan.order_months:
            entry_periods.append(
                and_(
                    rr.monthly.is_(True),
                    _on_days(plan.entry_months, rr.entry_period),
                    _on_days(plan.order_months, rr.period),
                )
            )
        # Daily ledger rows: (a) entry days of months not summed whole, order days in the
        # window; (b) the wanted entry days of the months summed whole, order days in the
        # window outside the order months; (c) taken off again: what the monthly rows
        # summed and is not wanted (an entry day of ``entry_less`` or an order day of
        # ``order_less``).
        in_window = _on_days([window], rr.period)
        daily: list[Any] = []
        taken_off: Any = None
        if plan.entry_days:
            daily.append(and_(_on_days(plan.entry_days, rr.entry_period), in_window))
        if plan.entry_months:
            month_days = [(a, month_end(b)) for a, b in plan.entry_months]
            in_month = _on_days(month_days, rr.entry_period)
            wanted = in_month
            if plan.entry_less:
                wanted = and_(in_month, ~_on_days(plan.entry_less, rr.entry_period))
            if plan.order_months:
                order_days = [(a, month_end(b)) for a, b in plan.order_months]
                in_orders = _on_days(order_days, rr.period)
                daily.append(and_(wanted, in_window, ~in_orders))
                unwanted = [
                    _on_days(days, column)
                    for days, column in (
                        (plan.entry_less, rr.entry_period),
                        (plan.order_less, rr.period),
                    )
                    if days
                ]
                if unwanted:
                    taken_off = and_(in_month, in_orders, or_(*unwanted))
                    daily.append(taken_off)
            else:
                daily.append(and_(wanted, in_window))
        if daily:
            entry_periods.append(and_(rr.monthly.is_(False), or_(*daily)))
        if entry_periods:
            sign = (
                literal(1)
                if taken_off is None
                else case((and_(rr.monthly.is_(False), taken_off), -1), else_=1)
            )
            branches.append(
                select(
                    *row(
                        rr.sku,
                        zero,
                        zero,
                        zero,
                        sign * rr.ledger,
                        sign * rr.missing_rates,
                        zero,
                    )
                ).where(stored, rr.entry_period.is_not(None), or_(*entry_periods))
            )
        if plan.unit_raw:
            units = self.reserve_unit_rows(plan.unit_raw).subquery("rr_raw_units")
            u = units.c
            branches.append(
                select(
                    *row(
                        u.sku,
                        u.units_sold,
                        case((u.day >= plan.hold, u.units_sold), else_=0),
                        u.units_returned,
                        zero,
                        zero,
                        literal(1),
                    )
                )
            )
        if plan.entry_raw:
            ledger = self.reserve_ledger_rows(plan.entry_raw, window).subquery("rr_raw_ledger")
            lg = ledger.c
            branches.append(
                select(*row(lg.sku, zero, zero, zero, lg.ledger, lg.missing_rates, zero))
            )
        if not branches:
            branches.append(select(*row(null(), zero, zero, zero, zero, zero, zero)).where(false()))
        parts = union_all(*branches).subquery("rr_parts_all")
        p = parts.c
        return select(
            p.sku,
            func.sum(p.units_sold).label("units_sold"),
            func.sum(p.hold).label("units_sold_hold"),
            func.sum(p.units_returned).label("units_returned"),
            func.sum(p.ledger).label("ledger_sum"),
            func.max(p.sold).label("sold"),
            func.sum(p.missing).label("missing"),
        ).group_by(p.sku)

    # -- money at risk ---------------------------------------------------------------------

    def _paid_units(self, as_of: date) -> CTE:
        """Per return line and succeeded refund (settled by ``as_of``): the units and total
        paid, where they start among the line's paid units (oldest refund first), and the
        line's received and inspected units and SKU."""
        settled = self.day_of(func.coalesce(Refund.settled_at, Refund.updated_at))
        # Only a line with more units refunded than inspected can have anything at risk:
        # the refunds paid for it (whose units the guard counts in ``refunded``) are at most
        # its refunded units, and each is covered once the line's inspected units reach its
        # own. Those lines are few and have an index of their own (migration 0014, written
        # with IS TRUE as its predicate, whose statistics tell the planner how few): the
        # statement starts from them and looks up their refunds, their parts and SKUs one
        # by one, so its cost follows the money at risk, not the history of refunds.
        lines = (
            select(
                ReturnLine.id,
                ReturnLine.return_id,
                ReturnLine.order_line_id,
                ReturnLine.received,
                ReturnLine.inspected,
            )
            .join(Return, Return.id == ReturnLine.return_id)
            .where(
                ReturnLine.organization_id == self.org,
                (ReturnLine.refunded > ReturnLine.inspected).is_(true()),
                Return.status.not_in(_NO_GOODS_EXPECTED),
            )
            .cte("mr_lines")
        )
        if self.pg:
            lines = lines.prefix_with("MATERIALIZED")
        ln = lines.c
        if self.pg:
            element = (
                func.json_array_elements(Refund.lines)
                .table_valued("value", with_ordinality="ord")
                .render_derived(name="part")
            )

            def field(name: str) -> Any:
                return element.c.value.op("->>")(name)

            line_id: Any = cast(field("return_line_id"), Uuid)
            ordinal = element.c.ord
        else:
            element = func.json_each(Refund.lines).table_valued("value", "key").alias("part")

            def field(name: str) -> Any:
                return func.json_extract(element.c.value, f"$.{name}")

            line_id = func.replace(field("return_line_id"), "-", "")
            ordinal = element.c.key
        parts = (
            select(
                Refund.id.label("refund_id"),
                Refund.return_id,
                Refund.currency,
                settled.label("day"),
                ln.id.label("return_line_id"),
                ln.order_line_id,
                ln.received,
                ln.inspected,
                cast(field("quantity"), Integer).label("q"),
                cast(field("total"), BigInteger).label("total"),
                ordinal.label("ordinal"),
            )
            .select_from(lines)
            .join(Refund, Refund.return_id == ln.return_id)
            .join(element, true())
            .where(
                Refund.organization_id == self.org,
                Refund.status == "succeeded",
                settled <= as_of,
                line_id == ln.id,
            )
            .cte("mr_parts")
        )
        p = parts.c
        before = func.sum(p.q).over(
            partition_by=p.return_line_id,
            order_by=(p.day, p.refund_id, p.ordinal),
            rows=(None, -1),
        )
        return (
            select(
                p.refund_id,
                p.return_id,
                p.currency,
                p.day,
                p.return_line_id,
                p.q,
                p.total,
                func.coalesce(before, 0).label("start"),
                p.received,
                p.inspected,
                OrderLine.sku,
            )
            .select_from(parts)
            # Outer (the line always exists): a query that needs no SKU skips the join.
            .outerjoin(OrderLine, OrderLine.id == p.order_line_id)
            .cte("mr_paid")
        )

    def _exposures(self, as_of: date) -> CTE:
        """What each refund paid for units not received, or received but not inspected."""
        p = self._paid_units(as_of).c

        def clamp(value: Any) -> Any:
            return case((value < 0, 0), (value > p.q, p.q), else_=value)

        covered = clamp(p.received - p.start)
        checked = clamp(p.inspected - p.start)
        step = select(
            p.refund_id,
            p.return_id,
            p.currency,
            p.day,
            p.return_line_id,
            p.sku,
            p.q,
            p.total,
            covered.label("covered"),
            checked.label("checked"),
        ).cte("mr_covered")
        s = step.c

        def share(units: Any) -> Any:
            # unit_share: the first `units` of q units carry total * units // q.
            return self._div(self._wide(s.total) * units, s.q)

        exposures = select(
            s.refund_id,
            s.return_id,
            s.currency,
            s.day,
            s.return_line_id,
            s.sku,
            (s.q - s.covered).label("not_received_units"),
            case((s.q > 0, s.total - share(s.covered)), else_=0).label("not_received"),
            (s.covered - s.checked).label("not_inspected_units"),
            case((s.q > 0, share(s.covered) - share(s.checked)), else_=0).label("not_inspected"),
        ).where(or_(s.q > s.covered, s.covered > s.checked))
        return exposures.cte("mr_exposures")

    def _bucket(self, day: Any, as_of: date) -> Any:
        whens = [
            (day >= as_of - timedelta(days=high), label)
            for label, _, high in rules.AGE_BUCKETS
            if high is not None
        ]
        return case(*whens, else_=rules.AGE_BUCKETS[-1][0])

    def _converted_exposures(self, as_of: date, exposures: CTE | None = None) -> CTE:
        exposures = self._exposures(as_of) if exposures is None else exposures
        x = exposures.c
        # Rates from the oldest refund that has something at risk.
        rates = self.rates(select(func.min(x.day)).scalar_subquery(), as_of)

        def converted(amount: Any) -> Any:
            # A zero amount needs no rate (and is not reported as missing one).
            return case((amount == 0, 0), else_=self.converted(rates, amount, x.currency))

        return (
            select(
                *x,
                self._bucket(x.day, as_of).label("age"),
                converted(x.not_received).label("not_received_base"),
                converted(x.not_inspected).label("not_inspected_base"),
            )
            .select_from(exposures)
            .outerjoin(rates, self.on_rate(rates, x.currency, x.day))
            .cte("mr_converted")
        )

    def money_at_risk(self, as_of: date) -> Select[Any]:
        """One statement, so the refunds' lines are read once: first (``part`` 0) per age
        the refunds, units and base-currency amounts not received and not inspected (of
        exposures whose amounts converted) and the count of amounts that did not; then
        (``part`` 1) every exposure in the refund's own currency, oldest refund first."""
        exposures = self._exposures(as_of).prefix_with("MATERIALIZED")
        x = self._converted_exposures(as_of, exposures).c
        ok = and_(x.not_received_base.is_not(None), x.not_inspected_base.is_not(None))
        missing = case((x.not_received_base.is_(None), 1), else_=0) + case(
            (x.not_inspected_base.is_(None), 1), else_=0
        )
        no_id = type_coerce(null(), Uuid)
        buckets = select(
            literal(0).label("part"),
            x.age.label("age"),
            func.count(func.distinct(case((ok, x.refund_id)))).label("refunds"),
            func.sum(case((ok, x.not_received_units), else_=0)).label("not_received_units"),
            func.sum(case((ok, x.not_received_base), else_=0)).label("not_received"),
            func.sum(case((ok, x.not_inspected_units), else_=0)).label("not_inspected_units"),
            func.sum(case((ok, x.not_inspected_base), else_=0)).label("not_inspected"),
            func.sum(missing).label("missing"),
            no_id.label("refund_id"),
            no_id.label("return_id"),
            no_id.label("return_line_id"),
            type_coerce(null(), String).label("sku"),
            type_coerce(null(), String).label("currency"),
            type_coerce(null(), Date).label("day"),
        ).group_by(x.age)
        e = exposures.c
        items = select(
            literal(1),
            null(),
            null(),
            e.not_received_units,
            e.not_received,
            e.not_inspected_units,
            e.not_inspected,
            null(),
            e.refund_id,
            e.return_id,
            e.return_line_id,
            e.sku,
            e.currency,
            e.day,
        )
        both = union_all(buckets, items).subquery("mr_result")
        b = both.c
        return select(*b).order_by(b.part, b.day, b.refund_id, b.return_line_id)

    def money_at_risk_missing(self, as_of: date) -> Select[Any]:
        """Exposure amounts without a rate: (refund id, currency, day, amount), in item
        order, the not-received amount before the not-inspected one."""
        x = self._converted_exposures(as_of).c
        not_received = select(
            x.refund_id,
            x.currency,
            x.day,
            x.not_received.label("amount"),
            x.return_line_id,
            literal(0).label("n"),
        ).where(x.not_received_base.is_(None))
        not_inspected = select(
            x.refund_id,
            x.currency,
            x.day,
            x.not_inspected,
            x.return_line_id,
            literal(1),
        ).where(x.not_inspected_base.is_(None))
        both = union_all(not_received, not_inspected).subquery("mr_missing")
        b = both.c
        return select(b.refund_id, b.currency, b.day, b.amount).order_by(
            b.day, b.refund_id, b.return_line_id, b.n
        )


def _pg_significant(value: Any) -> Any:
    """A positive numeric rounded to 28 significant digits (Python's decimal context)."""
    integer_digits = func.length(cast(func.trunc(value), Text))
    leading_zeros = func.length(func.substring(cast(value, Text), r"^0\.(0*)"))
    places = case((value >= 1, _PRECISION - integer_digits), else_=_PRECISION + leading_zeros)
    return func.round(value, places)


def _pg_significant_signed(value: Any) -> Any:
    """A product rounded to 28 significant digits before its final rounding. Below 1 in
    size, 28 decimals decide the final rounding the same way (only 0.5 is a tie)."""
    size = func.abs(value)
    integer_digits = func.length(cast(func.trunc(size), Text))
    return case(
        (size >= 1, func.round(value, _PRECISION - integer_digits)),
        else_=func.round(value, _PRECISION),
    )
