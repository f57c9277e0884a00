"""reserve rollups and the lines with money at risk

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 18:30:00.000000

The return-risk reserve over 180 days of a large shop read every order line of the
window, every return line of those orders and the ledger of their returns: half a minute
at a million returns. The workers now keep, beside the net-profit rollups of 0012 and in
the same transaction, ``reserve_rollups``: per order day and SKU the units sold and the
units approved on returns still going ahead, and per (entry day, order day, SKU) the
converted ledger of those returns, split over their lines exactly as the report splits
it; per month too (docs/ledger.md, "Rollups"). A reserve sums them and reads raw rows
only for the days that changed since.

Stale days are the ones 0012's triggers already list (an order, a line, an entry, a rate,
an approval), plus what only the reserve reads, appended to the same ``report_dirty`` so
one rebuild retires both: a return whose status moves into or out of cancelled, expired
or rejected (the days of its order and of its entries), a return line added or removed
with approved units or moved to another order line (its order's day, its return's
entries' days), a change of approved units (its order's day; 0012 lists the entries'),
and an order moved to another day (its entries' days: their rollups carry the order's
day). Every organization's days are listed once, so the next pass builds the new rollups.

Money at risk starts from the return lines with more units refunded than inspected: a
partial index holds exactly those (on PostgreSQL with statistics on the condition, so the
planner knows they are few), and the report's cost follows the money at risk, not the
history of refunds.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ALL = ("DATE '0001-01-01'", "DATE '9999-12-31'")
_ADD = "INSERT INTO report_dirty (organization_id, first_day, last_day) "
_PG_DAY = "((o.ordered_at AT TIME ZONE 'UTC')::date)"
# Returns in these states count for nothing in the reserve (reports: _NOT_RETURNED).
_NOT_RETURNED = "('cancelled', 'expired', 'rejected')"


def _pg_order_days(orders: str) -> str:
    return (
        f"{_ADD}SELECT o.organization_id, min({_PG_DAY}), max({_PG_DAY}) FROM orders o"
        f" WHERE o.id IN ({orders}) GROUP BY o.organization_id;"
    )


def _pg_entry_days(ids: str, column: str) -> str:
    return (
        f"{_ADD}SELECT e.organization_id, min(e.occurred_on), max(e.occurred_on)"
        f" FROM ledger_entries e WHERE e.{column} IN ({ids}) GROUP BY e.organization_id;"
    )


def _lines_orders(rows: str, where: str = "") -> str:
    return f"SELECT l.order_id FROM order_lines l JOIN {rows} r ON r.order_line_id = l.id{where}"


_STATUS_MOVED = (
    "SELECT {pick} FROM new_rows n JOIN old_rows o ON o.id = n.id"
    f" WHERE (o.status IN {_NOT_RETURNED}) IS DISTINCT FROM (n.status IN {_NOT_RETURNED})"
    " OR o.order_id IS DISTINCT FROM n.order_id"
)
_LINE_MOVED = (
    "SELECT {pick} FROM new_rows n JOIN old_rows o ON o.id = n.id"
    " WHERE (o.approved, o.order_line_id, o.return_id)"
    " IS DISTINCT FROM (n.approved, n.order_line_id, n.return_id)"
)
_ORDER_MOVED = (
    "SELECT n.id FROM new_rows n JOIN old_rows o ON o.id = n.id"
    " WHERE o.ordered_at IS DISTINCT FROM n.ordered_at"
)


def _by_op(**bodies: str) -> str:
    text = ""
    for i, (op_, body) in enumerate(bodies.items()):
        text += f"{'IF' if i == 0 else 'ELSIF'} TG_OP = '{op_.upper()}' THEN\n{body}\n"
    return text + "END IF;"


_PG_FUNCTIONS = {
    "returns": _by_op(
        update=_pg_entry_days(_STATUS_MOVED.format(pick="n.id"), "return_id")
        + _pg_order_days(
            f"{_STATUS_MOVED.format(pick='n.order_id')} UNION "
            f"{_STATUS_MOVED.format(pick='o.order_id')}"
        )
    ),
    "return_lines": _by_op(
        insert=_pg_order_days(_lines_orders("new_rows", " WHERE r.approved > 0"))
        + _pg_entry_days("SELECT return_id FROM new_rows", "return_id"),
        update=_pg_order_days(
            f"SELECT l.order_id FROM order_lines l WHERE l.id IN"
            f" ({_LINE_MOVED.format(pick='n.order_line_id')} UNION"
            f" {_LINE_MOVED.format(pick='o.order_line_id')})"
        )
        + _pg_entry_days(
            f"{_LINE_MOVED.format(pick='n.return_id')} UNION"
            f" {_LINE_MOVED.format(pick='o.return_id')}",
            "return_id",
        ),
        delete=_pg_order_days(_lines_orders("old_rows", " WHERE r.approved > 0"))
        + _pg_entry_days("SELECT return_id FROM old_rows", "return_id"),
    ),
    "orders": _by_op(update=_pg_entry_days(_ORDER_MOVED, "order_id")),
}
_PG_EVENTS = {
    "returns": ("UPDATE",),
    "return_lines": ("INSERT", "UPDATE", "DELETE"),
    "orders": ("UPDATE",),
}


def _pg_upgrade() -> None:
    for table, body in _PG_FUNCTIONS.items():
        op.execute(
            f"CREATE FUNCTION reserve_dirty_{table}() RETURNS trigger AS $$\n"
            f"BEGIN\n{body}\nRETURN NULL;\nEND\n$$ LANGUAGE plpgsql"
        )
        for event in _PG_EVENTS[table]:
            tables = {
                "INSERT": "NEW TABLE AS new_rows",
                "UPDATE": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
                "DELETE": "OLD TABLE AS old_rows",
            }[event]
            op.execute(
                f"CREATE TRIGGER reserve_dirty_{table}_{event.lower()} AFTER {event} ON {table}"
                f" REFERENCING {tables} FOR EACH STATEMENT"
                f" EXECUTE FUNCTION reserve_dirty_{table}()"
            )


def _sqlite_insert(org: str, first: str, last: str, tail: str = "") -> str:
    # Per row, as in 0012: a range already waiting is not listed twice.
    return (
        "INSERT INTO report_dirty (organization_id, first_day, last_day) SELECT * FROM"
        f" (SELECT {org} AS organization_id, {first} AS first_day, {last} AS last_day {tail})"
        " AS d WHERE d.first_day IS NOT NULL AND NOT EXISTS (SELECT 1 FROM report_dirty x"
        " WHERE x.organization_id = d.organization_id"
        " AND x.first_day = d.first_day AND x.last_day = d.last_day);"
    )


def _sqlite_order_of(order_id: str, when: str = "") -> str:
    return _sqlite_insert(
        "organization_id",
        "date(ordered_at)",
        "date(ordered_at)",
        f"FROM orders WHERE id = {order_id}{when}",
    )


def _sqlite_order_of_line(row: str) -> str:
    """The day of the order of ``row``'s order line, if the line has approved units."""
    return _sqlite_order_of(
        f"(SELECT order_id FROM order_lines WHERE id = {row}.order_line_id)",
        f" AND {row}.approved > 0",
    )


