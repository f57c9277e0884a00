"""The pure return lifecycle and per-line quantity rules: no database, no framework."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from returnguard.domain.returns import (
    LIFECYCLE,
    TERMINAL,
    LineQuantities,
    QuantityError,
    ReturnAction,
    ReturnStatus,
    approve_line,
    inspect_line,
    inspection_outcome,
    receive_line,
    returnable_quantity,
)
from returnguard.kit.state_machine import IllegalTransition

S = ReturnStatus
A = ReturnAction

# Every edge drawn in DESIGN.md, "Lifecycle of a return": (from, action, to).
DESIGN_EDGES: list[tuple[ReturnStatus, ReturnAction, ReturnStatus]] = [
    # The happy path.
    (S.REQUESTED, A.REQUEST_EVIDENCE, S.AWAITING_EVIDENCE),
    (S.AWAITING_EVIDENCE, A.SUBMIT_EVIDENCE, S.PENDING_REVIEW),
    (S.PENDING_REVIEW, A.APPROVE, S.APPROVED),
    (S.APPROVED, A.SHIP, S.IN_TRANSIT),
    (S.IN_TRANSIT, A.RECEIVE, S.RECEIVED),
    (S.RECEIVED, A.INSPECT, S.INSPECTED),
    (S.INSPECTED, A.REFUND, S.REFUNDED),
    (S.REFUNDED, A.CLOSE, S.CLOSED),
    # Closed without a refund due.
    (S.INSPECTED, A.CLOSE, S.CLOSED),
    # Straight to review (the bypass under awaiting_evidence).
    (S.REQUESTED, A.SEND_TO_REVIEW, S.PENDING_REVIEW),
    # Alternatives offered before the return goes ahead.
    (S.PENDING_REVIEW, A.OFFER, S.OFFERED),
    (S.OFFERED, A.ACCEPT_OFFER, S.RESOLVED),
    (S.OFFERED, A.DECLINE_OFFER, S.APPROVED),
    # Decisions straight from the request.
    (S.REQUESTED, A.APPROVE, S.APPROVED),
    (S.REQUESTED, A.RESOLVE_RETURNLESS, S.RESOLVED),
    (S.REQUESTED, A.REJECT, S.REJECTED),
    # Approved but never shipped in time; lost by the carrier.
    (S.APPROVED, A.EXPIRE, S.EXPIRED),
    (S.IN_TRANSIT, A.MARK_LOST, S.LOST),
]

# "cancelled (by buyer, before receipt)": every state before the goods are back.
CANCELLABLE = [S.REQUESTED, S.AWAITING_EVIDENCE, S.PENDING_REVIEW, S.OFFERED, S.APPROVED]
# Once goods (or a decision about them) have arrived, the buyer can no longer cancel.
NOT_CANCELLABLE = [S.RECEIVED, S.INSPECTED, S.REFUNDED, S.LOST, S.DISPUTED, *sorted(TERMINAL)]

NON_TERMINAL = [s for s in S if s not in TERMINAL]


def _all_pairs() -> list[tuple[ReturnStatus, ReturnAction]]:
    return [(s, a) for s in S for a in A]


def _allowed(status: ReturnStatus, action: ReturnAction) -> bool:
    return action.value in LIFECYCLE.allowed_actions(status)


# --- edges -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "action", "target"),
    DESIGN_EDGES,
    ids=[f"{s}-{a}-{t}" for s, a, t in DESIGN_EDGES],
)
def test_every_design_edge_is_allowed(
    current: ReturnStatus, action: ReturnAction, target: ReturnStatus
) -> None:
    assert LIFECYCLE.next_status(current, action) is target
    assert action.value in LIFECYCLE.allowed_actions(current)
    assert target.value in LIFECYCLE.allowed_next_statuses(current)


def test_the_happy_path_runs_end_to_end() -> None:
    status = S.REQUESTED
    for action in (
        A.REQUEST_EVIDENCE,
        A.SUBMIT_EVIDENCE,
        A.APPROVE,
        A.SHIP,
        A.RECEIVE,
        A.INSPECT,
        A.REFUND,
        A.CLOSE,
    ):
        status = LIFECYCLE.next_status(status, action)
    assert status is S.CLOSED


@pytest.mark.parametrize("current", CANCELLABLE)
def test_buyer_can_cancel_before_receipt(current: ReturnStatus) -> None:
    assert LIFECYCLE.next_status(current, A.CANCEL) is S.CANCELLED


@pytest.mark.parametrize("current", NOT_CANCELLABLE)
def test_no_cancel_after_receipt_or_in_a_final_state(current: ReturnStatus) -> None:
    with pytest.raises(IllegalTransition):
        LIFECYCLE.next_status(current, A.CANCEL)


@pytest.mark.parametrize("current", [s for s in NON_TERMINAL if s is not S.DISPUTED])
def test_dispute_starts_from_any_non_terminal_state(current: ReturnStatus) -> None:
    assert LIFECYCLE.next_status(current, A.DISPUTE) is S.DISPUTED


def test_a_disputed_return_is_not_disputed_twice_but_can_be_settled() -> None:
    with pytest.raises(IllegalTransition):
        LIFECYCLE.next_status(S.DISPUTED, A.DISPUTE)
    assert LIFECYCLE.next_status(S.DISPUTED, A.REFUND) is S.REFUNDED
    assert LIFECYCLE.next_status(S.DISPUTED, A.CLOSE) is S.CLOSED


@pytest.mark.parametrize("current", [S.APPROVED, S.IN_TRANSIT, S.LOST, S.RECEIVED, S.INSPECTED])
def test_parcels_are_received_whenever_goods_may_arrive(current: ReturnStatus) -> None:
    # Without a registered shipment, after being reported lost, or a second parcel.
    assert LIFECYCLE.next_status(current, A.RECEIVE) is S.RECEIVED


@pytest.mark.parametrize("current", [S.REQUESTED, S.PENDING_REVIEW, S.OFFERED, *sorted(TERMINAL)])
def test_nothing_is_received_before_approval_or_after_the_end(current: ReturnStatus) -> None:
    with pytest.raises(IllegalTransition):
        LIFECYCLE.next_status(current, A.RECEIVE)


@pytest.mark.parametrize(
    "current", [S.REQUESTED, S.AWAITING_EVIDENCE, S.PENDING_REVIEW, S.OFFERED, S.APPROVED]
)
def test_no_refund_state_before_goods_arrive(current: ReturnStatus) -> None:
    # Refund-before-receipt only exists as a returnless *resolution*, never as REFUND.
    with pytest.raises(IllegalTransition):
        LIFECYCLE.next_status(current, A.REFUND)


def test_every_status_has_an_edge_or_is_terminal() -> None:
    for status in S:
        assert bool(LIFECYCLE.allowed_actions(status)) is (status not in TERMINAL), status


def test_every_status_is_reachable_and_every_open_return_can_finish() -> None:
    graph = {s: {LIFECYCLE.next_status(s, a) for a in A if _allowed(s, a)} for s in S}

    def reachable(start: ReturnStatus) -> set[ReturnStatus]:
        seen, todo = {start}, deque([start])
        while todo:
            for nxt in graph[todo.popleft()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    assert reachable(S.REQUESTED) == set(S)
    for status in NON_TERMINAL:
        assert reachable(status) & TERMINAL, f"{status} can never reach a final state"


# --- terminal states and illegal actions -------------------------------------------------


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_terminal_states_allow_nothing(terminal: ReturnStatus) -> None:
    assert LIFECYCLE.allowed_actions(terminal) == []
    assert LIFECYCLE.allowed_next_statuses(terminal) == []
    for action in A:
        with pytest.raises(IllegalTransition) as info:
            LIFECYCLE.next_status(terminal, action)
        assert info.value.allowed == []


def test_terminal_set_matches_the_design() -> None:
    assert {S.CLOSED, S.RESOLVED, S.REJECTED, S.CANCELLED, S.EXPIRED} == TERMINAL
    assert LIFECYCLE.terminal == TERMINAL
    # Lost and disputed are waiting states, not endings.
    assert S.LOST not in TERMINAL
    assert S.DISPUTED not in TERMINAL


def test_illegal_action_names_the_allowed_ones() -> None:
    with pytest.raises(IllegalTransition) as info:
        LIFECYCLE.next_status(S.REQUESTED, A.SHIP)
    exc = info.value
    assert exc.action == "ship"
    assert exc.current == "requested"
    assert "cannot ship a return that is requested" in str(exc)
    assert set(exc.allowed) == {
        "request_evidence",
        "send_to_review",
        "approve",
        "offer",
        "resolve_returnless",
        "reject",
        "cancel",
        "dispute",
    }


@pytest.mark.parametrize(
    ("current", "action"),
    [(s, a) for s, a in _all_pairs() if not _allowed(s, a)],
    ids=[f"{s}-{a}" for s, a in _all_pairs() if not _allowed(s, a)],
)
def test_every_illegal_pair_raises_with_the_allowed_actions(
    current: ReturnStatus, action: ReturnAction
) -> None:
    with pytest.raises(IllegalTransition) as info:
        LIFECYCLE.next_status(current, action)
    assert info.value.allowed == LIFECYCLE.allowed_actions(current)
    assert action.value not in info.value.allowed


def test_only_the_listed_edges_exist() -> None:
    """The table holds the design's edges plus a small, reviewed set of extras."""
    drawn = {(s, a) for s, a, _ in DESIGN_EDGES}
    drawn |= {(s, A.CANCEL) for s in CANCELLABLE}
    drawn |= {(s, A.DISPUTE) for s in NON_TERMINAL if s is not S.DISPUTED}
    extras = {(s, a) for s, a in _all_pairs() if _allowed(s, a)} - drawn
    reviewed = {
        # Evidence can be asked for again during review; any undecided return can be
        # approved, offered, resolved returnless or rejected.
        (S.PENDING_REVIEW, A.REQUEST_EVIDENCE),
        (S.AWAITING_EVIDENCE, A.SEND_TO_REVIEW),
        *((s, a) for s in (S.AWAITING_EVIDENCE,) for a in (A.APPROVE, A.OFFER)),
        *((s, A.RESOLVE_RETURNLESS) for s in (S.AWAITING_EVIDENCE, S.PENDING_REVIEW)),
        (S.REQUESTED, A.OFFER),
        *((s, A.REJECT) for s in (S.AWAITING_EVIDENCE, S.PENDING_REVIEW, S.OFFERED)),
        # A second shipment, parcels arriving in several pieces, a second inspection.
        (S.IN_TRANSIT, A.SHIP),
        *((s, A.RECEIVE) for s in (S.APPROVED, S.LOST, S.RECEIVED, S.INSPECTED)),
        (S.INSPECTED, A.INSPECT),
        # Refunds: after receipt, a second partial refund, lost parcels and claims.
        *((s, A.REFUND) for s in (S.RECEIVED, S.REFUNDED, S.LOST, S.DISPUTED)),
        *((s, A.CLOSE) for s in (S.LOST, S.DISPUTED)),
        # A refund failed or was cancelled: back to where the goods are.
        (S.REFUNDED, A.REFUND_FREED),
    }
    assert extras == reviewed


