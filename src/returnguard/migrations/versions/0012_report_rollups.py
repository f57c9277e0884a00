"""report rollups: net profit per day and month, kept current from what changed

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 09:00:00.000000

Net profit over two years of a large shop read every order, line and ledger entry of the
period: minutes at a million returns. The worker now keeps what each (channel, SKU)
contributed per day and per month (``report_rollups``, in the organization's base
currency, with the largest-remainder splits already done); a report sums those and reads
raw rows only for the days that changed since (docs/ledger.md, "Rollups").

Which days changed is written by triggers, so no path that writes (the API, the importer's
COPY, a hand-run SQL statement) can leave a rollup stale: every insert, update or delete
of orders, order lines, ledger entries and exchange rates, an approval that changes a
return's units, and a change of a product's unit cost appends a range of days to
``report_dirty``. Appending takes no lock any other write waits for (PostgreSQL: one row
per statement, from its transition table; SQLite, whose triggers run per row, skips a
range already listed). The worker folds the ranges into rebuilt months and deletes them.

``report_rollup_months`` says which months have rollups, and in which base currency.
Nothing is built here: until the worker's first pass, reports read raw rows as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from returnguard.migrations.indexes import swap_indexes

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every day from the first to the last possible one: a change whose effect has no end (a
# product's cost, a rate carried forward).
_ALL = ("DATE '0001-01-01'", "DATE '9999-12-31'")

_PG_DAY = "(({t}.ordered_at AT TIME ZONE 'UTC')::date)"
_ADD = "INSERT INTO report_dirty (organization_id, first_day, last_day) "


def _pg_order_days(orders: str) -> str:
    """The days of the orders in ``orders`` (a subquery of order ids)."""
    day = _PG_DAY.format(t="o")
    return (
        f"{_ADD}SELECT o.organization_id, min({day}), max({day}) FROM orders o"
        f" WHERE o.id IN ({orders}) GROUP BY o.organization_id;"
    )


def _pg_entry_days(ids: str, column: str = "order_id") -> str:
    """The days of the ledger entries of the orders (or returns) in ``ids``."""
    return (
        f"{_ADD}SELECT e.organization_id, min(e.occurred_on), max(e.occurred_on)"
        f" FROM ledger_entries e WHERE e.{column} IN ({ids}) GROUP BY e.organization_id;"
    )


def _pg_days(rows: str, day: str, last: str | None = None, where: str = "") -> str:
    return (
        f"{_ADD}SELECT organization_id, min({day}), {last or f'max({day})'} FROM {rows} r"
        f"{where} GROUP BY organization_id;"
    )


def _by_op(insert: str = "", update: str = "", delete: str = "") -> str:
    """A trigger body: each statement kind sees only its own transition tables."""
    branches = [
        (op_, body)
        for op_, body in (("INSERT", insert), ("UPDATE", update), ("DELETE", delete))
        if body
    ]
    text = ""
    for i, (op_, body) in enumerate(branches):
        text += f"{'IF' if i == 0 else 'ELSIF'} TG_OP = '{op_}' THEN\n{body}\n"
    return text + "END IF;"


_ORDER_COLUMNS = "(o.ordered_at, o.captured_minor, o.currency, o.channel_id)"
_CHANGED_ORDERS = (
    "SELECT n.id FROM new_rows n JOIN old_rows o ON o.id = n.id"
    f" WHERE {_ORDER_COLUMNS} IS DISTINCT FROM {_ORDER_COLUMNS.replace('o.', 'n.')}"
)
_LINE_ORDERS = "SELECT order_id FROM {rows}"
_PG_FUNCTIONS = {
    # An order counts on its day: its revenue, its lines' cost of goods.
    "orders": _by_op(
        insert=_pg_days("new_rows", _PG_DAY.format(t="r")),
        update=_pg_days(
            "new_rows", _PG_DAY.format(t="r"), where=f" WHERE r.id IN ({_CHANGED_ORDERS})"
        )
        + _pg_days("old_rows", _PG_DAY.format(t="r"), where=f" WHERE r.id IN ({_CHANGED_ORDERS})"),
        delete=_pg_days("old_rows", _PG_DAY.format(t="r")),
    ),
    # A line's value, units, SKU, title and product weigh in its order's revenue split
    # and in the splits of the order's and its returns' entries (on their own days).
    "order_lines": _by_op(
        insert=_pg_order_days(_LINE_ORDERS.format(rows="new_rows"))
        + _pg_entry_days(_LINE_ORDERS.format(rows="new_rows")),
        update=_pg_order_days(
            f"{_LINE_ORDERS.format(rows='new_rows')} UNION {_LINE_ORDERS.format(rows='old_rows')}"
        )
        + _pg_entry_days(
            f"{_LINE_ORDERS.format(rows='new_rows')} UNION {_LINE_ORDERS.format(rows='old_rows')}"
        ),
        delete=_pg_order_days(_LINE_ORDERS.format(rows="old_rows"))
        + _pg_entry_days(_LINE_ORDERS.format(rows="old_rows")),
    ),
    "ledger_entries": _by_op(insert=_pg_days("new_rows", "r.occurred_on")),
    # A rate counts from its day until the next one of its pair: until further notice.
    "fx_rates": _by_op(
        insert=_pg_days("new_rows", "r.day", _ALL[1]),
        update=_pg_days("new_rows", "r.day", _ALL[1]) + _pg_days("old_rows", "r.day", _ALL[1]),
        delete=_pg_days("old_rows", "r.day", _ALL[1]),
    ),
    # Approved (else requested) units weigh in the split of a return's entries.
    "return_lines": _by_op(
        update=_pg_entry_days(
            "SELECT n.return_id FROM new_rows n JOIN old_rows o ON o.id = n.id"
            " WHERE (o.approved, o.requested) IS DISTINCT FROM (n.approved, n.requested)",
            "return_id",
        )
    ),
    # The cost of goods uses a product's current unit cost, whenever the sale was.
    "products": _by_op(
        update=f"{_ADD}SELECT DISTINCT o.organization_id, {_ALL[0]}, {_ALL[1]}"
        " FROM old_rows o JOIN new_rows n ON n.id = o.id"
        " WHERE (o.unit_cost_minor, o.cost_currency)"
        " IS DISTINCT FROM (n.unit_cost_minor, n.cost_currency);",
        delete=f"{_ADD}SELECT DISTINCT organization_id, {_ALL[0]}, {_ALL[1]} FROM old_rows;",
    ),
}
# Which statements of each table append ranges.
_PG_EVENTS = {
    "orders": ("INSERT", "UPDATE", "DELETE"),
    "order_lines": ("INSERT", "UPDATE", "DELETE"),
    "ledger_entries": ("INSERT",),
    "fx_rates": ("INSERT", "UPDATE", "DELETE"),
    "return_lines": ("UPDATE",),
    "products": ("UPDATE", "DELETE"),
}


def _pg_upgrade() -> None:
    for table, body in _PG_FUNCTIONS.items():
        op.execute(
            f"CREATE FUNCTION report_dirty_{table}() RETURNS trigger AS $$\n"
            f"BEGIN\n{body}\nRETURN NULL;\nEND\n$$ LANGUAGE plpgsql"
        )
        for event in _PG_EVENTS[table]:
            tables = {
                "INSERT": "NEW TABLE AS new_rows",
                "UPDATE": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
                "DELETE": "OLD TABLE AS old_rows",
            }[event]
            op.execute(
                f"CREATE TRIGGER report_dirty_{table}_{event.lower()} AFTER {event} ON {table}"
                f" REFERENCING {tables} FOR EACH STATEMENT"
                f" EXECUTE FUNCTION report_dirty_{table}()"
            )


def _sqlite_insert(org: str, first: str, last: str, tail: str = "") -> str:
    # Triggers run per row here: a range already waiting (the same day again, mostly) is
    # not listed twice. (Writers take turns on SQLite, so nothing waits for anything.)
    return (
        "INSERT INTO report_dirty (organization_id, first_day, last_day) SELECT * FROM"
        f" (SELECT {org} AS organization_id, {first} AS first_day, {last} AS last_day {tail})"
        " AS d WHERE NOT EXISTS (SELECT 1 FROM report_dirty x"
        " WHERE x.organization_id = d.organization_id"
        " AND x.first_day = d.first_day AND x.last_day = d.last_day);"
    )


def _sqlite_order_day(row: str) -> str:
    day = f"date({row}.ordered_at)"
    return _sqlite_insert(f"{row}.organization_id", day, day)


def _sqlite_entries_of(column: str, value: str) -> str:
    return _sqlite_insert(
        "organization_id",
        "min(occurred_on)",
        "max(occurred_on)",
        f"FROM ledger_entries WHERE {column} = {value} GROUP BY organization_id",
    )


def _sqlite_line(row: str) -> str:
    return _sqlite_insert(
        "organization_id",
        "date(ordered_at)",
        "date(ordered_at)",
        f"FROM orders WHERE id = {row}.order_id",
    ) + _sqlite_entries_of("order_id", f"{row}.order_id")


_FIRST, _LAST = _ALL[0][5:], _ALL[1][5:]  # as SQLite text
_ORDER_CHANGED = (
    "OLD.ordered_at IS NOT NEW.ordered_at OR OLD.captured_minor IS NOT NEW.captured_minor"
    " OR OLD.currency IS NOT NEW.currency OR OLD.channel_id IS NOT NEW.channel_id"
)
_SQLITE_TRIGGERS = {
    "orders_insert": ("AFTER INSERT ON orders", _sqlite_order_day("NEW")),
    "orders_update": (
        f"AFTER UPDATE ON orders WHEN {_ORDER_CHANGED}",
        _sqlite_order_day("OLD") + _sqlite_order_day("NEW"),
    ),
    "orders_delete": ("AFTER DELETE ON orders", _sqlite_order_day("OLD")),
    "order_lines_insert": ("AFTER INSERT ON order_lines", _sqlite_line("NEW")),
    "order_lines_update": (
        "AFTER UPDATE ON order_lines",
        _sqlite_line("OLD") + _sqlite_line("NEW"),
    ),
    "order_lines_delete": ("AFTER DELETE ON order_lines", _sqlite_line("OLD")),
    "ledger_entries_insert": (
        "AFTER INSERT ON ledger_entries",
        _sqlite_insert("NEW.organization_id", "NEW.occurred_on", "NEW.occurred_on"),
    ),
    "fx_rates_insert": (
        "AFTER INSERT ON fx_rates",
        _sqlite_insert("NEW.organization_id", "NEW.day", _LAST),
    ),
    "fx_rates_update": (
        "AFTER UPDATE ON fx_rates",
        _sqlite_insert("OLD.organization_id", "OLD.day", _LAST)
        + _sqlite_insert("NEW.organization_id", "NEW.day", _LAST),
    ),
    "fx_rates_delete": (
        "AFTER DELETE ON fx_rates",
        _sqlite_insert("OLD.organization_id", "OLD.day", _LAST),
    ),
    "return_lines_update": (
        "AFTER UPDATE ON return_lines WHEN OLD.approved IS NOT NEW.approved"
        " OR OLD.requested IS NOT NEW.requested",
        _sqlite_entries_of("return_id", "NEW.return_id"),
    ),
    "products_update": (
        "AFTER UPDATE ON products WHEN OLD.unit_cost_minor IS NOT NEW.unit_cost_minor"
        " OR OLD.cost_currency IS NOT NEW.cost_currency",
        _sqlite_insert("OLD.organization_id", _FIRST, _LAST),
    ),
    "products_delete": (
        "AFTER DELETE ON products",
        _sqlite_insert("OLD.organization_id", _FIRST, _LAST),
    ),
}


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "report_rollups",
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
        sa.Column("channel_id", sa.Uuid(), nullable=True),
        sa.Column("sku", sa.String(128), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        *(
            sa.Column(name, sa.BigInteger(), nullable=False)
            for name in (
                "revenue",
                "cost_of_goods",
                "refunds",
                "return_costs",
                "recoveries",
                "missing_units",
                "missing_rates",
            )
        ),
    )
    op.create_index(
        "ix_report_rollups_org_period",
        "report_rollups",
        ["organization_id", "monthly", "period"],
    )
    op.create_table(
        "report_rollup_months",
        sa.Column(
            "organization_id",
            sa.Uuid(),
            sa.ForeignKey("organizations.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("month", sa.Date(), primary_key=True),
        sa.Column("base", sa.String(3), nullable=False),
        sa.Column("built_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "report_dirty",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        # No foreign key: the triggers append for rows being deleted too.
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("first_day", sa.Date(), nullable=False),
        sa.Column("last_day", sa.Date(), nullable=False),
    )
    op.create_index(
        "ix_report_dirty_organization_id",
        "report_dirty",
        ["organization_id", "first_day", "last_day"],
    )
    if pg:
        _pg_upgrade()
    else:
        for name, (when, body) in _SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER report_dirty_{name} {when} BEGIN {body} END")
    # Everything there is needs building once.
    op.execute(
        "INSERT INTO report_dirty (organization_id, first_day, last_day)"
        f" SELECT id, {_ALL[0] if pg else _ALL[0][5:]}, {_ALL[1] if pg else _ALL[1][5:]}"
        " FROM organizations"
    )
    swap_indexes(_INDEXES, {})


# Reports and the worker find an organization's orders by day, and a SKU's lines (its
# title, for a SKU with entries but no sale in the period) by SKU.
_INDEXES = {
    "ix_orders_org_ordered_at": ("orders", ["organization_id", "ordered_at"]),
    "ix_order_lines_org_sku": ("order_lines", ["organization_id", "sku"]),
}


def downgrade() -> None:
    swap_indexes({}, _INDEXES)
    if op.get_bind().dialect.name == "postgresql":
        for table, events in _PG_EVENTS.items():
            for event in events:
                op.execute(
                    f"DROP TRIGGER IF EXISTS report_dirty_{table}_{event.lower()} ON {table}"
                )
            op.execute(f"DROP FUNCTION IF EXISTS report_dirty_{table}()")
    else:
        for name in _SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS report_dirty_{name}")
    op.drop_table("report_dirty")
    op.drop_table("report_rollup_months")
    op.drop_index("ix_report_rollups_org_period", table_name="report_rollups")
    op.drop_table("report_rollups")
