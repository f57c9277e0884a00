"""Return use cases: requesting a return and moving it through its lifecycle.

Every transition locks the return row, asks the pure lifecycle table whether the action
is allowed, applies the quantity rules, moves the status with a conditional UPDATE
(so two racing transitions cannot both win) and records an event in the same
transaction. Services flush; whoever opened the session commits.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import asdict
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from returnguard.audit import service as audit
from returnguard.auth.actor import Actor
from returnguard.domain import returns as lifecycle
from returnguard.domain.policy.engine import Outcome
from returnguard.domain.returns import (
    FREED_TARGETS,
    LIFECYCLE,
    LineQuantities,
    QuantityError,
    ReturnAction,
    ReturnStatus,
)
from returnguard.errors import Conflict, InvalidInput, NotFound
from returnguard.kit.db import utcnow
from returnguard.kit.state_machine import IllegalTransition
from returnguard.ledger import service as ledger
from returnguard.orders import repository as orders_repo
from returnguard.outbox.service import publish_webhook_event
from returnguard.policies import service as policies
from returnguard.policies.service import Decided
from returnguard.refunds import repository as refunds_repo
from returnguard.refunds.models import FREED, GRANTED, PENDING, Refund
from returnguard.refunds.repository import RefundCounts
from returnguard.returns import repository as repo
from returnguard.returns.models import Inspection, Receipt, Return, ReturnLine, Shipment
from returnguard.returns.schemas import (
    ApproveIn,
    InspectionIn,
    OfferIn,
    OfferKind,
    ReceiveIn,
    ReturnIn,
    ShipmentIn,
)

# Tolerated difference between a client's clock and ours for "not in the future".
CLOCK_SKEW = timedelta(minutes=5)
_RMA_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


class IllegalTransitionError(Conflict):
    code = "illegal_transition"
    title = "Not allowed in the return's current state"


class ConcurrentUpdate(Conflict):
    code = "concurrent_update"
    title = "The return changed while this request ran"


class QuantityExceeded(InvalidInput):
    code = "quantity_exceeded"


def _quantity_error(exc: QuantityError) -> QuantityExceeded:
    return QuantityExceeded(str(exc), errors=[{"field": exc.field, "message": exc.message}])


def get_return(session: Session, organization_id: uuid.UUID, return_id: uuid.UUID) -> Return:
    ret = repo.get(session, organization_id, return_id)
    if ret is None:
        raise NotFound(f"return {return_id} not found")
    return ret


def _new_number(session: Session, organization_id: uuid.UUID) -> str:
    while True:
        number = "RMA-" + "".join(secrets.choice(_RMA_ALPHABET) for _ in range(8))
        if not repo.number_taken(session, organization_id, number):
            return number


def _quantities(line: ReturnLine) -> LineQuantities:
    return LineQuantities(
        line.requested, line.approved, line.received, line.inspected, line.passed, line.refunded
    )


def _store(line: ReturnLine, q: LineQuantities) -> None:
    line.approved, line.received, line.inspected = q.approved, q.received, q.inspected
    line.passed, line.refunded = q.passed, q.refunded


def _snapshot(ret: Return) -> dict[str, Any]:
    return {
        "status": ret.status,
        "lines": {str(ln.id): asdict(_quantities(ln)) for ln in ret.lines},
    }


def create_return(session: Session, actor: Actor, data: ReturnIn) -> Return:
    """Open a return; no line may ask for more units than the order still has to give."""
    # Locking the order serialises concurrent requests against the same order lines.
    order = orders_repo.order(session, actor.organization_id, data.order_id, lock=True)
    if order is None:
        raise NotFound(f"order {data.order_id} not found")
    # The policy's decision reads the order and its lines again: from the session.
    repo.keep_locked(session, order)
    order_lines = {ln.id: ln for ln in order.lines}
    claimed = repo.claimed_quantities(session, order_lines)
    errors: list[dict[str, str]] = []
    seen: set[uuid.UUID] = set()
    for i, line_in in enumerate(data.lines):
        field = f"lines.{i}"
        order_line = order_lines.get(line_in.order_line_id)
        if order_line is None:
            errors.append(
                {
                    "field": f"{field}.order_line_id",
                    "message": f"is not a line of order {order.external_id}",
                }
            )
            continue
        if line_in.order_line_id in seen:
            errors.append(
                {
                    "field": f"{field}.order_line_id",
                    "message": "appears twice; combine the quantities in one line",
                }
            )
            continue
        seen.add(line_in.order_line_id)
        open_qty = lifecycle.returnable_quantity(order_line.quantity, claimed[order_line.id])
        if line_in.quantity > open_qty:
            errors.append(
                {
                    "field": f"{field}.quantity",
                    "message": f"{line_in.quantity} requested but only {open_qty} of "
                    f"{order_line.quantity} ordered unit(s) can still be returned",
                }
            )
    now = utcnow()
    requested_at = data.requested_at or now
    if requested_at > now + CLOCK_SKEW:
        raise InvalidInput.field("requested_at", "is in the future")
    if requested_at < order.ordered_at:
        raise InvalidInput.field("requested_at", "is before the order was placed")
    if errors:
        raise QuantityExceeded(
            "; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors
        )
    ret = Return(
        organization_id=actor.organization_id,
        number=_new_number(session, actor.organization_id),
        order_id=order.id,
        channel_id=order.channel_id,
        buyer_id=order.buyer_id,
        status=ReturnStatus.REQUESTED.value,
        currency=order.currency,
        buyer_comment=data.buyer_comment,
        requested_at=requested_at,
        updated_at=now,
    )
    for position, line_in in enumerate(data.lines):
        ret.lines.append(
            ReturnLine(
                organization_id=actor.organization_id,
                order_line_id=line_in.order_line_id,
                position=position,
                reason_code=line_in.reason_code.value,
                comment=line_in.comment,
                requested=line_in.quantity,
            )
        )
    session.add(ret)
    session.flush()
    # Nobody else can see, let alone lock, a row this transaction inserted.
    repo.hold_lock(session, ret)
    audit.record(
        session,
        actor,
        subject_type="return",
        subject_id=ret.id,
        return_id=ret.id,
        action="return.created",
        after=_snapshot(ret),
        data={
            "order_id": order.id,
            "number": ret.number,
            "reasons": [ln.reason_code for ln in ret.lines],
        },
        # The return's id was drawn just now: its chain starts here, with no head to look
        # up or lock (nor for the decision's events that follow in this transaction).
        new_subject=True,
    )
    publish_webhook_event(session, actor.organization_id, "return.created", _webhook_data(ret))
    return ret


def _webhook_data(ret: Return, previous: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "return_id": ret.id,
        "number": ret.number,
        "order_id": ret.order_id,
        "status": ret.status,
        "lines": [
            {
                "id": ln.id,
                "order_line_id": ln.order_line_id,
                "reason_code": ln.reason_code,
                **asdict(_quantities(ln)),
            }
            for ln in ret.lines
        ],
    }
    if previous is not None:
        data["previous_status"] = previous
    return data


Mutation = Callable[[Return], dict[str, Any] | None]


class ReturnHasRefunds(Conflict):
    code = "return_has_refunds"
    title = "The return has refunds"


# Actions that let go of the return's units: never while money is granted or paid for them.
_RELEASING = frozenset({ReturnAction.CANCEL, ReturnAction.REJECT})


class RefundsUnsettled(Conflict):
    code = "refunds_unsettled"
    title = "The return has refunds that are not settled yet"


def _live_refunds(session: Session, return_id: uuid.UUID) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Refund)
            .where(Refund.return_id == return_id, Refund.status.not_in(FREED))
        )
        or 0
    )


def _unsettled_refunds(session: Session, return_id: uuid.UUID) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Refund)
            .where(Refund.return_id == return_id, Refund.status.in_((GRANTED, PENDING)))
        )
        or 0
    )


def allowed_actions(
    session: Session, ret: Return, *, exact: bool = True, refunds: RefundCounts | None = None
) -> list[str]:
    """What the return can do now, by API name; never an action its state would refuse.

    ``exact`` asks the refund guard whether any unit can be refunded now; without it (in
    lists) ``refunds`` is offered only for units that passed inspection and are unpaid,
    which the guard always allows. ``refunds`` are the return's refund counts when the
    caller read them already (a page reads them for all its returns at once)."""
    # Imported here: the refund service builds on this module.
    from returnguard.refunds import service as refund_service

    status = ReturnStatus(ret.status)
    lines = [_quantities(ln) for ln in ret.lines]
    if exact:
        can_refund = refund_service.can_refund(session, ret)
    else:
        can_refund = status in refund_service.REFUNDABLE_STATES and any(
            q.passed > q.refunded for q in lines
        )
    if refunds is None:
        refunds = refunds_repo.counts_by_return(session, [ret.id]).get(ret.id, refunds_repo.NONE)
    return lifecycle.available_actions(
        status,
        lines,
        live_refunds=bool(refunds.live),
        unsettled_refunds=bool(refunds.unsettled),
        can_refund=can_refund,
    )


def transition(
    session: Session,
    actor: Actor,
    return_id: uuid.UUID,
    action: ReturnAction,
    mutate: Mutation | None = None,
    *,
    expected_version: int | None = None,
    target_status: ReturnStatus | None = None,
) -> Return:
    """Apply ``action`` to a return; exactly one of two racing transitions can win."""
    ret = repo.get(session, actor.organization_id, return_id, lock=True)
    if ret is None:
        raise NotFound(f"return {return_id} not found")
    if expected_version is not None and ret.version != expected_version:
        raise ConcurrentUpdate(
            f"the return is at version {ret.version}, not {expected_version}",
            extra={"current_version": ret.version, "current_status": ret.status},
        )
    current = ReturnStatus(ret.status)
    try:
        target = LIFECYCLE.next_status(current, action)
    except IllegalTransition:
        allowed = allowed_actions(session, ret)
        raise IllegalTransitionError(
            f"cannot {action.value.replace('_', ' ')}: the return is {current.value}; "
            f"allowed actions now: {', '.join(allowed) or 'none'}",
            extra={
                "current_status": current.value,
                "allowed_actions": allowed,
                "allowed_next_statuses": LIFECYCLE.allowed_next_statuses(current),
            },
        ) from None
    if target_status is not None:
        if action is not ReturnAction.REFUND_FREED or target_status not in FREED_TARGETS:
            raise ValueError(f"{action.value} cannot choose its target status")
        target = target_status
    if action in _RELEASING and _live_refunds(session, ret.id):
        raise ReturnHasRefunds(
            f"cannot {action.value}: the return has refunds that are granted, sent or paid; "
            "cancel the granted ones first (a paid refund keeps the return open)",
            extra={"current_status": current.value},
        )
    if action is ReturnAction.CLOSE and _unsettled_refunds(session, ret.id):
        raise RefundsUnsettled(
            "cannot close: the return has refunds that are granted or sent but not yet paid "
            "or failed; a closed return could not be paid again if one of them fails",
            extra={"current_status": current.value},
        )
    before = _snapshot(ret)
    version = ret.version
    try:
        data = mutate(ret) if mutate else None
    except QuantityError as exc:
        raise _quantity_error(exc) from None
    if not repo.compare_and_set_status(
        session, ret, current.value, target.value, version, updated_at=utcnow()
    ):
        raise ConcurrentUpdate("another request changed this return first; reload and retry")
    session.flush()
    audit.record(
        session,
        actor,
        subject_type="return",
        subject_id=ret.id,
        return_id=ret.id,
        action=f"return.{action.value}",
        before=before,
        after=_snapshot(ret),
        data=data,
    )
    if target != current:
        publish_webhook_event(
            session,
            actor.organization_id,
            "return.status_changed",
            _webhook_data(ret, previous=current.value) | {"action": action},
        )
    return ret


def _lines_by_id(ret: Return) -> dict[uuid.UUID, ReturnLine]:
    return {ln.id: ln for ln in ret.lines}


def _line(ret: Return, line_id: uuid.UUID, field: str) -> ReturnLine:
    line = _lines_by_id(ret).get(line_id)
    if line is None:
        raise QuantityError(field, f"is not a line of return {ret.number}")
    return line


def _no_duplicate_lines(ids: list[uuid.UUID], field: str) -> None:
    if len(set(ids)) != len(ids):
        raise QuantityError(field, "the same return line appears more than once")


def _approve_all(ret: Return) -> None:
    for i, line in enumerate(ret.lines):
        _store(line, lifecycle.approve_line(_quantities(line), None, f"lines.{i}"))


class OverrideReasonRequired(InvalidInput):
    code = "override_reason_required"
    title = "Deciding against the policy needs a written reason"


# A person's decision overrides the policy when it gives the buyer more than the policy
# does for the same facts: these are the policy outcomes each hand decision overrides.
_OVERRIDES: dict[str, frozenset[Outcome]] = {
    "approve": frozenset({Outcome.REJECT, Outcome.REQUEST_EVIDENCE}),
    "resolve_returnless": frozenset(set(Outcome) - {Outcome.RETURNLESS_REFUND}),
    "offer": frozenset({Outcome.REJECT}),
    "accept_offer": frozenset(),
}
_HAND_OUTCOMES = {
    "approve": Outcome.AUTO_APPROVE,
    "resolve_returnless": Outcome.RETURNLESS_REFUND,
    "offer": Outcome.OFFER_ALTERNATIVES,
    "accept_offer": Outcome.OFFER_ALTERNATIVES,
}


def _by_hand(
    session: Session,
    actor: Actor,
    return_id: uuid.UUID,
    path: str,
    reason: str,
    reason_field: str,
    move: Callable[[], Return],
) -> Return:
    """A person's decision: the policy is evaluated on the same facts and stored with it,
    so the refund guard reads the same terms as if the policy had decided; deciding
    against the policy is an override and needs ``reason``."""
    ret = repo.get(session, actor.organization_id, return_id, lock=True)
    if ret is None:
        raise NotFound(f"return {return_id} not found")
    if actor.actor_type == "system":
        return move()  # the policy's own moves are stored by decide()
    evaluation = policies.evaluate_return(session, ret, for_person=True)
    policy_outcome = evaluation.decision.outcome
    override = policy_outcome in _OVERRIDES[path]
    ret = move()
    if override and not reason.strip():
        reasons = "; ".join(evaluation.decision.reasons) or policy_outcome.value
        raise OverrideReasonRequired.field(
            reason_field,
            f"the policy decides {policy_outcome.value} ({reasons}); to "
            f"{path.replace('_', ' ')} instead, say why",
        )
    policies.store_decision(
        session,
        actor,
        ret,
        evaluation,
        path=path,
        outcome=_HAND_OUTCOMES[path],
        override_reason=reason.strip() if override else None,
    )
    return ret


def approve(session: Session, actor: Actor, return_id: uuid.UUID, data: ApproveIn) -> Return:
    def apply(ret: Return) -> dict[str, Any]:
        chosen: dict[uuid.UUID, int] = {}
        if data.lines is not None:
            _no_duplicate_lines([x.return_line_id for x in data.lines], "lines")
            for i, item in enumerate(data.lines):
                _line(ret, item.return_line_id, f"lines.{i}.return_line_id")
                chosen[item.return_line_id] = item.quantity
        for i, line in enumerate(ret.lines):
            qty = chosen.get(line.id) if data.lines is not None else None
            if data.lines is not None and qty is None:
                qty = 0
            _store(line, lifecycle.approve_line(_quantities(line), qty, f"lines.{i}.quantity"))
        if sum(ln.approved for ln in ret.lines) == 0:
            raise QuantityError("lines", "approve at least one unit, or reject the return")
        ret.status_reason = data.note or None
        return {"note": data.note}

    return _by_hand(
        session,
        actor,
        return_id,
        "approve",
        data.note,
        "note",
        lambda: transition(session, actor, return_id, ReturnAction.APPROVE, apply),
    )


def reject(session: Session, actor: Actor, return_id: uuid.UUID, reason: str) -> Return:
    def apply(ret: Return) -> dict[str, Any]:
        ret.status_reason = reason
        return {"reason": reason}

    return transition(session, actor, return_id, ReturnAction.REJECT, apply)


def cancel(session: Session, actor: Actor, return_id: uuid.UUID, reason: str) -> Return:
    def apply(ret: Return) -> dict[str, Any]:
        ret.status_reason = reason or "cancelled"
        return {"reason": reason}

    return transition(session, actor, return_id, ReturnAction.CANCEL, apply)


def simple(
    session: Session, actor: Actor, return_id: uuid.UUID, action: ReturnAction, reason: str = ""
) -> Return:
    """Transitions that carry only an optional reason (review, evidence, close, lost…)."""

    def apply(ret: Return) -> dict[str, Any]:
        if action == ReturnAction.RESOLVE_RETURNLESS:
            # Settled without the goods coming back: every requested unit is approved, so
            # the units stay held (no second return for them) and are the ones refundable.
            _approve_all(ret)
        if reason:
            ret.status_reason = reason
        return {"reason": reason} if reason else {}

    if action is ReturnAction.RESOLVE_RETURNLESS:
        return _by_hand(
            session,
            actor,
            return_id,
            "resolve_returnless",
            reason,
            "reason",
            lambda: transition(session, actor, return_id, action, apply),
        )
    return transition(session, actor, return_id, action, apply)


def offer(session: Session, actor: Actor, return_id: uuid.UUID, data: OfferIn) -> Return:
    def apply(ret: Return) -> dict[str, Any]:
        if data.kind == OfferKind.KEEP_PARTIAL_REFUND and (data.amount is None) == (
            data.percent is None
        ):
            raise QuantityError("amount", "a keep-the-item offer needs either amount or percent")
        if data.kind == OfferKind.COUPON and data.amount is None:
            raise QuantityError("amount", "a coupon offer needs its value")
        if data.amount is not None and data.amount.currency != ret.currency:
            raise QuantityError(
                "amount.currency",
                f"{data.amount.currency} differs from the return's {ret.currency}",
            )
        if data.percent is not None and not Decimal(0) < Decimal(data.percent) <= Decimal(100):
            raise QuantityError("percent", "must be above 0 and at most 100")
        ret.offer = {
            "kind": data.kind.value,
            "amount": data.amount.model_dump() if data.amount else None,
            "percent": data.percent,
            "note": data.note,
        }
        return {"offer": ret.offer}

    return _by_hand(
        session,
        actor,
        return_id,
        "offer",
        data.note,
        "note",
        lambda: transition(session, actor, return_id, ReturnAction.OFFER, apply),
    )


def accept_offer(session: Session, actor: Actor, return_id: uuid.UUID) -> Return:
    def apply(ret: Return) -> dict[str, Any]:
        # The buyer keeps the goods: every requested unit is settled by the offer, and
        # the offer bounds what may be refunded for them.
        _approve_all(ret)
        ret.offer = {**(ret.offer or {}), "accepted": True}
        ret.status_reason = "offer accepted"
        return {"offer": ret.offer}

    return _by_hand(
        session,
        actor,
        return_id,
        "accept_offer",
        "",
        "reason",
        lambda: transition(session, actor, return_id, ReturnAction.ACCEPT_OFFER, apply),
    )


def decline_offer(session: Session, actor: Actor, return_id: uuid.UUID) -> Return:
    def apply(ret: Return) -> dict[str, Any]:
        _approve_all(ret)
        ret.offer = {**(ret.offer or {}), "declined": True}
        ret.status_reason = "offer declined; return goes ahead"
        return {"offer": ret.offer}

    return transition(session, actor, return_id, ReturnAction.DECLINE_OFFER, apply)


def add_shipment(session: Session, actor: Actor, return_id: uuid.UUID, data: ShipmentIn) -> Return:
    def apply(ret: Return) -> dict[str, Any]:
        shipment = Shipment(
            organization_id=ret.organization_id,
            return_id=ret.id,
            carrier=data.carrier,
            tracking_number=data.tracking_number,
            # Labels are often bought in another currency than the order's; keep it as given.
            label_cost_minor=data.label_cost.minor if data.label_cost else None,
            label_cost_currency=data.label_cost.currency if data.label_cost else None,
            label_paid_by=data.label_paid_by,
        )
        session.add(shipment)
        return {
            "carrier": data.carrier,
            "tracking_number": data.tracking_number,
            "label_cost": data.label_cost.model_dump() if data.label_cost else None,
            "label_paid_by": data.label_paid_by,
        }

    ret = transition(session, actor, return_id, ReturnAction.SHIP, apply)
    # The cost ledger books what this step cost or recovered (labels, handling, residual value).
    ledger.sync_return(session, actor, ret)
    return ret


def receive(session: Session, actor: Actor, return_id: uuid.UUID, data: ReceiveIn) -> Return:
    def apply(ret: Return) -> dict[str, Any]:
        _no_duplicate_lines([x.return_line_id for x in data.lines], "lines")
        for i, item in enumerate(data.lines):
            line = _line(ret, item.return_line_id, f"lines.{i}.return_line_id")
            _store(
                line,
                lifecycle.receive_line(_quantities(line), item.quantity, f"lines.{i}.quantity"),
            )
        lines = [
            {"return_line_id": str(x.return_line_id), "quantity": x.quantity} for x in data.lines
        ]
        session.add(
            Receipt(
                organization_id=ret.organization_id, return_id=ret.id, lines=lines, notes=data.notes
            )
        )
        return {"lines": lines, "notes": data.notes}

    ret = transition(session, actor, return_id, ReturnAction.RECEIVE, apply)
    # The cost ledger books what this step cost or recovered (labels, handling, residual value).
    ledger.sync_return(session, actor, ret)
    return ret


def inspect(session: Session, actor: Actor, return_id: uuid.UUID, data: InspectionIn) -> Return:
    def apply(ret: Return) -> dict[str, Any]:
        _no_duplicate_lines([x.return_line_id for x in data.lines], "lines")
        total_passed = total_failed = 0
        for i, item in enumerate(data.lines):
            line = _line(ret, item.return_line_id, f"lines.{i}.return_line_id")
            _store(
                line,
                lifecycle.inspect_line(_quantities(line), item.passed, item.failed, f"lines.{i}"),
            )
            total_passed += item.passed
            total_failed += item.failed
        outcome = lifecycle.inspection_outcome(total_passed, total_failed)
        lines = [item.model_dump(mode="json") for item in data.lines]
        session.add(
            Inspection(
                organization_id=ret.organization_id,
                return_id=ret.id,
                outcome=outcome,
                lines=lines,
                notes=data.notes,
            )
        )
        return {"outcome": outcome, "lines": lines, "notes": data.notes}

    ret = transition(session, actor, return_id, ReturnAction.INSPECT, apply)
    # The cost ledger books what this step cost or recovered (labels, handling, residual value).
    ledger.sync_return(session, actor, ret)
    return ret


# --------------------------------------------------------------------- policy decisions

# The policy decides returns in these statuses; later ones were decided already.
DECIDABLE = (ReturnStatus.REQUESTED, ReturnStatus.AWAITING_EVIDENCE, ReturnStatus.PENDING_REVIEW)
# What each policy outcome does to a return, by the status it is in.
_DECISION_ACTIONS: dict[Outcome, dict[ReturnStatus, ReturnAction | None]] = {
    Outcome.AUTO_APPROVE: {s: ReturnAction.APPROVE for s in DECIDABLE},
    Outcome.REQUEST_EVIDENCE: {
        ReturnStatus.REQUESTED: ReturnAction.REQUEST_EVIDENCE,
        ReturnStatus.PENDING_REVIEW: ReturnAction.REQUEST_EVIDENCE,
        ReturnStatus.AWAITING_EVIDENCE: None,
    },
    Outcome.NEEDS_REVIEW: {
        ReturnStatus.REQUESTED: ReturnAction.SEND_TO_REVIEW,
        ReturnStatus.AWAITING_EVIDENCE: ReturnAction.SUBMIT_EVIDENCE,
        ReturnStatus.PENDING_REVIEW: None,
    },
    Outcome.OFFER_ALTERNATIVES: {s: ReturnAction.OFFER for s in DECIDABLE},
    Outcome.RETURNLESS_REFUND: {s: ReturnAction.RESOLVE_RETURNLESS for s in DECIDABLE},
    Outcome.REJECT: {s: ReturnAction.REJECT for s in DECIDABLE},
}


class AlreadyDecided(Conflict):
    code = "already_decided"
    title = "The return is past the policy decision"


def decide(session: Session, actor: Actor, return_id: uuid.UUID) -> tuple[Return, Decided]:
    """Evaluate the channel's policy on an undecided return and move it accordingly."""
    ret = repo.get(session, actor.organization_id, return_id, lock=True)
    if ret is None:
        raise NotFound(f"return {return_id} not found")
    status = ReturnStatus(ret.status)
    if status not in DECIDABLE:
        raise AlreadyDecided(
            f"the return is {status.value}; the policy decides only requested, "
            "awaiting_evidence or pending_review returns",
            extra={"current_status": status.value},
        )
    decided = policies.decide(session, actor, ret)
    action = _DECISION_ACTIONS[decided.decision.outcome].get(status)
    if action is None:
        # Decided again in the same status (more evidence, still not enough): the reason
        # shown with the return is the new decision's, never the one it replaced.
        ret.status_reason = "; ".join(decided.decision.reasons) or ret.status_reason
        ret.updated_at = utcnow()
        session.flush()
        return ret, decided
    policy_actor = Actor.system(
        actor.organization_id, f"policy {decided.policy_name!r} v{decided.version.version}"
    )
    rejected = {
        uuid.UUID(line.line_id) for line in decided.decision.lines if line.outcome is Outcome.REJECT
    }
    reason = "; ".join(decided.decision.reasons)

    def apply(r: Return) -> dict[str, Any]:
        note: dict[str, Any] = {"decision_id": decided.record.id}
        if action is ReturnAction.APPROVE:
            for i, line in enumerate(r.lines):
                qty = 0 if line.id in rejected else None
                _store(line, lifecycle.approve_line(_quantities(line), qty, f"lines.{i}"))
            if rejected:
                note["rejected_lines"] = sorted(str(x) for x in rejected)
        elif action is ReturnAction.RESOLVE_RETURNLESS:
            _approve_all(r)
        elif action is ReturnAction.OFFER:
            r.offer = _offer_from(decided, r.currency)
        r.status_reason = reason
        return note

    ret = transition(session, policy_actor, ret.id, action, apply)
    return ret, decided


def _offer_from(decided: Decided, currency: str) -> dict[str, Any]:
    alternatives = decided.decision.setting("alternatives")
    offer: dict[str, Any] = {
        "kind": OfferKind.REPLACEMENT.value,
        "amount": None,
        "percent": None,
        "note": "offered by the policy",
    }
    if alternatives is None:
        return offer
    if alternatives.keep_partial_refund_percent:
        offer.update(
            kind=OfferKind.KEEP_PARTIAL_REFUND.value,
            percent=format(alternatives.keep_partial_refund_percent, "f"),
        )
    elif alternatives.coupon_value:
        offer.update(
            kind=OfferKind.COUPON.value,
            amount={"amount": format(alternatives.coupon_value, "f"), "currency": currency},
        )
    return offer
