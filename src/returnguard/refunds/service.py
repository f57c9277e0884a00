"""Refunds: computed from what was paid, checked by the guard, idempotent, race-free.

Every refund of an order is serialised on the order's row lock, so two requests (threads,
processes, machines) can never both spend the same captured money; the idempotency key is
looked up again after the lock is taken, so a retried request returns the refund the
first one made. The guard (domain/refunds.py) enforces DESIGN.md invariants 1-3.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from decimal import ROUND_DOWN, Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from returnguard.audit import service as audit
from returnguard.auth.actor import Actor
from returnguard.domain import refunds as money
from returnguard.domain.policy.document import FeeApplies, Payer
from returnguard.domain.returns import LIFECYCLE, LineQuantities, ReturnAction, ReturnStatus
from returnguard.errors import Conflict, InvalidInput, NotFound, ReturnGuardError
from returnguard.kit.db import utcnow
from returnguard.kit.money import minor_digits
from returnguard.orders import repository as orders_repo
from returnguard.orders.models import Buyer
from returnguard.policies.service import latest_decision
from returnguard.refunds.models import Refund
from returnguard.refunds.schemas import RefundIn
from returnguard.returns import repository as returns_repo
from returnguard.returns import service as returns_service
from returnguard.returns.models import Return, ReturnLine, Shipment

PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"
MANUAL = "manual"


class IdempotencyKeyReused(InvalidInput):
    code = "idempotency_key_reused"
    title = "This Idempotency-Key was used for a different request"


class RefundRefused(ReturnGuardError):
    title = "Refund refused"

    def __init__(self, violations: list[money.Violation]) -> None:
        first = violations[0]
        super().__init__(
            "; ".join(v.message for v in violations),
            errors=[{"field": "lines", "message": v.message} for v in violations],
            extra={
                "violations": [
                    {
                        "code": v.code,
                        "invariant": v.invariant,
                        "message": v.message,
                        "numbers": v.numbers,
                        "order_line_id": str(v.order_line_id) if v.order_line_id else None,
                    }
                    for v in violations
                ]
            },
        )
        self.status = first.status
        self.code = first.code


class RefundStateConflict(Conflict):
    code = "refund_state"


def _minor_floor(amount: Decimal, currency: str) -> int:
    """A policy amount in minor units, rounded down so a cap is never exceeded."""
    return int((amount.scaleb(minor_digits(currency))).to_integral_value(ROUND_DOWN))


def _request_hash(return_id: uuid.UUID, body: RefundIn) -> str:
    canonical = json.dumps(
        {"return_id": str(return_id), **body.model_dump(mode="json")}, sort_keys=True
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _find(session: Session, organization_id: uuid.UUID, key: str) -> Refund | None:
    return session.scalar(
        select(Refund).where(
            Refund.organization_id == organization_id, Refund.idempotency_key == key
        )
    )


def _replay(found: Refund, request_hash: str) -> Refund:
    if found.request_hash != request_hash:
        raise IdempotencyKeyReused.field(
            "Idempotency-Key", "was already used with a different request body or return"
        )
    return found


def _spent(session: Session, order_id: uuid.UUID) -> int:
    return int(
        session.scalar(
            select(func.coalesce(func.sum(Refund.amount_minor), 0)).where(
                Refund.order_id == order_id, Refund.status != FAILED
            )
        )
        or 0
    )


def _refunded_units(session: Session, order_line_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Units of each order line refunded (or pending) across every return of the order."""
    rows = session.execute(
        select(ReturnLine.order_line_id, func.sum(ReturnLine.refunded))
        .where(ReturnLine.order_line_id.in_(order_line_ids))
        .group_by(ReturnLine.order_line_id)
    )
    return {line_id: int(n or 0) for line_id, n in rows}


def _settings(session: Session, ret: Return) -> dict[uuid.UUID, dict[str, Any]]:
    """The policy's settings per return line, from the latest decision (if any)."""
    decision = latest_decision(session, ret.organization_id, ret.id)
    if decision is None:
        return {}
    return {uuid.UUID(line["return_line_id"]): line.get("settings", {}) for line in decision.lines}


