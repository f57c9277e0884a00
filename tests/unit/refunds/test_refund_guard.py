from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from returnguard.domain.refunds import (
    LineRefundRequest,
    Override,
    PaidLine,
    PaidOrder,
    RefundState,
    RequestedRefund,
    Violation,
    check_refund,
    compute_refund,
    refundable_quantity,
)
from returnguard.domain.returns import LineQuantities

RECEIVED_NOT_INSPECTED = LineQuantities(requested=3, approved=3, received=3)
APPROVED_ONLY = LineQuantities(requested=3, approved=3)
PASSED = LineQuantities(requested=3, approved=3, received=3, inspected=3, passed=3)


def _state(line: LineQuantities = PASSED, **changes: object) -> RefundState:
    state = RefundState(
        currency="EUR",
        captured=10_000,
        refunded_or_pending=0,
        lines={"a": line},
        inspection_required=False,
        receipt_required=True,
        refund_before_receipt_allowed=False,
    )
    return replace(state, **changes)  # type: ignore[arg-type]


def _codes(violations: list[Violation]) -> list[str]:
    return [v.code for v in violations]


def test_a_refund_within_every_limit_passes() -> None:
    assert check_refund(_state(), RequestedRefund({"a": 3}, 9_000)) == []


def test_refund_never_exceeds_captured_amount() -> None:
    state = _state(refunded_or_pending=7_000)  # other returns of the order
    [violation] = check_refund(state, RequestedRefund({"a": 1}, 3_001))
    assert violation.code == "exceeds_captured"
    assert violation.invariant == 1
    assert violation.status == 409
    assert violation.numbers == {
        "requested": 3_001,
        "captured": 10_000,
        "refunded_or_pending": 7_000,
        "available": 3_000,
    }
    assert "30.01 EUR" in violation.message and "30.00 EUR available" in violation.message
    assert check_refund(state, RequestedRefund({"a": 1}, 3_000)) == []


def test_refund_never_exceeds_the_approved_quantity() -> None:
    line = replace(PASSED, refunded=2)
    [violation] = check_refund(_state(line), RequestedRefund({"a": 2}, 100))
    assert violation.code == "exceeds_refundable_quantity"
    assert violation.order_line_id == "a"
    assert violation.numbers["already_refunded"] == 2
    assert violation.numbers["approved"] == 3


def test_a_line_outside_the_return_has_nothing_refundable() -> None:
    assert _codes(check_refund(_state(), RequestedRefund({"zzz": 1}, 100))) == [
        "exceeds_refundable_quantity"
    ]


def test_where_inspection_is_required_only_passed_units_are_refundable() -> None:
    line = LineQuantities(requested=3, approved=3, received=3, inspected=3, passed=1)
    state = _state(line, inspection_required=True)
    assert refundable_quantity(state, line) == 1
    [violation] = check_refund(state, RequestedRefund({"a": 2}, 100))
    assert violation.code == "exceeds_refundable_quantity"
    assert violation.numbers["refundable"] == 1
    assert check_refund(state, RequestedRefund({"a": 1}, 100)) == []


def test_where_receipt_is_required_unreceived_units_are_not_refunded() -> None:
    line = LineQuantities(requested=3, approved=3, received=1)
    [violation] = check_refund(_state(line), RequestedRefund({"a": 2}, 100))
    assert violation.code == "refund_before_receipt_not_allowed"
    assert violation.numbers["received"] == 1
    assert check_refund(_state(line), RequestedRefund({"a": 1}, 100)) == []


def test_refund_before_receipt_only_where_the_policy_allows_it() -> None:
    allowed = _state(APPROVED_ONLY, receipt_required=False, refund_before_receipt_allowed=True)
    assert check_refund(allowed, RequestedRefund({"a": 3}, 100)) == []
    # not allowing it explicitly is not enough
    silent = _state(APPROVED_ONLY, receipt_required=False)
    assert _codes(check_refund(silent, RequestedRefund({"a": 1}, 100))) == [
        "refund_before_receipt_not_allowed"
    ]
    # a policy that also requires receipt: the stricter setting wins
    both = _state(APPROVED_ONLY, refund_before_receipt_allowed=True)
    assert _codes(check_refund(both, RequestedRefund({"a": 1}, 100))) == [
        "refund_before_receipt_not_allowed"
    ]