# --- quantities ------------------------------------------------------------------------


def test_approve_all_by_default_or_part_of_the_units() -> None:
    q = LineQuantities(requested=3)
    assert approve_line(q, None, "f").approved == 3
    assert approve_line(q, 2, "f").approved == 2
    assert approve_line(q, 0, "f").approved == 0
    assert approve_line(q, 2, "f").is_consistent()


@pytest.mark.parametrize("qty", [4, 100])
def test_over_approval_is_refused(qty: int) -> None:
    with pytest.raises(QuantityError) as info:
        approve_line(LineQuantities(requested=3), qty, "lines.0.quantity")
    assert info.value.field == "lines.0.quantity"
    assert "only 3 requested" in info.value.message


def test_negative_approval_is_refused() -> None:
    with pytest.raises(QuantityError, match="negative"):
        approve_line(LineQuantities(requested=3), -1, "f")


def test_receipts_add_up_to_the_approved_units_and_no_further() -> None:
    q = LineQuantities(requested=3, approved=2)
    q = receive_line(q, 1, "f")
    assert q.received == 1 and q.is_consistent()
    q = receive_line(q, 1, "f")
    assert q.received == 2 and q.is_consistent()
    with pytest.raises(QuantityError, match="0 approved unit"):
        receive_line(q, 1, "f")


