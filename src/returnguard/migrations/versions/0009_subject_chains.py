"""subject chains: the event log is chained per subject and sealed by signed checkpoints

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 09:00:00.000000

Until 0008 every event of an organization was chained to the one before, with the head
on the organization row: each commit locked that row, so every write of a seller
queued behind every other (and deadlocked against the key-share locks its own inserts
took). From here each event is chained to the previous event of its *subject* (a
return, a refund, a buyer …), numbered ``subject_seq`` in that chain, and the heads are
sealed by checkpoints signed with a key the database does not hold.

The upgrade first verifies the old per-organization chains (re-chaining a log that was
already tampered with would launder it; set RETURNGUARD_ACCEPT_BROKEN_EVENT_LOG=1 to go
ahead anyway, knowingly), numbers every subject's events in their old order, recomputes
every hash in batches, and records each chain's head for the first checkpoint to seal.
Event ids and numbers (``seq``) do not change. On PostgreSQL new numbers come from a
sequence, and triggers make events and checkpoints append-only.
"""

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

import returnguard.kit.db

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 2000
GENESIS = "0" * 64

events = sa.table(
    "events",
    sa.column("id", sa.Uuid()),
    sa.column("organization_id", sa.Uuid()),
    sa.column("seq", sa.BigInteger()),
    sa.column("subject_type", sa.String()),
    sa.column("subject_id", sa.String()),
    sa.column("subject_seq", sa.Integer()),
    sa.column("return_id", sa.Uuid()),
    sa.column("action", sa.String()),
    sa.column("actor_type", sa.String()),
    sa.column("actor_id", sa.String()),
    sa.column("actor_label", sa.String()),
    sa.column("before", sa.JSON()),
    sa.column("after", sa.JSON()),
    sa.column("data", sa.JSON()),
    sa.column("occurred_at", returnguard.kit.db.UTCDateTime()),
    sa.column("prev_hash", sa.String()),
    sa.column("hash", sa.String()),
)
organizations = sa.table(
    "organizations",
    sa.column("id", sa.Uuid()),
    sa.column("event_seq", sa.Integer()),
    sa.column("event_head", sa.String()),
)

# Frozen copies of the hashing of both versions: a migration must compute tomorrow what
# it computes today, whatever audit/chain.py becomes.


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _hash(prev_hash: str, row: Any, *, per_subject: bool) -> str:
    body = {
        "seq": int(row.seq),
        "organization_id": str(row.organization_id),
        "subject_type": row.subject_type,
        "subject_id": row.subject_id,
        "return_id": str(row.return_id) if row.return_id else None,
        "action": row.action,
        "actor_type": row.actor_type,
        "actor_id": row.actor_id,
        "actor_label": row.actor_label,
        "before": row.before,
        "after": row.after,
        "data": row.data,
        "occurred_at": row.occurred_at.isoformat(),
    }
    if per_subject:
        body["subject_seq"] = int(row.subject_seq)
    return hashlib.sha256((prev_hash + _canonical(body)).encode()).hexdigest()


def _pages(
    conn: sa.Connection, order: list[Any], where: Any = None, *, legacy: bool = False
) -> Iterator[Sequence[Any]]:
    """Every event, in ``order``, a page at a time (keyset pagination: the updates made
    between pages never disturb the walk)."""
    columns = [c for c in events.c if not (legacy and c.name == "subject_seq")]
    last: tuple[Any, ...] | None = None
    while True:
        stmt = sa.select(*columns).order_by(*order).limit(BATCH)
        if where is not None:
            stmt = stmt.where(where)
        if last is not None:
            after = sa.tuple_(
                *[sa.bindparam(None, v, type_=c.type) for c, v in zip(order, last, strict=True)]
            )
            stmt = stmt.where(sa.tuple_(*order) > after)
        rows = conn.execute(stmt).all()
        if not rows:
            return
        yield rows
        last = tuple(getattr(rows[-1], c.name) for c in order)


def _legacy_problem(conn: sa.Connection, org_id: Any, head_seq: int, head: str) -> str | None:
    expected, prev = 1, GENESIS
    for page in _pages(conn, [events.c.seq], events.c.organization_id == org_id, legacy=True):
        for row in page:
            if row.seq != expected:
                return f"event #{expected} is missing"
            if row.prev_hash != prev:
                return f"event #{row.seq} does not point at the hash of #{row.seq - 1}"
            if _hash(prev, row, per_subject=False) != row.hash:
                return f"event #{row.seq} was altered"
            prev, expected = row.hash, expected + 1
    if head_seq != expected - 1 or head != prev:
        return f"events after #{expected - 1} were deleted"
    return None


