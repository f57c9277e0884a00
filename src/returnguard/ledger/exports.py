"""The return-risk reserve and money at risk as JSON, CSV and XLSX.

These writers only format what ``ledger/reports.py`` computed: they read the report
objects (:class:`~returnguard.ledger.reports.ReserveReport`,
:class:`~returnguard.ledger.reports.MoneyAtRiskReport`) and never query. The API
(``ledger/endpoints.py``) and the CLI (``returnguard report reserve|money-at-risk``) use the
same functions, so a file from either is the same file.

- Money is a :class:`~returnguard.kit.money.Money` cell: in CSV a plain decimal with the
  currency's places (``257.50``), in XLSX a number written from the exact ``Decimal`` and
  formatted with the currency's decimals. Rates are numbers with six decimals, counts are
  integers, days are dates.
- Text (a SKU, an age label, an id) always goes through ``kit/spreadsheet.py``: in CSV a
  cell a spreadsheet would run as a formula gets a leading ``'``; in XLSX it is a text
  cell, with characters XML cannot carry replaced by U+FFFD.
- CSV (RFC 4180: lines end with CRLF, a cell with a line break is quoted) is yielded as
  it is produced, in chunks of about 64 KB; XLSX is a write-only workbook, whose rows go
  to a temporary file as they are appended.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Callable, Iterable, Iterator
from datetime import date
from decimal import Decimal
from typing import IO, Any

from returnguard.domain.ledger import RATE_PLACES
from returnguard.kit.money import Money, minor_digits
from returnguard.kit.schemas import MoneyOut
from returnguard.kit.spreadsheet import csv_text, xml_text
from returnguard.ledger import reports
from returnguard.ledger.schemas import AtRiskBucket, MissingRate, ReserveOut, ReserveRow

# A cell of an exported table. ``Decimal`` is a rate (six decimals); money is ``Money``.
Cell = str | int | Decimal | Money | date | None
Line = list[Cell]

_CHUNK = 64 * 1024
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _money(minor: int, currency: str) -> Money:
    return Money.from_minor(minor, currency)


def _rate(value: Decimal) -> Decimal:
    return value.quantize(RATE_PLACES)


# --- CSV and XLSX writers -----------------------------------------------------------------


def csv_cell(value: Cell) -> str:
    """One cell as CSV text: numbers plain, days ISO 8601, text neutralised."""
    if value is None:
        return ""
    if isinstance(value, Money):
        return format(value.amount, "f")
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, bool | int):
        return str(int(value))
    if isinstance(value, date):
        return value.isoformat()
    return csv_text(value)


def csv_chunks(lines: Iterable[Line]) -> Iterator[str]:
    """The lines as CSV text, in chunks of about 64 KB, each written as it arrives."""
    out = io.StringIO()
    # RFC 4180 line ends: with "\r\n" as the terminator the writer quotes a cell holding
    # a carriage return as well as a line feed (with "\n" alone it writes a bare CR
    # unquoted, and the file no longer parses).
    writer = csv.writer(out, lineterminator="\r\n")
    for line in lines:
        writer.writerow([csv_cell(v) for v in line])
        if out.tell() >= _CHUNK:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()


def write_csv(lines: Iterable[Line], out: IO[str]) -> None:
    for chunk in csv_chunks(lines):
        out.write(chunk)


class Workbook:
    """A write-only XLSX workbook whose cells follow the rules above."""

    def __init__(self) -> None:
        from openpyxl import Workbook as OpenpyxlWorkbook

        self._book = OpenpyxlWorkbook(write_only=True)

    def sheet(self, title: str, header: list[str]) -> Callable[[Line], None]:
        """A new sheet with a frozen header row; returns its ``append(line)``."""
        sheet = self._book.create_sheet(title)
        sheet.freeze_panes = "A2"
        sheet.append([self._cell(sheet, name) for name in header])

        def append(line: Line) -> None:
            sheet.append([self._cell(sheet, v) for v in line])

        return append

    @staticmethod
    def _cell(sheet: Any, value: Cell) -> Any:
        from openpyxl.cell import WriteOnlyCell

        if isinstance(value, Money):
            digits = minor_digits(value.currency)
            cell = WriteOnlyCell(sheet, value=value.amount)
            cell.number_format = "#,##0" + ("." + "0" * digits if digits else "")
        elif isinstance(value, Decimal):
            cell = WriteOnlyCell(sheet, value=value)
            cell.number_format = "0.000000"
        elif isinstance(value, str):
            # Text stays text: a SKU starting with "=" is shown as typed, never evaluated;
            # a character XML cannot carry would corrupt the file (openpyxl refuses it).
            cell = WriteOnlyCell(sheet, value=xml_text(value))
            cell.data_type = "s"
        elif isinstance(value, date):
            cell = WriteOnlyCell(sheet, value=value)
            cell.number_format = "yyyy-mm-dd"
        else:
            cell = WriteOnlyCell(sheet, value=value)
        return cell

    def missing_rates(self, items: list[reports.MissingRate]) -> None:
        """A "Missing rates" sheet, when any amount was left out for lack of a rate."""
        if not items:
            return
        append = self.sheet("Missing rates", ["what", "id", "currency", "day", "amount"])
        for m in items:
            append([m.what, m.id, m.currency, m.day, _money(m.amount_minor, m.currency)])

    def save(self, out: IO[bytes]) -> None:
        self._book.save(out)


def xlsx_chunks(write: Callable[[IO[bytes]], None]) -> Iterator[bytes]:
    """Run ``write(out)`` into a temporary file and yield the file in chunks: a workbook is
    a zip finished only at the end, so its sheets go to disk meanwhile."""
    with tempfile.SpooledTemporaryFile(max_size=8 * _CHUNK) as out:
        write(out)
        out.seek(0)
        while chunk := out.read(_CHUNK):
            yield chunk


# --- JSON ---------------------------------------------------------------------------------


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def missing_rates_out(items: Iterable[reports.MissingRate]) -> list[MissingRate]:
    return [
        MissingRate(
            what=m.what,
            id=m.id,
            currency=m.currency,
            day=m.day,
            amount=MoneyOut.from_minor(m.amount_minor, m.currency),
        )
        for m in items
    ]


def _rate_text(value: Decimal) -> str:
    return format(_rate(value), "f")


def reserve_out(report: reports.ReserveReport) -> ReserveOut:
    """The reserve as the API's JSON document."""
    currency = report.currency
    return ReserveOut(
        as_of=report.as_of,
        lookback_days=report.lookback_days,
        hold_days=report.hold_days,
        currency=currency,
        rows=[
            ReserveRow(
                sku=r.sku,
                units_sold=r.units_sold,
                units_returned=r.units_returned,
                return_rate=_rate_text(r.return_rate),
                rate_low=_rate_text(r.rate_low),
                rate_high=_rate_text(r.rate_high),
                loss_per_return=MoneyOut.from_minor(r.loss_per_return, currency),
                reserve_per_unit=MoneyOut.from_minor(r.reserve_per_unit, currency),
                units_sold_hold=r.units_sold_hold,
                reserve=MoneyOut.from_minor(r.reserve, currency),
            )
            for r in report.rows
        ],
        total_reserve=MoneyOut.from_minor(report.total_reserve, currency),
        missing_rates=missing_rates_out(report.missing_rates),
    )


