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
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from returnguard.audit import service as audit
from returnguard.auth.actor import Actor
from returnguard.auth.models import Organization, Role
from returnguard.domain import refunds as money
from returnguard.domain.policy.document import HighValueThreshold, Payer
from returnguard.domain.returns import (
    FREED_TARGETS,
    LIFECYCLE,
    LineQuantities,
    ReturnAction,
    ReturnStatus,
)
from returnguard.errors import Conflict, Forbidden, InvalidInput, NotFound, ReturnGuardError
from returnguard.fx import service as fx
from returnguard.kit.db import utcnow
from returnguard.kit.money import Money, minor_digits
from returnguard.ledger import service as ledger
from returnguard.orders import repository as orders_repo
from returnguard.orders.models import Buyer, Channel, Order
from returnguard.outbox.models import OutboxMessage
from returnguard.outbox.service import mark_outbox_written
from returnguard.policies import service as policies
from returnguard.refunds.models import (
    CANCELLED,
    FAILED,
    FREED,
    GRANTED,
    PENDING,
    SUCCEEDED,
    Refund,
    RefundProvider,
)
from returnguard.refunds.schemas import RefundIn
from returnguard.returns import repository as returns_repo
from returnguard.returns import service as returns_service
from returnguard.returns.models import Return, ReturnLine, Shipment

MANUAL = "manual"
REFUND_TOPIC = "refund.send"


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


class FourEyesRequired(Forbidden):
    code = "four_eyes_required"
    title = "A second person must send this refund"


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


@dataclass
class _Held:
    """What the live refunds of an order hold, per order line (by its id as text)."""

    spent: int = 0  # their amounts together: what the order can no longer refund
    by_return: dict[uuid.UUID, int] = field(default_factory=dict)
    runs: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    legacy_units: dict[str, int] = field(default_factory=dict)
    fees: dict[str, int] = field(default_factory=dict)

    def positions(self, order_line_id: str, units: int) -> tuple[tuple[int, int], ...]:
        """Unit positions held on the line; refunds recorded before positions were kept
        are packed into the lowest positions left."""
        held = list(self.runs.get(order_line_id, []))
        legacy = self.legacy_units.get(order_line_id, 0)
        if legacy:
            taken = {p for start, n in held for p in range(start, start + n)}
            free = [p for p in range(units) if p not in taken][:legacy]
            held.extend(money.runs(free))
        return tuple(held)


def _held(session: Session, order_id: uuid.UUID) -> _Held:
    held = _Held()
    for return_id, amount, lines in session.execute(
        select(Refund.return_id, Refund.amount_minor, Refund.lines)
        .where(Refund.order_id == order_id, Refund.status.not_in(FREED))
        .order_by(Refund.created_at)
    ):
        held.spent += amount
        held.by_return[return_id] = held.by_return.get(return_id, 0) + amount
        for part in lines:
            key = str(part["order_line_id"])
            held.fees[key] = held.fees.get(key, 0) + int(part.get("restocking_fee", 0))
            if "positions" in part:
                held.runs.setdefault(key, []).extend(
                    (int(start), int(n)) for start, n in part["positions"]
                )
            else:
                held.legacy_units[key] = held.legacy_units.get(key, 0) + int(part["quantity"])
    return held


# Before receipt (approved, in transit) or settled without the goods (resolved) the status
# stays when a refund is made; whether units may be refunded then is the guard's decision.
REFUNDABLE_STATES = LIFECYCLE.edges[ReturnAction.REFUND].sources | {
    ReturnStatus.RESOLVED,
    ReturnStatus.APPROVED,
    ReturnStatus.IN_TRANSIT,
}


def _return_value(order: Order, ret: Return) -> int:
    """Every requested unit of the return at what was paid for it (price and tax, less
    discount), in minor units of the order's currency."""
    by_id = {ln.id: ln for ln in order.lines}
    total = 0
    for line in ret.lines:
        paid = by_id[line.order_line_id]
        line_total = max(
            paid.unit_price_minor * paid.quantity + paid.tax_minor - paid.discount_minor, 0
        )
        total += line_total * line.requested // paid.quantity
    return total


