"""decisions by people: who decided a return, and a person's override of the policy

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 09:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("return_decisions") as batch:
        batch.add_column(
            sa.Column("decided_by", sa.String(length=200), server_default="", nullable=False)
        )
        batch.add_column(
            sa.Column("path", sa.String(length=32), server_default="policy", nullable=False)
        )
        batch.add_column(sa.Column("override_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("policy_outcome", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("return_decisions") as batch:
        batch.drop_column("policy_outcome")
        batch.drop_column("override_reason")
        batch.drop_column("path")
        batch.drop_column("decided_by")
