"""The return lifecycle and the per-line quantity rules. Pure: no I/O, no framework.

Statuses move only along the edges in ``LIFECYCLE``; line quantities always keep
requested ≥ approved ≥ received ≥ inspected ≥ passed (and refunded ≤ approved; how
many units may be refunded is the refund guard's decision, not the lifecycle's).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from returnguard.kit.state_machine import Edge, StateMachine


class ReturnStatus(StrEnum):
    REQUESTED = "requested"
    AWAITING_EVIDENCE = "awaiting_evidence"
    PENDING_REVIEW = "pending_review"
    OFFERED = "offered"
    APPROVED = "approved"
    IN_TRANSIT = "in_transit"
    RECEIVED = "received"
    INSPECTED = "inspected"
    REFUNDED = "refunded"
    CLOSED = "closed"
    RESOLVED = "resolved"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    LOST = "lost"
    DISPUTED = "disputed"


class ReturnAction(StrEnum):
    REQUEST_EVIDENCE = "request_evidence"
    SUBMIT_EVIDENCE = "submit_evidence"
    SEND_TO_REVIEW = "send_to_review"
    APPROVE = "approve"
    OFFER = "offer"
    ACCEPT_OFFER = "accept_offer"
    DECLINE_OFFER = "decline_offer"
    RESOLVE_RETURNLESS = "resolve_returnless"
    REJECT = "reject"
    CANCEL = "cancel"
    SHIP = "ship"
    RECEIVE = "receive"
    INSPECT = "inspect"
    REFUND = "refund"
    CLOSE = "close"
    EXPIRE = "expire"
    MARK_LOST = "mark_lost"
    DISPUTE = "dispute"
    REFUND_FREED = "refund_freed"


S = ReturnStatus
TERMINAL = frozenset({S.CLOSED, S.RESOLVED, S.REJECTED, S.CANCELLED, S.EXPIRED})
_UNDECIDED = frozenset({S.REQUESTED, S.AWAITING_EVIDENCE, S.PENDING_REVIEW})


def _edge(sources: set[ReturnStatus], target: ReturnStatus | None) -> Edge[ReturnStatus]:
    return Edge(frozenset(sources), target)


LIFECYCLE: StateMachine[ReturnStatus, ReturnAction] = StateMachine(
    edges={
        ReturnAction.REQUEST_EVIDENCE: _edge({S.REQUESTED, S.PENDING_REVIEW}, S.AWAITING_EVIDENCE),
        ReturnAction.SUBMIT_EVIDENCE: _edge({S.AWAITING_EVIDENCE}, S.PENDING_REVIEW),
        ReturnAction.SEND_TO_REVIEW: _edge({S.REQUESTED, S.AWAITING_EVIDENCE}, S.PENDING_REVIEW),
        ReturnAction.APPROVE: _edge(set(_UNDECIDED), S.APPROVED),
        ReturnAction.OFFER: _edge(set(_UNDECIDED), S.OFFERED),
        ReturnAction.ACCEPT_OFFER: _edge({S.OFFERED}, S.RESOLVED),
        # The buyer declined the alternative: the return goes ahead.
        ReturnAction.DECLINE_OFFER: _edge({S.OFFERED}, S.APPROVED),
        ReturnAction.RESOLVE_RETURNLESS: _edge(set(_UNDECIDED), S.RESOLVED),
        ReturnAction.REJECT: _edge(set(_UNDECIDED) | {S.OFFERED}, S.REJECTED),
        # Buyers may cancel until the parcel is on its way back.
        ReturnAction.CANCEL: _edge(set(_UNDECIDED) | {S.OFFERED, S.APPROVED}, S.CANCELLED),
        ReturnAction.SHIP: _edge({S.APPROVED, S.IN_TRANSIT}, S.IN_TRANSIT),
        # Parcels also arrive without a registered shipment, or after being reported lost;
        # a second parcel may follow a first one that was already inspected.
        ReturnAction.RECEIVE: _edge(
            {S.APPROVED, S.IN_TRANSIT, S.LOST, S.RECEIVED, S.INSPECTED}, S.RECEIVED
        ),
        ReturnAction.INSPECT: _edge({S.RECEIVED, S.INSPECTED}, S.INSPECTED),
        ReturnAction.REFUND: _edge(
            {S.RECEIVED, S.INSPECTED, S.REFUNDED, S.LOST, S.DISPUTED}, S.REFUNDED
        ),
        ReturnAction.CLOSE: _edge({S.INSPECTED, S.REFUNDED, S.LOST, S.DISPUTED}, S.CLOSED),
        ReturnAction.EXPIRE: _edge({S.APPROVED}, S.EXPIRED),
        ReturnAction.MARK_LOST: _edge({S.IN_TRANSIT}, S.LOST),
        ReturnAction.DISPUTE: _edge(set(S) - TERMINAL - {S.DISPUTED}, S.DISPUTED),
        # A refund failed or was cancelled, so the units are no longer all settled: the
        # return goes back to where its goods are (FREED_TARGETS) so the buyer can be paid.
        ReturnAction.REFUND_FREED: _edge({S.REFUNDED}, None),
    },
    terminal=TERMINAL,
)

# Where a refunded return goes back to when its refunds no longer settle its units: the
# status it had before it became refunded.
FREED_TARGETS = frozenset({S.RECEIVED, S.INSPECTED, S.LOST, S.DISPUTED})

# Each action by the name of its route (POST /api/v1/returns/{id}/<name>), as clients see
# it in `allowed_actions`. Actions without a name of their own are taken by the system.
API_NAMES: dict[ReturnAction, str] = {
    ReturnAction.REQUEST_EVIDENCE: "request-evidence",
    ReturnAction.SUBMIT_EVIDENCE: "submit-evidence",
    ReturnAction.SEND_TO_REVIEW: "review",
    ReturnAction.APPROVE: "approve",
    ReturnAction.OFFER: "offer",
    ReturnAction.ACCEPT_OFFER: "accept-offer",
    ReturnAction.DECLINE_OFFER: "decline-offer",
    ReturnAction.RESOLVE_RETURNLESS: "resolve-returnless",
    ReturnAction.REJECT: "reject",
    ReturnAction.CANCEL: "cancel",
    ReturnAction.SHIP: "shipments",
    ReturnAction.RECEIVE: "receive",
    ReturnAction.INSPECT: "inspections",
    ReturnAction.REFUND: "refunds",
    ReturnAction.CLOSE: "close",
    ReturnAction.EXPIRE: "expire",
    ReturnAction.MARK_LOST: "mark-lost",
    ReturnAction.DISPUTE: "dispute",
}


def available_actions(
    status: ReturnStatus,
    lines: list[LineQuantities],
    *,
    live_refunds: bool,
    unsettled_refunds: bool,
    can_refund: bool,
) -> list[str]:
    """The actions a return can take now, by their API names: the lifecycle's edges less
    those its quantities or refunds would refuse. ``refunds`` is listed whenever the
    refund guard would pay at least one unit, whatever the status."""
    found: list[str] = []
    for action, edge in LIFECYCLE.edges.items():
        name = API_NAMES.get(action)
        if name is None or (status not in edge.sources and action is not ReturnAction.REFUND):
            continue
        if action in (ReturnAction.CANCEL, ReturnAction.REJECT) and live_refunds:
            continue
        if action is ReturnAction.RECEIVE and not any(q.approved > q.received for q in lines):
            continue
        if action is ReturnAction.INSPECT and not any(q.received > q.inspected for q in lines):
            continue
        if action is ReturnAction.CLOSE and unsettled_refunds:
            continue
        if action is ReturnAction.REFUND and not can_refund:
            continue
        found.append(name)
    return found


class QuantityError(ValueError):
    """A quantity change that would break the per-line invariants."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class LineQuantities:
    requested: int
    approved: int = 0
    received: int = 0
    inspected: int = 0
    passed: int = 0
    refunded: int = 0

    def is_consistent(self) -> bool:
        return (
            self.requested > 0
            and self.requested >= self.approved >= self.received >= self.inspected >= self.passed
            and self.passed >= 0
            and 0 <= self.refunded <= self.approved
        )


