from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from returnguard.kit.db import Base, UTCDateTime, new_id

# On PostgreSQL `events.seq` is drawn from this sequence (migration 0009), which no
# writer waits for; on SQLite, whose writers take turns, it is the organization's next
# number.
EVENT_SEQUENCE = "events_seq_seq"


class Event(Base):
    """One append-only record of a change (who, when, what, before → after), hash-chained
    to the previous event of the same subject (a return, a refund, a buyer …)."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("organization_id", "seq"),
        # Two writers of one subject cannot both append the same link: the second one
        # fails here, re-reads the head and tries again (audit/service.py).
        UniqueConstraint("organization_id", "subject_type", "subject_id", "subject_seq"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    # The organization's listing order ("event #1234"): unique and increasing, with gaps
    # on PostgreSQL (one sequence for every organization; a rolled-back write uses up its
    # numbers). Hashed, but not the chain: that is subject_seq.
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(64))
    # The place in the subject's own chain: 1, 2, 3 … without gaps.
    subject_seq: Mapped[int] = mapped_column(Integer)
    return_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True, index=True)
    action: Mapped[str] = mapped_column(String(64))
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    actor_label: Mapped[str] = mapped_column(String(200), default="")
    before: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    data: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The hash of the subject's previous event (GENESIS for its first).
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class UnsealedHead(Base):
    """A chain head written since the last checkpoint: one row per subject per committed
    transaction, consumed by the next checkpoint. Inserting it locks nothing another
    writer needs, so it is how "changed since the last checkpoint" is found without a
    per-organization counter; `verify` also checks that each still matches its event."""

    __tablename__ = "event_unsealed_heads"
    __table_args__ = (Index("ix_event_unsealed_heads_organization_id_id", "organization_id", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(64))
    subject_seq: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    hash: Mapped[str] = mapped_column(String(64))


class EventCheckpoint(Base):
    """A signed seal over the heads of every chain of an organization that changed since
    the previous checkpoint, which it names (so checkpoints chain too). Append-only."""

    __tablename__ = "event_checkpoints"
    __table_args__ = (UniqueConstraint("organization_id", "number"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    number: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    subjects: Mapped[int] = mapped_column(Integer)
    heads_sha256: Mapped[str] = mapped_column(String(64))
    previous_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    previous_signature: Mapped[str | None] = mapped_column(String(64), nullable=True)
    digest: Mapped[str] = mapped_column(String(64))
    # HMAC-SHA256 under RETURNGUARD_AUDIT_KEY; None when written without a key.
    signature: Mapped[str | None] = mapped_column(String(64), nullable=True)
    key_id: Mapped[str | None] = mapped_column(String(16), nullable=True)


class CheckpointHead(Base):
    """One chain head sealed by a checkpoint, with its own HMAC (``seal``)."""

    __tablename__ = "event_checkpoint_heads"
    __table_args__ = (
        Index(
            "ix_event_checkpoint_heads_subject",
            "organization_id",
            "subject_type",
            "subject_id",
            "subject_seq",
        ),
    )

    checkpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("event_checkpoints.id", ondelete="CASCADE"), primary_key=True
    )
    subject_type: Mapped[str] = mapped_column(String(32), primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    subject_seq: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    hash: Mapped[str] = mapped_column(String(64))
    seal: Mapped[str | None] = mapped_column(String(64), nullable=True)