def _verify_legacy(conn: sa.Connection) -> None:
    """The old per-organization chains must hold before they are re-chained."""
    problems = []
    for org_id, head_seq, head in conn.execute(sa.select(organizations)).all():
        problem = _legacy_problem(conn, org_id, head_seq, head)
        if problem:
            problems.append(f"organization {org_id}: {problem}")
    if problems and os.environ.get("RETURNGUARD_ACCEPT_BROKEN_EVENT_LOG") != "1":
        raise RuntimeError(
            "the event log does not verify, so it is not re-chained (that would seal the "
            "changes in): " + "; ".join(problems[:20]) + ". Investigate (restore the events "
            "from a backup), or set RETURNGUARD_ACCEPT_BROKEN_EVENT_LOG=1 to re-chain the "
            "log as it is now."
        )


def _rechain(conn: sa.Connection, *, per_subject: bool) -> None:
    """Recompute every hash, chain by chain (per subject, or per organization)."""
    if per_subject:
        order = [
            events.c.organization_id,
            events.c.subject_type,
            events.c.subject_id,
            events.c.subject_seq,
        ]
    else:
        order = [events.c.organization_id, events.c.seq]
    update = (
        sa.update(events)
        .where(events.c.id == sa.bindparam("b_id"))
        .values(prev_hash=sa.bindparam("b_prev"), hash=sa.bindparam("b_hash"))
    )
    chain: tuple[Any, ...] | None = None
    prev = GENESIS
    for page in _pages(conn, order):
        changes = []
        for row in page:
            key = tuple(getattr(row, c.name) for c in order[:-1])
            if key != chain:
                chain, prev = key, GENESIS
            new = _hash(prev, row, per_subject=per_subject)
            changes.append({"b_id": row.id, "b_prev": prev, "b_hash": new})
            prev = new
        if conn.dialect.name == "postgresql":
            # One statement per page instead of one per row.
            conn.execute(
                sa.text(
                    "UPDATE events SET prev_hash = v.prev, hash = v.hash FROM ("
                    " SELECT unnest(CAST(:ids AS uuid[])) AS id,"
                    " unnest(CAST(:prevs AS text[])) AS prev,"
                    " unnest(CAST(:hashes AS text[])) AS hash) AS v"
                    " WHERE events.id = v.id"
                ),
                {
                    "ids": [c["b_id"] for c in changes],
                    "prevs": [c["b_prev"] for c in changes],
                    "hashes": [c["b_hash"] for c in changes],
                },
            )
        else:
            conn.execute(update, changes)


_APPEND_ONLY_FUNCTION = """
CREATE FUNCTION audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% rows are append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql
"""
_APPEND_ONLY_TABLES = ("events", "event_checkpoints", "event_checkpoint_heads")


