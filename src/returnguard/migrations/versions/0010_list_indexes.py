"""list indexes: every filter of the returns list is a range scan in its keyset order

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 09:00:00.000000

The returns list pages newest first by (requested_at, id) within an organization, filtered
by status, channel and request date. With one index per column PostgreSQL gathered every
match of a filter (a bitmap scan, or a walk of the requested_at index filtering as it
went) and sorted them to keep the first 50. Each filter now has a composite
index that starts with the organization and ends in the keyset order, so a page reads
its rows in order and stops after them. The single-column indexes on organization_id,
status and requested_at are dropped: the new ones serve every query that used them, and
each index costs every write of a return.

Return lines get the index on return_id they lacked: every view of a return (and every
page of them) loads its lines by it, which was a scan of the whole table.

On PostgreSQL the indexes are built with CREATE INDEX CONCURRENTLY, outside the
migration's transaction (Alembic's autocommit block): a plain CREATE INDEX holds a SHARE
lock that stops every write to returns (each new return, each transition) of every seller
for as long as the build takes, which grows with the table. The price: the migrations
before this one are committed first, and an interrupted build leaves an invalid index
behind, so each index is dropped (if there) before it is built, and running the upgrade
again finishes the job. SQLite builds them in the transaction.
"""

from collections.abc import Sequence

from returnguard.migrations.indexes import swap_indexes

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW = {
    "ix_returns_org_requested": ("returns", ["organization_id", "requested_at", "id"]),
    "ix_returns_org_status_requested": (
        "returns",
        ["organization_id", "status", "requested_at", "id"],
    ),
    "ix_returns_org_channel_requested": (
        "returns",
        ["organization_id", "channel_id", "requested_at", "id"],
    ),
    "ix_returns_org_channel_status_requested": (
        "returns",
        ["organization_id", "channel_id", "status", "requested_at", "id"],
    ),
    "ix_return_lines_return_id": ("return_lines", ["return_id"]),
}
OLD = {
    "ix_returns_organization_id": ("returns", ["organization_id"]),
    "ix_returns_status": ("returns", ["status"]),
    "ix_returns_requested_at": ("returns", ["requested_at"]),
}


def upgrade() -> None:
    swap_indexes(NEW, OLD)


def downgrade() -> None:
    swap_indexes(OLD, NEW)
