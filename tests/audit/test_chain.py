"""Events are chained per subject, written with the change, and every change to them
(altered, removed, reordered) is named by `verify`, on both databases."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import delete, func, select, update

from returnguard.audit import service as audit
from returnguard.audit.models import Event
from returnguard.auth.service import Actor
from returnguard.kit.db import Database
from tests.audit.attacker import tampering
from tests.conftest import make_tenant


def _record(db: Database, actor: Actor, *subjects: str) -> None:
    """One transaction writing one event per subject named (``thing`` subjects)."""
    with db.session() as session:
        for i, subject in enumerate(subjects):
            audit.record(
                session,
                actor,
                subject_type="thing",
                subject_id=subject,
                action="thing.touched",
                before={"n": i},
                after={"n": i + 1},
            )


def _chain(db: Database, org: uuid.UUID, subject: str) -> list[Event]:
    with db.session() as session:
        return list(
            session.scalars(
                select(Event)
                .where(
                    Event.organization_id == org,
                    Event.subject_type == "thing",
                    Event.subject_id == subject,
                )
                .order_by(Event.subject_seq)
            )
        )


def _verify(db: Database, org: uuid.UUID) -> audit.ChainReport:
    with db.session() as session:
        return audit.verify_chain(session, org)


def test_each_subject_has_its_own_chain_and_the_organization_one_listing(db: Database) -> None:
    t = make_tenant(db, "A")
    other = make_tenant(db, "B")
    actor = Actor.system(t.organization_id)
    _record(db, actor, "a", "b", "a")
    _record(db, Actor.system(other.organization_id), "a")
    _record(db, actor, "b", "c")

    a, b, c = (_chain(db, t.organization_id, s) for s in "abc")
    assert [e.subject_seq for e in a] == [1, 2]
    assert [e.subject_seq for e in b] == [1, 2]
    assert [e.subject_seq for e in c] == [1]
    for events in (a, b, c):
        assert events[0].prev_hash == audit.GENESIS
        assert all(events[i].prev_hash == events[i - 1].hash for i in range(1, len(events)))
    # The other organization's "a" is a chain of its own.
    assert [e.subject_seq for e in _chain(db, other.organization_id, "a")] == [1]
    with db.session() as session:
        listing = list(
            session.scalars(
                select(Event.action)
                .where(Event.organization_id == t.organization_id)
                .order_by(Event.seq)
            )
        )
    # Creating the organization and its key came first, then the events in writing order.
    assert listing[:2] == ["organization.created", "api_key.created"]
    assert len(listing) == 7
    report = _verify(db, t.organization_id)
    assert report.ok, report
    assert (report.checked, report.chains) == (7, 5)
    assert report.summary().splitlines() == [
        f"{t.organization_id}: OK (7 events)",
        "    5 subject chains; no checkpoint yet: all 7 events are hash-checked only",
    ]


def test_rolled_back_work_leaves_no_event(db: Database) -> None:
    t = make_tenant(db)
    with db.session() as session:
        before = session.scalar(select(func.count()).select_from(Event))
    with pytest.raises(RuntimeError), db.session() as session:
        audit.record(
            session,
            Actor.system(t.organization_id),
            subject_type="x",
            subject_id="1",
            action="x.done",
        )
        raise RuntimeError("boom")
    with db.session() as session:
        assert session.scalar(select(func.count()).where(Event.action == "x.done")) == 0
        assert session.scalar(select(func.count()).select_from(Event)) == before


def test_a_rolled_back_savepoint_takes_only_its_own_events(db: Database) -> None:
    t = make_tenant(db)
    actor = Actor.system(t.organization_id)
    with db.session() as session:
        audit.record(session, actor, subject_type="x", subject_id="1", action="x.kept")
        try:
            with session.begin_nested():
                audit.record(session, actor, subject_type="x", subject_id="1", action="x.lost")
                raise ValueError("the savepoint fails")
        except ValueError:
            pass
        with session.begin_nested():
            audit.record(session, actor, subject_type="x", subject_id="1", action="x.inner")
        audit.record(session, actor, subject_type="x", subject_id="1", action="x.after")
    with db.session() as session:
        actions = list(
            session.scalars(
                select(Event.action).where(Event.subject_type == "x").order_by(Event.subject_seq)
            )
        )
    assert actions == ["x.kept", "x.inner", "x.after"]
    assert _verify(db, t.organization_id).ok


def test_altered_event_is_named_by_verify(db: Database) -> None:
    t = make_tenant(db)
    actor = Actor.system(t.organization_id)
    for _ in range(4):
        _record(db, actor, "a", "b")
    target = _chain(db, t.organization_id, "a")[2]
    with tampering(db) as conn:
        conn.execute(update(Event).where(Event.id == target.id).values(after={"n": 999}))

    report = _verify(db, t.organization_id)

    assert not report.ok and report.breaks == 1
    assert report.first is not None
    assert (report.first.event_id, report.first.subject_id, report.first.subject_seq) == (
        target.id,
        "a",
        3,
    )
    assert report.broken_seq == target.seq
    assert report.summary().startswith(
        f"{t.organization_id}: BROKEN at event #{target.seq} (thing a seq 3, event id {target.id})"
    )
    assert "was altered" in report.summary()


def test_removed_events_are_found_in_the_middle_and_at_the_end(db: Database) -> None:
    t = make_tenant(db)
    actor = Actor.system(t.organization_id)
    for _ in range(4):
        _record(db, actor, "a")
    a = _chain(db, t.organization_id, "a")
    with tampering(db) as conn:
        conn.execute(delete(Event).where(Event.id == a[-1].id))

    report = _verify(db, t.organization_id)
    # The chain alone looks complete (three links); the head its writer recorded is gone.
    assert not report.ok and report.first is not None
    assert (report.first.seq, report.first.subject_seq, report.first.event_id) == (
        a[-1].seq,
        4,
        None,
    )
    assert "thing a seq 4 was deleted" in (report.reason or "")

    with tampering(db) as conn:
        conn.execute(delete(Event).where(Event.id == a[1].id))
    report = _verify(db, t.organization_id)
    assert not report.ok and report.first is not None
    # One broken chain, named by its first broken link: where it jumps from seq 1 to 3.
    assert report.breaks == 1
    assert (report.first.event_id, report.first.subject_seq) == (a[2].id, 3)
    assert "seq 2 is missing" in (report.reason or "")


def test_reordered_events_are_found(db: Database) -> None:
    t = make_tenant(db)
    actor = Actor.system(t.organization_id)
    for _ in range(3):
        _record(db, actor, "a", "b")
    a = _chain(db, t.organization_id, "a")
    with tampering(db) as conn:
        # Swap the places of a's 2nd and 3rd events in their chain.
        conn.execute(update(Event).where(Event.id == a[1].id).values(subject_seq=-1))
        conn.execute(update(Event).where(Event.id == a[2].id).values(subject_seq=2))
        conn.execute(update(Event).where(Event.id == a[1].id).values(subject_seq=3))
    report = _verify(db, t.organization_id)
    assert not report.ok and report.first is not None
    assert (report.first.event_id, report.first.subject_seq) == (a[2].id, 2)
    assert "does not point at the hash of seq 1" in (report.reason or "")

    # Swapping only the listing numbers of two events (reordering the timeline) too.
    t2 = make_tenant(db, "Other")
    actor2 = Actor.system(t2.organization_id)
    _record(db, actor2, "a")
    _record(db, actor2, "b")
    first, second = _chain(db, t2.organization_id, "a")[0], _chain(db, t2.organization_id, "b")[0]
    with tampering(db) as conn:
        conn.execute(update(Event).where(Event.id == first.id).values(seq=-1))
        conn.execute(update(Event).where(Event.id == second.id).values(seq=first.seq))
        conn.execute(update(Event).where(Event.id == first.id).values(seq=second.seq))
    report = _verify(db, t2.organization_id)
    assert not report.ok and report.breaks == 2
    assert report.first is not None and report.first.event_id == second.id
    assert report.first.seq == first.seq  # where the timeline now shows it
    assert "altered" in (report.reason or "")


def test_the_first_broken_link_is_the_earliest_of_all_chains(db: Database) -> None:
    t = make_tenant(db)
    actor = Actor.system(t.organization_id)
    for _ in range(3):
        _record(db, actor, "a", "b")
    a, b = _chain(db, t.organization_id, "a"), _chain(db, t.organization_id, "b")
    with tampering(db) as conn:
        conn.execute(update(Event).where(Event.id == b[2].id).values(action="b.changed"))
        conn.execute(update(Event).where(Event.id == a[1].id).values(action="a.changed"))
    report = _verify(db, t.organization_id)
    assert report.breaks == 2
    assert report.first is not None and report.first.event_id == a[1].id
    assert (
        report.summary().splitlines()[1]
        == "    2 broken links in all; 8 events in 4 subject chains"
    )


def test_events_and_checkpoints_cannot_be_changed_through_the_session(db: Database) -> None:
    t = make_tenant(db)
    _record(db, Actor.system(t.organization_id), "a")
    event_id = _chain(db, t.organization_id, "a")[0].id
    with pytest.raises(audit.AppendOnlyViolation), db.session() as session:
        row = session.get(Event, event_id)
        assert row is not None
        row.action = "rewritten"
        session.flush()
    with pytest.raises(audit.AppendOnlyViolation), db.session() as session:
        session.delete(session.get(Event, event_id))
        session.flush()
    assert _chain(db, t.organization_id, "a")[0].action == "thing.touched"
    assert _verify(db, t.organization_id).ok
