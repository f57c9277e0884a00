"""Import orders from a CSV file with one row per order line.

Every order is validated as a whole, so a bad row rejects exactly its own order. The file
is read twice and never held: a first pass checks that it can be read to its end as an
orders file (UTF-8, quoting, header) before anything is written, and notes which orders
have rows in more than one place; the second pass hands each order on as soon as its
last row is read. Valid orders are written in chunks (``CHUNK_SIZE`` orders, one
transaction each) by ``bulk.upsert_orders``, the set-based twin of ``upsert_order``: the
good orders are imported, and no order is ever half-written or loses lines it already
had. A writer thread writes one chunk while the next is read and checked; outcomes are
counted in file order, as if one thread did both.

Most orders are built by a quick check of plainly valid cells (``_Validated.quick``);
the rest go through pydantic, which decides and words every rejection.
"""

from __future__ import annotations

import codecs
import csv
import gc
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import Any, Generic, TextIO, TypeVar, cast

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import text
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from returnguard.auth.models import Organization
from returnguard.auth.service import Actor
from returnguard.errors import InvalidInput, NotFound, ReturnGuardError
from returnguard.kit.db import Database
from returnguard.kit.money import MoneyError, check_currency, minor_digits
from returnguard.kit.schemas import MAX_MINOR_UNITS, CountryCode, MoneyIn
from returnguard.orders import repository as repo
from returnguard.orders.bulk import OrderOutcome, Outcome, upsert_orders
from returnguard.orders.models import Channel
from returnguard.orders.schemas import BuyerIn, OrderIn, OrderLineIn

log = logging.getLogger("returnguard.orders.import")

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

CHUNK_SIZE = 2_000
"""Orders written per transaction. A chunk also ends at ``CHUNK_LINES_PER_ORDER`` times
as many lines, so orders with very many lines keep chunks (and memory) bounded too."""
CHUNK_LINES_PER_ORDER = 4

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
# What the quick path (_Validated.quick) accepts without pydantic: plain ASCII forms that
# are valid by every rule of the schemas; anything else goes the full way.
_PLAIN_AMOUNT = re.compile(r"([0-9]{1,15})(?:\.([0-9]{1,15}))?")
_PLAIN_QUANTITY = re.compile(r"[1-9][0-9]{0,5}")
_PLAIN_ASIN = re.compile(r"[A-Z0-9]{10}")
_PLAIN_CODE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_COUNTRY: TypeAdapter[str] = TypeAdapter(CountryCode)
MAX_QUANTITY = 100_000
MAX_LINES = 1_000
_FIELD_ORDER = {name: i for i, name in enumerate((ROW_FIELD, *COLUMNS))}


@dataclass(frozen=True)
class Problem:
    """Why a row was rejected: its physical line in the file (header = 1) and column."""

    line: int
    field: str
    message: str


@dataclass(slots=True)
class _Row:
    line: int
    values: dict[str, str]  # column -> cell text, stripped
    extra: list[str]  # cells beyond the header, kept for the errors file
    shape_problem: str | None = None


OrderKey = tuple[str, str]  # channel code, order id, as written in the file


@dataclass
class _Layout:
    """What the first pass learnt about the file."""

    columns: list[str]  # the file's data columns, in the file's order
    delimiter: str
    indexes: dict[str, int]  # data column -> cell index
    width: int  # cells in the header row
    rows: int = 0  # data rows, blank ones not counted
    # For each order whose rows lie in more than one run of adjacent rows, keyed by the
    # hash of its key: the number of its last run. Its rows wait until then.
    last_run: dict[int, int] = field(default_factory=dict)


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

    def _finish(self) -> None:
        self.problems.sort(key=lambda p: (p.line, _field_order(p)))


class ImportInterrupted(ReturnGuardError):
    """The database failed in a way retrying the order alone cannot help (it went away,
    the disk is full): the import stopped. ``report`` counts what was done before."""

    status = 503
    code = "import_interrupted"
    title = "Import interrupted"

    def __init__(self, detail: str, report: ImportReport) -> None:
        super().__init__(detail)
        self.report = report


