"""Import orders from a CSV file with one row per order line.

Every order is validated as a whole and written in its own transaction through
``upsert_order``, so a bad row rejects exactly its own order: the good orders are
imported, and no order is ever half-written or loses lines it already had.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from returnguard.auth.models import Organization
from returnguard.auth.service import Actor
from returnguard.errors import InvalidInput, NotFound, ReturnGuardError
from returnguard.kit.db import Database
from returnguard.orders import repository as repo
from returnguard.orders.schemas import OrderIn
from returnguard.orders.service import upsert_order

COLUMNS = (
    "channel",
    "order_id",
    "ordered_at",
    "delivered_at",
    "currency",
    "captured",
    "shipping",
    "buyer_id",
    "buyer_email",
    "buyer_name",
    "buyer_country",
    "ship_to_country",
    "payment_reference",
    "line_id",
    "sku",
    "title",
    "quantity",
    "unit_price",
    "tax",
    "discount",
    "asin",
    "category",
)
REQUIRED_COLUMNS = (
    "channel",
    "order_id",
    "ordered_at",
    "currency",
    "captured",
    "line_id",
    "sku",
    "quantity",
    "unit_price",
)
# Values that describe the order rather than one line; every row of an order repeats them.
ORDER_COLUMNS = (
    "ordered_at",
    "delivered_at",
    "currency",
    "captured",
    "shipping",
    "buyer_id",
    "buyer_email",
    "buyer_name",
    "buyer_country",
    "ship_to_country",
    "payment_reference",
)
AMOUNT_COLUMNS = frozenset({"captured", "shipping", "unit_price", "tax", "discount"})
# The two columns write_errors_csv adds; accepted and ignored so that a corrected
# errors file can be imported again as it is.
ERROR_COLUMNS = ("line", "reason")

# Problems that concern a whole row or a whole order rather than one column.
ROW_FIELD = "row"
ORDER_FIELD = "order_id"

_ORDER_FIELD_COLUMNS = {
    "channel": "channel",
    "external_id": "order_id",
    "currency": "currency",
    "ordered_at": "ordered_at",
    "delivered_at": "delivered_at",
    "ship_to_country": "ship_to_country",
    "payment_reference": "payment_reference",
    "shipping": "shipping",
    "shipping_tax": "shipping",
    "captured": "captured",
    "lines": "line_id",
}
_BUYER_FIELD_COLUMNS = {
    "external_id": "buyer_id",
    "email": "buyer_email",
    "name": "buyer_name",
    "country": "buyer_country",
}
_LINE_FIELD_COLUMNS = {
    "external_id": "line_id",
    "sku": "sku",
    "title": "title",
    "quantity": "quantity",
    "unit_price": "unit_price",
    "tax": "tax",
    "discount": "discount",
    "asin": "asin",
    "category": "category",
}
_WHOLE_NUMBER = re.compile(r"-?[0-9]+")
_FIELD_ORDER = {name: i for i, name in enumerate((ROW_FIELD, *COLUMNS))}


@dataclass(frozen=True)
class Problem:
    """Why a row was rejected: its physical line in the file (header = 1) and column."""

    line: int
    field: str
    message: str


@dataclass
class _Row:
    line: int
    values: dict[str, str]  # column -> cell text, stripped
    extra: list[str]  # cells beyond the header, kept for the errors file
    shape_problem: str | None = None


@dataclass
class _Table:
    columns: list[str]  # the file's data columns, in the file's order
    delimiter: str
    rows: list[_Row]


@dataclass
class ImportReport:
    """What an import did; ``rows_read == rows_imported + rows_rejected`` always holds."""

    columns: list[str] = field(default_factory=lambda: list(COLUMNS))
    delimiter: str = ","
    rows_read: int = 0
    rows_imported: int = 0
    orders_created: int = 0
    orders_updated: int = 0
    orders_unchanged: int = 0
    problems: list[Problem] = field(default_factory=list)
    _rejected: list[tuple[_Row, list[Problem]]] = field(
        default_factory=list, init=False, repr=False
    )

    @property
    def rows_rejected(self) -> int:
        return len(self._rejected)

    def summary(self) -> str:
        return (
            f"read {self.rows_read} rows: imported {self.rows_imported}, "
            f"rejected {self.rows_rejected} "
            f"(orders created {self.orders_created}, updated {self.orders_updated})"
        )

    def write_errors_csv(self, path: Path) -> None:
        """Write the rejected rows as they were read, preceded by their line and reason."""
        with path.open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, delimiter=self.delimiter)
            writer.writerow([*ERROR_COLUMNS, *self.columns])
            for row, problems in sorted(self._rejected, key=lambda item: item[0].line):
                reason = "; ".join(f"{p.field}: {p.message}" for p in problems)
                cells = [row.values.get(column, "") for column in self.columns]
                writer.writerow([row.line, reason, *cells, *row.extra])

    def _reject(self, row: _Row, problems: list[Problem]) -> None:
        self._rejected.append((row, problems))
        self.problems.extend(problems)


def import_orders_csv(
    db: Database,
    organization_id: uuid.UUID,
    path: Path,
    *,
    console: Console | None = None,
) -> ImportReport:
    """Import every valid order in the file; an order with any bad row is rejected whole."""
    table = _read_table(path)
    with db.session() as session:
        if session.get(Organization, organization_id) is None:
            raise NotFound(f"organization {organization_id} not found")
        channels = {channel.code for channel in repo.channels(session, organization_id)}
    actor = Actor.system(organization_id, "csv import")
    report = ImportReport(
        columns=table.columns, delimiter=table.delimiter, rows_read=len(table.rows)
    )
    groups = _group(table.rows)
    with _progress(console, len(groups)) as advance:
        for rows in groups:
            _import_order(db, actor, rows, channels, report)
            advance()
    report.problems.sort(key=lambda p: (p.line, _field_order(p)))
    if report.rows_read != report.rows_imported + report.rows_rejected:
        raise RuntimeError(f"import lost track of rows: {report.summary()}")
    return report


def _read_table(path: Path) -> _Table:
    try:
        # utf-8-sig drops the byte-order mark Excel puts at the start of "CSV UTF-8".
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"{path.name} is not UTF-8 text (invalid byte at offset {exc.start}); "
            "save it as CSV UTF-8"
        ) from None
    if not text.strip():
        raise InvalidInput(
            f"{path.name} is empty; the first line must be a header row naming the columns "
            f"({', '.join(REQUIRED_COLUMNS)} are required)"
        )
    first_line = text.splitlines()[0]
    # Where the comma is the decimal separator, spreadsheets separate cells with ";".
    delimiter = ";" if ";" in first_line and "," not in first_line else ","
    # strict: a broken quote would otherwise silently swallow the rest of the file.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: list[str] = []
    rows: list[_Row] = []
    start = 1
    try:
        header = [name.strip().lower() for name in next(reader)]
        indexes = _check_header(header)
        start = reader.line_num + 1
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue  # blank lines and spreadsheets' trailing ",,,," rows
            row = _Row(
                line,
                {c: cells[i].strip() for c, i in indexes.items() if i < len(cells)},
                cells[len(header) :],
            )
            if len(cells) != len(header):
                # Kept, so the order it belongs to is rejected rather than imported without it.
                row.shape_problem = f"has {len(cells)} cells but the header has {len(header)}"
            rows.append(row)
    except csv.Error as exc:
        raise InvalidInput(f"line {start}: not valid CSV: {exc}") from None
    return _Table(list(indexes), delimiter, rows)


def _check_header(header: list[str]) -> dict[str, int]:
    """Map each data column to its index, or raise InvalidInput naming every header problem."""
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    # An unknown column is most often a typo; ignoring it would silently drop its data.
    unknown = [n for n in header if n and n not in COLUMNS and n not in ERROR_COLUMNS]
    repeated = sorted({n for n in header if n and header.count(n) > 1})
    errors = (
        [{"field": name, "message": "required column is missing"} for name in missing]
        + [{"field": name, "message": "unknown column"} for name in unknown]
        + [{"field": name, "message": "column appears more than once"} for name in repeated]
    )
    if errors:
        parts = []
        if missing:
            parts.append(f"missing required column(s): {', '.join(missing)}")
        if unknown:
            parts.append(
                f"unknown column(s): {', '.join(unknown)} (the columns are {', '.join(COLUMNS)})"
            )
        if repeated:
            parts.append(f"column(s) named more than once: {', '.join(repeated)}")
        raise InvalidInput("header row: " + "; ".join(parts), errors=errors)
    return {name: i for i, name in enumerate(header) if name in COLUMNS}


def _group(rows: list[_Row]) -> list[list[_Row]]:
    """Rows by (channel, order_id) in order of first appearance; rows need not be adjacent."""
    groups: dict[tuple[str, str] | int, list[_Row]] = {}
    for row in rows:
        channel, order_id = row.values.get("channel", ""), row.values.get("order_id", "")
        # A row without its key cannot be matched to an order: it stands (and fails) alone.
        key: tuple[str, str] | int = (channel, order_id) if channel and order_id else row.line
        groups.setdefault(key, []).append(row)
    return list(groups.values())


def _field_order(problem: Problem) -> int:
    return _FIELD_ORDER.get(problem.field, len(_FIELD_ORDER))


class _Problems:
    """Problems per (line, column); identical messages are kept once."""

    def __init__(self) -> None:
        self.cells: dict[tuple[int, str], list[str]] = {}

    def add(self, line: int, column: str, message: str) -> None:
        messages = self.cells.setdefault((line, column), [])
        if message not in messages:
            messages.append(message)

    def for_line(self, line: int) -> list[Problem]:
        found = [
            Problem(ln, column, message)
            for (ln, column), messages in self.cells.items()
            if ln == line
            for message in messages
        ]
        return sorted(found, key=_field_order)


def _import_order(
    db: Database, actor: Actor, rows: list[_Row], channels: set[str], report: ImportReport
) -> None:
    problems = _Problems()
    order = _build_order(rows, channels, problems)
    if order is not None:
        try:
            with db.session() as session:
                result = upsert_order(session, actor, order)
        except ReturnGuardError as exc:
            _add_service_problems(exc, rows, problems)
        else:
            report.rows_imported += len(rows)
            if result.created:
                report.orders_created += 1
            elif result.changed:
                report.orders_updated += 1
            else:
                report.orders_unchanged += 1
            return
    first_bad = min(line for line, _ in problems.cells)
    see = f"order {rows[0].values.get('order_id', '')} rejected: see line {first_bad}"
    for row in rows:
        report._reject(row, problems.for_line(row.line) or [Problem(row.line, ORDER_FIELD, see)])


class _CellError(ValueError):
    pass


def _build_order(rows: list[_Row], channels: set[str], problems: _Problems) -> OrderIn | None:
    """Validate one order's rows; return the order, or None with every problem recorded."""
    first = rows[0]
    line_numbers = [row.line for row in rows]
    for row in rows:
        if row.shape_problem is not None:
            problems.add(row.line, ROW_FIELD, row.shape_problem)
    if problems.cells:
        # Its cells may sit under the wrong columns: checking them would only mislead.
        return None
    for column in ORDER_COLUMNS:
        expected = _comparable(first, column)
        for row in rows[1:]:
            if _comparable(row, column) != expected:
                problems.add(
                    row.line,
                    column,
                    f"{row.values.get(column, '')!r} differs from {first.values.get(column, '')!r}"
                    f" on line {first.line}; it must be the same on every row of the order",
                )
    channel = first.values.get("channel", "")
    if channel and channel not in channels:
        for line in line_numbers:
            problems.add(line, "channel", f"no channel with code {channel!r}")

    def parse(
        row_lines: Sequence[int], column: str, value: str, parser: Callable[[str], Any]
    ) -> Any:
        if not value:
            return None
        try:
            return parser(value)
        except _CellError as exc:
            for line in row_lines:
                problems.add(line, column, str(exc))
            return None

    values = first.values
    currency = values.get("currency", "")
    buyer = _compact(
        external_id=values.get("buyer_id"),
        email=values.get("buyer_email"),
        name=values.get("buyer_name"),
        country=values.get("buyer_country"),
    )
    data = _compact(
        channel=channel,
        external_id=values.get("order_id"),
        currency=currency,
        ordered_at=parse(line_numbers, "ordered_at", values.get("ordered_at", ""), _timestamp),
        delivered_at=parse(
            line_numbers, "delivered_at", values.get("delivered_at", ""), _timestamp
        ),
        ship_to_country=values.get("ship_to_country"),
        payment_reference=values.get("payment_reference"),
        buyer=buyer or None,
        shipping=_money(values.get("shipping", ""), currency),
        captured=_money(values.get("captured", ""), currency),
        lines=[
            _compact(
                external_id=row.values.get("line_id"),
                sku=row.values.get("sku"),
                title=row.values.get("title"),
                quantity=parse([row.line], "quantity", row.values.get("quantity", ""), _quantity),
                unit_price=_money(row.values.get("unit_price", ""), currency),
                tax=_money(row.values.get("tax", ""), currency),
                discount=_money(row.values.get("discount", ""), currency),
                asin=row.values.get("asin"),
                category=row.values.get("category"),
            )
            for row in rows
        ],
    )
    # The cells we already found wrong keep our clearer message; pydantic would only
    # repeat them as "is required" for the value we had to leave out.
    already = set(problems.cells)
    try:
        order = OrderIn.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            message = _message(error)
            for line, column in _locate(error["loc"], rows):
                if (line, column) not in already:
                    problems.add(line, column, message)
        return None
    # The service checks these too; checking here reports them alongside the other problems.
    for problem in order.problems():
        for line, column in _locate(_path(problem["field"]), rows):
            if (line, column) not in already:
                problems.add(line, column, problem["message"])
    return None if problems.cells else order


