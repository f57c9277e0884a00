"""Checkpoints: signed seals over the heads of every chain that changed since the last one.

Written outside requests, by ``returnguard events checkpoint`` (cron) or by a worker
loop calling ``CheckpointSchedule.tick()``; never inside a request's transaction. A
checkpoint consumes the heads writers recorded in ``event_unsealed_heads``, checks each
chain from its previously sealed head up to the new one (a chain that does not verify
is refused, not sealed, and stays for ``verify`` to name), and signs the result with
HMAC-SHA256 under ``RETURNGUARD_AUDIT_KEY``. Without a key it is written unsigned: it
still links the heads together, but proves nothing against a database writer.

Several writers may run (many workers on PostgreSQL): each organization's checkpoint is
written under a transaction-scoped advisory lock that the others skip, and its number is
unique, so two can never both become checkpoint #n. Writers only read events and insert
checkpoints: no request ever waits for one.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from returnguard.audit.chain import (
    GENESIS,
    Head,
    checkpoint_body,
    digest,
    event_hash,
    heads_digest,
    key_id,
    seal,
    sign,
)
from returnguard.audit.models import CheckpointHead, Event, EventCheckpoint, UnsealedHead
from returnguard.kit.db import Database, utcnow

log = logging.getLogger("returnguard.audit")

# Heads one checkpoint consumes at most (a bigger backlog becomes several checkpoints).
HEADS_PER_CHECKPOINT = 5_000
# How often a worker loop seals new heads.
DEFAULT_INTERVAL = timedelta(minutes=5)

Subject = tuple[str, str]


@dataclass(frozen=True)
class Refused:
    """A chain that changed but does not verify from its last sealed head: not sealed."""

    organization_id: uuid.UUID
    subject_type: str
    subject_id: str
    reason: str


@dataclass(frozen=True)
class Written:
    organization_id: uuid.UUID
    number: int
    subjects: int
    digest: str
    signature: str | None
    key_id: str | None


@dataclass
class CheckpointRun:
    written: list[Written] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    # Organizations another writer was sealing at the same moment.
    busy: list[uuid.UUID] = field(default_factory=list)


def organizations_to_seal(db: Database) -> list[uuid.UUID]:
    with db.session() as session:
        return list(session.scalars(select(UnsealedHead.organization_id).distinct()))


def write_checkpoints(
    db: Database,
    key: bytes | None,
    organization_id: uuid.UUID | None = None,
    *,
    limit: int = HEADS_PER_CHECKPOINT,
) -> CheckpointRun:
    """Seal every head written since the last checkpoints (of one organization, or all)."""
    run = CheckpointRun()
    orgs = [organization_id] if organization_id else organizations_to_seal(db)
    for org in orgs:
        refused: set[Subject] = set()
        while True:
            outcome = _write_one(db, org, key, limit, refused)
            if outcome is None:
                break
            if isinstance(outcome, str):  # "busy"
                run.busy.append(org)
                break
            run.refused.extend(outcome.refused)
            refused.update((r.subject_type, r.subject_id) for r in outcome.refused)
            if outcome.written is not None:
                run.written.append(outcome.written)
    return run


def _lock_key(organization_id: uuid.UUID) -> int:
    # A signed 64-bit key for pg_try_advisory_xact_lock, from the organization's id.
    return int.from_bytes(organization_id.bytes[:8], "big", signed=True)


@dataclass
class _Outcome:
    written: Written | None
    refused: list[Refused]


def _write_one(
    db: Database,
    organization_id: uuid.UUID,
    key: bytes | None,
    limit: int,
    refused: set[Subject],
) -> _Outcome | str | None:
    """One checkpoint (or none, when every head taken was sealed already or refused),
    "busy" when another writer holds the organization, None when nothing is left."""
    try:
        with db.session() as session:
            if session.get_bind().dialect.name == "postgresql":
                got = session.scalar(
                    select(func.pg_try_advisory_xact_lock(_lock_key(organization_id)))
                )
                if not got:
                    return "busy"
            return _seal(session, organization_id, key, limit, refused)
    except IntegrityError:
        # Another writer made this checkpoint number first; its checkpoint stands.
        return "busy"


def _seal(
    session: Session,
    organization_id: uuid.UUID,
    key: bytes | None,
    limit: int,
    refused: set[Subject],
) -> _Outcome | None:
    u = UnsealedHead
    stmt = select(u.id, u.subject_type, u.subject_id, u.subject_seq, u.seq, u.hash).where(
        u.organization_id == organization_id
    )
    if refused:
        stmt = stmt.where(tuple_(u.subject_type, u.subject_id).not_in(sorted(refused)))
    claims = session.execute(stmt.order_by(u.id).limit(limit)).all()
    if not claims:
        return None
    claimed: dict[Subject, Head] = {}
    claim_ids: dict[Subject, list[int]] = defaultdict(list)
    for claim_id, stype, sid, sseq, seq, hash_ in claims:
        subject = (stype, sid)
        claim_ids[subject].append(claim_id)
        if subject not in claimed or sseq > claimed[subject].subject_seq:
            claimed[subject] = Head(stype, sid, sseq, seq, hash_)
    subjects = sorted(claimed)
    sealed_before = _last_sealed(session, organization_id, subjects)
    heads: list[Head] = []
    problems: list[Refused] = []
    consumed: list[int] = []
    segments = _segments(session, organization_id, claimed, sealed_before)
    for subject, segment in zip(subjects, segments, strict=True):
        before = sealed_before.get(subject)
        if before is not None and claimed[subject].subject_seq <= before[0]:
            consumed.extend(claim_ids[subject])  # sealed already
            continue
        problem = _check_segment(before, claimed[subject], segment)
        if problem:
            problems.append(Refused(organization_id, subject[0], subject[1], problem))
            log.error(
                "checkpoint: %s %s of organization %s not sealed: %s",
                subject[0],
                subject[1],
                organization_id,
                problem,
            )
            continue
        heads.append(claimed[subject])
        consumed.extend(claim_ids[subject])
    for i in range(0, len(consumed), 500):
        session.execute(delete(UnsealedHead).where(UnsealedHead.id.in_(consumed[i : i + 500])))
    written = _insert_checkpoint(session, organization_id, key, heads) if heads else None
    return _Outcome(written, problems)


def _last_sealed(
    session: Session, organization_id: uuid.UUID, subjects: list[Subject]
) -> dict[Subject, tuple[int, str]]:
    """Each subject's latest sealed (subject_seq, hash): one indexed lookup apiece."""
    h = CheckpointHead
    stmt = (
        select(h.subject_seq, h.hash)
        .where(
            h.organization_id == bindparam("org"),
            h.subject_type == bindparam("subject_type"),
            h.subject_id == bindparam("subject_id"),
        )
        .order_by(h.subject_seq.desc())
        .limit(1)
    )
    found: dict[Subject, tuple[int, str]] = {}
    conn = session.connection()  # Core: thousands of small lookups, no ORM per row
    for subject in subjects:
        row = conn.execute(
            stmt, {"org": organization_id, "subject_type": subject[0], "subject_id": subject[1]}
        ).first()
        if row is not None:
            found[subject] = (row.subject_seq, row.hash)
    return found