def import_orders_csv(
    db: Database,
    organization_id: uuid.UUID,
    path: Path,
    *,
    console: Console | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> ImportReport:
    """Import every valid order in the file; an order with any bad row is rejected whole.
    Chunks of ``chunk_size`` orders are committed one after the other."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    with _fewer_collections():
        return _import(db, organization_id, path, console, chunk_size)


_GC_LOCK = threading.Lock()
_GC_IMPORTS = 0
_GC_SAVED: tuple[int, int, int] = (0, 0, 0)
# An import allocates millions of short-lived objects (cells, rows, models) that hold no
# reference cycles; at Python's default threshold (700) the cycle collector runs every few
# rows and walks everything alive each time, close to half of the import's CPU. While an
# import runs, it runs a hundred times less often (the garbage is freed by reference
# counting all the same).
_GC_GENERATION_0 = 70_000


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """The cycle collector's first threshold raised while any import runs (in this
    process); the thresholds as they were once the last one ends."""
    global _GC_IMPORTS, _GC_SAVED
    with _GC_LOCK:
        if _GC_IMPORTS == 0:
            _GC_SAVED = gc.get_threshold()
            gc.set_threshold(max(_GC_GENERATION_0, _GC_SAVED[0]), *_GC_SAVED[1:])
        _GC_IMPORTS += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _GC_IMPORTS -= 1
            if _GC_IMPORTS == 0:
                gc.set_threshold(*_GC_SAVED)


def _import(
    db: Database,
    organization_id: uuid.UUID,
    path: Path,
    console: Console | None,
    chunk_size: int,
) -> ImportReport:
    layout = _scan(path)
    with db.session(read_only=True) as session:
        if session.get(Organization, organization_id) is None:
            raise NotFound(f"organization {organization_id} not found")
        channels = {channel.code: channel for channel in repo.channels(session, organization_id)}
    actor = Actor.system(organization_id, "csv import")
    report = ImportReport(columns=layout.columns, delimiter=layout.delimiter)
    validated = _Validated()
    statistics = _Statistics(db, chunk_size)
    chunk = _Chunk(chunk_size)
    # One chunk is written (in its own transaction, by a writer thread) while the next is
    # read and checked: the database's work overlaps the file's instead of following it.
    # Chunks are written one after the other and counted in file order, and a chunk's
    # rejected rows count only once the chunk before it is done, as if one thread did it.
    writing: tuple[Future[list[OrderOutcome]], _Chunk] | None = None
    try:
        with (
            _progress(console, layout.rows) as advance,
            ThreadPoolExecutor(1, thread_name_prefix="import-writer") as writer,
        ):

            def settle() -> None:
                nonlocal writing
                if writing is None:
                    return
                future, done = writing
                writing = None
                _count_chunk(report, done, future)
                advance(done.rows)
                statistics.after(report.orders_created)

            def submit() -> None:
                nonlocal writing, chunk
                settle()
                chunk.count_rejected(report, advance)
                if chunk.groups:
                    future = writer.submit(_write_chunk, db, actor, channels, chunk)
                    writing = (future, chunk)
                chunk = _Chunk(chunk_size)

            for rows in _orders(path, layout):
                report.rows_read += len(rows)
                problems = _Problems()
                order = _build_order(rows, channels, problems, validated)
                if order is None:
                    chunk.reject(rows, problems)
                    continue
                chunk.add(rows, order)
                if chunk.full:
                    submit()
            submit()
            settle()
    except _Stopped as stopped:
        # Only what was done counts: the rows of the failed and the later orders are not
        # read as far as the report is concerned.
        report.rows_read = report.rows_imported + report.rows_rejected
        report._finish()
        raise ImportInterrupted(
            f"line {stopped.line}: the database failed ({_db_message(stopped.cause)}); "
            f"the import stopped there after {report.summary()}. Import the file again "
            "to finish: orders imported already are left unchanged",
            report,
        ) from stopped.cause
    report._finish()
    if report.rows_read != report.rows_imported + report.rows_rejected:
        raise RuntimeError(f"import lost track of rows: {report.summary()}")
    if report.rows_read != layout.rows:
        raise RuntimeError(f"read {layout.rows} rows but imported or rejected {report.rows_read}")
    return report


# --- reading the file ------------------------------------------------------------------


@contextmanager
def _text(path: Path) -> Iterator[TextIO]:
    """The file as text, BOM dropped, line endings kept; InvalidInput unless UTF-8."""
    try:
        # utf-8-sig drops the byte-order mark Excel puts at the start of "CSV UTF-8".
        with path.open(encoding="utf-8-sig", newline="") as f:
            yield f
    except UnicodeDecodeError:
        raise InvalidInput(
            f"{path.name} is not UTF-8 text (invalid byte at offset {_bad_byte(path)}); "
            "save it as CSV UTF-8"
        ) from None


def _bad_byte(path: Path) -> int:
    """The offset of the first byte that is not UTF-8 (the error path only)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with path.open("rb") as f:
        while block := f.read(1 << 16):
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                return offset - pending + exc.start
            offset += len(block)
    return offset


