"""The cost ledger's rules: entry kinds and their signs, residual value by disposition,
currency conversion, the Wilson interval, the return-risk reserve and money-at-risk ageing.

Pure: no I/O, no framework. Amounts are ``int`` minor units of their currency; rates,
percentages and probabilities are ``Decimal``. Floats never enter.

Signs. Every entry's ``amount_minor`` is signed from the seller's point of view: money
that leaves (a refund, a label, a partner fee) is negative, money that comes back (a fee
kept, a claim paid, goods back in stock) is positive. Users always type positive amounts;
the kind decides the sign (:func:`signed_amount`). A correction is a reversing entry of the
same kind with the opposite amount, so every total nets the mistake out exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, localcontext
from enum import StrEnum

from returnguard.domain.refunds import allocate, unit_share
from returnguard.kit.money import minor_digits


class EntryKind(StrEnum):
    REFUND_PAID = "refund_paid"
    """Gross value refunded for a line (line total + restocking fee): negative."""
    RESTOCKING_FEE_KEPT = "restocking_fee_kept"
    """The restocking fee withheld from that refund: positive."""
    RETURN_LABEL = "return_label"
    """A return label the seller paid for: negative."""
    RETURN_LABEL_RECOVERED = "return_label_recovered"
    """A seller-bought label deducted from the buyer's refund: positive."""
    OUTBOUND_SHIPPING_UNRECOVERED = "outbound_shipping_unrecovered"
    """What shipping the goods out cost and will not come back: negative."""
    HANDLING_FEE = "handling_fee"
    """Receiving and handling by the seller's warehouse or a returns partner: negative."""
    DUTIES_UNRECOVERED = "duties_unrecovered"
    """Import duties and taxes paid that cannot be reclaimed: negative."""
    RESIDUAL_VALUE = "residual_value"
    """What the returned goods are still worth after their disposition: positive."""
    CLAIM_REIMBURSED = "claim_reimbursed"
    """A marketplace, carrier or chargeback claim won: positive (has a ``source``)."""
    OTHER_COST = "other_cost"
    """Any other cost of a return (an adjustment): negative."""
    OTHER_RECOVERY = "other_recovery"
    """Any other money recovered on a return (an adjustment): positive."""


class Category(StrEnum):
    """Which net-profit column an entry counts in."""

    REFUND = "refunds"
    COST = "return_costs"
    RECOVERY = "recoveries"


CATEGORY: Mapping[EntryKind, Category] = {
    EntryKind.REFUND_PAID: Category.REFUND,
    EntryKind.RESTOCKING_FEE_KEPT: Category.RECOVERY,
    EntryKind.RETURN_LABEL: Category.COST,
    EntryKind.RETURN_LABEL_RECOVERED: Category.RECOVERY,
    EntryKind.OUTBOUND_SHIPPING_UNRECOVERED: Category.COST,
    EntryKind.HANDLING_FEE: Category.COST,
    EntryKind.DUTIES_UNRECOVERED: Category.COST,
    EntryKind.RESIDUAL_VALUE: Category.RECOVERY,
    EntryKind.CLAIM_REIMBURSED: Category.RECOVERY,
    EntryKind.OTHER_COST: Category.COST,
    EntryKind.OTHER_RECOVERY: Category.RECOVERY,
}

SIGN: Mapping[EntryKind, int] = {
    kind: (1 if category is Category.RECOVERY else -1) for kind, category in CATEGORY.items()
}

AUTOMATIC_KINDS = frozenset(
    {EntryKind.REFUND_PAID, EntryKind.RESTOCKING_FEE_KEPT, EntryKind.RETURN_LABEL_RECOVERED}
)
"""Booked only from a refund that succeeded: never typed in by hand."""
MANUAL_KINDS = frozenset(EntryKind) - AUTOMATIC_KINDS


class ClaimSource(StrEnum):
    MARKETPLACE = "marketplace"
    CARRIER = "carrier"
    CHARGEBACK = "chargeback"


class LabelPayer(StrEnum):
    SELLER = "seller"
    BUYER = "buyer"
    MARKETPLACE = "marketplace"


def signed_amount(kind: EntryKind, amount_minor: int) -> int:
    """The stored amount for a positive amount of ``kind``: costs and refunds negative."""
    if amount_minor < 0:
        raise ValueError("enter a positive amount; the kind decides the sign")
    return SIGN[kind] * amount_minor


# --- residual value by disposition --------------------------------------------------------

