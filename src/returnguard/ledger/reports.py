"""Reports on the cost ledger: true net profit, the return-risk reserve, money at risk.

Every figure is in the organization's base currency, each amount converted at the rate of
its own day (``fx.rate``: that day or the latest before). An amount whose rate is unknown
is left out of the figures and listed under ``missing_rates``, never silently dropped.

Net profit, per order, SKU, channel or month, for the days ``first``..``last``:

- revenue: what orders placed on those days captured (the order's day decides the month);
  per SKU the captured amount is split over the order's lines by their value;
- cost of goods: units sold x the product's unit cost (SKUs without a cost are listed
  under ``missing_costs`` and count as zero);
- refunds, return costs, recoveries: the ledger entries that occurred on those days (the
  entry's day decides the month); per SKU an entry about a whole return (a label, a
  handling fee) is split over the return's lines by value, one about a whole order over
  the order's lines;
- net = revenue - cost of goods - refunds - return costs + recoveries.

Each figure is filtered by its own date, so every grouping adds up to the same total.

The database does the work (``repository.ReportQueries``): it converts, splits, groups and
sums, and the rows are streamed out of it, so a report over millions of orders holds one
row at a time here. Exports (CSV, XLSX) are written as the rows arrive.
"""

from __future__ import annotations

import csv
import io
import itertools
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from typing import IO, Any

from sqlalchemy.orm import Session

from returnguard.auth.models import Organization
from returnguard.domain import ledger as rules
from returnguard.domain.ledger import Figures
from returnguard.kit.db import Database, one_snapshot
from returnguard.kit.money import Money, minor_digits
from returnguard.kit.spreadsheet import csv_text, xml_text
from returnguard.ledger import repository as repo
from returnguard.ledger import rollups


class GroupBy(StrEnum):
    ORDER = "order"
    SKU = "sku"
    CHANNEL = "channel"
    MONTH = "month"


@dataclass(frozen=True, slots=True)
class MissingRate:
    what: str  # "order" | "cost" | "entry" | "refund"
    id: str
    currency: str
    day: date
    amount_minor: int


def base_currency(session: Session, organization_id: uuid.UUID) -> str:
    org = session.get(Organization, organization_id)
    if org is None:
        raise LookupError(f"organization {organization_id} not found")
    return org.base_currency


@contextmanager
def reading(db: Database) -> Iterator[Session]:
    """A read-only unit of work for a report: all its statements see one snapshot, so the
    rows, the total and the lists of what is missing agree with each other."""
    with db.session(read_only=True) as session:
        one_snapshot(session)
        yield session


def _start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _int(value: Any) -> int:
    # PostgreSQL sums come back as Decimal (numeric); they are whole numbers.
    return int(value or 0)


def _missing(rows: Any) -> Iterator[MissingRate]:
    for what, ref, currency, day, amount in rows:
        yield MissingRate(str(what), str(ref), currency, day, int(amount))


# --- net profit ---------------------------------------------------------------------------


@dataclass
class NetProfitRow:
    key: str
    label: str
    figures: Figures = field(default_factory=Figures)


@dataclass
class NetProfitResult:
    """A whole net-profit report in memory (for small reports and tests)."""

    group_by: GroupBy
    first: date
    last: date
    currency: str
    rows: list[NetProfitRow]
    total: Figures
    missing_rates: list[MissingRate]
    missing_costs: dict[str, int]


@dataclass
class _Seen:
    """What the last complete pass over the rows counted besides them."""

    missing_rates: int
    missing_units: int
    missing_costs: dict[str, int]