_Segment = list[dict[str, Any]]  # one chain's events, from its sealed head to the new one


_COLUMNS = (
    Event.seq,
    Event.organization_id,
    Event.subject_type,
    Event.subject_id,
    Event.subject_seq,
    Event.return_id,
    Event.action,
    Event.actor_type,
    Event.actor_id,
    Event.actor_label,
    Event.before,
    Event.after,
    Event.data,
    Event.occurred_at,
    Event.prev_hash,
    Event.hash,
)


def _segments(
    session: Session,
    organization_id: uuid.UUID,
    claimed: dict[Subject, Head],
    sealed_before: dict[Subject, tuple[int, str]],
) -> Iterable[_Segment]:
    """Per subject (sorted), the events from its last sealed seq up to its claimed seq:
    one statement, compiled once, run per subject along the chain's unique index."""
    stmt = (
        select(*_COLUMNS)
        .where(
            Event.organization_id == bindparam("org"),
            Event.subject_type == bindparam("subject_type"),
            Event.subject_id == bindparam("subject_id"),
            Event.subject_seq >= bindparam("low"),
            Event.subject_seq <= bindparam("high"),
        )
        .order_by(Event.subject_seq)
    )
    conn = session.connection()
    for subject in sorted(claimed):
        params = {
            "org": organization_id,
            "subject_type": subject[0],
            "subject_id": subject[1],
            "low": sealed_before.get(subject, (1, ""))[0],
            "high": claimed[subject].subject_seq,
        }
        yield [dict(row._mapping) for row in conn.execute(stmt, params)]


