"""Random lifecycle command sequences through the real service and database.

A Hypothesis state machine keeps a small model of every return (status, line
quantities, events, version) that it derives only from the pure lifecycle table and
quantity rules, drives the service with random (often invalid) commands, and after
every step compares the database with the model and checks the invariants from
DESIGN.md. Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from returnguard.audit import service as audit
from returnguard.audit.models import Event
from returnguard.auth.service import Actor
from returnguard.domain.returns import (
    LIFECYCLE,
    LineQuantities,
    QuantityError,
    ReturnAction,
    ReturnStatus,
    approve_line,
    inspect_line,
    receive_line,
)
from returnguard.errors import ReturnGuardError
from returnguard.kit.db import Database
from returnguard.kit.state_machine import IllegalTransition
from returnguard.orders import service as orders
from returnguard.orders.schemas import ChannelIn, OrderIn
from returnguard.returns import repository as repo
from returnguard.returns import service
from returnguard.returns.models import Return
from returnguard.returns.schemas import (
    ApproveIn,
    InspectionIn,
    OfferIn,
    ReceiveIn,
    ReturnIn,
    ShipmentIn,
)
from returnguard.returns.service import IllegalTransitionError, QuantityExceeded
from tests.conftest import make_tenant

S = ReturnStatus
A = ReturnAction

# The model's own reading of DESIGN.md: which returns still hold units of their order.
RELEASED = frozenset({S.REJECTED, S.CANCELLED, S.EXPIRED})
UNDECIDED = frozenset({S.REQUESTED, S.AWAITING_EVIDENCE, S.PENDING_REVIEW, S.OFFERED})

# Transitions that carry nothing but an optional reason.
SIMPLE_ACTIONS = [
    A.REQUEST_EVIDENCE,
    A.SUBMIT_EVIDENCE,
    A.SEND_TO_REVIEW,
    A.RESOLVE_RETURNLESS,
    A.MARK_LOST,
    A.EXPIRE,
    A.DISPUTE,
    A.CLOSE,
]


def _allows(status: ReturnStatus, action: ReturnAction) -> bool:
    return action.value in LIFECYCLE.allowed_actions(status)


@dataclass
class ModelLine:
    id: uuid.UUID
    order_line_id: uuid.UUID
    q: LineQuantities


@dataclass
class ModelReturn:
    status: ReturnStatus
    lines: list[ModelLine]
    decided: bool = False  # approved, resolved or offer answered: units settled
    events: list[str] = field(default_factory=lambda: ["return.created"])
    version: int = 1

    def held(self, line: ModelLine) -> int:
        """Units of the order line this return line keeps from other returns."""
        if self.status in RELEASED:
            return 0
        if not self.decided and (self.status in UNDECIDED or self.status is S.DISPUTED):
            return line.q.requested
        return line.q.approved


Outcome = type[ReturnGuardError] | None
Plan = Callable[[list[ModelLine]], list[LineQuantities]]


def shop_with_order(
    db: Database, quantities: list[int]
) -> tuple[Actor, uuid.UUID, dict[uuid.UUID, int]]:
    """A new organization with one order: (actor, order id, {order line id: quantity})."""
    tenant = make_tenant(db, f"Shop {uuid.uuid4().hex[:8]}")
    actor = Actor.system(tenant.organization_id)
    body = OrderIn.model_validate(
        {
            "channel": "shop",
            "external_id": "order-1",
            "currency": "EUR",
            "ordered_at": datetime(2026, 10, 1, 10, tzinfo=UTC),
            "delivered_at": datetime(2026, 10, 3, 15, tzinfo=UTC),
            "captured": {"currency": "EUR", "amount": f"{10 * sum(quantities)}.00"},
            "lines": [
                {
                    "external_id": f"item-{i}",
                    "sku": f"SKU-{i}",
                    "quantity": qty,
                    "unit_price": {"currency": "EUR", "amount": "10.00"},
                }
                for i, qty in enumerate(quantities)
            ],
        }
    )
    channel = ChannelIn.model_validate(
        {
            "code": "shop",
            "name": "Shop",
            "marketplace": "own_store",
            "country": "DE",
            "currency": "EUR",
        }
    )
    with db.session() as session:
        orders.create_channel(session, actor, channel)
        order = orders.upsert_order(session, actor, body).order
        # In position order: what is drawn must not depend on random ids.
        lines = sorted(order.lines, key=lambda ln: ln.position)
        return actor, order.id, {ln.id: ln.quantity for ln in lines}


class LifecycleMachine(RuleBasedStateMachine):
    """Subclassed per test with ``database`` set to the fixture's database."""

    database: Database

    def __init__(self) -> None:
        super().__init__()
        self.db = self.database
        self.actor: Actor | None = None
        self.ordered: dict[uuid.UUID, int] = {}
        self.order_id: uuid.UUID | None = None
        self.model: dict[uuid.UUID, ModelReturn] = {}
        self.base_events = 0

    # --- set-up ------------------------------------------------------------------------

    @initialize(quantities=st.lists(st.integers(1, 3), min_size=1, max_size=2), data=st.data())
    def open_order(self, quantities: list[int], data: st.DataObject) -> None:
        self.actor, self.order_id, self.ordered = shop_with_order(self.db, quantities)
        with self.db.session() as session:
            self.base_events = self._event_total(session)
        # Start with a return, so that every command has something to work on.
        self.create_return(data)

    # --- helpers -----------------------------------------------------------------------

    @property
    def org_id(self) -> uuid.UUID:
        assert self.actor is not None
        return self.actor.organization_id

    def _event_total(self, session: Session) -> int:
        stmt = select(func.count()).select_from(Event).where(Event.organization_id == self.org_id)
        return int(session.scalar(stmt) or 0)

    def _call(self, command: Callable[[Session, Actor], object]) -> Outcome:
        """Run one command in its own unit of work, as a request would."""
        assert self.actor is not None
        try:
            with self.db.session() as session:
                command(session, self.actor)
        except ReturnGuardError as exc:
            return type(exc)
        return None

    def _ready(self, action: ReturnAction) -> list[uuid.UUID]:
        # Creation order, so that what is drawn does not depend on random ids.
        return [i for i, r in self.model.items() if _allows(r.status, action)]

    def _allowed_somewhere(self, action: ReturnAction) -> bool:
        return bool(self._ready(action))

    def _pick(self, data: st.DataObject, action: ReturnAction) -> uuid.UUID:
        """A return to try ``action`` on: mostly one that allows it now, sometimes any."""
        ids = self._ready(action)
        # (0, the value Hypothesis prefers and shrinks towards, keeps to allowed ones.)
        if not ids or data.draw(st.integers(0, 9), label="any return") == 9:
            ids = list(self.model)
        return data.draw(st.sampled_from(ids), label="return")

    def _held(self, order_line_id: uuid.UUID) -> int:
        return sum(
            ret.held(line)
            for ret in self.model.values()
            for line in ret.lines
            if line.order_line_id == order_line_id
        )

    def _transition(
        self,
        return_id: uuid.UUID,
        action: ReturnAction,
        command: Callable[[Session, Actor], object],
        plan: Plan | None = None,
    ) -> None:
        """Predict the outcome from the pure layer, run the command, compare, update."""
        ret = self.model[return_id]
        expected: Outcome = None
        new_lines = [line.q for line in ret.lines]
        try:
            target = LIFECYCLE.next_status(ret.status, action)
        except IllegalTransition:
            expected, target = IllegalTransitionError, ret.status
        else:
            try:
                if plan is not None:
                    new_lines = plan(ret.lines)
            except QuantityError:
                expected = QuantityExceeded
        actual = self._call(command)
        event(f"{action.value}: {'accepted' if expected is None else expected.code}")
        assert actual is expected, f"{action.value} on {ret.status.value}: {actual} != {expected}"
        if expected is not None:
            return
        ret.status = target
        for line, q in zip(ret.lines, new_lines, strict=True):
            line.q = q
        ret.events.append(f"return.{action.value}")
        ret.version += 1
        if action in (A.APPROVE, A.ACCEPT_OFFER, A.DECLINE_OFFER, A.RESOLVE_RETURNLESS):
            ret.decided = True

    # --- commands ----------------------------------------------------------------------

    @rule(data=st.data())
    def create_return(self, data: st.DataObject) -> None:
        assert self.order_id is not None
        ids = data.draw(
            st.lists(st.sampled_from(list(self.ordered)), min_size=1, unique=True),
            label="order lines",
        )
        wanted = {i: data.draw(st.integers(1, self.ordered[i] + 1), label="qty") for i in ids}
        fits = all(qty <= self.ordered[i] - self._held(i) for i, qty in wanted.items())
        body = ReturnIn.model_validate(
            {
                "order_id": self.order_id,
                "lines": [
                    {"order_line_id": i, "quantity": qty, "reason_code": "changed_mind"}
                    for i, qty in wanted.items()
                ],
            }
        )
        created: list[Return] = []
        outcome = self._call(lambda s, a: created.append(service.create_return(s, a, body)))
        if not fits:
            assert outcome is QuantityExceeded, outcome
            return
        assert outcome is None, outcome
        ret = created[0]
        self.model[ret.id] = ModelReturn(
            S.REQUESTED,
            [
                ModelLine(
                    ln.id, ln.order_line_id, LineQuantities(requested=wanted[ln.order_line_id])
                )
                for ln in ret.lines
            ],
        )

    @precondition(lambda self: self._allowed_somewhere(A.APPROVE))
    @rule(data=st.data())
    def approve(self, data: st.DataObject) -> None:
        return_id = self._pick(data, A.APPROVE)
        lines = self.model[return_id].lines
        chosen: dict[uuid.UUID, int] | None = None
        if data.draw(st.booleans(), label="partial"):
            subset = data.draw(
                st.lists(st.sampled_from(lines), unique_by=lambda ln: ln.id), label="lines"
            )
            chosen = {
                ln.id: data.draw(st.integers(0, ln.q.requested + 1), label="qty") for ln in subset
            }
        body = ApproveIn.model_validate(
            {}
            if chosen is None
            else {"lines": [{"return_line_id": i, "quantity": q} for i, q in chosen.items()]}
        )

        def plan(current: list[ModelLine]) -> list[LineQuantities]:
            new = [
                approve_line(ln.q, None if chosen is None else chosen.get(ln.id, 0), "q")
                for ln in current
            ]
            if sum(q.approved for q in new) == 0:
                raise QuantityError("lines", "nothing approved")
            return new

        self._transition(
            return_id, A.APPROVE, lambda s, a: service.approve(s, a, return_id, body), plan
        )

    # Reject and cancel share a rule so that returns do not end too early to get deep.
    @precondition(lambda self: self._allowed_somewhere(A.CANCEL))
    @rule(data=st.data(), by_buyer=st.booleans())
    def reject_or_cancel(self, data: st.DataObject, by_buyer: bool) -> None:
        if by_buyer:
            return_id = self._pick(data, A.CANCEL)
            self._transition(
                return_id,
                A.CANCEL,
                lambda s, a: service.cancel(s, a, return_id, "changed my mind"),
            )
        else:
            return_id = self._pick(data, A.REJECT)
            self._transition(
                return_id, A.REJECT, lambda s, a: service.reject(s, a, return_id, "not eligible")
            )

    @precondition(lambda self: self._allowed_somewhere(A.OFFER))
    @rule(
        data=st.data(),
        offer=st.sampled_from(
            [
                {"kind": "replacement"},
                {"kind": "keep_partial_refund", "percent": "20"},
                {"kind": "coupon", "amount": {"currency": "EUR", "amount": "5.00"}},
            ]
        ),
    )
    def offer(self, data: st.DataObject, offer: dict[str, object]) -> None:
        return_id = self._pick(data, A.OFFER)
        body = OfferIn.model_validate(offer)
        self._transition(return_id, A.OFFER, lambda s, a: service.offer(s, a, return_id, body))

    @precondition(lambda self: self._allowed_somewhere(A.ACCEPT_OFFER))
    @rule(data=st.data(), accept=st.booleans())
    def answer_offer(self, data: st.DataObject, accept: bool) -> None:
        return_id = self._pick(data, A.ACCEPT_OFFER if accept else A.DECLINE_OFFER)

        def plan(current: list[ModelLine]) -> list[LineQuantities]:
            return [approve_line(ln.q, None, "q") for ln in current]

        if accept:
            self._transition(
                return_id,
                A.ACCEPT_OFFER,
                lambda s, a: service.accept_offer(s, a, return_id),
                plan,
            )
        else:
            self._transition(
                return_id,
                A.DECLINE_OFFER,
                lambda s, a: service.decline_offer(s, a, return_id),
                plan,
            )

    @precondition(lambda self: self._allowed_somewhere(A.SHIP))
    @rule(data=st.data())
    def ship(self, data: st.DataObject) -> None:
        return_id = self._pick(data, A.SHIP)
        body = ShipmentIn(carrier="DHL", tracking_number=uuid.uuid4().hex[:12])
        self._transition(
            return_id, A.SHIP, lambda s, a: service.add_shipment(s, a, return_id, body)
        )

    @precondition(lambda self: self._allowed_somewhere(A.RECEIVE))
    @rule(data=st.data())
    def receive(self, data: st.DataObject) -> None:
        return_id = self._pick(data, A.RECEIVE)
        lines = self.model[return_id].lines
        subset = data.draw(
            st.lists(st.sampled_from(lines), min_size=1, unique_by=lambda ln: ln.id),
            label="lines",
        )
        qty = {
            ln.id: data.draw(st.integers(1, max(ln.q.approved - ln.q.received, 0) + 1), label="qty")
            for ln in subset
        }
        body = ReceiveIn.model_validate(
            {"lines": [{"return_line_id": i, "quantity": n} for i, n in qty.items()]}
        )

        def plan(current: list[ModelLine]) -> list[LineQuantities]:
            return [receive_line(ln.q, qty[ln.id], "q") if ln.id in qty else ln.q for ln in current]

        self._transition(
            return_id, A.RECEIVE, lambda s, a: service.receive(s, a, return_id, body), plan
        )

    @precondition(lambda self: self._allowed_somewhere(A.INSPECT))
    @rule(data=st.data())
    def inspect(self, data: st.DataObject) -> None:
        return_id = self._pick(data, A.INSPECT)
        lines = self.model[return_id].lines
        subset = data.draw(
            st.lists(st.sampled_from(lines), min_size=1, unique_by=lambda ln: ln.id),
            label="lines",
        )
        counts: dict[uuid.UUID, tuple[int, int]] = {}
        for ln in subset:
            # 1..open units, or one too many, or none at all (the last two are refused).
            open_units = ln.q.received - ln.q.inspected
            units = data.draw(st.integers(1, open_units + 2), label="units") % (open_units + 2)
            passed = data.draw(st.integers(0, units), label="passed")
            counts[ln.id] = (passed, units - passed)
        body = InspectionIn.model_validate(
            {
                "lines": [
                    {"return_line_id": i, "passed": p, "failed": f, "disposition": "restock"}
                    for i, (p, f) in counts.items()
                ]
            }
        )

        def plan(current: list[ModelLine]) -> list[LineQuantities]:
            return [
                inspect_line(ln.q, *counts[ln.id], "q") if ln.id in counts else ln.q
                for ln in current
            ]

        self._transition(
            return_id, A.INSPECT, lambda s, a: service.inspect(s, a, return_id, body), plan
        )

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def simple(self, data: st.DataObject) -> None:
        """Evidence, review, returnless, lost, expiry, dispute and close."""
        actions = [a for a in SIMPLE_ACTIONS if self._allowed_somewhere(a)]
        if not actions or data.draw(st.integers(0, 9), label="any action") == 9:
            actions = SIMPLE_ACTIONS
        action = data.draw(st.sampled_from(actions), label="action")
        return_id = self._pick(data, action)
        plan: Plan | None = None
        if action is A.RESOLVE_RETURNLESS:
            # Refunded without the goods coming back: every requested unit is settled.
            def plan(current: list[ModelLine]) -> list[LineQuantities]:
                return [approve_line(ln.q, None, "q") for ln in current]

        self._transition(
            return_id, action, lambda s, a: service.simple(s, a, return_id, action), plan
        )

    # --- invariants --------------------------------------------------------------------

    @invariant()
    def database_matches_model(self) -> None:
        if self.actor is None:
            return
        with self.db.session() as session:
            rows = session.scalars(
                select(Return)
                .where(Return.organization_id == self.org_id)
                .options(selectinload(Return.lines))
            ).all()
            # Events per return, in order; None holds the order's (and anything stray).
            events: dict[uuid.UUID | None, list[str]] = defaultdict(list)
            for return_id, action in session.execute(
                select(Event.return_id, Event.action)
                .where(Event.organization_id == self.org_id)
                .order_by(Event.seq)
            ):
                events[return_id].append(action)
            claimed = repo.claimed_quantities(session, self.ordered)

        # Refused commands wrote nothing: no stray returns, no stray events.
        assert {r.id for r in rows} == set(self.model)
        assert len(events.pop(None, [])) == self.base_events
        for row in rows:
            expected = self.model[row.id]
            # The status is exactly where the pure lifecycle table put it.
            assert row.status == expected.status.value, (row.status, expected.status)
            assert row.version == expected.version
            # One event per accepted change (and the creation), none for refusals.
            assert events.pop(row.id, []) == expected.events
            by_id = {ln.id: ln for ln in row.lines}
            assert set(by_id) == {ln.id for ln in expected.lines}
            for line in expected.lines:
                db_line = by_id[line.id]
                actual = LineQuantities(
                    db_line.requested,
                    db_line.approved,
                    db_line.received,
                    db_line.inspected,
                    db_line.passed,
                    db_line.refunded,
                )
                assert actual == line.q, (actual, line.q)
                assert (
                    actual.requested
                    >= actual.approved
                    >= actual.received
                    >= actual.inspected
                    >= actual.passed
                    >= 0
                ), actual
                assert actual.is_consistent(), actual
        assert not events, f"events for unknown returns: {events}"
        # No order line is promised to returns beyond what was ordered.
        for order_line_id, ordered in self.ordered.items():
            held = self._held(order_line_id)
            assert held <= ordered, (held, ordered)
            assert claimed[order_line_id] == held, (claimed[order_line_id], held)

    def teardown(self) -> None:
        if self.actor is None:
            return
        with self.db.session() as session:
            report = audit.verify_chain(session, self.org_id)
        assert report.ok, report
        assert report.checked == self.base_events + sum(len(m.events) for m in self.model.values())


