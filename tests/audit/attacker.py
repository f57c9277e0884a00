"""What someone with write access to the database (but not the audit key) can do.

On PostgreSQL the append-only triggers stop a plain UPDATE or DELETE; a superuser (or
the tables' owner) can switch them off, which is what ``tampering()`` does, so tests can
show what the log still proves after that.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, select, text, update

from returnguard.audit import chain
from returnguard.audit.models import CheckpointHead, Event, EventCheckpoint, UnsealedHead
from returnguard.kit.db import Database


@contextmanager
def tampering(db: Database) -> Iterator[Connection]:
    """A transaction that bypasses the append-only triggers (PostgreSQL: replica role)."""
    with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        yield conn


def chain_rows(
    conn: Connection, organization_id: uuid.UUID, subject_type: str, subject_id: str
) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(Event.__table__)
        .where(
            Event.organization_id == organization_id,
            Event.subject_type == subject_type,
            Event.subject_id == subject_id,
        )
        .order_by(Event.subject_seq)
    )
    return [dict(r._mapping) for r in rows]


def reforge(
    db: Database,
    organization_id: uuid.UUID,
    subject_type: str,
    subject_id: str,
    subject_seq: int,
    **changes: Any,
) -> None:
    """Change one event, recompute the hashes of it and every later event of its chain,
    and bring every head the database holds in line: the recorded heads, the
    checkpoints' heads and their digests. Everything but the keyed signatures."""
    with tampering(db) as conn:
        rows = chain_rows(conn, organization_id, subject_type, subject_id)
        prev = chain.GENESIS
        for row in rows:
            if row["subject_seq"] == subject_seq:
                row.update(changes)
            if row["subject_seq"] >= subject_seq:
                row["prev_hash"] = prev
                row["hash"] = chain.event_hash(row)
                conn.execute(
                    update(Event)
                    .where(Event.id == row["id"])
                    .values(
                        {**changes, "prev_hash": row["prev_hash"], "hash": row["hash"]}
                        if row["subject_seq"] == subject_seq
                        else {"prev_hash": row["prev_hash"], "hash": row["hash"]}
                    )
                )
            prev = row["hash"]
        by_seq = {r["subject_seq"]: r["hash"] for r in rows}
        for model in (UnsealedHead, CheckpointHead):
            for (subject_seq_,) in conn.execute(
                select(model.subject_seq).where(
                    model.organization_id == organization_id,
                    model.subject_type == subject_type,
                    model.subject_id == subject_id,
                )
            ):
                conn.execute(
                    update(model)
                    .where(
                        model.organization_id == organization_id,
                        model.subject_type == subject_type,
                        model.subject_id == subject_id,
                        model.subject_seq == subject_seq_,
                    )
                    .values(hash=by_seq[subject_seq_])
                )
        redigest_checkpoints(conn, organization_id)


def redigest_checkpoints(conn: Connection, organization_id: uuid.UUID) -> None:
    """Recompute every checkpoint's heads digest, digest and links (no key needed)."""
    previous: dict[str, Any] | None = None
    cps = conn.execute(
        select(EventCheckpoint.__table__)
        .where(EventCheckpoint.organization_id == organization_id)
        .order_by(EventCheckpoint.number)
    ).all()
    for cp in cps:
        heads = [
            chain.Head(*r)
            for r in conn.execute(
                select(
                    CheckpointHead.subject_type,
                    CheckpointHead.subject_id,
                    CheckpointHead.subject_seq,
                    CheckpointHead.seq,
                    CheckpointHead.hash,
                ).where(CheckpointHead.checkpoint_id == cp.id)
            )
        ]
        subjects, heads_sha256 = chain.heads_digest(heads)
        values: dict[str, Any] = {
            "subjects": subjects,
            "heads_sha256": heads_sha256,
            "previous_digest": previous["digest"] if previous else None,
            "previous_signature": previous["signature"] if previous else None,
        }
        body = chain.checkpoint_body(
            organization_id=organization_id,
            number=cp.number,
            created_at=cp.created_at,
            **values,
        )
        values["digest"] = chain.digest(body)
        conn.execute(update(EventCheckpoint).where(EventCheckpoint.id == cp.id).values(values))
        previous = {"digest": values["digest"], "signature": cp.signature}