def create_refund(
    session: Session, actor: Actor, return_id: uuid.UUID, key: str, body: RefundIn
) -> tuple[Refund, bool]:
    """Grant and send a refund once per key; returns (refund, created)."""
    request_hash = _request_hash(return_id, body)
    found = _find(session, actor.organization_id, key)
    if found is not None:
        return _replay(found, request_hash), False
    ret = returns_repo.get(session, actor.organization_id, return_id)
    if ret is None:
        raise NotFound(f"return {return_id} not found")
    # The order's lock serialises every refund of the order, across all its returns.
    order = orders_repo.order(session, actor.organization_id, ret.order_id, lock=True)
    assert order is not None
    found = _find(session, actor.organization_id, key)
    if found is not None:
        return _replay(found, request_hash), False
    ret = returns_repo.get(session, actor.organization_id, return_id, lock=True)
    assert ret is not None
    status = ReturnStatus(ret.status)
    moves_to_refunded = LIFECYCLE.edges[ReturnAction.REFUND].sources
    # Before receipt (approved, in transit) or settled without the goods (resolved) the
    # status stays; whether units may be refunded then is the guard's decision.
    refundable_states = moves_to_refunded | {
        ReturnStatus.RESOLVED,
        ReturnStatus.APPROVED,
        ReturnStatus.IN_TRANSIT,
    }
    if status not in refundable_states:
        raise RefundStateConflict(
            f"a return that is {status.value} cannot be refunded",
            extra={"current_status": status.value},
        )
    lines_by_id = {ln.id: ln for ln in ret.lines}
    settings = _settings(session, ret)
    already = _refunded_units(session, [ln.order_line_id for ln in ret.lines])
    requests: list[money.LineRefundRequest] = []
    quantities: dict[money.LineId, int] = {}
    for i, item in enumerate(body.lines):
        line = lines_by_id.get(item.return_line_id)
        if line is None:
            raise InvalidInput.field(f"lines.{i}.return_line_id", "is not a line of this return")
        if line.order_line_id in quantities:
            raise InvalidInput.field(f"lines.{i}.return_line_id", "appears twice")
        quantities[line.order_line_id] = item.quantity
        fee = settings.get(line.id, {}).get("restocking_fee")
        terms = None
        if fee is not None and (
            item.charge_restocking_fee or fee.get("applies_to") == FeeApplies.ALWAYS
        ):
            cap = fee.get("cap")
            terms = money.RestockingFeeTerms(
                percent=Decimal(str(fee["percent"])),
                cap=None if cap is None else _minor_floor(Decimal(str(cap)), order.currency),
            )
        elif item.charge_restocking_fee:
            raise InvalidInput.field(
                f"lines.{i}.charge_restocking_fee", "the policy sets no restocking fee here"
            )
        requests.append(
            money.LineRefundRequest(
                order_line_id=line.order_line_id,
                quantity=item.quantity,
                already_refunded=already.get(line.order_line_id, 0),
                restocking_fee=terms,
                keep_percent=Decimal(body.keep_percent) if body.keep_percent else None,
            )
        )
    buyer = session.get(Buyer, order.buyer_id) if order.buyer_id else None
    override = (
        money.Override(role=actor.role, reason=body.override_reason)
        if body.override_reason is not None
        else None
    )
    state = money.RefundState(
        currency=order.currency,
        captured=order.captured_minor,
        refunded_or_pending=_spent(session, order.id),
        lines={
            ln.order_line_id: LineQuantities(
                ln.requested, ln.approved, ln.received, ln.inspected, ln.passed, ln.refunded
            )
            for ln in ret.lines
        },
        inspection_required=any(s.get("inspection_before_refund") for s in settings.values()),
        receipt_required=not any(
            s.get("refund_before_receipt") or s.get("returnless_refund") for s in settings.values()
        )
        and status is not ReturnStatus.RESOLVED,
        refund_before_receipt_allowed=status is ReturnStatus.RESOLVED
        or any(s.get("refund_before_receipt") for s in settings.values()),
        watchlisted=bool(buyer and buyer.watchlisted),
        # A policy states its high-value threshold as "inspection before refund" for the
        # items above it (see the default policy), which inspection_required enforces.
        above_high_value=False,
        override=override,
    )
    # Units first: asking for more than may go out is refused before any amount is computed.
    violations = money.check_refund(state, money.RequestedRefund(quantities, total=0))
    if violations:
        raise RefundRefused(violations)
    # Return-level settings (outbound shipping, who pays the label) are the same on every
    # line of the default policy; the first line's stand for the return.
    first = settings[next(iter(settings))] if settings else {}
    paid = money.PaidOrder(
        currency=order.currency,
        lines=tuple(
            money.PaidLine(ln.id, ln.quantity, ln.unit_price_minor, ln.tax_minor, ln.discount_minor)
            for ln in order.lines
        ),
        shipping=order.shipping_minor,
        shipping_tax=order.shipping_tax_minor,
    )
    try:
        breakdown = money.compute_refund(
            paid,
            requests,
            refund_outbound_shipping=bool(first.get("refund_outbound_shipping")),
            return_shipping_deduction=_label_deduction(session, ret, first),
        )
    except ValueError as exc:
        raise InvalidInput.field("lines", str(exc)) from None
    violations = money.check_refund(state, money.RequestedRefund.from_breakdown(breakdown))
    if violations:
        raise RefundRefused(violations)
    if breakdown.total <= 0:
        raise InvalidInput.field("lines", "nothing is due for these units")
    by_order_line: dict[money.LineId, ReturnLine] = {ln.order_line_id: ln for ln in ret.lines}
    refund = Refund(
        organization_id=ret.organization_id,
        return_id=ret.id,
        order_id=order.id,
        idempotency_key=key,
        request_hash=request_hash,
        status=PENDING,
        amount_minor=breakdown.total,
        currency=order.currency,
        lines=[
            {
                "return_line_id": str(by_order_line[part.order_line_id].id),
                "order_line_id": str(part.order_line_id),
                "quantity": part.quantity,
                "item": part.item,
                "tax": part.tax,
                "discount": part.discount,
                "shipping": part.shipping,
                "shipping_tax": part.shipping_tax,
                "restocking_fee": part.restocking_fee,
                "total": part.total,
            }
            for part in breakdown.lines
        ],
        return_shipping_deduction_minor=breakdown.return_shipping_deduction,
        reason=body.reason,
        override_reason=body.override_reason,
        provider=MANUAL,
        created_by=actor.label,
    )
    session.add(refund)
    for part in breakdown.lines:
        by_order_line[part.order_line_id].refunded += part.quantity
    session.flush()
    audit.record(
        session,
        actor,
        subject_type="refund",
        subject_id=refund.id,
        return_id=ret.id,
        action="refund.created",
        after={
            "amount": format(breakdown.total_money.amount, "f"),
            "currency": order.currency,
            "status": PENDING,
            "lines": refund.lines,
        },
        data={"override_reason": body.override_reason, "reason": body.reason},
    )
    if status in moves_to_refunded:
        returns_service.transition(
            session, actor, ret.id, ReturnAction.REFUND, lambda r: {"refund_id": refund.id}
        )
    return refund, True


