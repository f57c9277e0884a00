"""Signed checkpoints: what they seal, and the attack only they catch (on both databases).

The attacker here can write to the database but does not hold RETURNGUARD_AUDIT_KEY:
they change an event, recompute every hash after it and every head and digest the
database holds. Hash chains alone cannot tell; a checkpoint signed with the key can.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import delete, func, select, update

from returnguard.audit import service as audit
from returnguard.audit.checkpoints import CheckpointSchedule, write_checkpoints
from returnguard.audit.models import CheckpointHead, Event, EventCheckpoint, UnsealedHead
from returnguard.auth.service import Actor
from returnguard.kit.db import Database
from tests.audit.attacker import chain_rows, redigest_checkpoints, reforge, tampering
from tests.conftest import make_tenant

KEY = b"k" * 16 + b"the seller's own audit key"
OTHER_KEY = b"o" * 16 + b"somebody else's audit key"


def _record(db: Database, actor: Actor, *subjects: str) -> None:
    with db.session() as session:
        for subject in subjects:
            audit.record(
                session,
                actor,
                subject_type="return",
                subject_id=subject,
                action="return.touched",
                after={"note": f"{subject} touched"},
            )


def _verify(db: Database, org: uuid.UUID, key: bytes | None = KEY) -> audit.ChainReport:
    with db.session() as session:
        return audit.verify_chain(session, org, key=key)


def _seq_of(db: Database, org: uuid.UUID, subject: str, subject_seq: int) -> int:
    with db.session() as session:
        seq = session.scalar(
            select(Event.seq).where(
                Event.organization_id == org,
                Event.subject_id == subject,
                Event.subject_seq == subject_seq,
            )
        )
    assert seq is not None
    return seq


def test_a_checkpoint_seals_every_chain_changed_since_the_last_one(db: Database) -> None:
    t = make_tenant(db)
    org = t.organization_id
    actor = Actor.system(org)
    _record(db, actor, "r1", "r2", "r1")

    first = write_checkpoints(db, KEY)
    # organization, api_key, r1, r2: every chain so far.
    assert [(w.organization_id, w.number, w.subjects) for w in first.written] == [(org, 1, 4)]
    assert first.written[0].signature is not None and not first.refused
    report = _verify(db, org)
    assert report.ok, report
    assert (report.sealed_events, report.unsealed_events, report.checkpoints) == (5, 0, 1)
    assert report.signatures_checked

    _record(db, actor, "r2", "r3")
    report = _verify(db, org)
    assert report.ok and (report.sealed_events, report.unsealed_events) == (5, 2)
    assert "2 written since, hash-checked only" in report.summary()
    assert "signatures checked" in report.summary()

    second = write_checkpoints(db, KEY)
    assert [(w.number, w.subjects) for w in second.written] == [(2, 2)]  # r2 and r3 only
    assert write_checkpoints(db, KEY).written == []  # nothing new
    with db.session() as session:
        cps = session.scalars(select(EventCheckpoint).order_by(EventCheckpoint.number)).all()
        assert cps[1].previous_signature == cps[0].signature
        assert session.scalar(select(func.count()).select_from(UnsealedHead)) == 0
    report = _verify(db, org)
    assert report.ok and (report.sealed_events, report.unsealed_events) == (7, 0)


def test_a_reforged_chain_passes_the_hashes_but_not_the_signed_checkpoint(db: Database) -> None:
    t = make_tenant(db)
    org = t.organization_id
    actor = Actor.system(org)
    for _ in range(4):
        _record(db, actor, "r1", "r2")

    # Without a checkpoint the attack works: every hash is consistent again.
    reforge(db, org, "return", "r1", 2, after={"note": "refund approved by manager"})
    assert _verify(db, org).ok

    write_checkpoints(db, KEY)
    reforge(db, org, "return", "r1", 2, after={"note": "no inspection needed"})
    # Without the key, the rewritten checkpoint looks as good as the real one...
    unkeyed = _verify(db, org, key=None)
    assert unkeyed.ok and not unkeyed.signatures_checked
    assert "signatures NOT checked" in unkeyed.summary()
    # ...with it, the chain's seal no longer matches, and verify names the chain.
    report = _verify(db, org)
    assert not report.ok and report.first is not None
    head = _seq_of(db, org, "r1", 4)
    assert (report.first.subject_id, report.first.subject_seq, report.first.seq) == ("r1", 4, head)
    assert report.first.event_id is not None
    assert "the chain and its checkpoint head were rewritten" in (report.reason or "")
    assert report.summary().startswith(f"{org}: BROKEN at event #{head} (return r1 seq 4")
    # And the checkpoint's own signature fails too (2 broken links: r1 and checkpoint #1).
    assert report.breaks == 2


def test_a_rewritten_chain_is_caught_by_its_sealed_head_even_without_the_key(
    db: Database,
) -> None:
    t = make_tenant(db)
    org = t.organization_id
    for _ in range(3):
        _record(db, Actor.system(org), "r1")
    write_checkpoints(db, KEY)
    # The attacker recomputes the chain but leaves the checkpoint alone.
    with tampering(db) as conn:
        rows = chain_rows(conn, org, "return", "r1")
    reforge(db, org, "return", "r1", 1, action="return.rewritten")
    with tampering(db) as conn:
        for row in rows:
            conn.execute(
                update(CheckpointHead)
                .where(CheckpointHead.subject_id == "r1", CheckpointHead.subject_seq == 3)
                .values(hash=row["hash"])
            )
        redigest_checkpoints(conn, org)
    report = _verify(db, org, key=None)
    assert not report.ok and report.first is not None
    assert (report.first.subject_id, report.first.subject_seq) == ("r1", 3)
    assert "is not the event checkpoint #1 sealed" in (report.reason or "")


def test_a_deleted_sealed_event_and_a_deleted_checkpoint_are_found(db: Database) -> None:
    t = make_tenant(db)
    org = t.organization_id
    for _ in range(3):
        _record(db, Actor.system(org), "r1")
    write_checkpoints(db, KEY)
    _record(db, Actor.system(org), "r1", "r2")
    write_checkpoints(db, KEY)
    with tampering(db) as conn:
        # The middle event: the chain walk finds the gap.
        conn.execute(delete(Event).where(Event.subject_id == "r1", Event.subject_seq == 2))
    report = _verify(db, org)
    assert report.first is not None and report.first.subject_seq == 3
    assert "seq 2 is missing" in (report.reason or "")

    with tampering(db) as conn:
        # The sealed head itself, and the first checkpoint with everything it sealed.
        conn.execute(delete(Event).where(Event.subject_id == "r1", Event.subject_seq == 4))
        first = conn.scalar(select(EventCheckpoint.id).where(EventCheckpoint.number == 1))
        conn.execute(delete(CheckpointHead).where(CheckpointHead.checkpoint_id == first))
        conn.execute(delete(EventCheckpoint).where(EventCheckpoint.id == first))
    report = _verify(db, org)
    reasons = report.summary()
    assert not report.ok and report.breaks == 2  # chain r1, and checkpoint #2
    assert report.first is not None and report.first.subject_seq == 3
    with db.session() as session:
        assert audit.verify_chain(session, org, key=KEY).breaks == 2
    assert "BROKEN at event" in reasons


def test_a_checkpoint_that_names_a_missing_predecessor_is_broken(db: Database) -> None:
    t = make_tenant(db)
    org = t.organization_id
    _record(db, Actor.system(org), "r1")
    write_checkpoints(db, KEY)
    _record(db, Actor.system(org), "r2")
    write_checkpoints(db, KEY)
    with tampering(db) as conn:
        first = conn.scalar(select(EventCheckpoint.id).where(EventCheckpoint.number == 1))
        conn.execute(delete(CheckpointHead).where(CheckpointHead.checkpoint_id == first))
        conn.execute(delete(EventCheckpoint).where(EventCheckpoint.id == first))
    report = _verify(db, org)
    assert not report.ok and report.first is not None
    assert report.first.checkpoint == 2 and report.first.seq is None
    assert report.summary().startswith(f"{org}: BROKEN at checkpoint #2: checkpoint #2 follows")
    assert "checkpoint #1 is missing" in report.summary()


def test_checkpoints_signed_with_another_key_or_none_are_not_proof(db: Database) -> None:
    t = make_tenant(db)
    org = t.organization_id
    _record(db, Actor.system(org), "r1")
    unsigned = write_checkpoints(db, None)
    assert unsigned.written[0].signature is None
    report = _verify(db, org)
    # Written before a key was configured: reported as unsigned, not broken.
    assert report.ok and "(unsigned)" in report.summary()

    _record(db, Actor.system(org), "r1")
    write_checkpoints(db, KEY)
    report = _verify(db, org)
    assert report.ok and "1 early checkpoint(s) unsigned" in report.summary()

    report = _verify(db, org, key=OTHER_KEY)
    assert not report.ok and report.first is not None
    assert "was signed with another key" in (report.reason or "")

    # An unsigned checkpoint after a signed one: a signature was stripped, or forged.
    _record(db, Actor.system(org), "r2")
    write_checkpoints(db, None)
    report = _verify(db, org)
    assert not report.ok
    assert "checkpoint #3 is unsigned, after signed checkpoint #2" in (report.reason or "")


def test_a_chain_that_does_not_verify_is_not_sealed(db: Database) -> None:
    t = make_tenant(db)
    org = t.organization_id
    _record(db, Actor.system(org), "r1", "r2", "r1")
    with tampering(db) as conn:
        conn.execute(
            update(Event)
            .where(Event.subject_id == "r1", Event.subject_seq == 1)
            .values(action="return.rewritten")
        )
    run = write_checkpoints(db, KEY)
    assert [(r.subject_type, r.subject_id) for r in run.refused] == [("return", "r1")]
    assert run.written[0].subjects == 3  # organization, api_key, r2
    with db.session() as session:
        sealed = set(session.scalars(select(CheckpointHead.subject_id)))
        assert "r1" not in sealed and "r2" in sealed
        # r1's written head stays for the next checkpoint and for verify.
        left = session.scalars(select(UnsealedHead.subject_id)).all()
        assert left == ["r1"]
    report = _verify(db, org)
    assert report.first is not None and report.first.subject_id == "r1"
    assert "was altered" in (report.reason or "")


def test_the_worker_hook_seals_once_per_interval(db: Database) -> None:
    t = make_tenant(db)
    now = [1000.0]
    schedule = CheckpointSchedule(db, KEY, timedelta(minutes=5), clock=lambda: now[0])
    first = schedule.tick()
    assert first is not None and [w.number for w in first.written] == [1]
    _record(db, Actor.system(t.organization_id), "r1")
    now[0] += 299
    assert schedule.tick() is None  # not time yet
    now[0] += 1
    again = schedule.tick()
    assert again is not None and [w.number for w in again.written] == [2]
    assert _verify(db, t.organization_id).ok