def _add_service_problems(exc: ReturnGuardError, rows: list[_Row], problems: _Problems) -> None:
    if not exc.errors:
        for row in rows:
            problems.add(row.line, ORDER_FIELD, exc.detail)
        return
    for error in exc.errors:
        for line, column in _locate(_path(str(error.get("field", ""))), rows):
            problems.add(line, column, str(error.get("message", exc.detail)))


def _path(dotted: str) -> tuple[int | str, ...]:
    """'lines.0.quantity' -> ('lines', 0, 'quantity'), the shape of a pydantic error loc."""
    return tuple(int(part) if part.isdigit() else part for part in dotted.split("."))


def _locate(loc: Sequence[int | str], rows: list[_Row]) -> list[tuple[int, str]]:
    """The (line, CSV column) cells a pydantic or service error path points at."""
    if len(loc) >= 2 and loc[0] == "lines" and isinstance(loc[1], int) and loc[1] < len(rows):
        targets, rest, columns = [rows[loc[1]].line], loc[2:], _LINE_FIELD_COLUMNS
    else:
        # An order-level value is repeated on every row of the order, so every row is wrong.
        targets, rest, columns = [row.line for row in rows], loc, _ORDER_FIELD_COLUMNS
    head = rest[0] if rest else None
    if not isinstance(head, str):
        column = "line_id" if columns is _LINE_FIELD_COLUMNS else ORDER_FIELD
    elif head == "buyer":
        sub = rest[1] if len(rest) > 1 else "external_id"
        column = _BUYER_FIELD_COLUMNS.get(str(sub), "buyer_id")
    elif len(rest) > 1 and rest[1] == "currency" and columns.get(head) in AMOUNT_COLUMNS:
        column = "currency"  # an amount's currency is the order's currency column
    else:
        column = columns.get(head, ORDER_FIELD)
    return [(line, column) for line in targets]