def test_random_lifecycles_keep_the_invariants(db: Database) -> None:
    class Machine(LifecycleMachine):
        database = db

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=25,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )


# --- the counterexamples the machine found, kept as plain regression tests -------------


def _request(
    db: Database, actor: Actor, order_id: uuid.UUID, line_id: uuid.UUID, qty: int
) -> Return:
    body = ReturnIn.model_validate(
        {
            "order_id": order_id,
            "lines": [{"order_line_id": line_id, "quantity": qty, "reason_code": "defective"}],
        }
    )
    with db.session() as session:
        return service.create_return(session, actor, body)


def _claimed(db: Database, line_id: uuid.UUID) -> int:
    with db.session() as session:
        return repo.claimed_quantities(session, [line_id])[line_id]


def test_a_returnless_resolution_settles_and_keeps_the_units(db: Database) -> None:
    actor, order_id, ordered = shop_with_order(db, [1])
    (line_id,) = ordered
    ret = _request(db, actor, order_id, line_id, 1)
    with db.session() as session:
        resolved = service.simple(session, actor, ret.id, A.RESOLVE_RETURNLESS)
        assert resolved.status == "resolved"
        # The refund-without-return is for these units: they are approved, not released.
        assert resolved.lines[0].approved == 1
    assert _claimed(db, line_id) == 1
    with pytest.raises(QuantityExceeded):
        _request(db, actor, order_id, line_id, 1)


def test_a_dispute_before_any_decision_keeps_the_requested_units(db: Database) -> None:
    actor, order_id, ordered = shop_with_order(db, [2])
    (line_id,) = ordered
    ret = _request(db, actor, order_id, line_id, 2)
    with db.session() as session:
        service.simple(session, actor, ret.id, A.DISPUTE)
    assert _claimed(db, line_id) == 2
    with pytest.raises(QuantityExceeded):
        _request(db, actor, order_id, line_id, 1)


def test_a_dispute_after_a_partial_approval_keeps_only_the_approved_units(db: Database) -> None:
    actor, order_id, ordered = shop_with_order(db, [2])
    (line_id,) = ordered
    ret = _request(db, actor, order_id, line_id, 2)
    partial = ApproveIn.model_validate(
        {"lines": [{"return_line_id": ret.lines[0].id, "quantity": 1}]}
    )
    with db.session() as session:
        service.approve(session, actor, ret.id, partial)
        service.simple(session, actor, ret.id, A.DISPUTE)
    assert _claimed(db, line_id) == 1
    _request(db, actor, order_id, line_id, 1)  # the unit not approved is free again
    assert _claimed(db, line_id) == 2