def approve_line(q: LineQuantities, quantity: int | None, field: str) -> LineQuantities:
    """Approve ``quantity`` units (all requested ones when None)."""
    qty = q.requested if quantity is None else quantity
    if qty < 0:
        raise QuantityError(field, "must not be negative")
    if qty > q.requested:
        raise QuantityError(field, f"cannot approve {qty}; only {q.requested} requested")
    return replace(q, approved=qty)


def receive_line(q: LineQuantities, quantity: int, field: str) -> LineQuantities:
    if quantity <= 0:
        raise QuantityError(field, "must be at least 1")
    outstanding = q.approved - q.received
    if quantity > outstanding:
        raise QuantityError(
            field, f"cannot receive {quantity}; {outstanding} approved unit(s) still expected"
        )
    return replace(q, received=q.received + quantity)


def inspect_line(q: LineQuantities, passed: int, failed: int, field: str) -> LineQuantities:
    if passed < 0 or failed < 0:
        raise QuantityError(field, "passed and failed quantities must not be negative")
    if passed + failed == 0:
        raise QuantityError(field, "an inspection must cover at least one unit")
    uninspected = q.received - q.inspected
    if passed + failed > uninspected:
        raise QuantityError(
            field,
            f"cannot inspect {passed + failed}; only {uninspected} received unit(s) not yet "
            "inspected",
        )
    return replace(q, inspected=q.inspected + passed + failed, passed=q.passed + passed)


def inspection_outcome(passed: int, failed: int) -> str:
    if failed == 0:
        return "pass"
    if passed == 0:
        return "fail"
    return "partial"


def returnable_quantity(ordered: int, already_requested: int) -> int:
    """Units of an order line still open for a new return."""
    return max(ordered - already_requested, 0)