def _header(path: Path) -> _Layout:
    with _text(path) as f:
        # The first line decides the delimiter; blank lines before any text still make
        # an (empty) header row, and a file of nothing but blank lines is empty.
        lines: list[str] = []
        for text in f:
            lines.append(text)
            if text.strip():
                break
        else:
            raise InvalidInput(
                f"{path.name} is empty; the first line must be a header row naming the "
                f"columns ({', '.join(REQUIRED_COLUMNS)} are required)"
            )
        first_line = lines[0].rstrip("\r\n")
        # Where the comma is the decimal separator, spreadsheets separate cells with ";".
        delimiter = ";" if ";" in first_line and "," not in first_line else ","
        reader = csv.reader(chain(lines, f), delimiter=delimiter, strict=True)
        try:
            header = [name.strip().lower() for name in next(reader)]
        except csv.Error as exc:
            raise InvalidInput(f"line 1: not valid CSV: {exc}") from None
    indexes = _check_header(header)
    return _Layout(list(indexes), delimiter, indexes, len(header))


def _records(path: Path, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(line, cells) of each data row, blank rows skipped; InvalidInput for broken CSV."""
    with _text(path) as f:
        # strict: a broken quote would otherwise silently swallow the rest of the file.
        reader = csv.reader(f, delimiter=delimiter, strict=True)
        start = 1
        try:
            next(reader)
            start = reader.line_num + 1
            for cells in reader:
                line, start = start, reader.line_num + 1
                if not "".join(cells).strip():
                    continue  # blank lines and spreadsheets' trailing ",,,," rows
                yield line, cells
        except csv.Error as exc:
            raise InvalidInput(f"line {start}: not valid CSV: {exc}") from None


def _key(cells: list[str], channel: int, order_id: int) -> OrderKey | None:
    """The row's (channel, order_id); None when either is missing: such a row cannot be
    matched to an order, so it stands (and fails) alone."""
    code = cells[channel].strip() if channel < len(cells) else ""
    external = cells[order_id].strip() if order_id < len(cells) else ""
    return (code, external) if code and external else None


# A Bloom filter over the keys of the runs of adjacent rows, for the first pass: 2**27
# bits (16 MiB, of which the memory touched grows with the number of orders up to that)
# tell apart the orders seen before from the new ones without holding every key. A false
# "seen before" only makes the second pass hold an order's rows until its one run ends.
_SEEN_BITS = 1 << 27
_HASH_MASK = (1 << 64) - 1


def _scan(path: Path) -> _Layout:
    """The first pass: the header, the row count, and the orders whose rows are apart."""
    layout = _header(path)
    channel, order_id = layout.indexes["channel"], layout.indexes["order_id"]
    seen = bytearray(_SEEN_BITS // 8)
    mask = _SEEN_BITS - 1
    current: OrderKey | None = None
    run = -1
    for _, cells in _records(path, layout.delimiter):
        layout.rows += 1
        key = _key(cells, channel, order_id)
        if key == current:
            continue
        current = key
        if key is None:
            continue
        run += 1
        h = hash(key) & _HASH_MASK
        a, b = h & mask, (h >> 32) & mask
        if seen[a >> 3] & (1 << (a & 7)) and seen[b >> 3] & (1 << (b & 7)):
            layout.last_run[h] = run
        else:
            seen[a >> 3] |= 1 << (a & 7)
            seen[b >> 3] |= 1 << (b & 7)
    return layout


def _orders(path: Path, layout: _Layout) -> Iterator[list[_Row]]:
    """The second pass: each order's rows, in file order, once its last row is read.

    Rows of one order need not be adjacent; an order whose rows lie apart is held until
    its last run of rows (known from the first pass), every other order goes on at once,
    so memory follows how far apart an order's rows are, not the size of the file.
    """
    channel, order_id = layout.indexes["channel"], layout.indexes["order_id"]
    held: dict[OrderKey, list[_Row]] = {}
    held_by_hash: dict[int, set[OrderKey]] = {}
    current: OrderKey | None = None
    rows: list[_Row] = []
    run = -1

    def complete(key: OrderKey, group: list[_Row]) -> list[list[_Row]]:
        h = hash(key) & _HASH_MASK
        if key in held:
            group = held.pop(key) + group
        last = layout.last_run.get(h)
        if last is not None and last > run:
            held[key] = group
            held_by_hash.setdefault(h, set()).add(key)
            return []
        done = [group]
        # Keys of the same hash (a collision) waited for this, the hash's last run.
        waiting = held_by_hash.pop(h, None)
        for other in sorted(waiting - {key}) if waiting else ():
            if other in held:
                done.append(held.pop(other))
        return done

    names = list(layout.indexes)
    # The usual header: every column is data, in the file's order (no gaps to skip).
    in_order = list(layout.indexes.values()) == list(range(layout.width))
    for line, cells in _records(path, layout.delimiter):
        row = _Row(
            line,
            dict(zip(names, map(str.strip, cells), strict=False))
            if in_order
            else {c: cells[i].strip() for c, i in layout.indexes.items() if i < len(cells)},
            cells[layout.width :],
        )
        if len(cells) != layout.width:
            # Kept, so the order it belongs to is rejected rather than imported without it.
            row.shape_problem = f"has {len(cells)} cells but the header has {layout.width}"
        key = _key(cells, channel, order_id)
        if key is not None and key == current:
            rows.append(row)
            continue
        if current is not None:
            yield from complete(current, rows)
        current, rows = key, [row]
        if key is None:
            yield rows
        else:
            run += 1
    if current is not None:
        yield from complete(current, rows)
    # Nothing is left unless the two passes read the file differently (it changed).
    yield from sorted(held.values(), key=lambda group: group[0].line)


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


def _reject_order(report: ImportReport, rows: list[_Row], problems: _Problems) -> None:
    first_bad = min(line for line, _ in problems.cells)
    see = f"order {rows[0].values.get('order_id', '')} rejected: see line {first_bad}"
    for row in rows:
        report._reject(row, problems.for_line(row.line) or [Problem(row.line, ORDER_FIELD, see)])


# --- writing chunks --------------------------------------------------------------------


class _Chunk:
    def __init__(self, size: int) -> None:
        self.size = size
        self.groups: list[list[_Row]] = []
        self.orders: list[OrderIn] = []
        self.rows = 0
        # Orders refused by the checks while this chunk was read, counted just before it
        # is written (after the chunk before it, as reading them came after that one).
        self.rejected: list[tuple[list[_Row], _Problems]] = []

    def reject(self, rows: list[_Row], problems: _Problems) -> None:
        self.rejected.append((rows, problems))

    def count_rejected(self, report: ImportReport, advance: Callable[[int], None]) -> None:
        for rows, problems in self.rejected:
            _reject_order(report, rows, problems)
            advance(len(rows))
        self.rejected = []

    def add(self, rows: list[_Row], order: OrderIn) -> None:
        self.groups.append(rows)
        self.orders.append(order)
        self.rows += len(rows)

    @property
    def full(self) -> bool:
        return len(self.orders) >= self.size or self.rows >= self.size * CHUNK_LINES_PER_ORDER


class _Statistics:
    """Fresh planner statistics while an import fills the tables (PostgreSQL).

    Each chunk looks up its buyers, products and orders (and the event log its chains'
    heads) by key. PostgreSQL plans those lookups from table statistics, which autovacuum
    refreshes only a minute or more after a table grew; an import that has just doubled a
    table would meanwhile get plans for the small one (a scan of all the organization's
    rows per lookup), each chunk slower than the one before. So, as the PostgreSQL manual
    advises after bulk loads, the tables are analysed whenever the import has doubled the
    orders it created: O(log n) times. Each samples 3,000 rows per table (statistics
    target 10, for this transaction only) rather than the default 30,000: plenty to choose
    an index for a lookup by key, at a tenth of the cost; autovacuum later analyses the
    tables at the server's own target.
    """

    TABLES = ("orders", "order_lines", "buyers", "products", "events")
    TARGET = 10

    def __init__(self, db: Database, chunk_size: int) -> None:
        self.db = db
        self.next = chunk_size

    def after(self, created: int) -> None:
        if self.db.dialect != "postgresql" or created < self.next:
            return
        self.next = created * 2
        try:
            with self.db.engine.begin() as conn:
                conn.execute(text(f"SET LOCAL default_statistics_target = {self.TARGET}"))
                conn.execute(text(f"ANALYZE {', '.join(self.TABLES)}"))
        except SQLAlchemyError as exc:  # e.g. a role that may not: plans stay as they are
            log.warning("could not refresh table statistics: %s", exc)


class _Stopped(Exception):
    def __init__(self, line: int, cause: SQLAlchemyError) -> None:
        super().__init__(line)
        self.line = line
        self.cause = cause
        # The outcomes of the chunk's orders written (one by one) before it stopped.
        self.done: list[OrderOutcome] = []


def _write_chunk(
    db: Database, actor: Actor, channels: Mapping[str, Channel], chunk: _Chunk
) -> list[OrderOutcome]:
    """Write the chunk in one transaction. If the database refuses it, nothing of it
    stays, and its orders are written again one transaction each: the order at fault is
    rejected with the database's reason, the others are imported."""
    try:
        with db.session() as session:
            return upsert_orders(session, actor, channels, chunk.orders).outcomes
    except (SQLAlchemyError, ReturnGuardError) as exc:
        log.warning(
            "chunk of %d orders from line %d failed (%s); writing them one by one",
            len(chunk.orders),
            chunk.groups[0][0].line,
            exc,
        )
    outcomes: list[OrderOutcome] = []
    for rows, order in zip(chunk.groups, chunk.orders, strict=True):
        try:
            outcomes.append(_write_alone(db, actor, channels, rows, order))
        except _Stopped as stopped:
            # The orders written before count: if a later one stops the import, they are done.
            stopped.done = outcomes
            raise
    return outcomes


def _count_chunk(report: ImportReport, chunk: _Chunk, written: Future[list[OrderOutcome]]) -> None:
    """Count the outcome of a chunk's write, or of as much of it as was done."""
    try:
        outcomes = written.result()
    except _Stopped as stopped:
        for rows, outcome in zip(chunk.groups, stopped.done, strict=False):
            _count(report, rows, outcome)
        raise
    for rows, outcome in zip(chunk.groups, outcomes, strict=True):
        _count(report, rows, outcome)


def _write_alone(
    db: Database, actor: Actor, channels: Mapping[str, Channel], rows: list[_Row], order: OrderIn
) -> OrderOutcome:
    try:
        with db.session() as session:
            return upsert_orders(session, actor, channels, [order]).outcomes[0]
    except (IntegrityError, DataError) as exc:
        # The database refuses this order's data (a value it cannot store, a constraint).
        refused = ReturnGuardError(f"the database refused the order: {_db_message(exc)}")
        return OrderOutcome(Outcome.REJECTED, error=refused)
    except ReturnGuardError as exc:
        return OrderOutcome(Outcome.REJECTED, error=exc)
    except SQLAlchemyError as exc:
        raise _Stopped(rows[0].line, exc) from exc


def _db_message(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).strip()
    return text.splitlines()[0] if text else type(cause).__name__


def _count(report: ImportReport, rows: list[_Row], outcome: OrderOutcome) -> None:
    if outcome.outcome is Outcome.REJECTED:
        problems = _Problems()
        assert outcome.error is not None
        _add_service_problems(outcome.error, rows, problems)
        _reject_order(report, rows, problems)
        return
    report.rows_imported += len(rows)
    if outcome.outcome is Outcome.CREATED:
        report.orders_created += 1
    elif outcome.outcome is Outcome.UPDATED:
        report.orders_updated += 1
    else:
        report.orders_unchanged += 1


# --- checking an order -----------------------------------------------------------------


class _CellError(ValueError):
    pass


_K = TypeVar("_K")
_V = TypeVar("_V")
_UNKNOWN: Any = object()


class _Recent(Generic[_K, _V]):
    """A bounded memo that keeps what keeps coming back: entries go into a young
    generation; when it holds ``size`` the old one is dropped and the young one becomes
    old, and an old entry looked up moves back into the young one. (Clearing a full memo
    would forget the recurring prices and buyers along with the one-off amounts.)"""

    def __init__(self, size: int) -> None:
        self.size = size
        self._young: dict[_K, _V] = {}
        self._old: dict[_K, _V] = {}

    def get(self, key: _K, default: _V) -> _V:
        found = self._young.get(key, _UNKNOWN)
        if found is not _UNKNOWN:
            return cast(_V, found)
        found = self._old.get(key, _UNKNOWN)
        if found is _UNKNOWN:
            return default
        self.put(key, found)
        return cast(_V, found)

    def put(self, key: _K, value: _V) -> None:
        if len(self._young) >= self.size:
            self._old, self._young = self._young, {}
        self._young[key] = value


class _Validated:
    """Amounts and buyers validated once per distinct input. The same amount (19.99 EUR)
    and the same buyer come back all over an import; validation is a function of the
    input alone, so an order's amounts and buyer are validated (by MoneyIn and BuyerIn
    themselves) on first sight and handed to OrderIn as models after. Bounded: the
    cache starts afresh when full.

    Before that, ``quick`` builds the orders whose every cell is plainly valid without
    pydantic at all (most of any real file): the same OrderIn, a tenth of the cost.
    """

    SIZE = 10_000

    def __init__(self) -> None:
        self._money: dict[tuple[str, str], MoneyIn] = {}
        self._buyers: dict[tuple[tuple[str, Any], ...], BuyerIn] = {}
        self._plain_money: _Recent[tuple[str, str], MoneyIn | None] = _Recent(self.SIZE)
        self._plain_buyers: _Recent[tuple[str, str, str, str], BuyerIn | None] = _Recent(self.SIZE)
        self._codes: dict[str, bool] = {}
        self._currencies: dict[str, str | None] = {}
        self._countries: dict[str, str | None] = {}

    # --- the quick path ------------------------------------------------------------------

    def quick(self, rows: list[_Row], channels: set[str] | Mapping[str, Any]) -> OrderIn | None:
        """The order exactly as ``OrderIn.model_validate`` makes it from these rows, when
        every cell is plainly valid (ASCII numbers at the currency's precision, known
        codes, lengths within bounds, no NUL, the order columns alike on every row …);
        None when anything is not, or might not be: the full validation then decides,
        and words the problems. Never accepts what the full validation refuses (a test
        compares the two on many kinds of cells)."""
        if len(rows) > MAX_LINES:
            return None
        first = rows[0].values
        if len(rows) > 1:
            head = [first.get(column, "") for column in ORDER_COLUMNS]
            for row in rows[1:]:
                if row.shape_problem is not None:
                    return None
                values = row.values
                if [values.get(column, "") for column in ORDER_COLUMNS] != head:
                    return None
        for row in rows:
            if row.shape_problem is not None or "\x00" in "".join(row.values.values()):
                return None
        get = first.get
        channel = get("channel", "")
        external_id = get("order_id", "")
        currency = self._currency(get("currency", ""))
        ordered_at = _plain_timestamp(get("ordered_at", ""))
        if (
            channel not in channels
            or not self._code(channel)
            or not 0 < len(external_id) <= 128
            or currency is None
            or ordered_at is None
        ):
            return None
        digits = minor_digits(currency)
        order: dict[str, Any] = {
            "channel": channel,
            "external_id": external_id,
            "currency": currency,
            "ordered_at": ordered_at,
        }
        if text := get("delivered_at", ""):
            delivered_at = _plain_timestamp(text)
            if delivered_at is None or delivered_at < ordered_at:
                return None
            order["delivered_at"] = delivered_at
        if text := get("ship_to_country", ""):
            if (country := self._country(text)) is None:
                return None
            order["ship_to_country"] = country
        if text := get("payment_reference", ""):
            if len(text) > 200:
                return None
            order["payment_reference"] = text
        buyer_cells = (
            get("buyer_id", ""),
            get("buyer_email", ""),
            get("buyer_name", ""),
            get("buyer_country", ""),
        )
        if any(buyer_cells):
            if (buyer := self._plain_buyer(buyer_cells)) is None:
                return None
            order["buyer"] = buyer
        if text := get("shipping", ""):
            if (shipping := self._plain_amount(text, currency, digits)) is None:
                return None
            order["shipping"] = shipping
        captured = self._plain_amount(get("captured", ""), currency, digits)
        if captured is None:
            return None
        order["captured"] = captured
        lines: list[OrderLineIn] = []
        seen: set[str] = set()
        for row in rows:
            line = self._plain_line(row.values, currency, digits)
            if line is None or line.external_id in seen:
                return None
            seen.add(line.external_id)
            lines.append(line)
        order["lines"] = lines
        return _construct(OrderIn, order)

    def _plain_line(self, values: dict[str, str], currency: str, digits: int) -> OrderLineIn | None:
        get = values.get
        external_id = get("line_id", "")
        sku = get("sku", "")
        quantity = get("quantity", "")
        unit_price = self._plain_amount(get("unit_price", ""), currency, digits)
        if (
            not 0 < len(external_id) <= 128
            or not 0 < len(sku) <= 128
            or not _PLAIN_QUANTITY.fullmatch(quantity)
            or int(quantity) > MAX_QUANTITY
            or unit_price is None
        ):
            return None
        line: dict[str, Any] = {
            "external_id": external_id,
            "sku": sku,
            "quantity": int(quantity),
            "unit_price": unit_price,
        }
        if text := get("title", ""):
            if len(text) > 1000:
                return None
            line["title"] = text
        for name in ("tax", "discount"):
            if text := get(name, ""):
                if (amount := self._plain_amount(text, currency, digits)) is None:
                    return None
                line[name] = amount
        if text := get("asin", ""):
            if not _PLAIN_ASIN.fullmatch(text):
                return None
            line["asin"] = text
        if text := get("category", ""):
            if len(text) > 128:
                return None
            line["category"] = text
        return _construct(OrderLineIn, line)

    def _plain_amount(self, text: str, currency: str, digits: int) -> MoneyIn | None:
        """MoneyIn for a plain amount (digits, at most the currency's decimals, a decimal
        comma allowed as ``_money`` allows it, not above the bound), else None."""
        key = (text, currency)
        known = self._plain_money.get(key, _UNKNOWN)
        if known is not _UNKNOWN:
            return known
        found: MoneyIn | None = None
        match = _PLAIN_AMOUNT.fullmatch(_decimal_point(text))
        if match is not None:
            whole, fraction = match.group(1), match.group(2) or ""
            if len(fraction) <= digits:
                fraction = fraction.ljust(digits, "0")
                if int(whole + fraction) <= MAX_MINOR_UNITS:
                    amount = f"{int(whole)}.{fraction}" if digits else str(int(whole))
                    found = _construct(MoneyIn, {"currency": currency, "amount": amount})
        self._plain_money.put(key, found)
        return found

    def _plain_buyer(self, cells: tuple[str, str, str, str]) -> BuyerIn | None:
        known = self._plain_buyers.get(cells, _UNKNOWN)
        if known is not _UNKNOWN:
            return known
        external_id, email, name, country = cells
        found: BuyerIn | None = None
        if 0 < len(external_id) <= 128 and len(email) <= 320 and len(name) <= 200:
            buyer: dict[str, Any] = {"external_id": external_id}
            if email:
                buyer["email"] = email
            if name:
                buyer["name"] = name
            code = self._country(country) if country else ""
            if code is not None:
                if code:
                    buyer["country"] = code
                found = _construct(BuyerIn, buyer)
        self._plain_buyers.put(cells, found)
        return found

    def _code(self, code: str) -> bool:
        found = self._codes.get(code)
        if found is None:
            found = self._codes[code] = _PLAIN_CODE.fullmatch(code) is not None
        return found

    def _currency(self, text: str) -> str | None:
        if text not in self._currencies:
            try:
                code: str | None = check_currency(text) if len(text) == 3 else None
            except MoneyError:
                code = None
            self._currencies[text] = code
        return self._currencies[text]

    def _country(self, text: str) -> str | None:
        if text not in self._countries:
            try:
                code: str | None = _COUNTRY.validate_python(text)
            except ValidationError:
                code = None
            self._countries[text] = code
        return self._countries[text]

    # --- validation by the schemas ---------------------------------------------------------

    def order(self, data: dict[str, Any]) -> OrderIn | None:
        """The order, or None when any part of it is invalid (the caller validates it
        again as it is, for the problems in the shape the user sees them)."""
        try:
            values = dict(data)
            for name in ("shipping", "captured"):
                if name in values:
                    values[name] = self._amount(values[name])
            if "buyer" in values:
                values["buyer"] = self._buyer(values["buyer"])
            values["lines"] = [self._line(line) for line in values.get("lines", ())]
            return OrderIn.model_validate(values)
        except ValidationError:
            return None

    def _line(self, line: dict[str, Any]) -> dict[str, Any]:
        values = dict(line)
        for name in ("unit_price", "tax", "discount"):
            if name in values:
                values[name] = self._amount(values[name])
        return values

    def _amount(self, value: dict[str, str]) -> MoneyIn:
        key = (value.get("amount", ""), value.get("currency", ""))
        found = self._money.get(key)
        if found is None:
            found = MoneyIn.model_validate(value)
            if len(self._money) >= self.SIZE:
                self._money.clear()
            self._money[key] = found
        return found

    def _buyer(self, value: dict[str, Any]) -> BuyerIn:
        key = tuple(value.items())
        found = self._buyers.get(key)
        if found is None:
            found = BuyerIn.model_validate(value)
            if len(self._buyers) >= self.SIZE:
                self._buyers.clear()
            self._buyers[key] = found
        return found


def _build_order(
    rows: list[_Row],
    channels: set[str] | Mapping[str, Any],
    problems: _Problems,
    validated: _Validated | None = None,
) -> OrderIn | None:
    """Validate one order's rows; return the order, or None with every problem recorded."""
    if validated is not None and (order := validated.quick(rows, channels)) is not None:
        return order
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
    order = validated.order(data) if validated is not None and not already else None
    if order is None:
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


_Model = TypeVar("_Model", bound=BaseModel)
_DEFAULTS: dict[type[BaseModel], dict[str, Any]] = {}


def _construct(model: type[_Model], values: dict[str, Any]) -> _Model:
    """``model.model_construct(**values)`` for values known valid, at a fraction of its
    cost (the quick path builds several per order): the fields' defaults (all plain
    immutable values in these schemas), then ``values``, the given ones marked set."""
    defaults = _DEFAULTS.get(model)
    if defaults is None:
        # Every field, in the model's order (a required one holds its place until given).
        defaults = _DEFAULTS[model] = {
            name: None if info.is_required() else info.get_default(call_default_factory=True)
            for name, info in model.model_fields.items()
        }
    instance = model.__new__(model)
    fields = dict(defaults)
    fields.update(values)
    object.__setattr__(instance, "__dict__", fields)
    object.__setattr__(instance, "__pydantic_fields_set__", set(values))
    object.__setattr__(instance, "__pydantic_extra__", None)
    object.__setattr__(instance, "__pydantic_private__", None)
    return instance


def _plain_timestamp(text: str) -> datetime | None:
    """What ``_timestamp`` and then AwareTimestamp make of ``text`` (UTC), or None."""
    try:
        value = datetime.fromisoformat(text)
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


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
def _progress(console: Console | None, total: int) -> Iterator[Callable[[int], None]]:
    """Advance by rows; on a terminal only (in a log or a pipe the summary says it all)."""
    if console is None or not console.is_terminal:
        yield lambda _rows: None
        return
    with Progress(
        TextColumn("importing orders"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("rows", total=total)
        yield lambda rows: progress.advance(task, rows)
