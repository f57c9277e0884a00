"""The guard's newer inputs, pure: accepted offers bound a refund, high-value returns wait
for inspection, and the policy's terms are typed."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from pydantic import ValidationError

from returnguard.domain.policy.document import FeeApplies, Payer, RestockingFee, Settings
from returnguard.domain.refunds import (
    AcceptedOffer,
    HighValue,
    LineTerms,
    OfferKind,
    Override,
    RefundState,
    RequestedRefund,
    ReturnTerms,
    check_refund,
)
from returnguard.domain.returns import LineQuantities

KEPT = LineQuantities(requested=1, approved=1)  # the buyer keeps the goods
PASSED = LineQuantities(requested=1, approved=1, received=1, inspected=1, passed=1)
FINANCE = Override(role="finance", reason="goodwill")


def _state(line: LineQuantities = KEPT, **changes: object) -> RefundState:
    state = RefundState(
        currency="EUR",
        captured=10_000,
        refunded_or_pending=0,
        lines={"a": line},
        inspection_required=False,
        receipt_required=False,
        refund_before_receipt_allowed=True,
    )
    return replace(state, **changes)  # type: ignore[arg-type]


def _codes(state: RefundState, total: int, keep: str | None = None) -> list[str]:
    request = RequestedRefund({"a": 1}, total, Decimal(keep) if keep else None)
    return [v.code for v in check_refund(state, request)]


def test_a_keep_offer_allows_its_percent_and_no_more() -> None:
    state = _state(accepted_offer=AcceptedOffer(OfferKind.KEEP, percent=Decimal("30")))
    assert _codes(state, 1_200, keep="30") == []
    assert _codes(state, 800, keep="20") == []
    assert _codes(state, 1_240, keep="31") == ["exceeds_accepted_offer"]
    # No keep_percent is a full refund: 100 % of the units.
    [violation] = check_refund(state, RequestedRefund({"a": 1}, 4_000))
    assert violation.numbers == {"requested_basis_points": 10_000, "allowed_basis_points": 3_000}
    assert "30 %" in violation.message and "100 %" in violation.message
    assert _codes(replace(state, override=FINANCE), 4_000) == []


def test_a_keep_offer_stated_as_an_amount_bounds_every_refund_of_the_return() -> None:
    state = _state(accepted_offer=AcceptedOffer(OfferKind.KEEP, amount=1_000), return_refunded=600)
    assert _codes(state, 400, keep="10") == []
    [violation] = check_refund(state, RequestedRefund({"a": 1}, 401, Decimal("10")))
    assert violation.code == "exceeds_accepted_offer"
    assert violation.numbers == {"requested": 401, "already_refunded": 600, "allowed": 400}


@pytest.mark.parametrize("kind", [OfferKind.COUPON, OfferKind.REPLACEMENT])
def test_a_coupon_or_a_replacement_allows_no_cash_without_an_override(kind: str) -> None:
    state = _state(accepted_offer=AcceptedOffer(kind))
    assert _codes(state, 1) == ["accepted_offer_no_cash"]
    assert _codes(replace(state, override=FINANCE), 4_000) == []
    # An agent's override is no override.
    agent = replace(state, override=Override(role="agent", reason="goodwill"))
    assert _codes(agent, 4_000) == ["override_role_not_allowed", "accepted_offer_no_cash"]


def test_high_value_waits_for_a_passed_inspection_override_or_not() -> None:
    high = HighValue(value=30_000, threshold=15_000, currency="EUR")
    state = _state(captured=30_000, above_high_value=high.above, high_value=high, override=FINANCE)
    [violation] = check_refund(state, RequestedRefund({"a": 1}, 30_000))
    assert violation.code == "high_value_needs_inspection" and violation.invariant == 3
    assert "300.00 EUR" in violation.message and "150.00 EUR" in violation.message
    assert violation.numbers["return_value"] == 30_000
    assert violation.numbers["high_value_threshold"] == 15_000
    assert _codes(replace(state, lines={"a": PASSED}), 30_000) == []


def test_the_threshold_is_inclusive_and_an_unknown_value_counts_as_high() -> None:
    assert HighValue(15_000, 15_000, "EUR").above
    assert not HighValue(14_999, 15_000, "EUR").above
    unknown = HighValue(0, 0, "EUR", unknown="no USD->EUR exchange rate")
    assert unknown.above and unknown.describe() == "no USD->EUR exchange rate"


def test_the_goods_rules_are_named_before_the_offer_bound() -> None:
    state = _state(
        watchlisted=True, accepted_offer=AcceptedOffer(OfferKind.COUPON), override=FINANCE
    )
    assert _codes(state, 4_000) == ["watchlisted_needs_inspection"]


def test_terms_are_typed_from_the_policy_settings() -> None:
    fee = RestockingFee(percent=Decimal("10"), cap=Decimal("25.005"), applies_to=FeeApplies.OPENED)
    terms = LineTerms.from_settings(
        Settings(
            inspection_before_refund=True,
            restocking_fee=fee,
            refund_outbound_shipping=True,
            returnless_refund=True,
        ),
        returnless=False,
    )
    # The setting alone gives no returnless refund: the policy's outcome for the line must.
    assert not terms.returnless_refund
    assert terms.inspection_before_refund and terms.refund_outbound_shipping
    assert terms.return_shipping_paid_by is Payer.SELLER
    # An `opened` fee only when the item came back opened; its cap rounds down.
    assert terms.fee_terms(charge_opened=False, currency_digits=2) is None
    charged = terms.fee_terms(charge_opened=True, currency_digits=2)
    assert charged is not None and charged.cap == 2_500 and charged.percent == Decimal("10")
    # A misspelt setting is an error, never a silent default.
    with pytest.raises(ValidationError):
        Settings.model_validate({"inspection_before_refnd": True})


def test_a_line_the_policy_never_saw_gets_the_strictest_terms() -> None:
    terms = ReturnTerms(lines={"a": LineTerms()}, source="test")
    assert terms.line("b").inspection_before_refund
    assert not terms.inspection_before_refund
    assert ReturnTerms(lines={}, source="test").returnless_refund is False