def test_over_receipt_in_one_parcel_is_refused() -> None:
    with pytest.raises(QuantityError) as info:
        receive_line(LineQuantities(requested=3, approved=2), 3, "lines.0.quantity")
    assert info.value.field == "lines.0.quantity"
    assert "2 approved unit(s) still expected" in info.value.message


@pytest.mark.parametrize("qty", [0, -1])
def test_receipt_of_nothing_or_less_is_refused(qty: int) -> None:
    with pytest.raises(QuantityError, match="at least 1"):
        receive_line(LineQuantities(requested=3, approved=3), qty, "f")


def test_nothing_is_received_on_an_unapproved_line() -> None:
    with pytest.raises(QuantityError):
        receive_line(LineQuantities(requested=3), 1, "f")


def test_inspections_cover_received_units_only() -> None:
    q = LineQuantities(requested=3, approved=3, received=2)
    q = inspect_line(q, 1, 0, "f")
    assert (q.inspected, q.passed) == (1, 1) and q.is_consistent()
    q = inspect_line(q, 0, 1, "f")
    assert (q.inspected, q.passed) == (2, 1) and q.is_consistent()
    with pytest.raises(QuantityError, match="only 0 received unit"):
        inspect_line(q, 1, 0, "f")


@pytest.mark.parametrize(("passed", "failed"), [(3, 0), (2, 1), (0, 3)])
def test_over_inspection_is_refused(passed: int, failed: int) -> None:
    with pytest.raises(QuantityError, match="cannot inspect 3"):
        inspect_line(LineQuantities(requested=3, approved=3, received=2), passed, failed, "f")


