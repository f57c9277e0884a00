"""The event log: every change is recorded, append-only and hash-chained per subject.

Services call ``record()`` while they work; the events are written when the session
commits, in the same transaction (the ``before_commit`` hook below). Each event is
chained to the previous event of its subject (a return, a refund, a buyer …), whose
head is found from that subject's latest event: nothing every write of an organization
shares is read or locked, so writers of different subjects never wait for each other.
Two writers of one subject cannot fork its chain: a unique key on (organization,
subject, subject_seq) lets one of them in, and the other re-reads the head and retries.

Chain heads are sealed later, outside requests, by signed checkpoints
(checkpoints.py); ``verify_chain`` (verify.py) checks chains and checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
import weakref
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from json.encoder import encode_basestring
from typing import Any

from sqlalchemy import ARRAY, BigInteger, and_, cast, column, func, insert, select, tuple_
from sqlalchemy import event as sa_event
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, SessionTransaction

from returnguard.audit.chain import (
    GENESIS,
    canonical,
    chain_hash,
    event_hash,
    hash_body,
    jsonable,
)
from returnguard.audit.models import (
    EVENT_SEQUENCE,
    CheckpointHead,
    Event,
    EventCheckpoint,
    UnsealedHead,
)
from returnguard.audit.verify import Break, ChainReport, verify_chain
from returnguard.auth.actor import Actor
from returnguard.kit.db import JSONText, copy_rows, copy_tuples, new_id_texts, new_ids, utcnow

__all__ = [
    "GENESIS",
    "AppendOnlyViolation",
    "Break",
    "ChainReport",
    "canonical",
    "chain_hash",
    "event_hash",
    "events_for_return",
    "has_pending_events",
    "hash_body",
    "jsonable",
    "last_status_before",
    "record",
    "record_created",
    "verify_chain",
]

log = logging.getLogger("returnguard.audit")

_PENDING_KEY = "returnguard.pending_events"
_MARKS_KEY = "returnguard.pending_marks"
# A writer that loses the race for a subject's next link re-reads the head and tries
# again (rare on PostgreSQL, where writers of one subject queue on its advisory lock).
MAX_APPEND_ATTEMPTS = 20
# Subjects per query when reading chain heads (bounded statements on both databases).
_CHUNK = 200
# From this many events on, PostgreSQL receives them (and their heads) by COPY instead of
# a multi-row INSERT: the same rows, several times faster; small commits stay as they were.
COPY_FROM = 100
# The event columns held as JSON (COPY writes them as SQLAlchemy's JSON type does).
_JSON_COLUMNS = frozenset({"before", "after", "data"})


@dataclass
class PendingEvent:
    organization_id: uuid.UUID
    actor: Actor
    subject_type: str
    subject_id: str
    action: str
    return_id: uuid.UUID | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    data: dict[str, Any] | None
    occurred_at: datetime = field(default_factory=utcnow)
    # The subject was created in this transaction, so it has no chain yet: its head is
    # neither looked up nor locked (see record()).
    new_subject: bool = False
    # ``after`` as canonical JSON text, when a bulk writer gave it so (record_created):
    # hashed and stored as it is, ``after`` itself then None.
    after_text: JSONText | None = None


def record(
    session: Session,
    actor: Actor,
    *,
    subject_type: str,
    subject_id: uuid.UUID | str,
    action: str,
    return_id: uuid.UUID | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    new_subject: bool = False,
) -> None:
    """Queue an event; it is written, chained and hashed in this session's commit.

    ``new_subject``: the subject came into being in this transaction (an id just drawn),
    so no other transaction can have written to its chain and its first event needs no
    head lookup and no lock. The event is chained exactly as any other (subject_seq 1 on
    GENESIS); were the promise wrong, the chain's unique key refuses the link and the
    commit retries with the head looked up."""
    session.info.setdefault(_PENDING_KEY, []).append(
        PendingEvent(
            organization_id=actor.organization_id,
            actor=actor,
            subject_type=subject_type,
            subject_id=str(subject_id),
            action=action,
            return_id=return_id,
            before=jsonable(before),
            after=jsonable(after),
            data=jsonable(data),
            new_subject=new_subject,
        )
    )


def record_created(
    session: Session,
    actor: Actor,
    *,
    subject_type: str,
    action: str,
    created: Iterable[tuple[uuid.UUID | str, dict[str, Any] | JSONText]],
) -> None:
    """Queue one event per (new subject id, state after) for subjects created in this
    transaction, as ``record(…, after=state, new_subject=True)`` would, one after the
    other; for bulk writers (imports), which create thousands at a time. Each state must
    be plain JSON already (str, int, bool, None, lists, dicts with str keys), as
    ``jsonable`` would leave it: it is hashed and stored as given, and anything else
    (a UUID, a datetime, a Decimal) fails the commit rather than being stored. A state
    may instead be ``JSONText`` that is exactly ``canonical(state)`` (sorted keys, no
    spaces, non-ASCII as it is): that text is hashed and stored as it is, never parsed
    or serialised again on PostgreSQL (a test holds the bulk writer's text to that)."""
    pending = session.info.setdefault(_PENDING_KEY, [])
    org_id = actor.organization_id
    for subject_id, state in created:
        text, after = (state, None) if isinstance(state, JSONText) else (None, state)
        pending.append(
            PendingEvent(
                organization_id=org_id,
                actor=actor,
                subject_type=subject_type,
                subject_id=str(subject_id),
                action=action,
                return_id=None,
                before=None,
                after=after,
                data=None,
                new_subject=True,
                after_text=text,
            )
        )


def has_pending_events(session: Session) -> bool:
    return bool(session.info.get(_PENDING_KEY))


# --- writing ---------------------------------------------------------------------------

SubjectKey = tuple[uuid.UUID, str, str]  # organization, subject type, subject id


def _allocate_seqs(session: Session, pending: list[PendingEvent]) -> list[int]:
    """A fresh listing number for each pending event, increasing in recording order."""
    if session.get_bind().dialect.name == "postgresql":
        rows = session.scalars(
            select(func.nextval(EVENT_SEQUENCE)).select_from(func.generate_series(1, len(pending)))
        )
        return sorted(int(v) for v in rows)
    # SQLite: this transaction holds the database's write lock (BEGIN IMMEDIATE), so the
    # organization's next numbers are ours.
    last: dict[uuid.UUID, int] = {}
    seqs = []
    for p in pending:
        org = p.organization_id
        if org not in last:
            top = session.scalar(
                select(func.coalesce(func.max(Event.seq), 0)).where(Event.organization_id == org)
            )
            last[org] = int(top or 0)
        last[org] += 1
        seqs.append(last[org])
    return seqs


def _chunks(keys: list[tuple[str, str]]) -> Iterable[list[tuple[str, str]]]:
    for i in range(0, len(keys), _CHUNK):
        yield keys[i : i + _CHUNK]


def current_heads(
    session: Session, organization_id: uuid.UUID, subjects: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], tuple[int, str]]:
    """The latest (subject_seq, hash) of each subject's chain, as committed now."""
    heads: dict[tuple[str, str], tuple[int, str]] = {}
    for chunk in _chunks(sorted(set(subjects))):
        latest = (
            select(
                Event.subject_type,
                Event.subject_id,
                func.max(Event.subject_seq).label("top"),
            )
            .where(
                Event.organization_id == organization_id,
                tuple_(Event.subject_type, Event.subject_id).in_(chunk),
            )
            .group_by(Event.subject_type, Event.subject_id)
            .subquery()
        )
        rows = session.execute(
            select(Event.subject_type, Event.subject_id, Event.subject_seq, Event.hash).join(
                latest,
                and_(
                    Event.organization_id == organization_id,
                    Event.subject_type == latest.c.subject_type,
                    Event.subject_id == latest.c.subject_id,
                    Event.subject_seq == latest.c.top,
                ),
            )
        )
        for subject_type, subject_id, subject_seq, hash_ in rows:
            heads[(subject_type, subject_id)] = (subject_seq, hash_)
    return heads


