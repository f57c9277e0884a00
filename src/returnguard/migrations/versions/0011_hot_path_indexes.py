"""hot path indexes: a buyer's history, and the ledger and buyer pages in keyset order

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 09:00:00.000000

A buyer's history was read with a sequential scan of its table at every request that
needed it: the policy's "first-time buyer" fact (the buyer's earlier orders, on every
decision of a return whose order has a buyer) and the buyer view's counts of orders,
returns and refunds (through the order). `orders.buyer_id` and `returns.buyer_id` had
no index, so each of those read every order or every return of every seller. Both get
one, ending in the date a window over the history would be bounded by.

The ledger and buyer lists page newest first by (created_at, id) within an
organization, but had no index in that order: each page sorted every entry (or buyer)
of the organization to keep the first 50. Each gets a composite index that starts with
the organization and ends in the keyset order; the buyer watchlist, a filter most
buyers fail, gets its own. The single-column index on buyers.organization_id is
dropped: the new ones (and the unique key on organization, channel and external id)
serve every query that used it, and each index costs every write of a buyer.

Built like 0010: on PostgreSQL with CREATE INDEX CONCURRENTLY, outside the migration's
transaction (Alembic's autocommit block), so that no write to orders, returns, buyers
or ledger entries waits for a build that grows with the table; an interrupted build
leaves an invalid index behind, so each index is dropped (if there) before it is
built, and running the upgrade again finishes the job. SQLite builds them in the
transaction.
"""

from collections.abc import Sequence

from returnguard.migrations.indexes import swap_indexes

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW = {
    "ix_orders_buyer_ordered": ("orders", ["buyer_id", "ordered_at"]),
    "ix_returns_buyer_requested": ("returns", ["buyer_id", "requested_at"]),
    "ix_ledger_entries_org_created": ("ledger_entries", ["organization_id", "created_at", "id"]),
    "ix_buyers_org_created": ("buyers", ["organization_id", "created_at", "id"]),
    "ix_buyers_org_watchlisted_created": (
        "buyers",
        ["organization_id", "watchlisted", "created_at", "id"],
    ),
}
OLD = {
    "ix_buyers_organization_id": ("buyers", ["organization_id"]),
}


def upgrade() -> None:
    swap_indexes(NEW, OLD)


def downgrade() -> None:
    swap_indexes(OLD, NEW)