def _sqlite_entries_of(column: str, value: str) -> str:
    return _sqlite_insert(
        "organization_id",
        "min(occurred_on)",
        "max(occurred_on)",
        f"FROM ledger_entries WHERE {column} = {value} GROUP BY organization_id",
    )


_SQLITE_TRIGGERS = {
    "returns_update": (
        f"AFTER UPDATE ON returns WHEN (OLD.status IN {_NOT_RETURNED})"
        f" IS NOT (NEW.status IN {_NOT_RETURNED}) OR OLD.order_id IS NOT NEW.order_id",
        _sqlite_entries_of("return_id", "NEW.id")
        + _sqlite_order_of("OLD.order_id")
        + _sqlite_order_of("NEW.order_id"),
    ),
    "return_lines_insert": (
        "AFTER INSERT ON return_lines",
        _sqlite_entries_of("return_id", "NEW.return_id") + _sqlite_order_of_line("NEW"),
    ),
    "return_lines_update": (
        "AFTER UPDATE ON return_lines WHEN OLD.approved IS NOT NEW.approved"
        " OR OLD.order_line_id IS NOT NEW.order_line_id OR OLD.return_id IS NOT NEW.return_id",
        _sqlite_entries_of("return_id", "OLD.return_id")
        + _sqlite_entries_of("return_id", "NEW.return_id")
        + _sqlite_order_of_line("OLD")
        + _sqlite_order_of_line("NEW"),
    ),
    "return_lines_delete": (
        "AFTER DELETE ON return_lines",
        _sqlite_entries_of("return_id", "OLD.return_id") + _sqlite_order_of_line("OLD"),
    ),
    "orders_update": (
        "AFTER UPDATE ON orders WHEN OLD.ordered_at IS NOT NEW.ordered_at",
        _sqlite_entries_of("order_id", "NEW.id"),
    ),
}