def _subject_lock(key: SubjectKey) -> int:
    """The 64-bit advisory lock standing for one subject's chain head."""
    text = f"{key[0]}|{key[1]}|{key[2]}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big", signed=True)


def _lock_subjects(session: Session, keys: Iterable[SubjectKey]) -> None:
    """PostgreSQL: queue behind other writers of the same subjects (only those), in one
    order, until commit. Without it they would still never fork a chain (the unique key),
    but a busy subject's writers would keep losing the race and retrying."""
    locks = sorted({_subject_lock(k) for k in keys})
    session.execute(
        select(func.pg_advisory_xact_lock(column("k"))).select_from(
            func.unnest(cast(array(locks), ARRAY(BigInteger))).alias("k")
        )
    )


def _append(session: Session, pending: list[PendingEvent], *, trust_new: bool = True) -> None:
    """Chain and insert ``pending`` (in recording order) onto their subjects' heads. A
    subject whose first pending event is marked ``new_subject`` starts at GENESIS without
    a lookup (unless ``trust_new`` is off)."""
    seqs = _allocate_seqs(session, pending)
    by_subject: dict[SubjectKey, list[tuple[int, PendingEvent]]] = defaultdict(list)
    for seq, p in zip(seqs, pending, strict=True):
        by_subject[(p.organization_id, p.subject_type, p.subject_id)].append((seq, p))
    known = [
        k for k, subject in by_subject.items() if not (trust_new and subject[0][1].new_subject)
    ]
    postgresql = session.get_bind().dialect.name == "postgresql"
    if postgresql and known:
        _lock_subjects(session, known)
    heads: dict[SubjectKey, tuple[int, str]] = {}
    by_org: dict[uuid.UUID, list[tuple[str, str]]] = defaultdict(list)
    for org_id, subject_type, subject_id in known:
        by_org[org_id].append((subject_type, subject_id))
    for org_id, subjects in by_org.items():
        for (subject_type, subject_id), head in current_heads(session, org_id, subjects).items():
            heads[(org_id, subject_type, subject_id)] = head
    events: list[dict[str, Any]] = []
    claims: list[dict[str, Any]] = []
    copy = postgresql and len(pending) >= COPY_FROM
    if copy and trust_new:
        # The first events of new subjects given as canonical text (record_created: a
        # bulk import's thousands of orders) are copied by the lean writer below.
        created = [
            (key, *subject[0])
            for key, subject in by_subject.items()
            if len(subject) == 1 and _plain_created(subject[0][1])
        ]
        if created:
            _copy_created(session, created)
            for key, _, _ in created:
                del by_subject[key]
            if not by_subject:
                return
    # COPY takes the ids as text: no UUID objects to make (and to turn back into text).
    ids: list[Any] = new_id_texts(len(pending)) if copy else new_ids(len(pending))
    # Subjects in one fixed order: two transactions appending to the same two subjects
    # wait for each other's links in the same order, never in a cycle.
    org_names = {org_id: str(org_id) for org_id, _, _ in by_subject}
    for key in sorted(by_subject, key=lambda k: (org_names[k[0]], k[1], k[2])):
        org_id, subject_type, subject_id = key
        subject_seq, prev = heads.get(key, (0, GENESIS))
        for seq, p in by_subject[key]:
            subject_seq += 1
            row: dict[str, Any] = {
                "id": ids[len(events)],
                "organization_id": org_id,
                "seq": seq,
                "subject_type": subject_type,
                "subject_id": subject_id,
                "subject_seq": subject_seq,
                "return_id": p.return_id,
                "action": p.action,
                "actor_type": p.actor.actor_type,
                "actor_id": p.actor.actor_id,
                "actor_label": p.actor.label,
                "before": p.before,
                "after": p.after if p.after_text is None else p.after_text,
                "data": p.data,
                "occurred_at": p.occurred_at,
                "prev_hash": prev,
            }
            if p.after_text is None:
                row["hash"] = prev = chain_hash(prev, hash_body(row))
            else:
                row["hash"] = prev = _chain_hash_text(prev, row, p.after_text)
            events.append(row)
        claims.append(
            {
                "organization_id": org_id,
                "subject_type": subject_type,
                "subject_id": subject_id,
                "subject_seq": subject_seq,
                "seq": events[-1]["seq"],
                "hash": prev,
            }
        )
    if copy:
        copy_rows(session, Event.__tablename__, events, json_columns=_JSON_COLUMNS)
        copy_rows(session, UnsealedHead.__tablename__, claims)
        return
    for row in events:
        if isinstance(row["after"], JSONText):
            row["after"] = json.loads(row["after"])
    session.execute(insert(Event), events)
    session.execute(insert(UnsealedHead), claims)