def _high_value(
    session: Session, ret: Return, order: Order, threshold: HighValueThreshold | None
) -> money.HighValue | None:
    """The return's value against the policy's threshold, compared in the organization's
    base currency at the day's rate (directly when both are in one currency). Without a
    rate the value cannot be judged, and the return counts as high-value."""
    if threshold is None:
        return None
    value = Money.from_minor(_return_value(order, ret), order.currency)
    limit_currency = threshold.currency or order.currency
    if limit_currency == value.currency:
        return money.HighValue(
            value.minor, _minor_floor(threshold.amount, value.currency), value.currency
        )
    org = session.get(Organization, ret.organization_id)
    assert org is not None
    base, today = org.base_currency, utcnow().date()
    value_rate = fx.rate(session, org.id, value.currency, base, today)
    limit_rate = fx.rate(session, org.id, limit_currency, base, today)
    if value_rate is None or limit_rate is None:
        missing = value.currency if value_rate is None else limit_currency
        return money.HighValue(
            0,
            0,
            base,
            unknown=f"no {missing}->{base} exchange rate to compare the return's {value} with "
            f"the high-value threshold of {threshold.amount} {limit_currency}, so it counts "
            "as high-value",
        )
    in_base = _minor_floor(value.amount * value_rate, base)
    return money.HighValue(in_base, _minor_floor(threshold.amount * limit_rate, base), base)


def _accepted_offer(ret: Return) -> money.AcceptedOffer | None:
    """The alternative the buyer accepted instead of sending the goods back, if any."""
    offer = ret.offer
    if not offer or ReturnStatus(ret.status) is not ReturnStatus.RESOLVED or offer.get("declined"):
        return None
    amount = offer.get("amount")
    percent = offer.get("percent")
    return money.AcceptedOffer(
        kind=str(offer.get("kind")),
        percent=Decimal(str(percent)) if percent is not None else None,
        amount=Money(Decimal(str(amount["amount"])), ret.currency).minor if amount else None,
    )


@dataclass(frozen=True)
class _Guard:
    state: money.RefundState
    terms: money.ReturnTerms


def _guard(
    session: Session,
    ret: Return,
    order: Order,
    held: _Held,
    override: money.Override | None,
    *,
    lock_buyer: bool,
) -> _Guard:
    """What the guard knows, from the return's facts now: the policy's terms, its value
    against the high-value threshold, the buyer's watchlist flag, the goods received and
    passed, and any alternative the buyer accepted; never from which path decided it."""
    policy = policies.refund_terms(session, ret)
    terms = policy.terms
    status = ReturnStatus(ret.status)
    # Locked when refunding: a watchlist change and a refund of the buyer never overlap.
    buyer = (
        session.get(Buyer, order.buyer_id, with_for_update=lock_buyer) if order.buyer_id else None
    )
    offer = _accepted_offer(ret)
    high_value = _high_value(session, ret, order, policy.high_value_threshold)
    resolved = status is ReturnStatus.RESOLVED
    # Without the goods: an alternative the buyer accepted (which then bounds the refund),
    # or a returnless refund the policy gives; a returnless resolution by hand against the
    # policy needs an override at refund time.
    before_receipt = terms.refund_before_receipt or (
        resolved and (terms.returnless_refund or offer is not None)
    )
    state = money.RefundState(
        currency=order.currency,
        captured=order.captured_minor,
        refunded_or_pending=held.spent,
        lines={
            ln.order_line_id: LineQuantities(
                ln.requested, ln.approved, ln.received, ln.inspected, ln.passed, ln.refunded
            )
            for ln in ret.lines
        },
        inspection_required=terms.inspection_before_refund,
        receipt_required=not before_receipt,
        refund_before_receipt_allowed=before_receipt,
        watchlisted=bool(buyer and buyer.watchlisted),
        above_high_value=high_value is not None and high_value.above,
        high_value=high_value,
        override=override,
        accepted_offer=offer,
        return_refunded=held.by_return.get(ret.id, 0),
    )
    return _Guard(state, terms)