@pytest.mark.parametrize("role", ["finance", "admin"])
def test_finance_or_admin_override_with_a_reason_allows_refund_before_receipt(
    role: str,
) -> None:
    state = _state(APPROVED_ONLY, override=Override(role, "parcel lost by our carrier"))
    assert check_refund(state, RequestedRefund({"a": 3}, 100)) == []


def test_override_by_another_role_is_refused() -> None:
    state = _state(APPROVED_ONLY, override=Override("agent", "buyer is upset"))
    assert _codes(check_refund(state, RequestedRefund({"a": 1}, 100))) == [
        "override_role_not_allowed",
        "refund_before_receipt_not_allowed",
    ]


@pytest.mark.parametrize("reason", ["", "   "])
def test_override_without_a_written_reason_is_refused(reason: str) -> None:
    state = _state(APPROVED_ONLY, override=Override("finance", reason))
    violations = check_refund(state, RequestedRefund({"a": 1}, 100))
    assert _codes(violations) == ["override_reason_required", "refund_before_receipt_not_allowed"]
    assert violations[0].status == 422


def test_override_does_not_lift_a_required_inspection() -> None:
    state = _state(
        RECEIVED_NOT_INSPECTED, inspection_required=True, override=Override("admin", "trust")
    )
    assert _codes(check_refund(state, RequestedRefund({"a": 1}, 100))) == [
        "exceeds_refundable_quantity"
    ]


@pytest.mark.parametrize("line", [APPROVED_ONLY, RECEIVED_NOT_INSPECTED])
def test_watchlisted_buyer_needs_a_passed_inspection_even_with_an_override(
    line: LineQuantities,
) -> None:
    state = _state(
        line,
        watchlisted=True,
        receipt_required=False,
        refund_before_receipt_allowed=True,
        override=Override("admin", "long-time customer"),
    )
    [violation] = check_refund(state, RequestedRefund({"a": 1}, 100))
    assert violation.code == "watchlisted_needs_inspection"
    assert violation.invariant == 3
    assert violation.numbers["passed"] == 0
    assert check_refund(replace(state, lines={"a": PASSED}), RequestedRefund({"a": 1}, 100)) == []


@pytest.mark.parametrize("line", [APPROVED_ONLY, RECEIVED_NOT_INSPECTED])
def test_high_value_return_needs_a_passed_inspection_even_with_an_override(
    line: LineQuantities,
) -> None:
    state = _state(
        line,
        above_high_value=True,
        receipt_required=False,
        refund_before_receipt_allowed=True,
        override=Override("finance", "VIP"),
    )
    [violation] = check_refund(state, RequestedRefund({"a": 1}, 100))
    assert violation.code == "high_value_needs_inspection"
    assert violation.invariant == 3
    assert check_refund(replace(state, lines={"a": PASSED}), RequestedRefund({"a": 1}, 100)) == []


def test_watchlisted_and_high_value_are_both_named() -> None:
    state = _state(APPROVED_ONLY, watchlisted=True, above_high_value=True)
    assert _codes(check_refund(state, RequestedRefund({"a": 1}, 100))) == [
        "watchlisted_needs_inspection",
        "high_value_needs_inspection",
    ]


def test_every_violation_is_reported_at_once() -> None:
    state = _state(APPROVED_ONLY, refunded_or_pending=9_950, override=Override("agent", ""))
    assert sorted(_codes(check_refund(state, RequestedRefund({"a": 1}, 100)))) == [
        "exceeds_captured",
        "override_reason_required",
        "override_role_not_allowed",
        "refund_before_receipt_not_allowed",
    ]


def test_a_computed_refund_is_checked_as_it_will_be_paid() -> None:
    order = PaidOrder("EUR", (PaidLine("a", 3, 3000, tax=570),))
    breakdown = compute_refund(order, [LineRefundRequest("a", 3)])
    request = RequestedRefund.from_breakdown(breakdown)
    assert request.total == 9_570
    assert request.quantities == {"a": 3}
    assert check_refund(_state(captured=order.paid_total), request) == []
    assert _codes(check_refund(_state(captured=9_000), request)) == ["exceeds_captured"]


@given(
    captured=st.integers(0, 10**9),
    refunds=st.lists(st.integers(0, 10**8), max_size=30),
)
def test_refunds_the_guard_lets_through_never_exceed_captured(
    captured: int, refunds: list[int]
) -> None:
    paid = 0
    for amount in refunds:
        state = _state(captured=captured, refunded_or_pending=paid)
        if not check_refund(state, RequestedRefund({"a": 1}, amount)):
            paid += amount
    assert paid <= captured
