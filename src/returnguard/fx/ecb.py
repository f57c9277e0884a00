"""The European Central Bank's euro reference rates, read from its CSV files.

Both of the ECB's layouts are read:

- the history, ``eurofxref-hist.csv``: a header ``Date,USD,JPY,BGN,…,`` (the trailing
  comma makes an empty last column), then one row per day, ``2026-11-27,1.0562,160.12,…,``,
  with ``N/A`` where a currency had no rate that day;
- the day's file, ``eurofxref.csv``: ``Date, USD, JPY, …`` with a space after each comma
  and the day written out, ``27 November 2026, 1.0562, …``.

The history keeps a column for every currency the ECB ever quoted, including those that
have since been replaced by the euro or redenominated (CYP, EEK, BGN, HRK, ROL, TRL …).
No amount can be recorded in those any more, so their columns are skipped and named in
``EcbFile.skipped``; a code that was never a currency is a problem like any other.

A cell is how many units of its column's currency one euro bought that day. Nothing here
touches the database: the result holds the rates and every problem found, each naming
its line and column, so that a caller can refuse a file with any problem as a whole.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache

from babel import Locale
from babel.numbers import get_territory_currencies

from returnguard.kit.money import MoneyError, check_currency, known_currencies

BASE = "EUR"
NO_RATE = "N/A"
# Enough to show what is wrong with a file without drowning it: the count says the rest.
MAX_PROBLEMS = 50
# ECB rates have at most six significant digits; this bound keeps every accepted rate
# exact within Decimal's default 28-digit precision and inside the 40-character column.
MAX_RATE_CHARS = 24

_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_WRITTEN_DAY = re.compile(r"(\d{1,2}) +([A-Za-z]+) +(\d{4})")
# English names, never the process locale's (strptime's %B would follow the locale).
_MONTH_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_MONTHS = {
    key: number
    for number, name in enumerate(_MONTH_NAMES, start=1)
    for key in (name.lower(), name[:3].lower())
}
_NUMBER = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


@dataclass(frozen=True, slots=True)
class EcbRate:
    """One euro bought ``rate`` units of ``quote`` on ``day``."""

    day: date
    quote: str
    rate: Decimal
    base: str = BASE


@dataclass(frozen=True, slots=True)
class EcbProblem:
    line: int
    column: str | None  # the currency code, "Date", or the column's position
    message: str

    def __str__(self) -> str:
        column = "" if self.column is None else f", column {self.column}"
        return f"line {self.line}{column}: {self.message}"


@dataclass
class EcbFile:
    """What a file holds: its rates, and its problems (the first MAX_PROBLEMS of them)."""

    rates: list[EcbRate] = field(default_factory=list)
    problems: list[EcbProblem] = field(default_factory=list)
    problem_count: int = 0
    skipped: list[str] = field(default_factory=list)  # retired currencies' columns

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def problem(self, line: int, column: str | None, message: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(EcbProblem(line, column, message))


@cache
def retired_currencies() -> frozenset[str]:
    """Currencies legal tender somewhere since the euro began (1999) but no longer."""
    territories = [str(t) for t in Locale("en").territories if len(str(t)) == 2]
    since_euro = {
        code
        for territory in territories
        for code in get_territory_currencies(
            territory, start_date=date(1999, 1, 1), end_date=datetime.now(UTC).date(), tender=True
        )
    }
    return frozenset(since_euro - known_currencies())


def parse_day(text: str) -> date | None:
    """``2026-11-27`` (the history) or ``27 November 2026`` (the day's file)."""
    try:
        if _ISO_DAY.fullmatch(text):
            return date.fromisoformat(text)
        written = _WRITTEN_DAY.fullmatch(text)
        if written:
            month = _MONTHS.get(written[2].lower())
            if month is not None:
                return date(int(written[3]), month, int(written[1]))
    except ValueError:
        pass  # a day that does not exist, such as 2026-02-30
    return None


def _header(row: list[str], line: int, found: EcbFile) -> list[str | None] | None:
    """The currency of each column after Date; None for a column that cannot be read."""
    cells = [cell.strip() for cell in row]
    while cells and not cells[-1]:
        cells.pop()  # the history's trailing comma
    if not cells or cells[0].lower() != "date":
        first = cells[0] if cells else ""
        found.problem(line, "1", f"the first column must be Date, not {first!r}")
        return None
    columns: list[str | None] = []
    for position, cell in enumerate(cells[1:], start=2):
        columns.append(_column(cell, str(position), columns, line, found))
    if not columns:
        found.problem(line, None, "the header names no currency after Date")
        return None
    return columns


def _column(
    cell: str, position: str, before: list[str | None], line: int, found: EcbFile
) -> str | None:
    if not cell:
        found.problem(line, position, "has no currency code")
        return None
    try:
        code = check_currency(cell)
    except MoneyError as exc:
        retired = cell.upper()
        if retired not in retired_currencies():
            found.problem(line, cell, str(exc))
        elif retired in found.skipped:
            found.problem(line, cell, "appears twice in the header")
        else:
            found.skipped.append(retired)
        return None
    if code == BASE:
        found.problem(line, cell, "rates are per euro; a EUR column cannot be read")
        return None
    if code in before:
        found.problem(line, cell, "appears twice in the header")
        return None
    return code


def _rate(text: str) -> Decimal | str:
    """The rate in a cell, or why it is not one."""
    if not text:
        return f"is empty; write {NO_RATE} when there is no rate"
    if len(text) > MAX_RATE_CHARS or not _NUMBER.fullmatch(text):
        shown = text if len(text) <= MAX_RATE_CHARS else text[:MAX_RATE_CHARS] + "…"
        return f"{shown!r} is not a decimal number such as 1.0856"
    value = Decimal(text)
    if value <= 0:
        return f"{text!r} is not a rate; it must be more than zero"
    return value


def parse(text: str) -> EcbFile:
    """Every rate in an ECB reference-rate CSV file, and every problem with its place."""
    found = EcbFile()
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""), skipinitialspace=True)
    columns: list[str | None] | None = None
    days: dict[date, int] = {}
    header_line = 0
    try:
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if columns is None:
                header_line = line
                columns = _header(row, line, found)
                if columns is None:
                    return found  # without its header no cell can be read
                continue
            _row(row, line, columns, days, found)
    except csv.Error as exc:
        found.problem(reader.line_num, None, f"is not CSV: {exc}")
        return found
    if columns is None:
        found.problem(1, None, "the file is empty; expected a header such as Date,USD,JPY")
    elif found.ok and not found.rates:
        found.problem(header_line, None, f"the file has no rates, only a header and {NO_RATE}")
    return found