@pytest.mark.parametrize(("passed", "failed"), [(-1, 1), (1, -1), (-1, -1)])
def test_negative_inspection_is_refused(passed: int, failed: int) -> None:
    with pytest.raises(QuantityError, match="negative"):
        inspect_line(LineQuantities(requested=3, approved=3, received=3), passed, failed, "f")


def test_empty_inspection_is_refused() -> None:
    with pytest.raises(QuantityError, match="at least one unit"):
        inspect_line(LineQuantities(requested=3, approved=3, received=3), 0, 0, "f")


def test_inspection_outcome() -> None:
    assert inspection_outcome(2, 0) == "pass"
    assert inspection_outcome(0, 2) == "fail"
    assert inspection_outcome(1, 1) == "partial"


def test_returnable_quantity_never_goes_negative() -> None:
    assert returnable_quantity(3, 1) == 2
    assert returnable_quantity(3, 3) == 0
    assert returnable_quantity(3, 5) == 0


@pytest.mark.parametrize(
    "q",
    [
        LineQuantities(requested=0),
        LineQuantities(requested=2, approved=3),
        LineQuantities(requested=2, approved=1, received=2),
        LineQuantities(requested=2, approved=2, received=1, inspected=2),
        LineQuantities(requested=2, approved=2, received=2, inspected=1, passed=2),
        LineQuantities(requested=2, approved=2, received=2, inspected=2, passed=-1),
        LineQuantities(requested=2, approved=1, refunded=2),
        LineQuantities(requested=2, approved=1, refunded=-1),
    ],
)
def test_is_consistent_catches_every_broken_chain(q: LineQuantities) -> None:
    assert not q.is_consistent()


def test_quantity_functions_do_not_mutate_their_input() -> None:
    q = LineQuantities(requested=3, approved=3, received=1)
    receive_line(q, 1, "f")
    inspect_line(q, 1, 0, "f")
    approve_line(q, 2, "f")
    assert q == LineQuantities(requested=3, approved=3, received=1)


# --- property: random action sequences on the pure layer ------------------------------


