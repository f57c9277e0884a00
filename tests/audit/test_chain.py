"""The event log is append-only and tamper-evident, on both databases."""

from __future__ import annotations

from sqlalchemy import delete, func, select, update

from returnguard.audit import service as audit
from returnguard.audit.models import Event
from returnguard.auth.models import Organization
from returnguard.auth.service import Actor
from returnguard.kit.db import Database
from tests.conftest import make_tenant


def _record(db: Database, actor: Actor, n: int) -> None:
    with db.session() as session:
        for i in range(n):
            audit.record(
                session,
                actor,
                subject_type="thing",
                subject_id=f"t{i}",
                action="thing.touched",
                before={"n": i},
                after={"n": i + 1},
            )


def test_events_are_chained_in_order_per_organization(db: Database) -> None:
    a = make_tenant(db, "A")
    b = make_tenant(db, "B")
    _record(db, Actor.system(a.organization_id), 3)
    _record(db, Actor.system(b.organization_id), 2)
    _record(db, Actor.system(a.organization_id), 2)
    with db.session() as session:
        rows = session.scalars(
            select(Event).where(Event.organization_id == a.organization_id).order_by(Event.seq)
        ).all()
        # Creating the organization and its key are the first two events.
        assert [r.action for r in rows[:2]] == ["organization.created", "api_key.created"]
        assert [r.seq for r in rows] == list(range(1, 8))
        assert rows[0].prev_hash == audit.GENESIS
        assert all(rows[i].prev_hash == rows[i - 1].hash for i in range(1, len(rows)))
        assert audit.verify_chain(session, a.organization_id).ok
        assert audit.verify_chain(session, b.organization_id).checked == 4


def test_rolled_back_work_leaves_no_event(db: Database) -> None:
    t = make_tenant(db)
    with db.session() as session:
        org = session.get(Organization, t.organization_id)
        assert org is not None
        seq_before = org.event_seq
    try:
        with db.session() as session:
            audit.record(
                session,
                Actor.system(t.organization_id),
                subject_type="x",
                subject_id="1",
                action="x.done",
            )
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    with db.session() as session:
        assert session.scalar(select(func.count()).where(Event.action == "x.done")) == 0
        assert session.scalar(select(func.count()).select_from(Event)) == seq_before
        org = session.get(Organization, t.organization_id)
        assert org is not None and org.event_seq == seq_before


def test_altered_event_is_named_by_verify(db: Database) -> None:
    t = make_tenant(db)
    _record(db, Actor.system(t.organization_id), 4)
    with db.session() as session:
        session.execute(
            update(Event)
            .where(Event.organization_id == t.organization_id, Event.seq == 3)
            .values(after={"n": 999})
        )
    with db.session() as session:
        report = audit.verify_chain(session, t.organization_id)
    assert not report.ok
    assert report.broken_seq == 3
    assert report.reason is not None and "altered" in report.reason


def test_deleted_middle_and_tail_events_are_detected(db: Database) -> None:
    t = make_tenant(db)
    _record(db, Actor.system(t.organization_id), 4)
    with db.session() as session:
        last = session.scalar(select(func.max(Event.seq)))
        session.execute(delete(Event).where(Event.seq == last))
    with db.session() as session:
        report = audit.verify_chain(session, t.organization_id)
        assert not report.ok and report.broken_seq == last
        assert "deleted" in (report.reason or "")
    with db.session() as session:
        session.execute(delete(Event).where(Event.seq == 2))
    with db.session() as session:
        report = audit.verify_chain(session, t.organization_id)
        assert not report.ok and report.broken_seq == 2 and "missing" in (report.reason or "")