def can_refund(session: Session, ret: Return) -> bool:
    """Whether the guard would pay a unit of the return now (no override), for more than
    nothing."""
    if ReturnStatus(ret.status) not in REFUNDABLE_STATES:
        return False
    order = session.get(Order, ret.order_id)
    if order is None:
        return False
    held = _held(session, order.id)
    guard = _guard(session, ret, order, held, None, lock_buyer=False)
    state = guard.state
    if state.captured - state.refunded_or_pending <= 0:
        return False
    keep = state.accepted_offer.percent if state.accepted_offer else None
    ordered = {ln.id: ln.quantity for ln in order.lines}
    for line_id, q in state.lines.items():
        if money.refundable_quantity(state, q) <= q.refunded:
            continue
        unit = money.LineRefundRequest(
            order_line_id=line_id,
            quantity=1,
            occupied=held.positions(str(line_id), ordered[uuid.UUID(str(line_id))]),
            keep_percent=keep,
        )
        try:
            due = money.compute_refund(
                _paid(order),
                [unit],
                refund_outbound_shipping=guard.terms.first.refund_outbound_shipping,
            ).total
        except ValueError:
            continue
        if due > 0 and not money.check_refund(
            state, money.RequestedRefund({line_id: 1}, total=due, keep_percent=keep)
        ):
            return True
    return False


def _paid(order: Order) -> money.PaidOrder:
    """What was paid for the order, as the refund calculation reads it."""
    return money.PaidOrder(
        currency=order.currency,
        lines=tuple(
            money.PaidLine(ln.id, ln.quantity, ln.unit_price_minor, ln.tax_minor, ln.discount_minor)
            for ln in order.lines
        ),
        shipping=order.shipping_minor,
        shipping_tax=order.shipping_tax_minor,
    )


