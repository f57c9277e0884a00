"""Index changes that do not stop writes: shared by the migrations that add indexes.

On PostgreSQL the indexes are built with CREATE INDEX CONCURRENTLY, outside the
migration's transaction (Alembic's autocommit block): a plain CREATE INDEX holds a SHARE
lock that stops every write to the table for as long as the build takes. An interrupted
build leaves an invalid index behind, so each is dropped (if there) before it is built,
and running the upgrade again finishes the job. SQLite builds them in the transaction.
"""

from __future__ import annotations

from alembic import op

Indexes = dict[str, tuple[str, list[str]]]
"""Index name -> (table, columns)."""


def swap_indexes(create: Indexes, drop: Indexes) -> None:
    """Build the ``create`` indexes, then drop the ``drop`` ones."""
    if op.get_bind().dialect.name != "postgresql":
        for name, (table, columns) in create.items():
            op.create_index(name, table, columns)
        for name, (table, _) in drop.items():
            op.drop_index(name, table_name=table)
        return
    with op.get_context().autocommit_block():
        for name, (table, columns) in create.items():
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
            op.execute(f"CREATE INDEX CONCURRENTLY {name} ON {table} ({', '.join(columns)})")
        for name in drop:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