def upgrade() -> None:
    conn = op.get_bind()
    postgresql = conn.dialect.name == "postgresql"
    _verify_legacy(conn)

    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("subject_seq", sa.Integer(), nullable=True))
    # Each subject's events keep the order the organization's chain gave them.
    conn.execute(
        sa.text(
            "UPDATE events SET subject_seq = numbered.n FROM ("
            " SELECT id, row_number() OVER (PARTITION BY organization_id, subject_type,"
            " subject_id ORDER BY seq) AS n FROM events) AS numbered"
            " WHERE events.id = numbered.id"
        )
    )
    with op.batch_alter_table("events") as batch:
        batch.alter_column("subject_seq", existing_type=sa.Integer(), nullable=False)
        batch.create_unique_constraint(
            batch.f("uq_events_organization_id_subject_type_subject_id_subject_seq"),
            ["organization_id", "subject_type", "subject_id", "subject_seq"],
        )
    # After the constraint: its index is what the walk below pages along.
    _rechain(conn, per_subject=True)

    op.create_table(
        "event_unsealed_heads",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("subject_type", sa.String(length=32), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("subject_seq", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_event_unsealed_heads_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_unsealed_heads")),
    )
    op.create_index(
        "ix_event_unsealed_heads_organization_id_id",
        "event_unsealed_heads",
        ["organization_id", "id"],
        unique=False,
    )
    op.create_table(
        "event_checkpoints",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("created_at", returnguard.kit.db.UTCDateTime(), nullable=False),
        sa.Column("subjects", sa.Integer(), nullable=False),
        sa.Column("heads_sha256", sa.String(length=64), nullable=False),
        sa.Column("previous_digest", sa.String(length=64), nullable=True),
        sa.Column("previous_signature", sa.String(length=64), nullable=True),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=64), nullable=True),
        sa.Column("key_id", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_event_checkpoints_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_checkpoints")),
        sa.UniqueConstraint(
            "organization_id", "number", name=op.f("uq_event_checkpoints_organization_id_number")
        ),
    )
    op.create_table(
        "event_checkpoint_heads",
        sa.Column("checkpoint_id", sa.Uuid(), nullable=False),
        sa.Column("subject_type", sa.String(length=32), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("subject_seq", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("seal", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["event_checkpoints.id"],
            name=op.f("fk_event_checkpoint_heads_checkpoint_id_event_checkpoints"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_event_checkpoint_heads_organization_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "checkpoint_id", "subject_type", "subject_id", name=op.f("pk_event_checkpoint_heads")
        ),
    )
    op.create_index(
        "ix_event_checkpoint_heads_subject",
        "event_checkpoint_heads",
        ["organization_id", "subject_type", "subject_id", "subject_seq"],
        unique=False,
    )
    # Every chain's head now waits for the first checkpoint to seal it.
    conn.execute(
        sa.text(
            "INSERT INTO event_unsealed_heads"
            " (organization_id, subject_type, subject_id, subject_seq, seq, hash)"
            " SELECT e.organization_id, e.subject_type, e.subject_id, e.subject_seq, e.seq,"
            " e.hash FROM events e JOIN ("
            "  SELECT organization_id, subject_type, subject_id, max(subject_seq) AS top"
            "  FROM events GROUP BY organization_id, subject_type, subject_id) AS heads"
            " ON e.organization_id = heads.organization_id"
            " AND e.subject_type = heads.subject_type AND e.subject_id = heads.subject_id"
            " AND e.subject_seq = heads.top"
            " ORDER BY e.organization_id, e.seq"
        )
    )
    # Not batch_alter_table: on SQLite that rebuilds the table, and dropping the old
    # organizations table (foreign keys on) would cascade-delete every row that refers
    # to it. SQLite >= 3.35 drops a plain column in place.
    op.drop_column("organizations", "event_head")
    op.drop_column("organizations", "event_seq")

    if postgresql:
        op.execute("CREATE SEQUENCE events_seq_seq OWNED BY events.seq")
        op.execute(
            "SELECT setval('events_seq_seq', COALESCE((SELECT max(seq) FROM events), 0) + 1, false)"
        )
        op.execute(_APPEND_ONLY_FUNCTION)
        for table in _APPEND_ONLY_TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}"
                " FOR EACH ROW EXECUTE FUNCTION audit_append_only()"
            )


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        for table in _APPEND_ONLY_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute("DROP FUNCTION IF EXISTS audit_append_only()")
        op.execute("DROP SEQUENCE IF EXISTS events_seq_seq")
    op.drop_index("ix_event_checkpoint_heads_subject", table_name="event_checkpoint_heads")
    op.drop_table("event_checkpoint_heads")
    op.drop_table("event_checkpoints")
    op.drop_index("ix_event_unsealed_heads_organization_id_id", table_name="event_unsealed_heads")
    op.drop_table("event_unsealed_heads")

    # Back to one chain per organization, numbered 1, 2, 3 … as 0008 expects.
    op.add_column(
        "organizations",
        sa.Column("event_seq", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column(
        "organizations",
        sa.Column("event_head", sa.String(length=64), nullable=False, server_default=GENESIS),
    )
    conn.execute(
        sa.text(
            "UPDATE events SET seq = -numbered.n FROM ("
            " SELECT id, row_number() OVER (PARTITION BY organization_id ORDER BY seq) AS n"
            " FROM events) AS numbered WHERE events.id = numbered.id"
        )
    )
    conn.execute(sa.text("UPDATE events SET seq = -seq"))
    _rechain(conn, per_subject=False)
    conn.execute(
        sa.text(
            "UPDATE organizations SET event_seq = heads.n, event_head = heads.hash FROM ("
            " SELECT e.organization_id, e.seq AS n, e.hash FROM events e JOIN ("
            "  SELECT organization_id, max(seq) AS top FROM events GROUP BY organization_id"
            " ) AS m ON e.organization_id = m.organization_id AND e.seq = m.top) AS heads"
            " WHERE organizations.id = heads.organization_id"
        )
    )
    with op.batch_alter_table("events") as batch:
        batch.drop_constraint(
            batch.f("uq_events_organization_id_subject_type_subject_id_subject_seq"),
            type_="unique",
        )
        batch.drop_column("subject_seq")
