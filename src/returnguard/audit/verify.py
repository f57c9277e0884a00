"""Verifying an organization's event log: every subject chain, every checkpoint.

What is checked, in this order of strength:

1. every subject chain: its links are numbered 1, 2, 3 … without gaps, each points at
   the hash of the one before and its content still matches its own hash;
2. the heads written since the last checkpoint (``event_unsealed_heads``) are still
   there with the same hash (catches a careless deletion of a chain's last events);
3. every head a checkpoint sealed is still there with the hash it was sealed with;
4. the checkpoints: numbered without gaps, each naming the previous one, each head's
   seal and each checkpoint's signature checked with the key.

Checks 1 to 3 can be re-forged by someone who can write to the database (recompute the hashes,
rewrite the heads); only 4, with the key the database does not hold, cannot. Events
written after their chain's latest checkpoint are covered by 1 and 2 only.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session

from returnguard.audit.chain import (
    GENESIS,
    Head,
    checkpoint_body,
    digest,
    event_hash,
    heads_digest,
    key_id,
    same,
    seal,
    sign,
)
from returnguard.audit.models import CheckpointHead, Event, EventCheckpoint, UnsealedHead
from returnguard.auth.models import Organization

# Rows fetched per check of recorded heads (a log broken in more places than this is
# reported by its earliest links).
MAX_BREAKS = 1000


@dataclass(frozen=True)
class Break:
    """One link that does not hold. ``seq`` is the event's number (``#seq``) when the
    break is at an event, None when it is in a checkpoint itself."""

    reason: str
    seq: int | None = None
    event_id: uuid.UUID | None = None
    subject_type: str | None = None
    subject_id: str | None = None
    subject_seq: int | None = None
    checkpoint: int | None = None

    @property
    def where(self) -> str:
        if self.seq is None:
            return f"checkpoint #{self.checkpoint}"
        subject = f"{self.subject_type} {self.subject_id} seq {self.subject_seq}"
        event = f", event id {self.event_id}" if self.event_id else ", event gone"
        return f"event #{self.seq} ({subject}{event})"

    def _order(self) -> tuple[int, int, int]:
        if self.seq is None:
            return (1, self.checkpoint or 0, 0)
        return (0, self.seq, self.checkpoint or 0)


@dataclass(frozen=True)
class LatestCheckpoint:
    number: int
    created_at: datetime
    signature: str | None
    key_id: str | None


@dataclass(frozen=True)
class ChainReport:
    """The outcome of verifying one organization's log; ``broken_seq``/``reason`` name
    the first broken link (lowest event number first), ``breaks`` counts them all."""

    organization_id: uuid.UUID
    checked: int
    ok: bool
    broken_seq: int | None = None
    reason: str | None = None
    first: Break | None = None
    breaks: int = 0
    chains: int = 0
    checkpoints: int = 0
    signed_checkpoints: int = 0
    # True when a key was given and every signed checkpoint was checked with it.
    signatures_checked: bool = False
    sealed_events: int = 0
    # Events after their chain's latest checkpoint: hash-checked only.
    unsealed_events: int = 0
    latest_checkpoint: LatestCheckpoint | None = None

    def summary(self) -> str:
        """What `returnguard events verify` prints: a headline (``<org>: OK (n events)``
        or ``<org>: BROKEN at …``), then an indented line of detail."""
        org = self.organization_id
        if not self.ok and self.first is not None:
            links = "1 broken link" if self.breaks == 1 else f"{self.breaks} broken links"
            return (
                f"{org}: BROKEN at {self.first.where}: {self.first.reason}\n"
                f"    {links} in all; {self.checked} events in {self.chains} subject chains"
            )
        detail = f"{self.chains} subject chains; "
        latest = self.latest_checkpoint
        if latest is None:
            detail += f"no checkpoint yet: all {self.checked} events are hash-checked only"
        else:
            if self.signed_checkpoints == 0:
                signed = "unsigned"
            elif not self.signatures_checked:
                signed = "signatures NOT checked: no key"
            elif self.signed_checkpoints < self.checkpoints:
                unsigned = self.checkpoints - self.signed_checkpoints
                signed = f"signatures checked; {unsigned} early checkpoint(s) unsigned"
            else:
                signed = "signatures checked"
            detail += (
                f"{self.sealed_events} sealed by {self.checkpoints} checkpoint(s), latest "
                f"#{latest.number} at {latest.created_at:%Y-%m-%d %H:%M:%S} UTC ({signed}); "
                f"{self.unsealed_events} written since, hash-checked only"
            )
        return f"{org}: OK ({self.checked} events)\n    {detail}"


@dataclass
class _Breaks:
    """The first broken link of each chain and of each checkpoint. Walking a chain
    names its first broken link; the recorded heads name one only where the walk found
    none (the chain's last events were removed, or rewritten with fresh hashes)."""

    by_chain: dict[tuple[str, str], tuple[bool, Break]] = field(default_factory=dict)
    checkpoints: dict[int | None, Break] = field(default_factory=dict)

    def add(self, b: Break, *, walked: bool = False) -> None:
        if b.subject_type is None or b.subject_id is None:
            self.checkpoints.setdefault(b.checkpoint, b)
            return
        chain = (b.subject_type, b.subject_id)
        known = self.by_chain.get(chain)
        if known is None or (not walked, b._order()) < (not known[0], known[1]._order()):
            self.by_chain[chain] = (walked, b)

    @property
    def count(self) -> int:
        return len(self.by_chain) + len(self.checkpoints)

    def first(self) -> Break | None:
        found = [b for _, b in self.by_chain.values()] + list(self.checkpoints.values())
        return min(found, key=Break._order) if found else None


def verify_chain(
    session: Session, organization_id: uuid.UUID, *, key: bytes | None = None
) -> ChainReport:
    """Check every subject chain of the organization, the heads written since the last
    checkpoint, and every checkpoint (signatures and seals only with ``key``)."""
    if session.get(Organization, organization_id) is None:
        raise LookupError(f"organization {organization_id} not found")
    breaks = _Breaks()
    cps = _check_checkpoints(session, organization_id, key, breaks)
    checked, chains = _check_chains(session, organization_id, breaks)
    _check_recorded_heads(session, organization_id, breaks)
    sealed = _count_sealed(session, organization_id)
    first = breaks.first()
    if first is not None and first.seq is not None and first.event_id is None:
        first = _with_event_id(session, organization_id, first)
    return ChainReport(
        organization_id=organization_id,
        checked=checked,
        ok=breaks.count == 0,
        broken_seq=first.seq if first else None,
        reason=first.reason if first else None,
        first=first,
        breaks=breaks.count,
        chains=chains,
        checkpoints=cps.count,
        signed_checkpoints=cps.signed,
        signatures_checked=key is not None and cps.count > 0,
        sealed_events=sealed,
        unsealed_events=max(0, checked - sealed),
        latest_checkpoint=cps.latest,
    )


# --- 1. the chains ---------------------------------------------------------------------

_EVENT_COLUMNS = (
    Event.id,
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


def _check_chains(session: Session, organization_id: uuid.UUID, breaks: _Breaks) -> tuple[int, int]:
    """Walk every chain link by link; returns (events checked, chains)."""
    stmt = (
        select(*_EVENT_COLUMNS)
        .where(Event.organization_id == organization_id)
        .order_by(Event.subject_type, Event.subject_id, Event.subject_seq)
        .execution_options(yield_per=2000)
    )
    checked = chains = 0
    subject: tuple[str, str] | None = None
    expected, prev, skip = 1, GENESIS, False
    for row in session.execute(stmt):
        values = row._mapping
        checked += 1
        if (row.subject_type, row.subject_id) != subject:
            subject = (row.subject_type, row.subject_id)
            expected, prev, skip = 1, GENESIS, False
            chains += 1
        if skip:
            continue
        name = f"{row.subject_type} {row.subject_id}"
        reason = None
        if row.subject_seq != expected:
            gap = (
                f"seq {expected}"
                if row.subject_seq == expected + 1
                else f"seq {expected} to {row.subject_seq - 1}"
            )
            reason = (
                f"{name}: {gap} is missing (removed): the chain jumps from seq "
                f"{expected - 1} to {row.subject_seq}"
            )
        elif row.prev_hash != prev:
            reason = (
                f"{name} seq {row.subject_seq} does not point at the hash of seq "
                f"{expected - 1}: events were reordered, replaced or removed"
            )
        elif event_hash(values) != row.hash:
            reason = (
                f"{name} seq {row.subject_seq} was altered: its content no longer matches its hash"
            )
        if reason is None:
            prev, expected = row.hash, expected + 1
            continue
        skip = True
        breaks.add(
            Break(
                reason,
                seq=row.seq,
                event_id=row.id,
                subject_type=row.subject_type,
                subject_id=row.subject_id,
                subject_seq=row.subject_seq,
            ),
            walked=True,
        )
    return checked, chains


# --- 2 and 3. recorded heads against the events ------------------------------------------


def _check_recorded_heads(session: Session, organization_id: uuid.UUID, breaks: _Breaks) -> None:
    """Each head a checkpoint sealed, and each written since, must still be in its chain
    with the same hash."""
    h = CheckpointHead
    sealed = (
        select(
            EventCheckpoint.number,
            h.subject_type,
            h.subject_id,
            h.subject_seq,
            h.seq,
            h.hash,
            Event.id,
            Event.seq.label("seq_now"),
            Event.hash.label("now"),
        )
        .join(EventCheckpoint, EventCheckpoint.id == h.checkpoint_id)
        .outerjoin(
            Event,
            and_(
                Event.organization_id == h.organization_id,
                Event.subject_type == h.subject_type,
                Event.subject_id == h.subject_id,
                Event.subject_seq == h.subject_seq,
            ),
        )
        .where(h.organization_id == organization_id, or_(Event.id.is_(None), Event.hash != h.hash))
        .order_by(h.seq)
        .limit(MAX_BREAKS)
    )
    for number, stype, sid, sseq, seq, hash_, event_id, seq_now, now in session.execute(sealed):
        name = f"{stype} {sid} seq {sseq}"
        if event_id is None:
            reason = f"{name} was deleted: checkpoint #{number} sealed it"
        else:
            reason = (
                f"{name} is not the event checkpoint #{number} sealed (hash {hash_[:12]}…, "
                f"now {now[:12]}…): the chain was rewritten up to here"
            )
        breaks.add(Break(reason, seq_now or seq, event_id, stype, sid, sseq, number))
    u = UnsealedHead
    written = (
        select(u.subject_type, u.subject_id, u.subject_seq, u.seq, Event.id, Event.seq)
        .outerjoin(
            Event,
            and_(
                Event.organization_id == u.organization_id,
                Event.subject_type == u.subject_type,
                Event.subject_id == u.subject_id,
                Event.subject_seq == u.subject_seq,
            ),
        )
        .where(u.organization_id == organization_id, or_(Event.id.is_(None), Event.hash != u.hash))
        .order_by(u.seq)
        .limit(MAX_BREAKS)
    )
    for stype, sid, sseq, seq, event_id, seq_now in session.execute(written):
        name = f"{stype} {sid} seq {sseq}"
        if event_id is None:
            reason = f"{name} was deleted after it was written (not yet sealed by a checkpoint)"
        else:
            reason = f"{name} was replaced after it was written (not yet sealed by a checkpoint)"
        breaks.add(Break(reason, seq_now or seq, event_id, stype, sid, sseq))


def _count_sealed(session: Session, organization_id: uuid.UUID) -> int:
    h = CheckpointHead
    covered = exists().where(
        h.organization_id == Event.organization_id,
        h.subject_type == Event.subject_type,
        h.subject_id == Event.subject_id,
        h.subject_seq >= Event.subject_seq,
    )
    stmt = (
        select(func.count())
        .select_from(Event)
        .where(Event.organization_id == organization_id, covered)
    )
    return int(session.scalar(stmt) or 0)


def _with_event_id(session: Session, organization_id: uuid.UUID, b: Break) -> Break:
    event_id = session.scalar(
        select(Event.id).where(
            Event.organization_id == organization_id,
            Event.subject_type == b.subject_type,
            Event.subject_id == b.subject_id,
            Event.subject_seq == b.subject_seq,
        )
    )
    if event_id is None:
        return b
    return Break(
        b.reason, b.seq, event_id, b.subject_type, b.subject_id, b.subject_seq, b.checkpoint
    )


# --- 4. the checkpoints ----------------------------------------------------------------


@dataclass
class _Checkpoints:
    count: int = 0
    signed: int = 0
    latest: LatestCheckpoint | None = None


def _heads(session: Session, checkpoint_id: uuid.UUID) -> list[tuple[Head, str | None]]:
    h = CheckpointHead
    rows = session.execute(
        select(h.subject_type, h.subject_id, h.subject_seq, h.seq, h.hash, h.seal).where(
            h.checkpoint_id == checkpoint_id
        )
    )
    return [(Head(t, i, n, s, x), sl) for t, i, n, s, x, sl in rows]


def _check_checkpoints(
    session: Session, organization_id: uuid.UUID, key: bytes | None, breaks: _Breaks
) -> _Checkpoints:
    found = _Checkpoints()
    configured = key_id(key) if key is not None else None
    previous: EventCheckpoint | None = None
    signed_before: int | None = None
    rows: Iterable[EventCheckpoint] = session.scalars(
        select(EventCheckpoint)
        .where(EventCheckpoint.organization_id == organization_id)
        .order_by(EventCheckpoint.number)
    )
    for cp in rows:
        found.count += 1
        found.signed += cp.signature is not None
        found.latest = LatestCheckpoint(cp.number, cp.created_at, cp.signature, cp.key_id)

        def broken(reason: str, cp: EventCheckpoint = cp) -> None:
            breaks.add(Break(f"checkpoint #{cp.number} {reason}", checkpoint=cp.number))

        expected = previous.number + 1 if previous else 1
        if cp.number != expected:
            broken(f"follows checkpoint #{expected - 1}: checkpoint #{expected} is missing")
        want_digest = previous.digest if previous else None
        want_signature = previous.signature if previous else None
        if cp.previous_digest != want_digest or not same(cp.previous_signature, want_signature):
            broken(f"does not name checkpoint #{expected - 1} as its previous one")
        heads = _heads(session, cp.id)
        subjects, heads_sha256 = heads_digest(h for h, _ in heads)
        body = checkpoint_body(
            organization_id=organization_id,
            number=cp.number,
            created_at=cp.created_at,
            previous_digest=cp.previous_digest,
            previous_signature=cp.previous_signature,
            subjects=subjects,
            heads_sha256=heads_sha256,
        )
        if digest(body) != cp.digest:
            broken("was changed: its content (or the heads it seals) no longer matches its digest")
        if key is not None:
            if cp.signature is None:
                if signed_before is not None:
                    broken(f"is unsigned, after signed checkpoint #{signed_before}")
            elif cp.key_id != configured:
                broken(
                    f"was signed with another key (key id {cp.key_id}; the configured key "
                    f"is {configured})"
                )
            else:
                signed_before = cp.number
                if not same(sign(key, body), cp.signature):
                    broken(
                        "has a signature that does not match: the checkpoint, or the heads "
                        "it seals, were rewritten"
                    )
                for head, head_seal in heads:
                    if not same(seal(key, organization_id, cp.number, head), head_seal):
                        name = f"{head.subject_type} {head.subject_id} seq {head.subject_seq}"
                        breaks.add(
                            Break(
                                f"{name}: its seal in checkpoint #{cp.number} does not match "
                                "the head recorded there: the chain and its checkpoint head "
                                "were rewritten",
                                head.seq,
                                None,
                                head.subject_type,
                                head.subject_id,
                                head.subject_seq,
                                cp.number,
                            )
                        )
        previous = cp
    return found