class NetProfitReport:
    """Net profit per group, computed by the database.

    :meth:`rows` streams the groups in order (each call is one pass over the data);
    :meth:`missing_rates` and :meth:`missing_costs` list what was left out, and after a
    complete pass over the rows cost nothing when nothing was.
    """

    def __init__(
        self,
        session: Session,
        organization_id: uuid.UUID,
        group_by: GroupBy,
        first: date,
        last: date,
    ) -> None:
        if first > last:
            raise ValueError("the first day is after the last")
        self.group_by = group_by
        self.first = first
        self.last = last
        self.currency = base_currency(session, organization_id)
        self._queries = repo.ReportQueries(session, organization_id, self.currency)
        self._seen: _Seen | None = None
        # The months the worker rolled up are summed; the rest is read raw (by order,
        # everything is: one row per order).
        self.rollup = (
            None
            if group_by is GroupBy.ORDER
            else rollups.report_plan(session, organization_id, self.currency, first, last)
        )

    def rows(self) -> Iterator[NetProfitRow]:
        """The groups: by order sorted by the order's external id, otherwise by key."""
        q = self._queries
        missing_rates = missing_units = 0
        costs: dict[str, int] = {}
        stmt = q.net_profit(self.group_by.value, self.first, self.last, self.rollup)
        result = q.execute(stmt, stream=True)
        for key, label, *figures, units, rates in result:
            missing_rates += _int(rates)
            missing_units += _int(units)
            if key is None:
                continue  # what could not be converted: counted, listed by missing_rates()
            key = str(key)
            if self.group_by is GroupBy.SKU and units:
                costs[key] = _int(units)
            if self.group_by is GroupBy.MONTH:
                label = date.fromisoformat(f"{key}-01").strftime("%B %Y")
            yield NetProfitRow(key, label or "", Figures(*(_int(v) for v in figures)))
        self._seen = _Seen(missing_rates, missing_units, costs)

    def missing_rates(self) -> list[MissingRate]:
        """Orders, product costs and entries left out for lack of a rate, in the order of
        the orders (then their lines) and then of the entries."""
        if self._seen is not None and self._seen.missing_rates == 0:
            return []
        q = self._queries
        found: list[MissingRate] = []
        for stmt in q.net_profit_missing_rates(self.first, self.last):
            found.extend(_missing(q.execute(stmt, stream=True)))
        return found

    def missing_costs(self) -> dict[str, int]:
        """Units sold without a unit cost, per SKU (their cost of goods counts as zero)."""
        if self._seen is not None and self._seen.missing_units == 0:
            return {}
        if self._seen is not None and self.group_by is GroupBy.SKU:
            return dict(sorted(self._seen.missing_costs.items()))
        q = self._queries
        if self.rollup is not None:  # per SKU from the rollups too
            stmt = q.net_profit(GroupBy.SKU.value, self.first, self.last, self.rollup)
            return {
                str(key): _int(units)
                for key, _label, *_figures, units, _rates in q.execute(stmt, stream=True)
                if key is not None and units
            }
        rows = q.execute(q.net_profit_missing_costs(self.first, self.last))
        return {sku: _int(units) for sku, units in rows}

    def collect(self) -> NetProfitResult:
        rows = list(self.rows())
        total = Figures()
        for row in rows:
            total.add(row.figures)
        return NetProfitResult(
            self.group_by,
            self.first,
            self.last,
            self.currency,
            rows,
            total,
            self.missing_rates(),
            self.missing_costs(),
        )


def net_profit(
    session: Session, organization_id: uuid.UUID, group_by: GroupBy, first: date, last: date
) -> NetProfitReport:
    """Revenue, cost of goods, refunds, return costs, recoveries and net per group."""
    return NetProfitReport(session, organization_id, group_by, first, last)


# --- exports ------------------------------------------------------------------------------

FIGURE_COLUMNS = ("revenue", "cost_of_goods", "refunds", "return_costs", "recoveries", "net")


def figure_values(figures: Figures) -> list[int]:
    return [
        figures.revenue,
        figures.cost_of_goods,
        figures.refunds,
        figures.return_costs,
        figures.recoveries,
        figures.net,
    ]