def create_refund(
    session: Session, actor: Actor, return_id: uuid.UUID, key: str, body: RefundIn
) -> tuple[Refund, bool]:
    """Grant a refund once per key (and send it unless a second person must); returns
    (refund, created)."""
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
    if status not in REFUNDABLE_STATES:
        raise RefundStateConflict(
            f"a return that is {status.value} cannot be refunded",
            extra={"current_status": status.value},
        )
    lines_by_id = {ln.id: ln for ln in ret.lines}
    held = _held(session, order.id)
    override = (
        money.Override(role=actor.role, reason=body.override_reason)
        if body.override_reason is not None
        else None
    )
    guard = _guard(session, ret, order, held, override, lock_buyer=True)
    state, terms = guard.state, guard.terms
    keep_percent = Decimal(body.keep_percent) if body.keep_percent else None
    ordered = {ln.id: ln.quantity for ln in order.lines}
    digits = minor_digits(order.currency)
    requests: list[money.LineRefundRequest] = []
    quantities: dict[money.LineId, int] = {}
    for i, item in enumerate(body.lines):
        line = lines_by_id.get(item.return_line_id)
        if line is None:
            raise InvalidInput.field(f"lines.{i}.return_line_id", "is not a line of this return")
        if line.order_line_id in quantities:
            raise InvalidInput.field(f"lines.{i}.return_line_id", "appears twice")
        quantities[line.order_line_id] = item.quantity
        line_terms = terms.line(line.id)
        if item.charge_restocking_fee and line_terms.restocking_fee is None:
            raise InvalidInput.field(
                f"lines.{i}.charge_restocking_fee", "the policy sets no restocking fee here"
            )
        requests.append(
            money.LineRefundRequest(
                order_line_id=line.order_line_id,
                quantity=item.quantity,
                occupied=held.positions(str(line.order_line_id), ordered[line.order_line_id]),
                restocking_fee=line_terms.fee_terms(item.charge_restocking_fee, digits),
                fee_already_charged=held.fees.get(str(line.order_line_id), 0),
                keep_percent=keep_percent,
            )
        )
    # Units first: asking for more than may go out is refused before any amount is computed.
    # An offer's bound is judged once the amount is known, so its refusal can name it.
    violations = [
        v
        for v in money.check_refund(
            state, money.RequestedRefund(quantities, total=0, keep_percent=keep_percent)
        )
        if v.code not in money.OFFER_CODES
    ]
    if violations:
        raise RefundRefused(violations)
    first = terms.first
    try:
        breakdown = money.compute_refund(
            _paid(order),
            requests,
            refund_outbound_shipping=first.refund_outbound_shipping,
            return_shipping_deduction=_label_deduction(session, ret, first),
        )
    except ValueError as exc:
        raise InvalidInput.field("lines", str(exc)) from None
    violations = money.check_refund(
        state, money.RequestedRefund.from_breakdown(breakdown, keep_percent)
    )
    if violations:
        raise RefundRefused(violations)
    if breakdown.total <= 0:
        raise InvalidInput.field("lines", "nothing is due for these units")
    provider = _resolve_provider(session, ret, order, body.provider)
    four_eyes_reason = _four_eyes_reason(session, actor, order.currency, breakdown.total, override)
    by_order_line: dict[money.LineId, ReturnLine] = {ln.order_line_id: ln for ln in ret.lines}
    refund = Refund(
        organization_id=ret.organization_id,
        return_id=ret.id,
        order_id=order.id,
        idempotency_key=key,
        request_hash=request_hash,
        status=GRANTED,
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
                "positions": [list(run) for run in part.positions],
            }
            for part in breakdown.lines
        ],
        return_shipping_deduction_minor=breakdown.return_shipping_deduction,
        reason=body.reason,
        override_reason=body.override_reason,
        provider=provider.kind if provider else MANUAL,
        provider_id=provider.id if provider else None,
        created_by=actor.label,
        granted_by_id=identity(actor),
        four_eyes=four_eyes_reason is not None,
        four_eyes_reason=four_eyes_reason,
    )
    session.add(refund)
    for part in breakdown.lines:
        by_order_line[part.order_line_id].refunded += part.quantity
    session.flush()
    _event(
        session,
        actor,
        refund,
        "refund.granted",
        after={
            "amount": format(breakdown.total_money.amount, "f"),
            "currency": order.currency,
            "status": GRANTED,
            "provider": refund.provider,
            "lines": refund.lines,
            "four_eyes": four_eyes_reason,
        },
        data={"override_reason": body.override_reason, "reason": body.reason},
    )
    if body.send and four_eyes_reason is None:
        _send(session, actor, refund, ret)
    return refund, True