def _plain_created(p: PendingEvent) -> bool:
    return (
        p.new_subject
        and p.after_text is not None
        and p.before is None
        and p.data is None
        and p.return_id is None
    )


_EVENT_COLUMNS = (
    "id",
    "organization_id",
    "seq",
    "subject_type",
    "subject_id",
    "subject_seq",
    "return_id",
    "action",
    "actor_type",
    "actor_id",
    "actor_label",
    "before",
    "after",
    "data",
    "occurred_at",
    "prev_hash",
    "hash",
)
_HEAD_COLUMNS = ("organization_id", "subject_type", "subject_id", "subject_seq", "seq", "hash")


def _copy_created(session: Session, created: list[tuple[SubjectKey, int, PendingEvent]]) -> None:
    """COPY (PostgreSQL) the first event of each of many new subjects, each given as
    canonical text (``_plain_created``), with its unsealed head: the rows ``_append``
    writes for them, in its order of subjects, hashed over the same text
    (``_chain_hash_text``), but without a dict per event: the members of the hashed text
    that the events of one batch share (action, actor, time, organization) are put
    together once. A test holds the two writers' rows equal."""
    created.sort(key=lambda item: (str(item[0][0]), item[0][1], item[0][2]))
    ids = new_id_texts(len(created))
    heads: list[tuple[Any, ...]] = []
    shared: dict[tuple[Any, ...], tuple[str, str, str]] = {}
    sha256 = hashlib.sha256

    def rows() -> Iterator[tuple[Any, ...]]:
        # Sent as they are made: PostgreSQL files each event while the next is hashed.
        for id_, ((org_id, subject_type, subject_id), seq, p) in zip(ids, created, strict=True):
            actor = p.actor
            key = (org_id, actor.actor_type, actor.actor_id, actor.label, p.action, p.occurred_at)
            parts = shared.get(key)
            if parts is None:
                parts = shared[key] = (
                    str(org_id),
                    "".join(
                        (
                            GENESIS,
                            '{"action":',
                            _json_str(p.action),
                            ',"actor_id":',
                            _json_str(actor.actor_id),
                            ',"actor_label":',
                            _json_str(actor.label),
                            ',"actor_type":',
                            _json_str(actor.actor_type),
                            ',"after":',
                        )
                    ),
                    "".join(
                        (
                            ',"before":null,"data":null,"occurred_at":"',
                            p.occurred_at.isoformat(),
                            '","organization_id":"',
                            str(org_id),
                            '","return_id":null,"seq":',
                        )
                    ),
                )
            org_text, head, middle = parts
            text = (
                f"{head}{p.after_text}{middle}{seq},"
                f'"subject_id":{_json_str(subject_id)},"subject_seq":1,'
                f'"subject_type":{_json_str(subject_type)}}}'
            )
            hash_ = sha256(text.encode()).hexdigest()
            heads.append((org_text, subject_type, subject_id, 1, seq, hash_))
            yield (
                id_,
                org_text,
                seq,
                subject_type,
                subject_id,
                1,
                None,
                p.action,
                actor.actor_type,
                actor.actor_id,
                actor.label,
                "null",  # the JSON columns' text, as copy_rows writes None and JSONText
                p.after_text,
                "null",
                p.occurred_at,
                GENESIS,
                hash_,
            )

    copy_tuples(session, Event.__tablename__, _EVENT_COLUMNS, rows())
    copy_tuples(session, UnsealedHead.__tablename__, _HEAD_COLUMNS, heads)