def _row(
    row: list[str],
    line: int,
    columns: list[str | None],
    days: dict[date, int],
    found: EcbFile,
) -> None:
    raw_day = row[0].strip()
    day = parse_day(raw_day)
    if day is None:
        expected = "a day such as 2026-11-27 or 27 November 2026"
        found.problem(line, "Date", f"{raw_day!r} is not {expected}")
    elif day in days:
        found.problem(line, "Date", f"{day.isoformat()} is also on line {days[day]}")
        day = None
    else:
        days[day] = line
    cells = row[1:]
    if len(cells) < len(columns):
        missing = columns[len(cells)] or str(len(cells) + 2)
        found.problem(line, missing, f"the row ends here; write {NO_RATE} where there is no rate")
    elif any(cell.strip() for cell in cells[len(columns) :]):
        extra = str(len(columns) + 2)
        found.problem(line, extra, "the row has more cells than the header has columns")
    rates = found.rates
    for quote, cell in zip(columns, cells, strict=False):
        if quote is None:
            continue  # the header's problem is reported once, not on every row
        cell = cell.strip()
        if cell.upper() == NO_RATE:
            continue
        value = _rate(cell)
        if isinstance(value, str):
            found.problem(line, quote, value)
        elif day is not None:
            rates.append(EcbRate(day, quote, value))
