"""order lookup indexes: the order list by channel, and buyers by email

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 19:00:00.000000

`GET /api/v1/orders` pages an organization's orders newest first by (ordered_at, id).
Unfiltered or by day it is a range of ix_orders_org_ordered_at (0012); by marketplace
order id it probes the unique key on (channel_id, external_id) once per channel. Two
filters had no index in that order:

- by channel: only the single-column index on channel_id, so every page sorted all of
  the channel's orders to keep the first 50. ix_orders_channel_ordered ends in the
  keyset order, so a page is a range scan that stops after its rows.
- by buyer email: emails are kept as the channel sent them and compared lower-cased,
  which no index served, so each lookup read every buyer of the organization.
  ix_buyers_org_email_lower is on the organization and the lower-cased email; the
  buyer's orders are then read through ix_orders_buyer_ordered (0011).

Built like 0011 (swap_indexes): concurrently on PostgreSQL, outside the transaction.
The email index is on an expression, which Alembic's create_index would quote as a
column name on SQLite, so there it is built from its text.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from returnguard.migrations.indexes import swap_indexes

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW = {
    "ix_orders_channel_ordered": ("orders", ["channel_id", "ordered_at", "id"]),
}
EMAIL = "ix_buyers_org_email_lower"
EMAIL_COLUMNS = ["organization_id", "lower(email)"]


def _postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if _postgresql():
        swap_indexes(NEW | {EMAIL: ("buyers", EMAIL_COLUMNS)}, {})
        return
    swap_indexes(NEW, {})
    op.create_index(EMAIL, "buyers", [sa.text(c) for c in EMAIL_COLUMNS])


def downgrade() -> None:
    if _postgresql():
        swap_indexes({}, NEW | {EMAIL: ("buyers", EMAIL_COLUMNS)})
        return
    op.drop_index(EMAIL, table_name="buyers")
    swap_indexes({}, NEW)
