"""evidence store: who a file came from, and stored evidence that cannot be rewritten

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 20:00:00.000000

Evidence now says where it came from: ``source`` is buyer, agent, inspector or carrier
(rows from before are the agent's: only staff could upload). A CHECK keeps it to those.

Evidence is immutable once attached: triggers refuse an UPDATE of what the evidence is
(its kind, type, size, SHA-256, storage key, text, source, uploader, time, return and
organization) on PostgreSQL and SQLite alike, whoever sends it. The uploaded file name
stays correctable (it is only the name a download is saved under), and rows may still
be deleted (with their return or organization). The files themselves are kept by their
SHA-256 (kit/storage.py), so a stored object cannot change under its row either.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SOURCES = ("buyer", "agent", "inspector", "carrier")
CHECK = "ck_return_evidence_source"
_IMMUTABLE = (
    "organization_id", "return_id", "kind", "content_type", "size", "sha256",
    "storage_key", "text", "uploaded_by", "created_at", "source",
)  # fmt: skip
_MESSAGE = "evidence is immutable once attached: only its file name may change"

_PG_FUNCTION = f"""
CREATE FUNCTION return_evidence_immutable() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '{_MESSAGE} (evidence %)', OLD.id
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql
"""
_PG_TRIGGER = f"""
CREATE TRIGGER return_evidence_immutable
BEFORE UPDATE OF {", ".join(_IMMUTABLE)} ON return_evidence
FOR EACH ROW
WHEN ({" OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in _IMMUTABLE)})
EXECUTE FUNCTION return_evidence_immutable()
"""
_SQLITE_TRIGGER = f"""
CREATE TRIGGER return_evidence_immutable
BEFORE UPDATE OF {", ".join(_IMMUTABLE)} ON return_evidence
FOR EACH ROW
WHEN {" OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in _IMMUTABLE)}
BEGIN
    SELECT RAISE(ABORT, '{_MESSAGE}');
END
"""


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    allowed = ", ".join(f"'{s}'" for s in SOURCES)
    with op.batch_alter_table("return_evidence") as batch:
        batch.add_column(sa.Column("source", sa.String(16), nullable=False, server_default="agent"))
        batch.create_check_constraint(CHECK, f"source IN ({allowed})")
    if postgresql:
        op.execute(_PG_FUNCTION)
        op.execute(_PG_TRIGGER)
    else:
        op.execute(_SQLITE_TRIGGER)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.execute(
        "DROP TRIGGER IF EXISTS return_evidence_immutable"
        + (" ON return_evidence" if postgresql else "")
    )
    if postgresql:
        op.execute("DROP FUNCTION IF EXISTS return_evidence_immutable()")
    with op.batch_alter_table("return_evidence") as batch:
        batch.drop_constraint(CHECK, type_="check")
        batch.drop_column("source")