def _event(
    session: Session,
    actor: Actor,
    refund: Refund,
    action: str,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """A refund's step on its return's timeline, in the same transaction."""
    audit.record(
        session,
        actor,
        subject_type="refund",
        subject_id=refund.id,
        return_id=refund.return_id,
        action=action,
        before=before,
        after=after,
        data=data,
    )


def identity(actor: Actor) -> str:
    """The person (or key) behind an actor: two keys of one user are the same person."""
    return f"{actor.actor_type}:{actor.actor_id or actor.label}"


def _resolve_provider(
    session: Session, ret: Return, order: Order, name: str | None
) -> RefundProvider | None:
    """The provider named in the request, else the channel's; None is the manual provider."""
    if name is not None and name != MANUAL:
        provider = session.scalar(
            select(RefundProvider).where(
                RefundProvider.organization_id == ret.organization_id,
                RefundProvider.name == name,
                RefundProvider.active.is_(True),
            )
        )
        if provider is None:
            raise InvalidInput.field("provider", f"no active refund provider is named {name!r}")
    elif name == MANUAL:
        return None
    else:
        channel = session.get(Channel, ret.channel_id)
        provider_id = channel.refund_provider_id if channel else None
        provider = session.get(RefundProvider, provider_id) if provider_id else None
        if provider is None or not provider.active:
            return None
    if provider.kind != MANUAL and not order.payment_reference:
        raise InvalidInput.field(
            "provider",
            f"order {order.external_id} has no payment_reference to refund through {provider.name}",
        )
    return provider


def _four_eyes_reason(
    session: Session, actor: Actor, currency: str, amount_minor: int, override: object
) -> str | None:
    """Why a second person must send this grant, or None when the granter may send it."""
    org = session.get(Organization, actor.organization_id)
    assert org is not None
    if override is not None and org.four_eyes_on_override:
        return "the refund overrides the policy"
    if org.four_eyes_above_minor is None:
        return None
    threshold = Money.from_minor(org.four_eyes_above_minor, org.base_currency)
    amount = Money.from_minor(amount_minor, currency)
    if currency == org.base_currency:
        in_base = amount.amount
    else:
        rate = fx.rate(session, org.id, currency, org.base_currency, utcnow().date())
        if rate is None:
            return (
                f"no {currency}->{org.base_currency} exchange rate to compare with the "
                f"four-eyes threshold of {threshold}"
            )
        in_base = amount.amount * rate
    if in_base > threshold.amount:
        return f"{amount} is above the four-eyes threshold of {threshold}"
    return None


def _send(session: Session, actor: Actor, refund: Refund, ret: Return | None = None) -> None:
    """Hand a granted refund to its provider: manual waits for finance, the others go
    through the outbox, which passes the refund's key to the provider."""
    refund.status = PENDING
    refund.sent_by, refund.sent_by_id, refund.sent_at = actor.label, identity(actor), utcnow()
    refund.updated_at = utcnow()
    if refund.provider != MANUAL:
        queue_send(session, refund)
    _event(
        session,
        actor,
        refund,
        "refund.sent",
        before={"status": GRANTED},
        after={"status": PENDING, "provider": refund.provider},
    )
    if ret is None:
        ret = returns_repo.get(session, refund.organization_id, refund.return_id, lock=True)
        assert ret is not None
    if moves_to_refunded(ret):
        returns_service.transition(
            session, actor, ret.id, ReturnAction.REFUND, lambda r: {"refund_id": refund.id}
        )


def moves_to_refunded(ret: Return) -> bool:
    """A lost or disputed return is refunded by its first refund; a received one only once
    every approved unit is settled (refunded, or failed inspection), so a second parcel
    of a partly received return can still be received and inspected."""
    status = ReturnStatus(ret.status)
    if status in (ReturnStatus.LOST, ReturnStatus.DISPUTED):
        return True
    if status not in (ReturnStatus.RECEIVED, ReturnStatus.INSPECTED):
        return False
    return all(ln.refunded + (ln.inspected - ln.passed) >= ln.approved for ln in ret.lines)


def queue_send(session: Session, refund: Refund) -> None:
    """Queue the provider call; the worker retries it with the same key until it is known."""
    session.add(
        OutboxMessage(
            organization_id=refund.organization_id,
            topic=REFUND_TOPIC,
            payload={"refund_id": str(refund.id)},
            next_attempt_at=utcnow(),
        )
    )
    mark_outbox_written(session)


def _locked(session: Session, organization_id: uuid.UUID, refund_id: uuid.UUID) -> Refund:
    refund = session.scalar(
        select(Refund)
        .where(Refund.id == refund_id, Refund.organization_id == organization_id)
        .with_for_update()
    )
    if refund is None:
        raise NotFound(f"refund {refund_id} not found")
    return refund


def _locked_granted(
    session: Session, organization_id: uuid.UUID, refund_id: uuid.UUID, done: str
) -> Refund:
    """The refund, locked, if it is still granted; a 409 naming its status otherwise."""
    refund = _locked(session, organization_id, refund_id)
    if refund.status != GRANTED:
        raise RefundStateConflict(
            f"the refund is already {refund.status}; only a granted refund can be {done}",
            extra={"current_status": refund.status},
        )
    return refund


def send(session: Session, actor: Actor, refund_id: uuid.UUID) -> Refund:
    """Send a granted refund. Under four-eyes only a different person with the finance
    role may send it; a refund that was already sent can never be sent again."""
    refund = _locked_granted(session, actor.organization_id, refund_id, "sent")
    if refund.four_eyes:
        if actor.role != Role.FINANCE.value or actor.actor_type != "user":
            raise FourEyesRequired(
                f"{refund.four_eyes_reason}: a person with the finance role must send it",
                extra={"four_eyes_reason": refund.four_eyes_reason},
            )
        if identity(actor) == refund.granted_by_id:
            raise FourEyesRequired(
                f"{refund.four_eyes_reason}: it must be sent by someone other than "
                f"{refund.created_by}, who granted it",
                extra={"four_eyes_reason": refund.four_eyes_reason},
            )
    _check_watchlist_before_sending(session, refund)
    _send(session, actor, refund)
    return refund


def _check_watchlist_before_sending(session: Session, refund: Refund) -> None:
    """A buyer put on the watchlist after the grant gets nothing before a passed inspection."""
    # The return before the buyer, as granting a refund locks them (docs/operations.md,
    # "Locks and their order"): the other way round, a send and a grant on one return
    # would each hold the lock the other waits for.
    ret = returns_repo.get(session, refund.organization_id, refund.return_id, lock=True)
    assert ret is not None
    order = session.get(Order, refund.order_id)
    buyer_id = order.buyer_id if order else None
    buyer = session.get(Buyer, buyer_id, with_for_update=True) if buyer_id else None
    if buyer is None or not buyer.watchlisted:
        return
    lines = {str(ln.id): ln for ln in ret.lines}
    violations = []
    for part in refund.lines:
        line = lines[part["return_line_id"]]
        if line.refunded > line.passed:
            violations.append(
                money.Violation(
                    code="watchlisted_needs_inspection",
                    invariant=3,
                    status=409,
                    message=(
                        f"the buyer was put on the watchlist after this refund was granted: "
                        f"{line.refunded} unit(s) granted, {line.passed} passed inspection"
                    ),
                    numbers={"granted_units": line.refunded, "passed": line.passed},
                    order_line_id=line.order_line_id,
                )
            )
    if violations:
        raise RefundRefused(violations)


def cancel(session: Session, actor: Actor, refund_id: uuid.UUID, reason: str) -> Refund:
    """Withdraw a granted refund before it is sent; its units and amount are freed."""
    refund = _locked_granted(session, actor.organization_id, refund_id, "cancelled")
    refund.status, refund.failure, refund.updated_at = CANCELLED, reason, utcnow()
    _event(
        session,
        actor,
        refund,
        "refund.cancelled",
        before={"status": GRANTED},
        after={"status": CANCELLED},
        data={"reason": reason},
    )
    free_units(session, refund, actor)
    return refund


def free_units(session: Session, refund: Refund, actor: Actor | None = None) -> None:
    """A failed or cancelled refund gives its units back (its amount is freed by status);
    a return it had made refunded goes back to where its goods are, so the buyer can be
    paid again."""
    ret = returns_repo.get(session, refund.organization_id, refund.return_id, lock=True)
    assert ret is not None
    by_id = {str(ln.id): ln for ln in ret.lines}
    for part in refund.lines:
        by_id[part["return_line_id"]].refunded -= int(part["quantity"])
    if ReturnStatus(ret.status) is not ReturnStatus.REFUNDED or _still_settled(session, ret):
        return
    back = _status_before_refunded(session, ret)
    returns_service.transition(
        session,
        actor or Actor.system(ret.organization_id, "refunds"),
        ret.id,
        ReturnAction.REFUND_FREED,
        lambda r: {
            "refund_id": refund.id,
            "refund_status": refund.status,
            "reason": f"refund {refund.id} {refund.status}: its units are no longer paid",
        },
        target_status=back,
    )


def _still_settled(session: Session, ret: Return) -> bool:
    """Whether the return's live refunds still settle what made it refunded."""
    status = _status_before_refunded(session, ret)
    if status in (ReturnStatus.LOST, ReturnStatus.DISPUTED):
        return any(ln.refunded for ln in ret.lines)
    return all(ln.refunded + (ln.inspected - ln.passed) >= ln.approved for ln in ret.lines)


def _status_before_refunded(session: Session, ret: Return) -> ReturnStatus:
    """The status the return had when it last became refunded (from its timeline); where
    no event says, the status its goods are in."""
    before = audit.last_status_before(session, ret.id, "return.refund")
    if before is not None and before in {s.value for s in FREED_TARGETS}:
        return ReturnStatus(before)
    if any(ln.inspected for ln in ret.lines):
        return ReturnStatus.INSPECTED
    return ReturnStatus.RECEIVED


def _label_deduction(session: Session, ret: Return, terms: money.LineTerms) -> int:
    """A prepaid label the seller bought is deducted when the policy says the buyer pays,
    once per return (on its first refund)."""
    if terms.return_shipping_paid_by is not Payer.BUYER:
        return 0
    if session.scalar(
        select(func.count())
        .select_from(Refund)
        .where(Refund.return_id == ret.id, Refund.status.not_in(FREED))
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
    """Finance records the answer for a manual refund: paid (with its reference) or failed."""
    refund = _locked(session, actor.organization_id, refund_id)
    if refund.status != PENDING:
        raise RefundStateConflict(
            f"the refund is {refund.status}; only a sent (pending) refund can be settled",
            extra={"current_status": refund.status},
        )
    if refund.provider != MANUAL:
        raise RefundStateConflict(
            f"the refund is paid through {refund.provider}; its outcome comes from the "
            "provider (see `returnguard refunds reconcile`)",
            extra={"current_status": refund.status, "provider": refund.provider},
        )
    if paid:
        mark_succeeded(session, actor, refund, reference=note)
    else:
        mark_failed(session, actor, refund, failure=note, code="manual")
    return refund


def mark_succeeded(
    session: Session,
    actor: Actor,
    refund: Refund,
    *,
    reference: str | None,
    provider_status: str | None = None,
) -> None:
    before = refund.status
    refund.status, refund.provider_reference = SUCCEEDED, reference
    refund.provider_status = provider_status
    refund.last_error = None
    refund.settled_at = refund.updated_at = utcnow()
    _event(
        session,
        actor,
        refund,
        "refund.succeeded",
        before={"status": before},
        after={"status": SUCCEEDED},
        # What the provider's units could not carry (e.g. KWD fils to Stripe) was not paid.
        data={"reference": reference, "unsent_minor": refund.unsent_minor},
    )
    # The cost ledger books the refund (gross, fee kept, label deducted) in this transaction.
    ledger.record_refund_paid(session, actor, refund)


def mark_failed(
    session: Session,
    actor: Actor,
    refund: Refund,
    *,
    failure: str,
    code: str,
    reference: str | None = None,
    provider_status: str | None = None,
) -> None:
    before = refund.status
    refund.status, refund.failure, refund.failure_code = FAILED, failure, code
    refund.provider_reference = reference or refund.provider_reference
    refund.provider_status = provider_status
    refund.settled_at = refund.updated_at = utcnow()
    _event(
        session,
        actor,
        refund,
        "refund.failed",
        before={"status": before},
        after={"status": FAILED},
        data={"failure": failure, "code": code},
    )
    free_units(session, refund, actor)