def _amount(minor: int, currency: str) -> Decimal:
    return Money.from_minor(minor, currency).amount


def net_profit_table(report: NetProfitReport) -> Iterator[list[str | Decimal]]:
    """Header, one line per row as the rows arrive, then the total: exact Decimals."""
    yield [report.group_by.value, "label", *FIGURE_COLUMNS, "currency"]
    total = Figures()
    for row in report.rows():
        total.add(row.figures)
        values = [_amount(v, report.currency) for v in figure_values(row.figures)]
        yield [row.key, row.label, *values, report.currency]
    totals = [_amount(v, report.currency) for v in figure_values(total)]
    yield ["TOTAL", "", *totals, report.currency]


_CHUNK = 64 * 1024


def csv_cells(line: list[str | Decimal]) -> list[str]:
    """A table line as CSV cells: amounts as plain decimals (``105.00``), text that a
    spreadsheet would run as a formula neutralised (kit/spreadsheet.py)."""
    return [format(v, "f") if isinstance(v, Decimal) else csv_text(v) for v in line]


def net_profit_csv(report: NetProfitReport) -> Iterator[str]:
    """The table as CSV text, in chunks of about 64 KB, written as the rows arrive."""
    out = io.StringIO()
    # RFC 4180 line ends: the writer then also quotes a cell holding a lone CR, which a
    # reader would otherwise take for the end of the row.
    writer = csv.writer(out, lineterminator="\r\n")
    for line in net_profit_table(report):
        writer.writerow(csv_cells(line))
        if out.tell() >= _CHUNK:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()


class NetProfitXlsx:
    """An XLSX workbook of the table: the figures as numbers (written from Decimals, never
    floats) with the base currency's decimal places, plus a sheet of amounts left out for
    lack of a rate. Write-only: lines go to a temporary file as they are appended."""

    def __init__(self, currency: str) -> None:
        from openpyxl import Workbook

        digits = minor_digits(currency)
        self._number_format = "#,##0" + ("." + "0" * digits if digits else "")
        self._book = Workbook(write_only=True)
        self._sheet = self._book.create_sheet("Net profit")
        self._sheet.freeze_panes = "A2"
        self._lines = 0

    def _cell(self, sheet: Any, value: object, *, number: bool = False) -> Any:
        from openpyxl.cell import WriteOnlyCell

        # A character XML cannot carry would corrupt the file (openpyxl refuses it).
        cell = WriteOnlyCell(sheet, value=xml_text(value) if isinstance(value, str) else value)
        if number:
            cell.number_format = self._number_format
        elif isinstance(value, str):
            # Text stays text: a SKU or title starting with "=" is not a formula.
            cell.data_type = "s"
        return cell

    def append(self, line: list[str | Decimal]) -> None:
        figures = range(2, 2 + len(FIGURE_COLUMNS))
        header = self._lines == 0
        cells = [
            self._cell(self._sheet, v, number=not header and i in figures)
            for i, v in enumerate(line)
        ]
        self._sheet.append(cells)
        self._lines += 1

    def save(self, out: IO[bytes], missing_rates: list[MissingRate]) -> None:
        if missing_rates:
            sheet = self._book.create_sheet("Missing rates")
            sheet.append(["what", "id", "currency", "day", "amount"])
            for m in missing_rates:
                row = [m.what, m.id, m.currency, m.day, _amount(m.amount_minor, m.currency)]
                sheet.append([self._cell(sheet, v) for v in row])
        self._book.save(out)


def write_net_profit_xlsx(report: NetProfitReport, out: IO[bytes]) -> None:
    """The report as an XLSX workbook into ``out`` (see :class:`NetProfitXlsx`)."""
    book = NetProfitXlsx(report.currency)
    for line in net_profit_table(report):
        book.append(line)
    book.save(out, report.missing_rates())


# --- return-risk reserve ------------------------------------------------------------------