@dataclass
class PureReturn:
    """What the service does, minus the database: status + quantities per line."""

    status: ReturnStatus
    lines: list[LineQuantities]
    history: list[ReturnStatus] = field(default_factory=list)

    def apply(self, action: ReturnAction, amounts: list[tuple[int, int]]) -> bool:
        """Apply one action; on any refusal nothing changes. Returns whether it applied."""
        try:
            target = LIFECYCLE.next_status(self.status, action)
        except IllegalTransition as exc:
            assert exc.allowed == LIFECYCLE.allowed_actions(self.status)
            assert action.value not in exc.allowed
            return False
        try:
            lines = self._quantities(action, amounts)
        except QuantityError:
            return False
        self.history.append(self.status)
        self.status, self.lines = target, lines
        return True

    def _quantities(
        self, action: ReturnAction, amounts: list[tuple[int, int]]
    ) -> list[LineQuantities]:
        pairs = list(zip(self.lines, amounts, strict=False))
        if action is A.APPROVE:
            lines = [approve_line(q, a, "f") for q, (a, _) in pairs]
            if sum(q.approved for q in lines) == 0:
                raise QuantityError("lines", "approve at least one unit")
            return lines
        if action in (A.ACCEPT_OFFER, A.DECLINE_OFFER, A.RESOLVE_RETURNLESS):
            return [approve_line(q, None, "f") for q in self.lines]
        # A receipt or an inspection names at least one line (the API schemas insist).
        if action is A.RECEIVE:
            if not any(a for a, _ in amounts[: len(self.lines)]):
                raise QuantityError("lines", "at least one line")
            return [receive_line(q, a, "f") if a else q for q, (a, _) in pairs]
        if action is A.INSPECT:
            if not any(p or f for p, f in amounts[: len(self.lines)]):
                raise QuantityError("lines", "at least one line")
            return [inspect_line(q, p, f, "f") if p or f else q for q, (p, f) in pairs]
        return list(self.lines)


# Mostly small valid-looking amounts, sometimes negative or too large ones.
amount = st.one_of(st.integers(0, 2), st.integers(-1, 5))
amount_pairs = st.lists(st.tuples(amount, amount), min_size=3, max_size=3)


@settings(max_examples=200)
@given(
    requested=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    n_steps=st.integers(0, 40),
    data=st.data(),
)
def test_random_action_sequences_keep_every_invariant(
    requested: list[int], n_steps: int, data: st.DataObject
) -> None:
    ret = PureReturn(S.REQUESTED, [LineQuantities(requested=r) for r in requested])
    for _ in range(n_steps):
        # Mostly actions the table allows now, preferring those that do not end the
        # return (to get deep into the lifecycle); sometimes any action at all.
        allowed = [A(a) for a in LIFECYCLE.allowed_actions(ret.status)]
        onward = [
            a
            for a in allowed
            if LIFECYCLE.next_status(ret.status, a) not in (*TERMINAL, S.DISPUTED)
        ]
        pool = list(A)
        if allowed and data.draw(st.integers(0, 4)) > 0:
            pool = onward if onward and data.draw(st.integers(0, 5)) > 0 else allowed
        action = data.draw(st.sampled_from(pool))
        amounts = data.draw(amount_pairs)
        before_status, before_lines = ret.status, list(ret.lines)
        applied = ret.apply(action, amounts)
        if not applied:
            assert (ret.status, ret.lines) == (before_status, before_lines)
            continue
        # An applied action followed a table edge, and never out of a final state.
        assert before_status not in TERMINAL
        assert action.value in LIFECYCLE.allowed_actions(before_status)
        for old, new in zip(before_lines, ret.lines, strict=True):
            assert new.is_consistent(), new
            assert new.requested == old.requested
            # Goods and inspections only ever accumulate.
            assert new.received >= old.received
            assert new.inspected >= old.inspected
            assert new.passed >= old.passed
    for q in ret.lines:
        assert q.is_consistent()
        assert q.requested >= q.approved >= q.received >= q.inspected >= q.passed >= 0
    # Goods arrive only after a decision that approved them.
    if any(q.received for q in ret.lines):
        assert S.APPROVED in ret.history
    if ret.status in TERMINAL:
        assert LIFECYCLE.allowed_actions(ret.status) == []