RESIDUAL_PERCENT: Mapping[str, Decimal] = {
    # Back on the shelf: worth what it cost.
    "restock": Decimal(100),
    # Sold again after work or as "like new": part of the cost is gone.
    "refurbish": Decimal(80),
    "relabel": Decimal(95),
    # The supplier credits the unit cost back.
    "return_to_supplier": Decimal(100),
    # A liquidator buys a pallet at a fraction of cost.
    "liquidate": Decimal(20),
    "dispose": Decimal(0),
}
"""Default share of the unit cost recovered per disposition, in percent."""


def convert(amount_minor: int, rate: Decimal, from_currency: str, to_currency: str) -> int:
    """``amount_minor`` of ``from_currency`` in minor units of ``to_currency`` at ``rate``
    (units of ``to`` per unit of ``from``), rounded half up (away from zero on a tie, so a
    reversal converts to exactly the opposite of what it reverses)."""
    if from_currency == to_currency:
        return amount_minor
    scale = minor_digits(to_currency) - minor_digits(from_currency)
    exact = (Decimal(amount_minor) * rate).scaleb(scale)
    return int(exact.to_integral_value(rounding=ROUND_HALF_UP))


def residual_value(
    unit_cost_minor: int,
    units: int,
    disposition: str,
    *,
    percent: Decimal | None = None,
    rate: Decimal = Decimal(1),
    cost_currency: str = "EUR",
    currency: str = "EUR",
) -> int:
    """What ``units`` returned units are still worth, in minor units of ``currency``.

    ``unit cost x units x percent / 100 x rate``, rounded once, half up. ``percent``
    overrides the disposition's default (:data:`RESIDUAL_PERCENT`).
    """
    if unit_cost_minor < 0 or units < 0:
        raise ValueError("unit cost and units must not be negative")
    if percent is None:
        if disposition not in RESIDUAL_PERCENT:
            raise ValueError(f"unknown disposition {disposition!r}")
        percent = RESIDUAL_PERCENT[disposition]
    if not percent.is_finite() or not Decimal(0) <= percent <= Decimal(100):
        raise ValueError("percent must be between 0 and 100")
    scale = minor_digits(currency) - minor_digits(cost_currency)
    exact = (Decimal(unit_cost_minor) * units * percent / 100 * rate).scaleb(scale)
    return int(exact.to_integral_value(rounding=ROUND_HALF_UP))


# --- entries booked from a refund ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RefundedLine:
    """One line of a refund as the refund guard computed it (minor units)."""

    order_line_id: str
    quantity: int
    total: int
    """What the buyer gets for the line: item + tax - discount + shipping - fee."""
    restocking_fee: int = 0


@dataclass(frozen=True, slots=True)
class PlannedEntry:
    kind: EntryKind
    amount_minor: int
    order_line_id: str | None = None


def refund_entries(lines: Sequence[RefundedLine], label_deduction: int) -> list[PlannedEntry]:
    """The entries a succeeded refund books; they sum to minus the amount paid out.

    Per line: ``refund_paid`` of the gross (total + fee) and ``restocking_fee_kept`` of the
    fee; once per refund: ``return_label_recovered`` of the label deducted from it.
    """
    planned: list[PlannedEntry] = []
    for line in lines:
        if line.total < 0 or line.restocking_fee < 0:
            raise ValueError("refund line amounts must not be negative")
        gross = line.total + line.restocking_fee
        if gross:
            planned.append(
                PlannedEntry(
                    EntryKind.REFUND_PAID,
                    signed_amount(EntryKind.REFUND_PAID, gross),
                    line.order_line_id,
                )
            )
        if line.restocking_fee:
            planned.append(
                PlannedEntry(
                    EntryKind.RESTOCKING_FEE_KEPT,
                    signed_amount(EntryKind.RESTOCKING_FEE_KEPT, line.restocking_fee),
                    line.order_line_id,
                )
            )
    if label_deduction:
        planned.append(
            PlannedEntry(
                EntryKind.RETURN_LABEL_RECOVERED,
                signed_amount(EntryKind.RETURN_LABEL_RECOVERED, label_deduction),
            )
        )
    return planned


# --- net profit figures -------------------------------------------------------------------


@dataclass(slots=True)
class Figures:
    """One row of the net-profit report, in minor units of the reporting currency.

    Refunds and return costs are shown as positive amounts (what went out); the net is
    ``revenue - cost_of_goods - refunds - return_costs + recoveries``.
    """

    revenue: int = 0
    cost_of_goods: int = 0
    refunds: int = 0
    return_costs: int = 0
    recoveries: int = 0

    @property
    def net(self) -> int:
        return (
            self.revenue - self.cost_of_goods - self.refunds - self.return_costs + self.recoveries
        )

    def add_entry(self, kind: EntryKind, signed_minor: int) -> None:
        category = CATEGORY[kind]
        if category is Category.REFUND:
            self.refunds -= signed_minor
        elif category is Category.COST:
            self.return_costs -= signed_minor
        else:
            self.recoveries += signed_minor

    def add(self, other: Figures) -> None:
        self.revenue += other.revenue
        self.cost_of_goods += other.cost_of_goods
        self.refunds += other.refunds
        self.return_costs += other.return_costs
        self.recoveries += other.recoveries