def _chain_hash_text(prev_hash: str, row: dict[str, Any], after_text: str) -> str:
    """``chain_hash(prev_hash, hash_body(row))`` for a ``row`` whose ``after`` is the
    parsed ``after_text`` (canonical JSON), without parsing or serialising that again:
    the body's canonical text is put together member by member, in the sorted order of
    its keys (a test holds it equal to ``canonical(hash_body(...))``)."""
    return_id = row["return_id"]
    text = "".join(
        (
            '{"action":',
            _json_str(row["action"]),
            ',"actor_id":',
            _json_str(row["actor_id"]),
            ',"actor_label":',
            _json_str(row["actor_label"]),
            ',"actor_type":',
            _json_str(row["actor_type"]),
            ',"after":',
            after_text,
            ',"before":',
            _json_value(row["before"]),
            ',"data":',
            _json_value(row["data"]),
            ',"occurred_at":"',
            row["occurred_at"].isoformat(),
            '","organization_id":"',
            str(row["organization_id"]),
            '","return_id":',
            f'"{return_id}"' if return_id else "null",
            ',"seq":',
            str(int(row["seq"])),
            ',"subject_id":',
            _json_str(row["subject_id"]),
            ',"subject_seq":',
            str(int(row["subject_seq"])),
            ',"subject_type":',
            _json_str(row["subject_type"]),
            "}",
        )
    )
    return hashlib.sha256((prev_hash + text).encode()).hexdigest()


def _json_value(value: Any) -> str:
    return "null" if value is None else canonical(value)


def _json_str(value: str | None) -> str:
    """A string or None as canonical JSON writes it (non-ASCII as it is)."""
    return "null" if value is None else encode_basestring(value)


