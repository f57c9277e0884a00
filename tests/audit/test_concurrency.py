"""Concurrent writers on PostgreSQL: different subjects of one organization never wait
for each other; writers of one subject queue, and its chain never forks."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from returnguard.audit import service as audit
from returnguard.audit.checkpoints import write_checkpoints
from returnguard.audit.models import Event
from returnguard.auth import service as auth
from returnguard.auth.service import Actor
from returnguard.domain.reasons import ReasonCode
from returnguard.kit.db import Database
from returnguard.orders import service as orders
from returnguard.orders.schemas import ChannelIn, Marketplace, OrderIn
from returnguard.returns import service as returns
from returnguard.returns.schemas import ReturnIn, ReturnLineIn

THREADS = 8
TRANSACTIONS = 20
TIMEOUT = 120
KEY = b"a key of at least thirty-two characters"


def _tenant(db: Database) -> Actor:
    with db.session() as session:
        org = auth.create_organization(session, f"Shop {uuid.uuid4().hex[:8]}", "EUR")
        actor = Actor.system(org.id)
        orders.create_channel(
            session,
            actor,
            ChannelIn(
                code="shop",
                name="Shop",
                marketplace=Marketplace.OWN_STORE,
                country="DE",
                currency="EUR",
            ),
        )
    return actor


def _order_in(external_id: str, buyer: str) -> OrderIn:
    return OrderIn.model_validate(
        {
            "channel": "shop",
            "external_id": external_id,
            "currency": "EUR",
            "ordered_at": datetime(2026, 10, 1, 10, tzinfo=UTC),
            "delivered_at": datetime(2026, 10, 3, 10, tzinfo=UTC),
            "buyer": {"external_id": buyer, "email": f"{buyer}@example.de", "country": "DE"},
            "captured": {"currency": "EUR", "amount": "20.00"},
            "lines": [
                {
                    "external_id": "item-1",
                    "sku": "MUG",
                    "quantity": 2,
                    "unit_price": {"currency": "EUR", "amount": "10.00"},
                }
            ],
        }
    )


def _run(work: Callable[[int], None], threads: int = THREADS) -> list[str]:
    """Run ``work(i)`` in ``threads`` threads started together; the errors they raised."""
    errors: list[str] = []
    barrier = threading.Barrier(threads)

    def target(i: int) -> None:
        barrier.wait()
        try:
            work(i)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    started = [threading.Thread(target=target, args=(i,)) for i in range(threads)]
    for t in started:
        t.start()
    for t in started:
        t.join(TIMEOUT)
    assert not any(t.is_alive() for t in started), "writers still running: stuck"
    return errors


def test_orders_and_returns_of_one_organization_are_written_concurrently(pg_db: Database) -> None:
    actor = _tenant(pg_db)
    created: list[uuid.UUID] = []

    def client(i: int) -> None:
        for j in range(TRANSACTIONS):
            with pg_db.session() as session:
                order = orders.upsert_order(
                    session, actor, _order_in(f"order-{i}-{j}", f"buyer-{i}-{j}")
                ).order
                ret = returns.create_return(
                    session,
                    actor,
                    ReturnIn(
                        order_id=order.id,
                        lines=[
                            ReturnLineIn(
                                order_line_id=order.lines[0].id,
                                quantity=1,
                                reason_code=ReasonCode.CHANGED_MIND,
                            )
                        ],
                    ),
                )
            created.append(ret.id)

    assert _run(client) == []
    assert len(created) == THREADS * TRANSACTIONS
    with pg_db.session() as session:
        for return_id in created:
            timeline = audit.events_for_return(session, actor.organization_id, return_id)
            assert timeline and timeline[0].action == "return.created"
        report = audit.verify_chain(session, actor.organization_id)
        total = session.scalar(
            select(func.count())
            .select_from(Event)
            .where(Event.organization_id == actor.organization_id)
        )
    assert report.ok, report
    assert report.checked == total
    write_checkpoints(pg_db, KEY)
    with pg_db.session() as session:
        sealed = audit.verify_chain(session, actor.organization_id, key=KEY)
    assert sealed.ok and sealed.unsealed_events == 0


def test_writers_of_one_subject_take_turns_and_never_fork_its_chain(pg_db: Database) -> None:
    actor = _tenant(pg_db)

    def writer(i: int) -> None:
        for j in range(TRANSACTIONS):
            with pg_db.session() as session:
                audit.record(
                    session,
                    actor,
                    subject_type="buyer",
                    subject_id="the-same-buyer",
                    action="buyer.touched",
                    data={"writer": i, "n": j},
                )

    assert _run(writer) == []
    with pg_db.session() as session:
        seqs = list(
            session.scalars(
                select(Event.subject_seq)
                .where(Event.subject_id == "the-same-buyer")
                .order_by(Event.subject_seq)
            )
        )
        report = audit.verify_chain(session, actor.organization_id)
    assert seqs == list(range(1, THREADS * TRANSACTIONS + 1))
    assert report.ok, report


_HOLD = "test.hold_commit"


@pytest.fixture
def hold_commits() -> Iterator[None]:
    """A session whose info has _HOLD waits there, its events written but not committed
    (this listener runs after the audit log's own before_commit)."""

    def hold(session: Session) -> None:
        gate = session.info.get(_HOLD)
        if gate is not None:
            reached, release = gate
            reached.set()
            release.wait(TIMEOUT)

    sa_event.listen(Session, "before_commit", hold)
    yield
    sa_event.remove(Session, "before_commit", hold)


def _write(db: Database, actor: Actor, subject: str, gate: object = None) -> None:
    with db.session() as session:
        if gate is not None:
            session.info[_HOLD] = gate
        # A writer that waits for a lock gives up after 5 s instead of hanging the test.
        session.connection().exec_driver_sql("SET LOCAL lock_timeout = '5s'")
        audit.record(session, actor, subject_type="return", subject_id=subject, action="x")


def test_a_writer_never_waits_for_another_subjects_uncommitted_events(
    pg_db: Database, hold_commits: None
) -> None:
    actor = _tenant(pg_db)
    reached, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_write, args=(pg_db, actor, "r1", (reached, release)))
    holder.start()
    try:
        assert reached.wait(TIMEOUT)
        # r1's events are inserted and their transaction still open.
        started = time.monotonic()
        _write(pg_db, actor, "r2")  # another return: straight through
        assert time.monotonic() - started < 2

        # The same return waits for the holder, then appends after it.
        same = threading.Thread(target=_write, args=(pg_db, actor, "r1"))
        same.start()
        same.join(1)
        assert same.is_alive(), "a second writer of r1 did not wait for the first"
    finally:
        release.set()
        holder.join(TIMEOUT)
    same.join(TIMEOUT)
    with pg_db.session() as session:
        chain = list(
            session.scalars(
                select(Event.subject_seq).where(Event.subject_id == "r1").order_by(Event.seq)
            )
        )
        assert audit.verify_chain(session, actor.organization_id).ok
    assert chain == [1, 2]


def test_without_the_subject_lock_the_unique_link_still_prevents_a_fork(
    pg_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The advisory lock only saves retries: writers racing without it lose on the unique
    # (organization, subject, subject_seq) key, re-read the head and append after it.
    monkeypatch.setattr(audit, "_lock_subjects", lambda session, keys: None)
    actor = _tenant(pg_db)

    def writer(i: int) -> None:
        for j in range(10):
            with pg_db.session() as session:
                audit.record(
                    session,
                    actor,
                    subject_type="buyer",
                    subject_id="raced",
                    action="buyer.touched",
                    data={"writer": i, "n": j},
                )

    assert _run(writer, threads=4) == []
    with pg_db.session() as session:
        seqs = list(
            session.scalars(
                select(Event.subject_seq)
                .where(Event.subject_id == "raced")
                .order_by(Event.subject_seq)
            )
        )
        assert audit.verify_chain(session, actor.organization_id).ok
    assert seqs == list(range(1, 41))