@dataclass
class ReserveRow:
    sku: str
    units_sold: int = 0
    units_returned: int = 0
    units_sold_hold: int = 0
    ledger_sum: int = 0
    rate_low: Decimal = Decimal(0)
    rate_high: Decimal = Decimal(1)
    loss_per_return: int = 0
    reserve_per_unit: int = 0

    @property
    def return_rate(self) -> Decimal:
        return Decimal(self.units_returned) / self.units_sold if self.units_sold else Decimal(0)

    @property
    def reserve(self) -> int:
        return self.reserve_per_unit * self.units_sold_hold


@dataclass
class ReserveReport:
    as_of: date
    lookback_days: int
    hold_days: int
    currency: str
    rows: list[ReserveRow]
    missing_rates: list[MissingRate]

    @property
    def total_reserve(self) -> int:
        return sum(r.reserve for r in self.rows)


# The interval is a pure function of (returned, sold), in 40-digit Decimal with a square
# root: the many small SKUs of a shop share their few pairs.
_wilson = lru_cache(maxsize=65_536)(rules.wilson)


def reserve(
    session: Session,
    organization_id: uuid.UUID,
    *,
    as_of: date,
    lookback_days: int = 180,
    hold_days: int = 30,
) -> ReserveReport:
    """The return-risk reserve per SKU.

    Units sold: order lines of orders placed in the ``lookback_days`` days up to ``as_of``.
    Units returned: of those units, the ones approved for return (returns cancelled,
    expired or rejected do not count). Return rate: the Wilson 95% upper bound. Loss per
    return: minus the ledger entries of those returns (up to ``as_of``) for the SKU, per
    returned unit, never below zero. Reserve per unit = upper bound x loss per return;
    the reserve to hold = reserve per unit x units sold in the last ``hold_days`` days.
    """
    if lookback_days < 1 or hold_days < 1 or hold_days > lookback_days:
        raise ValueError("need 1 <= hold_days <= lookback_days")
    base = base_currency(session, organization_id)
    q = repo.ReportQueries(session, organization_id, base)
    start = as_of - timedelta(days=lookback_days - 1)
    hold = as_of - timedelta(days=hold_days - 1)
    raw = q.reserve(_start(start), _start(as_of + timedelta(days=1)), _start(hold), as_of)
    rows: list[ReserveRow] = []
    missing: list[MissingRate] = []

    def add(sku: str, sold: Any, sold_hold: Any, returned: Any, ledger_sum: Any) -> None:
        row = ReserveRow(sku, _int(sold), 0, _int(sold_hold), _int(ledger_sum))
        row.units_returned = min(_int(returned), row.units_sold)
        row.rate_low, row.rate_high = _wilson(row.units_returned, row.units_sold)
        row.loss_per_return = rules.loss_per_return(row.ledger_sum, row.units_returned)
        row.reserve_per_unit = rules.reserve_per_unit(row.rate_high, row.loss_per_return)
        rows.append(row)

    # The months the worker rolled up are summed, the days changed since are read raw.
    plan = rollups.reserve_report_plan(session, organization_id, base, start, as_of, hold)
    if plan is None:
        for (
            part,
            sku,
            sold,
            sold_hold,
            returned,
            ledger_sum,
            ref,
            currency,
            day,
            amount,
        ) in q.execute(raw, stream=True):
            if part:
                missing.append(MissingRate("entry", str(ref), currency, day, _int(amount)))
            else:
                add(sku, sold, sold_hold, returned, ledger_sum)
    else:
        unconverted = 0
        stmt = q.reserve_from_rollups(plan)
        for sku, sold, sold_hold, returned, ledger_sum, in_window, without_rate in q.execute(
            stmt, stream=True
        ):
            unconverted += _int(without_rate)
            # Sold in the window: a line has at least one unit (a check constraint), and
            # a month less its days not wanted can leave a row of zeros.
            if in_window and _int(sold) > 0:
                add(sku, sold, sold_hold, returned, ledger_sum)
        if unconverted:  # which entries: listed from the raw rows (rare, and slow)
            for part, *_, ref, currency, day, amount in q.execute(raw, stream=True):
                if part:
                    missing.append(MissingRate("entry", str(ref), currency, day, _int(amount)))
    rows.sort(key=lambda r: (-r.reserve, r.sku))
    return ReserveReport(as_of, lookback_days, hold_days, base, rows, missing)