def _lost_race(exc: IntegrityError) -> bool:
    """A concurrent writer took the link (or, on SQLite, the number) we meant to write."""
    message = str(exc.orig)
    return any(
        name in message
        for name in (
            "uq_events_organization_id_subject_type_subject_id_subject_seq",
            "uq_events_organization_id_seq",
            "events.subject_seq",
            "events.seq",
        )
    )


def _write_pending(session: Session) -> None:
    pending: list[PendingEvent] = session.info.pop(_PENDING_KEY, [])
    session.info.pop(_MARKS_KEY, None)
    if not pending:
        return
    session.flush()
    for attempt in range(1, MAX_APPEND_ATTEMPTS + 1):
        try:
            with session.begin_nested():
                # A retry looks up every head: a subject said to be new was not.
                _append(session, pending, trust_new=attempt == 1)
            return
        except IntegrityError as exc:
            if attempt == MAX_APPEND_ATTEMPTS or not _lost_race(exc):
                raise
            log.info("event chain head taken by a concurrent writer; retry %s", attempt)


@sa_event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    # Events go in with the outermost commit only, after every other write and lock of
    # the transaction; releasing a savepoint writes nothing. (`Session.commit()` closes
    # open savepoints before the outermost transaction's hook runs.)
    if session.in_nested_transaction():
        return
    _write_pending(session)


def _marks(session: Session) -> weakref.WeakKeyDictionary[SessionTransaction, int]:
    marks = session.info.get(_MARKS_KEY)
    if marks is None:
        marks = session.info[_MARKS_KEY] = weakref.WeakKeyDictionary()
    return marks


@sa_event.listens_for(Session, "after_transaction_create")
def _after_transaction_create(session: Session, transaction: SessionTransaction) -> None:
    if transaction.nested:
        _marks(session)[transaction] = len(session.info.get(_PENDING_KEY, ()))


@sa_event.listens_for(Session, "after_soft_rollback")
def _after_soft_rollback(session: Session, previous: SessionTransaction) -> None:
    """A rolled-back savepoint takes the events recorded inside it along; the ones
    recorded before it stay."""
    if not previous.nested:
        return
    mark = _marks(session).get(previous)
    pending: list[PendingEvent] | None = session.info.get(_PENDING_KEY)
    if mark is not None and pending:
        del pending[mark:]


@sa_event.listens_for(Session, "after_transaction_end")
def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    # The outermost transaction is over: committed (its events are written) or rolled
    # back or closed (its events go with it).
    if transaction.parent is None:
        session.info.pop(_PENDING_KEY, None)
        session.info.pop(_MARKS_KEY, None)


# --- append-only -----------------------------------------------------------------------


class AppendOnlyViolation(RuntimeError):
    """Code tried to change or delete an event or a checkpoint: a bug, never a user's."""


_APPEND_ONLY = (Event, EventCheckpoint, CheckpointHead)


@sa_event.listens_for(Session, "before_flush")
def _refuse_changes(session: Session, _context: Any, _instances: Any) -> None:
    # On PostgreSQL a trigger refuses UPDATE and DELETE as well (migration 0009).
    for obj in session.deleted:
        if isinstance(obj, _APPEND_ONLY):
            raise AppendOnlyViolation(f"{type(obj).__name__} rows are append-only")
    for obj in session.dirty:
        if isinstance(obj, _APPEND_ONLY) and session.is_modified(obj):
            raise AppendOnlyViolation(f"{type(obj).__name__} rows are append-only")


# --- reading ---------------------------------------------------------------------------


def events_for_return(
    session: Session, organization_id: uuid.UUID, return_id: uuid.UUID
) -> list[Event]:
    stmt = (
        select(Event)
        .where(Event.organization_id == organization_id, Event.return_id == return_id)
        .order_by(Event.seq)
    )
    return list(session.scalars(stmt))


def last_status_before(session: Session, return_id: uuid.UUID, action: str) -> str | None:
    """The return's status just before its latest ``action`` event (this transaction's
    events first, then the stored timeline), or None when it never took that action."""
    pending: list[PendingEvent] = session.info.get(_PENDING_KEY, [])
    for p in reversed(pending):
        if p.return_id == return_id and p.action == action:
            return (p.before or {}).get("status")
    before = session.scalar(
        select(Event.before)
        .where(Event.return_id == return_id, Event.action == action)
        .order_by(Event.seq.desc())
        .limit(1)
    )
    return before.get("status") if isinstance(before, dict) else None