_EXPOSED_INDEX = "ix_return_lines_exposed"
_EXPOSED_STATISTICS = "st_return_lines_exposed"


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "reserve_rollups",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column(
            "organization_id",
            sa.Uuid(),
            sa.ForeignKey("organizations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("base", sa.String(3), nullable=False),
        sa.Column("monthly", sa.Boolean(), nullable=False),
        sa.Column("period", sa.Date(), nullable=False),
        sa.Column("entry_period", sa.Date(), nullable=True),
        sa.Column("sku", sa.String(128), nullable=True),
        *(
            sa.Column(name, sa.BigInteger(), nullable=False)
            for name in ("units_sold", "units_returned", "ledger", "missing_rates")
        ),
    )
    op.create_index(
        "ix_reserve_rollups_org_period", "reserve_rollups", ["organization_id", "monthly", "period"]
    )
    op.create_index(
        "ix_reserve_rollups_org_entry_period",
        "reserve_rollups",
        ["organization_id", "entry_period"],
    )
    if pg:
        _pg_upgrade()
    else:
        for name, (when, body) in _SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER reserve_dirty_{name} {when} BEGIN {body} END")
    # Every month is rebuilt once, now with its reserve rollups.
    op.execute(
        "INSERT INTO report_dirty (organization_id, first_day, last_day)"
        f" SELECT id, {_ALL[0] if pg else _ALL[0][5:]}, {_ALL[1] if pg else _ALL[1][5:]}"
        " FROM organizations"
    )
    # Written as the report writes it ("IS TRUE", SQLite's "IS 1"), so the index serves it.
    condition = "(refunded > inspected) IS TRUE" if pg else "(refunded > inspected) IS 1"
    if not pg:
        op.execute(
            # The model's columns (returns/models.py); SQLite has no INCLUDE.
            f"CREATE INDEX {_EXPOSED_INDEX} ON return_lines (organization_id, return_id)"
            f" WHERE {condition}"
        )
        return
    with op.get_context().autocommit_block():
        # Built concurrently: a plain build would stop every write to return lines.
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_EXPOSED_INDEX}")
        op.execute(
            # Covering: the report reads the lines from the index alone.
            f"CREATE INDEX CONCURRENTLY {_EXPOSED_INDEX} ON return_lines"
            f" (organization_id, return_id) INCLUDE (id, order_line_id, received, inspected)"
            f" WHERE {condition}"
        )
        # The planner estimates a comparison of two columns at a third of the rows; with
        # statistics on the condition it knows how few lines have money at risk.
        op.execute(
            f"CREATE STATISTICS IF NOT EXISTS {_EXPOSED_STATISTICS}"
            " ON (refunded > inspected) FROM return_lines"
        )
        op.execute("ANALYZE return_lines")


def downgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    if pg:
        with op.get_context().autocommit_block():
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_EXPOSED_INDEX}")
        op.execute(f"DROP STATISTICS IF EXISTS {_EXPOSED_STATISTICS}")
        for table, events in _PG_EVENTS.items():
            for event in events:
                op.execute(
                    f"DROP TRIGGER IF EXISTS reserve_dirty_{table}_{event.lower()} ON {table}"
                )
            op.execute(f"DROP FUNCTION IF EXISTS reserve_dirty_{table}()")
    else:
        op.execute(f"DROP INDEX IF EXISTS {_EXPOSED_INDEX}")
        for name in _SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS reserve_dirty_{name}")
    op.execute("DROP INDEX IF EXISTS ix_reserve_rollups_org_entry_period")
    op.execute("DROP INDEX IF EXISTS ix_reserve_rollups_org_period")
    op.execute("DROP TABLE IF EXISTS reserve_rollups")