def _check_segment(before: tuple[int, str] | None, claim: Head, segment: _Segment) -> str | None:
    """Why the chain cannot be sealed at ``claim``, or None when it verifies."""
    events = segment
    if before is None:
        expected, prev = 1, GENESIS
    else:
        if not events or events[0]["subject_seq"] != before[0] or events[0]["hash"] != before[1]:
            return f"its sealed head (seq {before[0]}) is gone or was rewritten"
        expected, prev = before[0] + 1, before[1]
        events = events[1:]
    for e in events:
        if e["subject_seq"] != expected:
            return f"seq {expected} is missing"
        if e["prev_hash"] != prev or event_hash(e) != e["hash"]:
            return f"seq {expected} does not verify"
        expected, prev = expected + 1, e["hash"]
    if expected - 1 != claim.subject_seq or prev != claim.hash:
        return f"its head seq {claim.subject_seq} as written is gone or was rewritten"
    return None


def _insert_checkpoint(
    session: Session, organization_id: uuid.UUID, key: bytes | None, heads: list[Head]
) -> Written:
    previous = session.scalars(
        select(EventCheckpoint)
        .where(EventCheckpoint.organization_id == organization_id)
        .order_by(EventCheckpoint.number.desc())
        .limit(1)
    ).first()
    number = previous.number + 1 if previous else 1
    created_at = utcnow()
    subjects, heads_sha256 = heads_digest(heads)
    body = checkpoint_body(
        organization_id=organization_id,
        number=number,
        created_at=created_at,
        previous_digest=previous.digest if previous else None,
        previous_signature=previous.signature if previous else None,
        subjects=subjects,
        heads_sha256=heads_sha256,
    )
    checkpoint_id = uuid.uuid4()
    written = Written(
        organization_id=organization_id,
        number=number,
        subjects=subjects,
        digest=digest(body),
        signature=sign(key, body) if key is not None else None,
        key_id=key_id(key) if key is not None else None,
    )
    session.execute(
        insert(EventCheckpoint).values(
            id=checkpoint_id,
            organization_id=organization_id,
            number=number,
            created_at=created_at,
            subjects=subjects,
            heads_sha256=heads_sha256,
            previous_digest=previous.digest if previous else None,
            previous_signature=previous.signature if previous else None,
            digest=written.digest,
            signature=written.signature,
            key_id=written.key_id,
        )
    )
    rows = [
        {
            "checkpoint_id": checkpoint_id,
            "organization_id": organization_id,
            "subject_type": h.subject_type,
            "subject_id": h.subject_id,
            "subject_seq": h.subject_seq,
            "seq": h.seq,
            "hash": h.hash,
            "seal": seal(key, organization_id, number, h) if key is not None else None,
        }
        for h in heads
    ]
    for i in range(0, len(rows), 1000):
        session.execute(insert(CheckpointHead), rows[i : i + 1000])
    return written


class CheckpointSchedule:
    """Writes checkpoints every ``interval`` from a loop that calls ``tick()`` often
    (the outbox worker's); a failure is logged and retried at the next interval."""

    def __init__(
        self,
        db: Database,
        key: bytes | None,
        interval: timedelta = DEFAULT_INTERVAL,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.key = key
        self.interval = interval.total_seconds()
        self.clock = clock
        self._next = clock()  # the first tick seals at once
        if key is None:
            log.warning(
                "RETURNGUARD_AUDIT_KEY is not set: event checkpoints are written unsigned "
                "and prove nothing against someone with database access"
            )

    def tick(self) -> CheckpointRun | None:
        """Seal what is new if the interval has passed; None when it was not time yet."""
        now = self.clock()
        if now < self._next:
            return None
        self._next = now + self.interval
        try:
            run = write_checkpoints(self.db, self.key)
        except Exception:
            log.exception("writing event checkpoints failed; retrying in %ss", self.interval)
            return CheckpointRun()
        for w in run.written:
            # This line, kept off the database host (log shipping), is what proves a
            # checkpoint existed if someone deletes checkpoints later.
            log.info(
                "event checkpoint #%s of organization %s: %s head(s), digest %s, signature %s",
                w.number,
                w.organization_id,
                w.subjects,
                w.digest,
                w.signature or "none (unsigned)",
            )
        return run