def _label_deduction(session: Session, ret: Return, settings: dict[str, Any]) -> int:
    """A prepaid label the seller bought is deducted when the policy says the buyer pays,
    once per return (on its first refund)."""
    if settings.get("return_shipping_paid_by") != Payer.BUYER.value:
        return 0
    if session.scalar(
        select(func.count())
        .select_from(Refund)
        .where(Refund.return_id == ret.id, Refund.status != FAILED)
    ):
        return 0
    cost = session.scalar(
        select(func.coalesce(func.sum(Shipment.label_cost_minor), 0)).where(
            Shipment.return_id == ret.id,
            Shipment.label_paid_by == "seller",
            Shipment.label_cost_currency == ret.currency,
        )
    )
    return int(cost or 0)


def get_refund(session: Session, organization_id: uuid.UUID, refund_id: uuid.UUID) -> Refund:
    refund = session.scalar(
        select(Refund).where(Refund.id == refund_id, Refund.organization_id == organization_id)
    )
    if refund is None:
        raise NotFound(f"refund {refund_id} not found")
    return refund


def list_refunds(
    session: Session, organization_id: uuid.UUID, return_id: uuid.UUID
) -> list[Refund]:
    stmt = (
        select(Refund)
        .where(Refund.organization_id == organization_id, Refund.return_id == return_id)
        .order_by(Refund.created_at)
    )
    return list(session.scalars(stmt))


def settle(
    session: Session, actor: Actor, refund_id: uuid.UUID, *, paid: bool, note: str
) -> Refund:
    """Finance records the provider's answer: paid (with its reference) or failed."""
    refund = session.scalar(
        select(Refund)
        .where(Refund.id == refund_id, Refund.organization_id == actor.organization_id)
        .with_for_update()
    )
    if refund is None:
        raise NotFound(f"refund {refund_id} not found")
    if refund.status != PENDING:
        raise RefundStateConflict(
            f"the refund is already {refund.status}", extra={"current_status": refund.status}
        )
    before = refund.status
    if paid:
        refund.status, refund.provider_reference = SUCCEEDED, note
    else:
        refund.status, refund.failure = FAILED, note
        # A failed refund frees its units (and, by its status, its amount) again.
        ret = returns_repo.get(session, actor.organization_id, refund.return_id, lock=True)
        assert ret is not None
        by_id = {str(ln.id): ln for ln in ret.lines}
        for part in refund.lines:
            by_id[part["return_line_id"]].refunded -= int(part["quantity"])
    refund.updated_at = utcnow()
    audit.record(
        session,
        actor,
        subject_type="refund",
        subject_id=refund.id,
        return_id=refund.return_id,
        action="refund.succeeded" if paid else "refund.failed",
        before={"status": before},
        after={"status": refund.status},
        data={"reference" if paid else "failure": note},
    )
    return refund
