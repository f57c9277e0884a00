"""secrets encrypted at rest: webhook signing secrets and provider credentials

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 18:30:00.000000

Webhook endpoints kept their signing secret, and refund providers their tokens and keys
(JSON), in plain text: anyone who could read the database or a backup could sign
webhooks as ReturnGuard or refund money through the seller's payment account. Both are
now sealed with AES-GCM under a key the database does not hold (kit/secrets.py;
docs/operations.md, "Secrets at rest"), as ``v1:<key id>:<base64url>`` text bound to its
row, so both columns become TEXT (a sealed value is longer than the old 128 characters;
credentials are sealed JSON text, no longer a JSON column).

A migration is given no keys, so the rows already there are not encrypted here: each is
marked ``plain:<value>`` (the credentials as their JSON text). Such a value still works,
so deliveries and refunds go on after the upgrade; the worker warns at start while any is
left, and ``returnguard secrets rotate`` seals them all. Downgrading is possible only
while nothing is sealed (after a rotate the keys are needed to read the values back).

SQLite: the columns are replaced in place (add, copy, drop, rename), not by copying the
tables: recreating ``webhook_endpoints`` would cascade-delete its delivery log.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column, its type before this revision)
_COLUMNS = (
    ("webhook_endpoints", "secret", "VARCHAR(128)"),
    ("refund_providers", "credentials", "JSON"),
)


def _sqlite_replace(table: str, column: str, new_type: str, value_sql: str) -> None:
    op.execute(f"ALTER TABLE {table} ADD COLUMN {column}_new {new_type} NOT NULL DEFAULT ''")
    op.execute(f"UPDATE {table} SET {column}_new = {value_sql}")
    op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    op.execute(f"ALTER TABLE {table} RENAME COLUMN {column}_new TO {column}")


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, column, _old in _COLUMNS:
        if sqlite:
            _sqlite_replace(table, column, "TEXT", f"'plain:' || {column}")
        else:
            op.execute(
                f"ALTER TABLE {table} ALTER COLUMN {column} TYPE TEXT "
                f"USING 'plain:' || {column}::text"
            )


def downgrade() -> None:
    bind = op.get_bind()
    for table, column, _old in _COLUMNS:
        sealed = bind.execute(
            sa.text(f"SELECT count(*) FROM {table} WHERE {column} NOT LIKE 'plain:%'")
        ).scalar_one()
        if sealed:
            raise RuntimeError(
                f"{sealed} {table}.{column} value(s) are encrypted: a downgrade cannot read "
                "them back (restore the backup taken before `returnguard secrets rotate`)"
            )
    sqlite = bind.dialect.name == "sqlite"
    for table, column, old in _COLUMNS:
        plain = f"substr({column}, 7)"
        if sqlite:
            _sqlite_replace(table, column, old, plain)
        else:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {old} USING {plain}::{old}")