def split_signed(total: int, weights: Sequence[int]) -> list[int]:
    """:func:`allocate` for a signed total: the parts carry the total's sign."""
    parts = allocate(abs(total), [max(w, 0) for w in weights])
    return parts if total >= 0 else [-p for p in parts]


# --- Wilson score interval and the reserve ------------------------------------------------

Z_95 = Decimal("1.96")
RATE_PLACES = Decimal("0.000001")


def wilson(k: int, n: int, z: Decimal = Z_95) -> tuple[Decimal, Decimal]:
    """Wilson score interval for ``k`` successes in ``n`` trials, in Decimal.

    ``(p + z²/2n ± z·√(p(1-p)/n + z²/4n²)) / (1 + z²/n)`` with ``p = k/n``. No trials
    means nothing is known: ``(0, 1)``.
    """
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return Decimal(0), Decimal(1)
    with localcontext() as ctx:
        ctx.prec = 40
        p = Decimal(k) / n
        z2 = z * z
        centre = p + z2 / (2 * n)
        margin = z * (p * (1 - p) / n + z2 / (4 * n * n)).sqrt()
        denominator = 1 + z2 / n
        low = (centre - margin) / denominator
        high = (centre + margin) / denominator
    # Exactly 0 and 1 at the ends (the formula gives them; rounding may miss by 1e-40).
    if k == 0:
        low = Decimal(0)
    if k == n:
        high = Decimal(1)
    return max(low, Decimal(0)), min(high, Decimal(1))


def loss_per_return(ledger_sum_minor: int, returned_units: int) -> int:
    """Expected net loss per returned unit: minus the ledger's sum over those returns, per
    unit, rounded half up; never below zero (returns that made money reserve nothing)."""
    if returned_units <= 0:
        return 0
    loss = Decimal(-ledger_sum_minor) / returned_units
    return max(int(loss.to_integral_value(rounding=ROUND_HALF_UP)), 0)


def reserve_per_unit(return_rate: Decimal, loss_minor: int) -> int:
    """Money to hold per unit sold: return rate x loss per return, rounded half up."""
    if loss_minor < 0 or return_rate < 0:
        raise ValueError("rate and loss must not be negative")
    return int((return_rate * loss_minor).to_integral_value(rounding=ROUND_HALF_UP))


# --- money at risk ------------------------------------------------------------------------

AGE_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("0-7", 0, 7),
    ("8-14", 8, 14),
    ("15-30", 15, 30),
    ("31-60", 31, 60),
    (">60", 61, None),
)


def age_bucket(days: int) -> str:
    """The bucket label for a refund paid ``days`` days ago."""
    if days < 0:
        raise ValueError("a refund cannot be paid in the future")
    for label, low, high in AGE_BUCKETS:
        if low <= days and (high is None or days <= high):
            return label
    raise AssertionError("buckets cover every age")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class PaidUnits:
    """Units of one return line paid back by one succeeded refund."""

    key: str
    settled_on: date
    quantity: int
    total: int


@dataclass(frozen=True, slots=True)
class Exposure:
    key: str
    settled_on: date
    not_received_units: int
    not_received: int
    not_inspected_units: int
    not_inspected: int


def exposures(paid: Iterable[PaidUnits], received: int, inspected: int) -> list[Exposure]:
    """What refunds on one return line paid for goods not (yet) received or inspected.

    Goods received cover the earliest refunds first (the oldest money is the first to be
    justified); within a refund the amount per unit is the line total split exactly
    (:func:`unit_share`), so the parts of a refund always sum to its total.
    """
    if not 0 <= inspected <= received:
        raise ValueError("need 0 <= inspected <= received")
    found: list[Exposure] = []
    start = 0
    for part in sorted(paid, key=lambda p: (p.settled_on, p.key)):
        q = part.quantity
        covered = min(max(received - start, 0), q)
        checked = min(max(inspected - start, 0), q)
        exposure = Exposure(
            key=part.key,
            settled_on=part.settled_on,
            not_received_units=q - covered,
            not_received=unit_share(part.total, q, covered, q - covered) if q else 0,
            not_inspected_units=covered - checked,
            not_inspected=unit_share(part.total, q, checked, covered - checked) if q else 0,
        )
        if exposure.not_received_units or exposure.not_inspected_units:
            found.append(exposure)
        start += q
    return found
