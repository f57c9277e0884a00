"""Racing requests on the same return or order line: exactly one wins, on both databases.

Threads race inside one process (SQLite and PostgreSQL); processes race on PostgreSQL,
the way several app servers would. Every racer uses its own session, as a request does.
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from returnguard.audit import service as audit
from returnguard.audit.models import Event
from returnguard.auth import service as auth
from returnguard.auth.service import Actor
from returnguard.domain.reasons import ReasonCode
from returnguard.domain.returns import ReturnAction
from returnguard.errors import ReturnGuardError
from returnguard.kit.db import Database
from returnguard.orders import service as orders
from returnguard.orders.schemas import ChannelIn, Marketplace, OrderIn
from returnguard.returns import repository as repo
from returnguard.returns import service
from returnguard.returns.models import Return
from returnguard.returns.schemas import (
    ApproveIn,
    ReceiveIn,
    ReceiveLineIn,
    ReturnIn,
    ReturnLineIn,
)
from returnguard.returns.service import ConcurrentUpdate, IllegalTransitionError, QuantityExceeded

ROUNDS = 3  # races per test: a lost race is timing-dependent, so run a few
TIMEOUT = 60

Command = Callable[[Session, Actor], object]

# --- set-up ----------------------------------------------------------------------------


def _tenant(db: Database) -> Actor:
    """A fresh organization with a channel; no API key or app needed."""
    with db.session() as session:
        org = auth.create_organization(session, f"Shop {uuid.uuid4().hex[:8]}", "EUR")
        actor = Actor.system(org.id)
        channel = ChannelIn(
            code="shop",
            name="Shop",
            marketplace=Marketplace.OWN_STORE,
            country="DE",
            currency="EUR",
        )
        orders.create_channel(session, actor, channel)
    return actor


def _order(db: Database, actor: Actor, quantity: int) -> tuple[uuid.UUID, uuid.UUID]:
    """An order with one line of ``quantity`` units: (order id, order line id)."""
    body = OrderIn.model_validate(
        {
            "channel": "shop",
            "external_id": f"order-{uuid.uuid4().hex[:8]}",
            "currency": "EUR",
            "ordered_at": datetime(2026, 10, 1, 10, tzinfo=UTC),
            "captured": {"currency": "EUR", "amount": f"{10 * quantity}.00"},
            "lines": [
                {
                    "external_id": "item-1",
                    "sku": "MUG",
                    "quantity": quantity,
                    "unit_price": {"currency": "EUR", "amount": "10.00"},
                }
            ],
        }
    )
    with db.session() as session:
        order = orders.upsert_order(session, actor, body).order
        return order.id, order.lines[0].id


def _request(
    session: Session, actor: Actor, order: tuple[uuid.UUID, uuid.UUID], qty: int
) -> Return:
    order_id, line_id = order
    body = ReturnIn(
        order_id=order_id,
        lines=[
            ReturnLineIn(order_line_id=line_id, quantity=qty, reason_code=ReasonCode.CHANGED_MIND)
        ],
    )
    return service.create_return(session, actor, body)


def _request_rest(
    order: tuple[uuid.UUID, uuid.UUID], qty: int, created: list[uuid.UUID]
) -> Command:
    def command(session: Session, actor: Actor) -> None:
        created.append(_request(session, actor, order, qty).id)

    return command


def _new_return(db: Database, actor: Actor, qty: int = 2, ordered: int = 2) -> Return:
    order = _order(db, actor, ordered)
    with db.session() as session:
        return _request(session, actor, order, qty)


def _load(db: Database, actor: Actor, return_id: uuid.UUID) -> Return:
    with db.session() as session:
        return service.get_return(session, actor.organization_id, return_id)


def _actions(db: Database, return_id: uuid.UUID) -> list[str]:
    with db.session() as session:
        stmt = select(Event.action).where(Event.return_id == return_id).order_by(Event.seq)
        return list(session.scalars(stmt))


def _chain_ok(db: Database, actor: Actor) -> None:
    with db.session() as session:
        report = audit.verify_chain(session, actor.organization_id)
    assert report.ok, report


# --- racing ----------------------------------------------------------------------------


def _race(db: Database, actor: Actor, commands: list[Command]) -> list[ReturnGuardError | None]:
    """Start every command at the same moment, each in its own thread and session."""
    barrier = threading.Barrier(len(commands))
    results: list[ReturnGuardError | None] = [None] * len(commands)
    crashes: list[BaseException] = []

    def run(i: int, command: Command) -> None:
        try:
            # No statement before the barrier: on SQLite the first one takes the write lock.
            barrier.wait(timeout=TIMEOUT)
            with db.session() as session:
                command(session, actor)
        except ReturnGuardError as exc:
            results[i] = exc
        except BaseException as exc:  # surfaced in the test thread below
            crashes.append(exc)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(commands)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a racer hung"
    if crashes:
        raise crashes[0]
    return results


def _one_winner(results: list[ReturnGuardError | None], *losers: type[ReturnGuardError]) -> int:
    """Exactly one racer succeeded and every other lost cleanly; returns the winner."""
    winners = [i for i, r in enumerate(results) if r is None]
    assert len(winners) == 1, results
    for r in results:
        assert r is None or isinstance(r, losers), repr(r)
    return winners[0]


def _approve(return_id: uuid.UUID) -> Command:
    return lambda s, a: service.approve(s, a, return_id, ApproveIn())


def _reject(return_id: uuid.UUID) -> Command:
    return lambda s, a: service.reject(s, a, return_id, "not eligible")


def _cancel(return_id: uuid.UUID) -> Command:
    return lambda s, a: service.cancel(s, a, return_id, "changed my mind")


def _receive(return_id: uuid.UUID, line_id: uuid.UUID, qty: int = 1) -> Command:
    body = ReceiveIn(lines=[ReceiveLineIn(return_line_id=line_id, quantity=qty)])
    return lambda s, a: service.receive(s, a, return_id, body)


# Racing pairs where, whichever wins, the other is no longer allowed.
RACES = [("approve", "reject"), ("approve", "approve"), ("reject", "cancel")]
_COMMANDS: dict[str, Callable[[uuid.UUID], Command]] = {
    "approve": _approve,
    "reject": _reject,
    "cancel": _cancel,
}
_STATUS_AFTER = {"approve": "approved", "reject": "rejected", "cancel": "cancelled"}


@pytest.mark.parametrize("racers", RACES, ids=["-vs-".join(r) for r in RACES])
def test_racing_transitions_have_exactly_one_winner(db: Database, racers: tuple[str, str]) -> None:
    actor = _tenant(db)
    for _ in range(ROUNDS):
        ret = _new_return(db, actor)
        results = _race(db, actor, [_COMMANDS[name](ret.id) for name in racers])
        winner = racers[_one_winner(results, IllegalTransitionError, ConcurrentUpdate)]
        after = _load(db, actor, ret.id)
        assert after.status == _STATUS_AFTER[winner]
        assert after.version == 2
        # One event for the one transition that happened, none for the loser.
        assert _actions(db, ret.id) == ["return.created", f"return.{winner}"]
    _chain_ok(db, actor)


def test_racing_receipts_of_the_last_unit(db: Database) -> None:
    actor = _tenant(db)
    for _ in range(ROUNDS):
        ret = _new_return(db, actor, qty=2)
        line_id = ret.lines[0].id
        with db.session() as session:
            service.approve(session, actor, ret.id, ApproveIn())
            service.receive(
                session,
                actor,
                ret.id,
                ReceiveIn(lines=[ReceiveLineIn(return_line_id=line_id, quantity=1)]),
            )
        results = _race(db, actor, [_receive(ret.id, line_id), _receive(ret.id, line_id)])
        _one_winner(results, QuantityExceeded, ConcurrentUpdate)
        line = _load(db, actor, ret.id).lines[0]
        assert (line.approved, line.received) == (2, 2)
        assert _actions(db, ret.id).count("return.receive") == 2  # the first, and the winner
    _chain_ok(db, actor)


def test_racing_receipts_never_exceed_the_approved_units(db: Database) -> None:
    """Three parcels of one unit each race for two approved units: two get in."""
    actor = _tenant(db)
    ret = _new_return(db, actor, qty=2, ordered=3)
    line_id = ret.lines[0].id
    with db.session() as session:
        service.approve(session, actor, ret.id, ApproveIn())
    results = _race(db, actor, [_receive(ret.id, line_id) for _ in range(3)])
    # Serialised by the row lock, each receipt sees the one before it: two fit.
    assert sum(r is None for r in results) == 2, results
    assert all(r is None or isinstance(r, QuantityExceeded | ConcurrentUpdate) for r in results), (
        results
    )
    line = _load(db, actor, ret.id).lines[0]
    assert (line.approved, line.received) == (2, 2)


def test_racing_requests_for_the_remaining_units(db: Database) -> None:
    actor = _tenant(db)
    for _ in range(ROUNDS):
        order = _order(db, actor, quantity=3)
        with db.session() as session:
            _request(session, actor, order, 1)  # one unit already on its way back
        created: list[uuid.UUID] = []
        ask_for_the_rest = _request_rest(order, 2, created)
        results = _race(db, actor, [ask_for_the_rest, ask_for_the_rest])
        _one_winner(results, QuantityExceeded)
        assert len(created) == 1
        with db.session() as session:
            order_id, line_id = order
            returns = repo.list_returns(session, actor.organization_id, order_id=order_id)
            assert sorted(ln.requested for r in returns for ln in r.lines) == [1, 2]
            assert repo.claimed_quantities(session, [line_id]) == {line_id: 3}
    _chain_ok(db, actor)


# --- the two locks, one at a time --------------------------------------------------------


def test_a_transition_waits_for_the_one_holding_the_return(db: Database) -> None:
    """Deterministic interleaving: B blocks on A's lock, then sees A's result."""
    actor = _tenant(db)
    ret = _new_return(db, actor)
    outcome: list[ReturnGuardError | None] = []

    def reject_in_b() -> None:
        try:
            with db.session() as session:
                service.reject(session, actor, ret.id, "too late")
            outcome.append(None)
        except ReturnGuardError as exc:
            outcome.append(exc)

    with db.session() as session_a:
        service.approve(session_a, actor, ret.id, ApproveIn())
        b = threading.Thread(target=reject_in_b)
        b.start()
        time.sleep(0.3)
        assert b.is_alive(), "B did not wait for A's lock"
        assert outcome == []
    # A committed on leaving the block; B now runs against the approved return.
    b.join(TIMEOUT)
    assert not b.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], IllegalTransitionError), outcome
    assert outcome[0].extra["current_status"] == "approved"
    assert _load(db, actor, ret.id).status == "approved"
    assert _actions(db, ret.id) == ["return.created", "return.approve"]


def test_a_stale_version_loses_the_conditional_update(db: Database) -> None:
    """Without the row lock, the WHERE status AND version guard still stops a lost update."""
    actor = _tenant(db)
    ret = _new_return(db, actor)
    stale_version = ret.version
    with db.session() as session:
        service.approve(session, actor, ret.id, ApproveIn())
    with db.session() as session:
        assert not repo.compare_and_set_status(session, ret, "requested", "rejected", stale_version)
    with db.session() as session, pytest.raises(ConcurrentUpdate):
        service.transition(
            session, actor, ret.id, ReturnAction.REJECT, expected_version=stale_version
        )
    after = _load(db, actor, ret.id)
    assert (after.status, after.version) == ("approved", 2)
    assert _actions(db, ret.id) == ["return.created", "return.approve"]


# --- processes (PostgreSQL) ----------------------------------------------------------------


def _transition_in_process(
    url: str,
    organization_id: uuid.UUID,
    return_id: uuid.UUID,
    action: str,
    barrier: Barrier,
    results: Queue[tuple[str, str]],
) -> None:
    """One app server: its own engine, its own connection, the same return."""
    db = Database(url)
    actor = Actor.system(organization_id, label=f"process {action}")
    commands: dict[str, Command] = {
        "approve": _approve(return_id),
        "reject": _reject(return_id),
        "resolve_returnless": lambda s, a: service.simple(
            s, a, return_id, ReturnAction.RESOLVE_RETURNLESS
        ),
    }
    try:
        with db.session() as session:  # connect before the start signal
            session.connection()
        barrier.wait(timeout=TIMEOUT)
        try:
            with db.session() as session:
                commands[action](session, actor)
            results.put((action, "ok"))
        except ReturnGuardError as exc:
            results.put((action, exc.code))
    finally:
        db.dispose()


def test_processes_race_for_one_transition(pg_db: Database) -> None:
    actor = _tenant(pg_db)
    ret = _new_return(pg_db, actor)
    ctx = multiprocessing.get_context("spawn")
    # Whichever wins, the others are no longer allowed (unlike e.g. offer, then reject).
    actions = ["approve", "approve", "reject", "resolve_returnless"]
    barrier = ctx.Barrier(len(actions))
    results: Queue[tuple[str, str]] = ctx.Queue()
    procs = [
        ctx.Process(
            target=_transition_in_process,
            args=(pg_db.url, actor.organization_id, ret.id, action, barrier, results),
        )
        for action in actions
    ]
    for p in procs:
        p.start()
    outcomes: list[tuple[str, str]] = []
    try:
        for _ in procs:
            outcomes.append(results.get(timeout=TIMEOUT))
    except queue.Empty:
        pytest.fail(f"only {len(outcomes)} of {len(procs)} processes reported: {outcomes}")
    finally:
        for p in procs:
            p.join(TIMEOUT)
            if p.is_alive():
                p.terminate()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    winners = [action for action, outcome in outcomes if outcome == "ok"]
    assert len(winners) == 1, outcomes
    assert all(
        outcome in ("ok", IllegalTransitionError.code, ConcurrentUpdate.code)
        for _, outcome in outcomes
    ), outcomes
    status = {"approve": "approved", "reject": "rejected", "resolve_returnless": "resolved"}
    after = _load(pg_db, actor, ret.id)
    assert after.status == status[winners[0]]
    assert after.version == 2
    # Exactly one event for the transition: the losers wrote nothing.
    assert _actions(pg_db, ret.id) == ["return.created", f"return.{winners[0]}"]
    _chain_ok(pg_db, actor)