# --- money at risk ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AtRiskItem:
    refund_id: uuid.UUID
    return_id: uuid.UUID
    return_line_id: uuid.UUID
    sku: str
    currency: str
    settled_on: date
    age_days: int
    age: str
    exposure: rules.Exposure


@dataclass
class AtRiskBucket:
    age: str
    refunds: int = 0
    not_received_units: int = 0
    not_received: int = 0
    not_inspected_units: int = 0
    not_inspected: int = 0


class MoneyAtRiskReport:
    """Refunds paid whose goods are not received or not inspected, by age.

    One statement gives the buckets first, then the refund lines behind them: the buckets
    are read when the report is made, :meth:`items` streams the rest (once).
    """

    def __init__(self, session: Session, organization_id: uuid.UUID, as_of: date) -> None:
        self.as_of = as_of
        self.currency = base_currency(session, organization_id)
        self._queries = q = repo.ReportQueries(session, organization_id, self.currency)
        by_age = {label: AtRiskBucket(label) for label, _, _ in rules.AGE_BUCKETS}
        self._missing = 0
        self._rows = iter(q.execute(q.money_at_risk(as_of), stream=True, lookups=True))
        self._first_item: Any = None
        for row in self._rows:
            part, age, refunds, nr_units, nr, ni_units, ni, missing, *_ = row
            if part:
                self._first_item = row
                break
            by_age[age] = AtRiskBucket(
                age, _int(refunds), _int(nr_units), _int(nr), _int(ni_units), _int(ni)
            )
            self._missing += _int(missing)
        self.buckets = list(by_age.values())

    @property
    def total_not_received(self) -> int:
        return sum(b.not_received for b in self.buckets)

    @property
    def total_not_inspected(self) -> int:
        return sum(b.not_inspected for b in self.buckets)

    def items(self) -> Iterator[AtRiskItem]:
        """Each refund and return line at risk, in the refund's currency, oldest first."""
        first, self._first_item = self._first_item, None
        rows = self._rows if first is None else itertools.chain([first], self._rows)
        for row in rows:
            nr_units, nr, ni_units, ni = row[3:7]
            refund_id, return_id, line_id, sku, cur, day = row[8:]
            age_days = (self.as_of - day).days
            yield AtRiskItem(
                refund_id=refund_id,
                return_id=return_id,
                return_line_id=line_id,
                sku=sku,
                currency=cur,
                settled_on=day,
                age_days=age_days,
                age=rules.age_bucket(age_days),
                exposure=rules.Exposure(
                    key=str(refund_id),
                    settled_on=day,
                    not_received_units=_int(nr_units),
                    not_received=_int(nr),
                    not_inspected_units=_int(ni_units),
                    not_inspected=_int(ni),
                ),
            )

    def missing_rates(self) -> list[MissingRate]:
        if not self._missing:
            return []
        q = self._queries
        rows = q.execute(q.money_at_risk_missing(self.as_of), stream=True, lookups=True)
        return [
            MissingRate("refund", str(ref), currency, day, _int(amount))
            for ref, currency, day, amount in rows
        ]


def money_at_risk(
    session: Session, organization_id: uuid.UUID, *, as_of: date
) -> MoneyAtRiskReport:
    """Refunds paid (succeeded) whose goods are not received, or received but not inspected,
    by days since payment. Goods received count against the earliest refunds of a line."""
    return MoneyAtRiskReport(session, organization_id, as_of)
