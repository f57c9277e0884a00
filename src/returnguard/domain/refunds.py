"""Refund calculation and the refund guard. Pure: no I/O, no framework.

Every figure is an ``int`` in the currency's minor units (cents, yen, fils); ``Money``
appears only at the edges (``RefundBreakdown.total_money``, guard messages). Floats never
enter: percentages are ``Decimal`` with at most two decimal places (basis points inside).

Calculation. A line's amounts (item price x quantity, its tax, its discount plus its share
of the order-level discount, its share of outbound shipping and shipping tax) are split
per unit *cumulatively*: units ``[a, a+k)`` of ``n`` get ``⌊T·(a+k)/n⌋ - ⌊T·a/n⌋`` of a
line total ``T``. However a line is refunded over time, in however many parts, the parts
telescope to exactly ``T`` once all ``n`` units are refunded, and never more. Order-level
amounts are spread across lines by value with :func:`allocate` (largest remainder), so
cents always add up.

Guard. :func:`check_refund` enforces DESIGN.md money-safety invariants 1-3 and returns
every violation it finds, each with a stable ``code``, the invariant it protects, the
HTTP status of the problem to answer with, and the numbers behind it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from returnguard.domain.policy.document import FeeApplies, Payer, RestockingFee, Settings
from returnguard.domain.returns import LineQuantities
from returnguard.kit.money import Money

LineId = str | uuid.UUID

_FULL_BASIS_POINTS = 10_000
OVERRIDE_ROLES = frozenset({"finance", "admin"})
"""Roles whose written decision may release money before the goods are received."""


# --- arithmetic ---------------------------------------------------------------------------


def allocate(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` in proportion to ``weights`` so that the parts sum exactly to it.

    Largest-remainder method: everyone gets the floor of their exact share, and the units
    left over go to the largest remainders, earlier index first on a tie. All-zero weights
    split evenly. Each part is within one unit of its exact proportional share.
    """
    if total < 0:
        raise ValueError(f"cannot allocate a negative total ({total})")
    if any(w < 0 for w in weights):
        raise ValueError("allocation weights must not be negative")
    if not weights:
        if total:
            raise ValueError(f"cannot allocate {total} across no parts")
        return []
    if not any(weights):
        weights = [1] * len(weights)
    weight_sum = sum(weights)
    parts = [total * w // weight_sum for w in weights]
    remainders = [total * w % weight_sum for w in weights]
    left = total - sum(parts)
    for i in sorted(range(len(weights)), key=lambda i: (-remainders[i], i))[:left]:
        parts[i] += 1
    assert sum(parts) == total
    return parts


def unit_share(total: int, units: int, start: int, count: int) -> int:
    """The share of ``total`` (spread over ``units`` units) that units ``[start, start+count)``
    carry; consecutive shares always sum exactly to ``total``.
    """
    if total < 0:
        raise ValueError(f"cannot share a negative total ({total})")
    if units <= 0:
        raise ValueError("a line has at least one unit")
    if start < 0 or count < 0 or start + count > units:
        raise ValueError(f"units [{start}, {start + count}) are outside the line's {units} unit(s)")
    return total * (start + count) // units - total * start // units


def basis_points(percent: Decimal) -> int:
    """A percentage (0-100, at most two decimal places) as whole basis points."""
    if not isinstance(percent, Decimal) or not percent.is_finite():
        raise ValueError("a percentage must be a finite Decimal, never a float")
    scaled = percent * 100
    if scaled != scaled.to_integral_value() or not 0 <= scaled <= _FULL_BASIS_POINTS:
        raise ValueError(
            f"percentage {percent} must be between 0 and 100 with at most two decimals"
        )
    return int(scaled)


def _percent_of(amount: int, points: int) -> int:
    """``amount x points / 10_000`` rounded half up; never above ``amount`` (points ≤ 100%)."""
    return (2 * amount * points + _FULL_BASIS_POINTS) // (2 * _FULL_BASIS_POINTS)


# --- calculation inputs -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PaidLine:
    """What was paid for one order line; tax and discount are for the whole line."""

    id: LineId
    quantity: int
    unit_price: int
    tax: int = 0
    discount: int = 0


@dataclass(frozen=True, slots=True)
class PaidOrder:
    """What was paid for an order, in minor units of ``currency``."""

    currency: str
    lines: tuple[PaidLine, ...]
    shipping: int = 0
    shipping_tax: int = 0
    order_discount: int = 0
    """A discount on the whole order, spread across lines by their value."""

    def __post_init__(self) -> None:
        ids = [line.id for line in self.lines]
        if len(set(ids)) != len(ids):
            raise ValueError("order line ids must be unique")
        for line in self.lines:
            if line.quantity <= 0:
                raise ValueError(f"order line {line.id}: quantity must be at least 1")
            if min(line.unit_price, line.tax, line.discount) < 0:
                raise ValueError(f"order line {line.id}: amounts must not be negative")
            if line.discount > line.unit_price * line.quantity:
                raise ValueError(f"order line {line.id}: discount exceeds the line's price")
        if min(self.shipping, self.shipping_tax, self.order_discount) < 0:
            raise ValueError("order amounts must not be negative")
        if self.order_discount > sum(self._net_values()):
            raise ValueError("the order discount exceeds the value of the order's lines")

    def _net_values(self) -> list[int]:
        return [line.unit_price * line.quantity - line.discount for line in self.lines]

    @property
    def paid_total(self) -> int:
        """Everything the buyer paid: lines with tax, less discounts, plus shipping."""
        lines = sum(line.unit_price * line.quantity + line.tax for line in self.lines)
        discounts = sum(line.discount for line in self.lines) + self.order_discount
        return lines - discounts + self.shipping + self.shipping_tax

    def allocated(self) -> dict[LineId, _LineTotals]:
        """Each line's totals once the order-level discount and shipping are spread."""
        values = self._net_values()
        order_discounts = allocate(self.order_discount, values)
        net_values = [v - d for v, d in zip(values, order_discounts, strict=True)]
        shipping = allocate(self.shipping, net_values)
        shipping_tax = allocate(self.shipping_tax, net_values)
        return {
            line.id: _LineTotals(
                quantity=line.quantity,
                item=line.unit_price * line.quantity,
                tax=line.tax,
                discount=line.discount + order_discounts[i],
                shipping=shipping[i],
                shipping_tax=shipping_tax[i],
            )
            for i, line in enumerate(self.lines)
        }


@dataclass(frozen=True, slots=True)
class _LineTotals:
    quantity: int
    item: int
    tax: int
    discount: int
    shipping: int
    shipping_tax: int


@dataclass(frozen=True, slots=True)
class RestockingFeeTerms:
    """The policy's restocking fee for a line: a percentage of what was paid for the
    returned units (price and tax, less discounts), capped per line across all refunds."""

    percent: Decimal
    cap: int | None = None
    applies: bool = True
    """False when the fee's condition is not met (e.g. the item was not opened)."""


@dataclass(frozen=True, slots=True)
class LineRefundRequest:
    order_line_id: LineId
    quantity: int
    already_refunded: int = 0
    """Units of this order line refunded before, by any refund of any return."""
    occupied: tuple[tuple[int, int], ...] | None = None
    """The unit positions live refunds of this line hold, as ``(start, count)`` runs.
    When given, this refund takes the lowest free positions (a failed or cancelled refund
    gives its positions back); when None, units ``[0, already_refunded)`` are taken."""
    restocking_fee: RestockingFeeTerms | None = None
    fee_already_charged: int = 0
    """Restocking fee already kept on this line by earlier refunds (counts toward the cap)."""
    keep_percent: Decimal | None = None
    """Keep-the-item offer: the buyer keeps the units and gets this percent of them back."""


# --- calculation result -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RefundLine:
    """One line of a refund: total = item + tax - discount + shipping + shipping_tax
    - restocking_fee. Every part is a non-negative amount in minor units."""

    order_line_id: LineId
    quantity: int
    item: int
    tax: int
    discount: int
    shipping: int
    shipping_tax: int
    restocking_fee: int
    total: int
    keep_percent: Decimal | None = None
    positions: tuple[tuple[int, int], ...] = ()
    """The unit positions of the order line this refund holds, as ``(start, count)`` runs."""


@dataclass(frozen=True, slots=True)
class RefundBreakdown:
    """A refund: total = Σ line totals - return_shipping_deduction, never negative."""

    currency: str
    lines: tuple[RefundLine, ...]
    return_shipping_deduction: int
    total: int

    @property
    def lines_total(self) -> int:
        return sum(line.total for line in self.lines)

    @property
    def total_money(self) -> Money:
        return Money.from_minor(self.total, self.currency)

    def money(self, minor: int) -> Money:
        return Money.from_minor(minor, self.currency)


def compute_refund(
    order: PaidOrder,
    lines: Sequence[LineRefundRequest],
    *,
    refund_outbound_shipping: bool = False,
    return_shipping_deduction: int = 0,
) -> RefundBreakdown:
    """The refund due for ``lines`` of ``order``: never more than was paid for those units,
    and all refunds of a line sum exactly to what was paid for it once every unit is back.

    Outbound shipping (and its tax) is included only when ``refund_outbound_shipping``
    (EU/UK withdrawal, or policy). ``return_shipping_deduction`` is the buyer-paid return
    label, taken once from this refund and never making it negative.
    """
    if return_shipping_deduction < 0:
        raise ValueError("the return shipping deduction must not be negative")
    totals = order.allocated()
    seen: set[LineId] = set()
    result: list[RefundLine] = []
    for request in lines:
        if request.order_line_id in seen:
            raise ValueError(f"order line {request.order_line_id} appears twice in one refund")
        seen.add(request.order_line_id)
        line = totals.get(request.order_line_id)
        if line is None:
            raise ValueError(f"order line {request.order_line_id} is not part of the order")
        result.append(
            _refund_line(request, line, refund_outbound_shipping=refund_outbound_shipping)
        )
    lines_total = sum(line.total for line in result)
    deduction = min(return_shipping_deduction, lines_total)
    total = lines_total - deduction
    assert total >= 0
    assert total == sum(line.total for line in result) - deduction
    return RefundBreakdown(
        currency=order.currency,
        lines=tuple(result),
        return_shipping_deduction=deduction,
        total=total,
    )


def runs(positions: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """Sorted unit positions as ``(start, count)`` runs of consecutive units."""
    found: list[tuple[int, int]] = []
    for position in sorted(positions):
        if found and found[-1][0] + found[-1][1] == position:
            found[-1] = (found[-1][0], found[-1][1] + 1)
        else:
            found.append((position, 1))
    return tuple(found)


def free_positions(
    units: int, count: int, occupied: Sequence[tuple[int, int]]
) -> tuple[tuple[int, int], ...]:
    """The lowest ``count`` unit positions of a line of ``units`` not in ``occupied``."""
    taken: set[int] = set()
    for start, length in occupied:
        if start < 0 or length < 0 or start + length > units:
            raise ValueError(f"units [{start}, {start + length}) are outside the line's {units}")
        span = set(range(start, start + length))
        if span & taken:
            raise ValueError(f"unit positions [{start}, {start + length}) are held twice")
        taken |= span
    free = [p for p in range(units) if p not in taken][:count]
    if len(free) < count:
        raise ValueError(f"cannot refund {count} unit(s) after {len(taken)}; the line has {units}")
    return runs(free)


def _refund_line(
    request: LineRefundRequest, line: _LineTotals, *, refund_outbound_shipping: bool
) -> RefundLine:
    count, units = request.quantity, line.quantity
    if count <= 0:
        raise ValueError(f"order line {request.order_line_id}: refund at least one unit")
    occupied = request.occupied
    if occupied is None:
        occupied = ((0, request.already_refunded),) if request.already_refunded else ()
    try:
        positions = free_positions(units, count, occupied)
    except ValueError as exc:
        raise ValueError(f"order line {request.order_line_id}: {exc}") from None

    def share(total: int) -> int:
        # Each unit position carries a fixed share; shares of all positions sum to total.
        return sum(unit_share(total, units, start, length) for start, length in positions)

    item, tax, discount = share(line.item), share(line.tax), share(line.discount)
    shipping = share(line.shipping) if refund_outbound_shipping else 0
    shipping_tax = share(line.shipping_tax) if refund_outbound_shipping else 0

    fee_terms = request.restocking_fee
    fee_applies = fee_terms is not None and fee_terms.applies
    if request.keep_percent is not None:
        if fee_applies:
            raise ValueError(
                f"order line {request.order_line_id}: no restocking fee when the buyer keeps "
                "the item"
            )
        # Each part is scaled alike, so tax stays in proportion to the price refunded;
        # rounding is monotone, so item - discount stays between 0 and its full value.
        points = basis_points(request.keep_percent)
        item, tax, discount = (_percent_of(v, points) for v in (item, tax, discount))
        shipping, shipping_tax = (_percent_of(v, points) for v in (shipping, shipping_tax))

    fee = 0
    if fee_terms is not None and fee_terms.applies:
        if request.fee_already_charged < 0 or (fee_terms.cap is not None and fee_terms.cap < 0):
            raise ValueError("restocking fee amounts must not be negative")
        fee = _percent_of(item + tax - discount, basis_points(fee_terms.percent))
        if fee_terms.cap is not None:
            fee = min(fee, max(fee_terms.cap - request.fee_already_charged, 0))

    total = item + tax - discount + shipping + shipping_tax - fee
    assert min(item, tax, discount, shipping, shipping_tax, fee) >= 0
    assert 0 <= fee <= item + tax - discount
    assert total >= 0
    return RefundLine(
        order_line_id=request.order_line_id,
        quantity=count,
        item=item,
        tax=tax,
        discount=discount,
        shipping=shipping,
        shipping_tax=shipping_tax,
        restocking_fee=fee,
        total=total,
        keep_percent=request.keep_percent,
        positions=positions,
    )


# --- the policy's terms for a return --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LineTerms:
    """What the policy says about refunding one return line: the only settings the guard
    and the calculation read, typed, so a misspelt setting is an error, not a default."""

    inspection_before_refund: bool = False
    refund_before_receipt: bool = False
    returnless_refund: bool = False
    """The policy refunds this line without the goods (its outcome, not just its setting)."""
    restocking_fee: RestockingFee | None = None
    return_shipping_paid_by: Payer = Payer.SELLER
    refund_outbound_shipping: bool = False

    @classmethod
    def from_settings(cls, settings: Settings, *, returnless: bool) -> LineTerms:
        """``returnless``: the policy's outcome for the line is a returnless refund. The
        setting alone is not enough: it applies only where the item is worth less than
        bringing it back, which the policy's outcome has judged."""
        return cls(
            inspection_before_refund=bool(settings.inspection_before_refund),
            refund_before_receipt=bool(settings.refund_before_receipt),
            returnless_refund=returnless,
            restocking_fee=settings.restocking_fee,
            return_shipping_paid_by=settings.return_shipping_paid_by or Payer.SELLER,
            refund_outbound_shipping=bool(settings.refund_outbound_shipping),
        )

    def fee_terms(self, charge_opened: bool, currency_digits: int) -> RestockingFeeTerms | None:
        """The restocking fee for these units: an `always` fee, or an `opened` one when the
        item came back opened; the cap in minor units, rounded down."""
        fee = self.restocking_fee
        if fee is None or not (charge_opened or fee.applies_to is FeeApplies.ALWAYS):
            return None
        cap = None
        if fee.cap is not None:
            cap = int(fee.cap.scaleb(currency_digits).to_integral_value(rounding="ROUND_DOWN"))
        return RestockingFeeTerms(percent=fee.percent, cap=cap)


@dataclass(frozen=True, slots=True)
class ReturnTerms:
    """The policy's terms for a whole return, built once per refund request."""

    lines: Mapping[LineId, LineTerms]
    """By return line id."""
    source: str
    """Which decision or policy version they come from, for messages and events."""

    def line(self, line_id: LineId) -> LineTerms:
        # A line the policy never saw (none today) gets the strictest terms.
        return self.lines.get(line_id, LineTerms(inspection_before_refund=True))

    @property
    def inspection_before_refund(self) -> bool:
        return any(t.inspection_before_refund for t in self.lines.values())

    @property
    def refund_before_receipt(self) -> bool:
        return any(t.refund_before_receipt for t in self.lines.values())

    @property
    def returnless_refund(self) -> bool:
        return bool(self.lines) and all(t.returnless_refund for t in self.lines.values())

    @property
    def first(self) -> LineTerms:
        """Return-level settings (outbound shipping, who pays the label): the policy sets
        them alike on every line of a return, so the first line's stand for it."""
        return next(iter(self.lines.values()), LineTerms())


# --- the refund guard ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Override:
    """A deliberate, recorded decision to refund before the goods are received."""

    role: str
    reason: str


class OfferKind:
    KEEP = "keep_partial_refund"
    COUPON = "coupon"
    REPLACEMENT = "replacement"


@dataclass(frozen=True, slots=True)
class AcceptedOffer:
    """An alternative the buyer accepted instead of returning the goods: it bounds the
    refund (a keep-the-item offer of N % allows at most N %; a coupon or a replacement no
    cash) unless a finance/admin override with a written reason says otherwise."""

    kind: str
    percent: Decimal | None = None
    amount: int | None = None
    """A keep-the-item offer stated as an amount, in minor units of the return's currency."""


@dataclass(frozen=True, slots=True)
class HighValue:
    """The return's value against the policy's high-value threshold, both in ``currency``
    (the organization's base currency, or the return's own when the threshold is in it)."""

    value: int
    threshold: int
    currency: str
    unknown: str | None = None
    """Why the value could not be compared (no exchange rate): then it counts as high."""

    @property
    def above(self) -> bool:
        return self.unknown is not None or self.value >= self.threshold

    def describe(self) -> str:
        if self.unknown is not None:
            return self.unknown
        value = Money.from_minor(self.value, self.currency)
        threshold = Money.from_minor(self.threshold, self.currency)
        return f"the return is worth {value}, at or above the high-value threshold of {threshold}"


@dataclass(frozen=True, slots=True)
class RefundState:
    """What the guard knows about an order and one of its returns, in ``currency``.

    Approved (not yet received) units are refundable only when the policy explicitly
    allows it and does not also require receipt (the stricter setting wins), or when a
    valid override is given; never for a watchlisted buyer or a high-value return, and
    never where inspection is required.

    ``refunded_or_pending`` covers every refund of the order in this currency, across all
    its returns, including refunds not yet confirmed by the payment provider.
    """

    currency: str
    captured: int
    refunded_or_pending: int
    lines: Mapping[LineId, LineQuantities]
    inspection_required: bool = True
    receipt_required: bool = True
    refund_before_receipt_allowed: bool = False
    """The policy explicitly allows refunding approved units (returnless, low value)."""
    watchlisted: bool = False
    above_high_value: bool = False
    override: Override | None = None
    high_value: HighValue | None = None
    """The numbers behind ``above_high_value``, for the refusal's message."""
    accepted_offer: AcceptedOffer | None = None
    return_refunded: int = 0
    """What live refunds of this return already hold (for an offer stated as an amount)."""


@dataclass(frozen=True, slots=True)
class RequestedRefund:
    quantities: Mapping[LineId, int]
    total: int
    keep_percent: Decimal | None = None

    @classmethod
    def from_breakdown(
        cls, breakdown: RefundBreakdown, keep_percent: Decimal | None = None
    ) -> RequestedRefund:
        return cls(
            quantities={line.order_line_id: line.quantity for line in breakdown.lines},
            total=breakdown.total,
            keep_percent=keep_percent,
        )


@dataclass(frozen=True, slots=True)
class Violation:
    """Why a refund is refused: ``code`` is stable; ``numbers`` are minor units or units."""

    code: str
    invariant: int
    status: int
    message: str
    numbers: dict[str, int] = field(default_factory=dict)
    order_line_id: LineId | None = None


def override_problems(override: Override | None) -> list[Violation]:
    """What is wrong with an override, if anything (none when there is no override)."""
    if override is None:
        return []
    problems = []
    if override.role not in OVERRIDE_ROLES:
        problems.append(
            Violation(
                code="override_role_not_allowed",
                invariant=2,
                status=422,
                message=(
                    f"role {override.role!r} cannot override refund-before-receipt; "
                    f"only {', '.join(sorted(OVERRIDE_ROLES))} can"
                ),
            )
        )
    if not override.reason.strip():
        problems.append(
            Violation(
                code="override_reason_required",
                invariant=2,
                status=422,
                message="an override of refund-before-receipt needs a written reason",
            )
        )
    return problems


def refundable_quantity(state: RefundState, line: LineQuantities) -> int:
    """Units of the line that may be refunded in total (refunded ones included)."""
    if state.inspection_required or state.watchlisted or state.above_high_value:
        return line.passed
    override_ok = state.override is not None and not override_problems(state.override)
    if (state.refund_before_receipt_allowed and not state.receipt_required) or override_ok:
        return line.approved
    return line.received


def check_refund(state: RefundState, request: RequestedRefund) -> list[Violation]:
    """Every money-safety invariant (DESIGN.md 1-3) the requested refund would break."""
    if request.total < 0 or state.captured < 0 or state.refunded_or_pending < 0:
        raise ValueError("refund amounts must not be negative")
    if any(qty <= 0 for qty in request.quantities.values()):
        raise ValueError("each refunded line needs at least one unit")

    def fmt(minor: int) -> str:
        return str(Money.from_minor(minor, state.currency))

    violations = override_problems(state.override)

    available = max(state.captured - state.refunded_or_pending, 0)
    if request.total > available:
        violations.append(
            Violation(
                code="exceeds_captured",
                invariant=1,
                status=409,
                message=(
                    f"refund of {fmt(request.total)} exceeds what is left of the captured "
                    f"{fmt(state.captured)}: {fmt(state.refunded_or_pending)} already refunded "
                    f"or pending, {fmt(available)} available"
                ),
                numbers={
                    "requested": request.total,
                    "captured": state.captured,
                    "refunded_or_pending": state.refunded_or_pending,
                    "available": available,
                },
            )
        )

    for line_id, qty in request.quantities.items():
        violations.extend(_line_violations(state, line_id, qty))
    # After the goods' rules: a unit that may never be paid yet is refused for that first.
    violations.extend(_offer_violations(state, request))
    return violations


OFFER_CODES = frozenset({"accepted_offer_no_cash", "exceeds_accepted_offer"})
"""Violations of an accepted offer's bound: they need the refund's amount to be named."""


def _offer_violations(state: RefundState, request: RequestedRefund) -> list[Violation]:
    """An accepted alternative bounds the refund, unless a valid override lifts it."""
    offer = state.accepted_offer
    if offer is None or (state.override is not None and not override_problems(state.override)):
        return []

    def fmt(minor: int) -> str:
        return str(Money.from_minor(minor, state.currency))

    if offer.kind != OfferKind.KEEP:
        return [
            Violation(
                code="accepted_offer_no_cash",
                invariant=3,
                status=409,
                message=(
                    f"the buyer accepted a {offer.kind} instead of a refund: no cash refund "
                    "without a finance/admin override with a written reason"
                ),
                numbers={"requested": request.total, "allowed": 0},
            )
        ]
    if offer.percent is not None:
        allowed = basis_points(offer.percent)
        asked = (
            _FULL_BASIS_POINTS
            if request.keep_percent is None
            else basis_points(request.keep_percent)
        )
        if asked > allowed:
            return [
                Violation(
                    code="exceeds_accepted_offer",
                    invariant=3,
                    status=409,
                    message=(
                        f"the buyer accepted to keep the item for {offer.percent} % of its "
                        f"value; {Decimal(asked) / 100} % was asked (send keep_percent of at "
                        f"most {offer.percent})"
                    ),
                    numbers={"requested_basis_points": asked, "allowed_basis_points": allowed},
                )
            ]
    if offer.amount is not None and state.return_refunded + request.total > offer.amount:
        left = max(offer.amount - state.return_refunded, 0)
        return [
            Violation(
                code="exceeds_accepted_offer",
                invariant=3,
                status=409,
                message=(
                    f"the buyer accepted to keep the item for {fmt(offer.amount)}; "
                    f"{fmt(request.total)} asked on top of {fmt(state.return_refunded)} "
                    f"already refunded leaves {fmt(left)}"
                ),
                numbers={
                    "requested": request.total,
                    "already_refunded": state.return_refunded,
                    "allowed": left,
                },
            )
        ]
    return []


def _line_violations(state: RefundState, line_id: LineId, qty: int) -> list[Violation]:
    line = state.lines.get(line_id)
    if line is None:
        line = LineQuantities(requested=0)
    wanted = line.refunded + qty
    numbers = {
        "requested": qty,
        "already_refunded": line.refunded,
        "approved": line.approved,
        "received": line.received,
        "passed": line.passed,
    }

    def violation(code: str, invariant: int, message: str) -> Violation:
        return Violation(
            code=code,
            invariant=invariant,
            status=409,
            message=f"line {line_id}: {message}",
            numbers={**numbers, "refundable": refundable_quantity(state, line)},
            order_line_id=line_id,
        )

    sums = f"{line.refunded} already refunded + {qty} requested = {wanted}"
    if wanted > line.approved:
        return [
            violation(
                "exceeds_refundable_quantity", 2, f"{sums} exceeds the {line.approved} approved"
            )
        ]
    found = []
    if state.watchlisted and wanted > line.passed:
        found.append(
            violation(
                "watchlisted_needs_inspection",
                3,
                f"the buyer is on the watchlist: {sums} exceeds the {line.passed} that passed "
                "inspection",
            )
        )
    if state.above_high_value and wanted > line.passed:
        why = state.high_value.describe() if state.high_value else "the return is high-value"
        found.append(
            violation(
                "high_value_needs_inspection",
                3,
                f"{why}: {sums} exceeds the {line.passed} that passed inspection",
            )
        )
        if state.high_value is not None:
            found[-1].numbers.update(
                return_value=state.high_value.value, high_value_threshold=state.high_value.threshold
            )
    if found:
        return found
    if state.inspection_required and wanted > line.passed:
        return [
            violation(
                "exceeds_refundable_quantity",
                2,
                f"inspection is required: {sums} exceeds the {line.passed} that passed",
            )
        ]
    if wanted > refundable_quantity(state, line):
        return [
            violation(
                "refund_before_receipt_not_allowed",
                2,
                f"{sums} exceeds the {line.received} received, and neither the policy nor a "
                "finance/admin override with a written reason allows refund before receipt",
            )
        ]
    return []
