"""Engines, sessions and column types shared by every module.

One session and one transaction per request or command: whoever opens the session
commits or rolls it back (``session_scope``); services only ``flush()``.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
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
    return datetime.now(UTC)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def new_ids(n: int) -> list[uuid.UUID]:
    """``n`` random (version 4) UUIDs, as ``new_id`` makes them, from one read of the
    system's random source instead of ``n`` (each read is a system call): for bulk writers."""
    raw = os.urandom(16 * n)
    return [
        uuid.UUID(int=int.from_bytes(raw[i : i + 16]) & _V4_MASK | _V4_BITS)
        for i in range(0, 16 * n, 16)
    ]


# The version (4) and variant (RFC 4122) bits, as uuid.UUID(version=4) sets them.
_V4_MASK = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_V4_BITS = (0x4000 << 64) | (0x8000 << 48)


def new_id_texts(n: int) -> list[str]:
    """``n`` ids as ``new_ids`` makes them, as their canonical text (what COPY sends):
    for bulk writers that never need the UUID objects. The version digit is 4 and the
    variant digit keeps its two low bits under the bits 10, as in ``new_ids``."""
    h = os.urandom(16 * n).hex()
    variant = _VARIANT_DIGIT
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-4{h[i + 13 : i + 16]}-"
        f"{variant[h[i + 16]]}{h[i + 17 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, 32 * n, 32)
    ]


_VARIANT_DIGIT = {f"{d:x}": f"{d & 0x3 | 0x8:x}" for d in range(16)}


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
    session: Session, model: type[Base], keys: tuple[str, ...], rows: list[dict[str, Any]]
) -> None:
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
    """
    if not rows:
        return
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
        _insert_staged(session, model, keys, ordered)
        return
    session.execute(stmt.on_conflict_do_nothing(index_elements=list(keys)), ordered)


STAGE_FROM = 50
"""From this many rows on, insert_missing goes through a staging table on PostgreSQL."""


def _insert_staged(
    session: Session, model: type[Base], keys: tuple[str, ...], rows: list[dict[str, Any]]
) -> None:
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
    statement = pg_insert(table).from_select(names, source)
    session.execute(statement.on_conflict_do_nothing(index_elements=list(keys)))