def _message(error: ErrorDetails) -> str:
    if error["type"] == "missing":
        return "is required"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _comparable(row: _Row, column: str) -> str:
    value = row.values.get(column, "")
    return _decimal_point(value) if column in AMOUNT_COLUMNS else value


def _decimal_point(text: str) -> str:
    """'19,99' -> '19.99'. Anything else with a comma (thousands separators) stays invalid."""
    if text.count(",") == 1 and "." not in text:
        return text.replace(",", ".")
    return text


def _money(text: str, currency: str) -> dict[str, str] | None:
    # The amount stays a string: MoneyIn checks it against the currency's precision.
    if not text:
        return None
    return _compact(amount=_decimal_point(text), currency=currency)


def _quantity(text: str) -> int:
    if not _WHOLE_NUMBER.fullmatch(text):
        raise _CellError(f"must be a whole number of units, got {text!r}")
    try:
        return int(text)
    except ValueError:  # Python refuses to convert thousands of digits
        raise _CellError(f"{text[:20]}… is too large") from None


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise _CellError(
            f"{text!r} is not an ISO 8601 date or timestamp such as 2026-10-01 "
            "or 2026-10-01T10:00:00+02:00"
        ) from None
    # Exports without an offset are in UTC by this format's definition; a date is midnight.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _compact(**values: Any) -> dict[str, Any]:
    """Leave out empty cells, so the schema's defaults and 'required' checks apply."""
    return {k: v for k, v in values.items() if v is not None and v != ""}


@contextmanager
def _progress(console: Console | None, total: int) -> Iterator[Callable[[], None]]:
    # Off a terminal (a log, a pipe) a progress bar is noise; the summary line says it all.
    if console is None or not console.is_terminal:
        yield lambda: None
        return
    with Progress(
        TextColumn("importing orders"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("orders", total=total)
        yield lambda: progress.advance(task)