def money_at_risk_json(report: reports.MoneyAtRiskReport) -> Iterator[str]:
    """The report as the API's JSON document, its ``items`` written as they arrive."""

    def money(minor: int, currency: str) -> dict[str, str]:
        return MoneyOut.from_minor(minor, currency).model_dump()

    currency = report.currency
    head = {
        "as_of": report.as_of.isoformat(),
        "currency": currency,
        "buckets": [
            AtRiskBucket(
                age=b.age,
                refunds=b.refunds,
                not_received_units=b.not_received_units,
                not_received=MoneyOut.from_minor(b.not_received, currency),
                not_inspected_units=b.not_inspected_units,
                not_inspected=MoneyOut.from_minor(b.not_inspected, currency),
            ).model_dump(mode="json")
            for b in report.buckets
        ],
        "total_not_received": money(report.total_not_received, currency),
        "total_not_inspected": money(report.total_not_inspected, currency),
    }
    yield _dumps(head)[:-1] + ',"items":['
    for n, i in enumerate(report.items()):
        item = {
            "refund_id": str(i.refund_id),
            "return_id": str(i.return_id),
            "return_line_id": str(i.return_line_id),
            "sku": i.sku,
            "settled_on": i.settled_on.isoformat(),
            "age_days": i.age_days,
            "age": i.age,
            "not_received_units": i.exposure.not_received_units,
            "not_received": money(i.exposure.not_received, i.currency),
            "not_inspected_units": i.exposure.not_inspected_units,
            "not_inspected": money(i.exposure.not_inspected, i.currency),
        }
        yield ("," if n else "") + _dumps(item)
    # Asked for after the items: the statement behind them is read to its end first.
    missing = [m.model_dump(mode="json") for m in missing_rates_out(report.missing_rates())]
    yield '],"missing_rates":' + _dumps(missing) + "}"


# --- return-risk reserve ------------------------------------------------------------------

RESERVE_COLUMNS = [
    "sku",
    "units_sold",
    "units_returned",
    "return_rate",
    "rate_low",
    "rate_high",
    "loss_per_return",
    "reserve_per_unit",
    "units_sold_hold",
    "reserve",
    "currency",
]


