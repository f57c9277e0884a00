"""provider amounts: what a provider's rounding left unsent, and answers kept verbatim

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("refunds") as batch:
        batch.add_column(
            sa.Column("unsent_minor", sa.BigInteger(), server_default="0", nullable=False)
        )
        batch.add_column(sa.Column("provider_response", sa.JSON(), nullable=True))
        batch.create_check_constraint(
            op.f("ck_refunds_unsent_within_amount"),
            "unsent_minor >= 0 AND unsent_minor < amount_minor",
        )


def downgrade() -> None:
    with op.batch_alter_table("refunds") as batch:
        batch.drop_constraint(op.f("ck_refunds_unsent_within_amount"), type_="check")
        batch.drop_column("provider_response")
        batch.drop_column("unsent_minor")
