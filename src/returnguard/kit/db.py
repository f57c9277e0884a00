"""Engines, sessions and column types shared by every module.

One session and one transaction per request or command: whoever opens the session
commits or rolls it back (``session_scope``); services only ``flush()``.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import JSON, DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


def utcnow() -> datetime:
    """The moment services stamp rows and events with: now, unless a replay (the demo's
    history, see ``replayed_clock``) has moved this context's clock into the past."""
    replay = _replay.get()
    if replay is None:
        return datetime.now(UTC)
    at, since = replay
    return at + timedelta(seconds=time.monotonic() - since)


# (the replayed moment, time.monotonic() when it was set): the clock runs on from there.
_replay: ContextVar[tuple[datetime, float] | None] = ContextVar("replay", default=None)


class ReplayClock:
    """A clock a replay moves; ``utcnow`` reads it, ticking on from the last move."""

    def move_to(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("a replayed moment must carry its time zone")
        _replay.set((at, time.monotonic()))

    def now(self) -> datetime:
        return utcnow()


@contextmanager
def replayed_clock(start: datetime) -> Iterator[ReplayClock]:
    """Within the block, ``utcnow`` starts at ``start`` and follows ``move_to``; after
    it, the real clock again. Only ``returnguard demo`` replays; nothing serves meanwhile."""
    token = _replay.set(None)
    clock = ReplayClock()
    clock.move_to(start)
    try:
        yield clock
    finally:
        _replay.reset(token)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def new_ids(n: int) -> list[uuid.UUID]:
    """``n`` time-ordered (version 7, RFC 9562) UUIDs for bulk writers: ids drawn by one
    call increase one after the other, and ids drawn later sort after earlier ones (to
    the millisecond), so a bulk insert appends to the right edge of each b-tree they are
    keyed by (the table's primary key, and a foreign key's index on the child side)
    instead of touching a random page per row. See ``new_id_texts``."""
    return [
        uuid.UUID(int=first + i)
        for first, start, count in _id_blocks(n)
        for i in range(start, start + count)
    ]


def new_id_texts(n: int) -> list[str]:
    """``n`` ids as ``new_ids`` makes them, as their canonical text (what COPY sends):
    for bulk writers that never need the UUID objects.

    Layout (RFC 9562, version 7, "fixed bit-length dedicated counter"): the Unix time in
    milliseconds (48 bits), the version digit 7, 12 random bits, the variant bits 10,
    38 random bits and a 24-bit counter that counts up from a random start within the
    call. The 50 random bits are drawn once per block of ids: two blocks drawn in the same
    millisecond (by this or another process) collide only if all 50 bits and the counter
    ranges meet. Bulk writers use these (an import's orders, lines, buyers and
    products, and events written in bulk); every other row keeps ``new_id``'s random
    version 4 id. None of these ids is taken for a secret anywhere, and ids are only
    ever compared for equality or as the last tie-breaker of an order; a time-ordered
    id tells its creation time to the millisecond, which the rows it keys store anyway."""
    texts: list[str] = []
    for first, start, count in _id_blocks(n):
        # The first 20 hex digits stay the same within a block; the counter is the rest.
        digits = f"{first:032x}"
        prefix = f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-"
        tail = first & 0xFFFFFFFFFFFF
        texts.extend([f"{prefix}{tail + i:012x}" for i in range(start, start + count)])
    return texts


def _id_blocks(n: int) -> Iterator[tuple[int, int, int]]:
    """(the block's id with a zero counter, as an integer; counter start; count) for
    blocks of ``n`` ids in all."""
    left = n
    while left > 0:
        count = min(left, _COUNTER_SPAN // 2)
        ms = time.time_ns() // 1_000_000
        first = (
            (ms & 0xFFFFFFFFFFFF) << 80
            | 0x7 << 76
            | secrets.randbits(12) << 64
            | 0b10 << 62
            | secrets.randbits(38) << 24
        )
        yield first, secrets.randbelow(_COUNTER_SPAN - count), count
        left -= count


_COUNTER_SPAN = 1 << 24


class JSONText(str):
    """JSON already serialised (a bulk writer's own text): ``copy_tuples`` and
    ``copy_rows`` write it into a JSON column as it is, instead of serialising it again."""

    __slots__ = ()


def copy_rows(
    session: Session,
    table: str,
    rows: list[dict[str, Any]],
    *,
    json_columns: frozenset[str] = frozenset(),
) -> None:
    """PostgreSQL ``COPY`` of ``rows`` (dicts with the same keys in the same order) into
    ``table``, in the session's transaction: several times faster than INSERTs. Values in
    ``json_columns`` go in as the text SQLAlchemy's JSON type writes (``json.dumps``, None
    as JSON null; a ``JSONText`` as it is), so a row reads back the same whichever way it
    went in. The driver's errors are raised as SQLAlchemy raises them (IntegrityError …)."""
    copy_tuples(
        session,
        table,
        list(rows[0]),
        (tuple(row.values()) for row in rows),
        json_columns=json_columns,
    )


def copy_tuples(
    session: Session,
    table: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    json_columns: frozenset[str] = frozenset(),
) -> None:
    """``copy_rows`` for rows given as tuples of values in the order of ``columns``: what
    a bulk writer builds most cheaply."""
    json_at = [i for i, name in enumerate(columns) if name in json_columns]
    names = ", ".join(f'"{name}"' for name in columns)
    statement = f'COPY "{table}" ({names}) FROM STDIN'
    connection = session.connection()
    dbapi: Any = connection.connection.dbapi_connection
    error = connection.dialect.loaded_dbapi.Error
    try:
        with dbapi.cursor() as cursor, cursor.copy(statement) as copy:
            write = copy.write_row
            if not json_at:
                for row in rows:
                    write(row)
                return
            for row in rows:
                values = list(row)
                for i in json_at:
                    values[i] = _json_text(values[i])
                write(values)
    except error as exc:
        raise DBAPIError.instance(statement, None, exc, error) from exc


def _json_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, JSONText):
        return value
    return json.dumps(value)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every database (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where a timezone-aware one is required")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


SQLITE_BUSY_TIMEOUT_MS = 5_000
"""How long a SQLite writer waits for the write lock before the request is answered 503
(`database_busy`, with Retry-After) instead of being held for half a minute."""

READ_ONLY = "returnguard_read_only"
"""Execution option (and session info key) of a unit of work that never writes."""


def make_engine(
    url: str, *, echo: bool = False, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS
) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout and write-locking transactions
    for writers, plain (snapshot) transactions for readers."""
    if is_sqlite(url):
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
            # Above capacity a request waits a moment for a connection, then gets a 503.
            pool_size=10,
            max_overflow=20,
            pool_timeout=busy_timeout_ms / 1000,
        )
        _configure_sqlite(engine, busy_timeout_ms)
        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(READ_ONLY):
            # A reader takes no lock: in WAL mode it reads a snapshot while one writer
            # writes, so reads (and /healthz) never queue behind the write lock.
            conn.exec_driver_sql("BEGIN")
            return
        # BEGIN IMMEDIATE takes the write lock up front, so two transactions that
        # read-then-write the same return serialise instead of failing with
        # "database is locked" when the second one tries to upgrade its lock.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """An engine plus its session factory; one per process and database URL."""

    def __init__(
        self, url: str, *, echo: bool = False, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS
    ) -> None:
        self.url = url
        self.engine = make_engine(url, echo=echo, busy_timeout_ms=busy_timeout_ms)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        # The same pool, marked: on SQLite its transactions take no write lock.
        self.read_engine = self.engine.execution_options(**{READ_ONLY: True})
        self.read_sessionmaker = sessionmaker(
            self.read_engine, expire_on_commit=False, info={READ_ONLY: True}
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self, *, read_only: bool = False) -> Iterator[Session]:
        """One unit of work: commit on success, roll back on any error. A read-only one
        (GET requests) takes no write lock on SQLite and must not write."""
        session = (self.read_sessionmaker if read_only else self.sessionmaker)()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


def one_snapshot(session: Session) -> None:
    """Make every statement of the session's unit of work see one snapshot (REPEATABLE
    READ on PostgreSQL; a SQLite transaction already does). Call before the first one."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


def is_read_only(session: Session) -> bool:
    return bool(session.info.get(READ_ONLY))


def insert_missing(
    session: Session,
    model: type[Base],
    keys: tuple[str, ...],
    rows: list[dict[str, Any]],
    *,
    returning: tuple[str, ...] = (),
) -> list[tuple[Any, ...]] | None:
    """Insert the rows whose unique ``keys`` are not taken yet, and skip the others.

    ``INSERT … ON CONFLICT DO NOTHING`` (PostgreSQL and SQLite): a concurrent writer that
    inserted the same key first makes ours a no-op instead of a unique violation that
    would fail the whole request; rows go in sorted by key, so two writers of the same
    keys lock them in one order and never deadlock. Callers read the rows back after.

    On PostgreSQL many rows (bulk imports) are first copied into a temporary staging
    table (``COPY``, dropped at commit), then moved by one ``INSERT … SELECT … ORDER BY
    … ON CONFLICT DO NOTHING`` in the same key order: a handful of statements instead
    of one per row. Column defaults apply as in an INSERT (a Python-side default is
    computed once for the statement).

    ``returning`` (column names): on that staged path, the rows that went in are returned
    with those columns, so a caller reads back only the others (taken by a concurrent
    writer first); None where the rows are not known (read them all back).
    """
    if not rows:
        return [] if returning else None
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt: Any = pg_insert(model)
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(model)
    else:  # pragma: no cover - the two supported databases are above
        raise NotImplementedError(f"insert_missing on {dialect}")
    ordered = sorted(rows, key=lambda row: tuple(str(row[k]) for k in keys))
    if dialect == "postgresql" and len(ordered) >= STAGE_FROM:
        return _insert_staged(session, model, keys, ordered, returning)
    session.execute(stmt.on_conflict_do_nothing(index_elements=list(keys)), ordered)
    return None


STAGE_FROM = 50
"""From this many rows on, insert_missing goes through a staging table on PostgreSQL."""


def _insert_staged(
    session: Session,
    model: type[Base],
    keys: tuple[str, ...],
    rows: list[dict[str, Any]],
    returning: tuple[str, ...],
) -> list[tuple[Any, ...]] | None:
    from sqlalchemy import literal_column, select, text
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    table: Any = model.__table__
    # Identifiers only from the model itself (a KeyError for anything else).
    names = [table.c[name].name for name in rows[0]]
    stage = f"rg_stage_{table.name}"
    columns = ", ".join(f'"{name}"' for name in names)
    connection = session.connection()
    # Same column types as the table, no constraints; rg_n keeps the rows' (key) order.
    connection.exec_driver_sql(
        f'CREATE TEMP TABLE IF NOT EXISTS "{stage}" ON COMMIT DROP AS '  # noqa: S608 (the model's names)
        f'SELECT {columns}, 0 AS rg_n FROM "{table.name}" WITH NO DATA'
    )
    connection.exec_driver_sql(f'TRUNCATE "{stage}"')
    dbapi: Any = connection.connection.dbapi_connection
    with (
        dbapi.cursor() as cursor,
        cursor.copy(f'COPY "{stage}" ({columns}, rg_n) FROM STDIN') as copy,
    ):
        for n, row in enumerate(rows):
            copy.write_row((*row.values(), n))
    source: Any = (
        select(*(literal_column(f'"{name}"') for name in names))
        .select_from(text(f'"{stage}"'))
        .order_by(literal_column("rg_n"))
    )
    statement: Any = pg_insert(table).from_select(names, source)
    statement = statement.on_conflict_do_nothing(index_elements=list(keys))
    if not returning:
        session.execute(statement)
        return None
    statement = statement.returning(*(table.c[name] for name in returning))
    return [tuple(row) for row in session.execute(statement)]