def reserve_table(report: reports.ReserveReport) -> Iterator[Line]:
    """The header, one line per SKU (largest reserve first, as the report sorts them), then
    ``TOTAL``: the units summed and the reserve to hold."""
    cur = report.currency
    yield list(RESERVE_COLUMNS)
    for r in report.rows:
        yield [
            r.sku,
            r.units_sold,
            r.units_returned,
            _rate(r.return_rate),
            _rate(r.rate_low),
            _rate(r.rate_high),
            _money(r.loss_per_return, cur),
            _money(r.reserve_per_unit, cur),
            r.units_sold_hold,
            _money(r.reserve, cur),
            cur,
        ]
    rows = report.rows
    yield [
        "TOTAL",
        sum(r.units_sold for r in rows),
        sum(r.units_returned for r in rows),
        None,
        None,
        None,
        None,
        None,
        sum(r.units_sold_hold for r in rows),
        _money(report.total_reserve, cur),
        cur,
    ]


def reserve_csv(report: reports.ReserveReport) -> Iterator[str]:
    """The reserve as CSV: a header, one line per SKU, a ``TOTAL`` line."""
    return csv_chunks(reserve_table(report))


def write_reserve_xlsx(report: reports.ReserveReport, out: IO[bytes]) -> None:
    """The reserve as XLSX: a "Reserve" sheet (the CSV's table) and, when any amount was
    left out for lack of a rate, a "Missing rates" sheet."""
    book = Workbook()
    table = reserve_table(report)
    append = book.sheet("Reserve", [str(c) for c in next(table)])
    for line in table:
        append(line)
    book.missing_rates(report.missing_rates)
    book.save(out)


# --- money at risk ------------------------------------------------------------------------

_AT_RISK = ["not_received_units", "not_received", "not_inspected_units", "not_inspected"]
_REFUND_LINE = ["settled_on", "age_days", "sku", "refund_id", "return_id", "return_line_id"]
# XLSX: the buckets (base currency) on one sheet, the refund lines (their own currency) on
# another. CSV has one table for both, told apart by ``kind``: ``bucket`` lines, a
# ``total`` line, then one ``refund_line`` per refund and return line at risk.
BUCKET_COLUMNS = ["age", "refunds", *_AT_RISK, "currency"]
REFUND_LINE_COLUMNS = ["age", *_AT_RISK, "currency", *_REFUND_LINE]
MONEY_AT_RISK_COLUMNS = ["kind", "age", "refunds", *_AT_RISK, "currency", *_REFUND_LINE]


def money_at_risk_buckets(report: reports.MoneyAtRiskReport) -> Iterator[Line]:
    """Per age bucket, then ``TOTAL``: refunds, units and amounts, in the base currency."""
    cur = report.currency
    for b in report.buckets:
        nr, ni = _money(b.not_received, cur), _money(b.not_inspected, cur)
        yield [b.age, b.refunds, b.not_received_units, nr, b.not_inspected_units, ni, cur]
    buckets = report.buckets
    yield [
        "TOTAL",
        sum(b.refunds for b in buckets),
        sum(b.not_received_units for b in buckets),
        _money(report.total_not_received, cur),
        sum(b.not_inspected_units for b in buckets),
        _money(report.total_not_inspected, cur),
        cur,
    ]


def money_at_risk_refund_lines(report: reports.MoneyAtRiskReport) -> Iterator[Line]:
    """Each refund and return line at risk, oldest first, in the refund's currency."""
    for i in report.items():
        e, cur = i.exposure, i.currency
        yield [
            i.age,
            e.not_received_units,
            _money(e.not_received, cur),
            e.not_inspected_units,
            _money(e.not_inspected, cur),
            cur,
            i.settled_on,
            i.age_days,
            i.sku,
            str(i.refund_id),
            str(i.return_id),
            str(i.return_line_id),
        ]


def money_at_risk_table(report: reports.MoneyAtRiskReport) -> Iterator[Line]:
    """The CSV's one table: header, buckets, total, refund lines (as they arrive)."""
    yield list(MONEY_AT_RISK_COLUMNS)
    blank: Line = [None] * len(_REFUND_LINE)
    for line in money_at_risk_buckets(report):
        if line[0] == "TOTAL":
            yield ["total", None, *line[1:], *blank]
        else:
            yield ["bucket", *line, *blank]
    for line in money_at_risk_refund_lines(report):
        yield ["refund_line", line[0], None, *line[1:]]


def money_at_risk_csv(report: reports.MoneyAtRiskReport) -> Iterator[str]:
    """Money at risk as CSV (see :data:`MONEY_AT_RISK_COLUMNS`)."""
    return csv_chunks(money_at_risk_table(report))


def write_money_at_risk_xlsx(report: reports.MoneyAtRiskReport, out: IO[bytes]) -> None:
    """Money at risk as XLSX: "Money at risk" (the buckets and their total, base currency),
    "Refunds at risk" (one row per refund and return line) and, when any refund was left
    out for lack of a rate, "Missing rates"."""
    book = Workbook()
    append = book.sheet("Money at risk", BUCKET_COLUMNS)
    for line in money_at_risk_buckets(report):
        append(line)
    append = book.sheet("Refunds at risk", REFUND_LINE_COLUMNS)
    for line in money_at_risk_refund_lines(report):
        append(line)
    book.missing_rates(report.missing_rates())
    book.save(out)
