from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from returnguard.domain.refunds import (
    LineRefundRequest,
    PaidLine,
    PaidOrder,
    RefundBreakdown,
    RestockingFeeTerms,
    allocate,
    basis_points,
    compute_refund,
    unit_share,
)
from returnguard.kit.money import Money


def _sums_up(breakdown: RefundBreakdown) -> None:
    for line in breakdown.lines:
        parts = (
            line.item
            + line.tax
            - line.discount
            + line.shipping
            + line.shipping_tax
            - line.restocking_fee
        )
        assert parts == line.total
    assert breakdown.lines_total - breakdown.return_shipping_deduction == breakdown.total


# --- allocate -----------------------------------------------------------------------------


@given(
    st.integers(min_value=0, max_value=10**12),
    st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=20),
)
def test_allocation_sums_exactly_and_is_proportional_within_one_unit(
    total: int, weights: list[int]
) -> None:
    parts = allocate(total, weights)
    assert sum(parts) == total
    assert all(p >= 0 for p in parts)
    effective = weights if any(weights) else [1] * len(weights)
    weight_sum = sum(effective)
    for part, weight in zip(parts, effective, strict=True):
        # |part - total·w/W| < 1, in integers
        assert abs(part * weight_sum - total * weight) < weight_sum


def test_allocation_ties_go_to_the_earlier_line() -> None:
    assert allocate(1, [1, 1, 1]) == [1, 0, 0]
    assert allocate(2, [1, 1, 1]) == [1, 1, 0]
    assert allocate(100, [1, 1, 1]) == [34, 33, 33]


def test_allocation_with_all_zero_weights_splits_evenly() -> None:
    assert allocate(10, [0, 0, 0]) == [4, 3, 3]
    assert allocate(0, []) == []


@pytest.mark.parametrize(("total", "weights"), [(-1, [1]), (5, [1, -1]), (5, [])])
def test_allocation_refuses_negative_or_impossible_input(total: int, weights: list[int]) -> None:
    with pytest.raises(ValueError):
        allocate(total, weights)


# --- per-unit shares ----------------------------------------------------------------------


@given(
    st.integers(min_value=0, max_value=10**9),
    st.integers(min_value=1, max_value=50).flatmap(
        lambda n: st.tuples(st.just(n), st.lists(st.integers(1, n), min_size=1, max_size=n))
    ),
)
def test_unit_shares_of_consecutive_refunds_sum_exactly_to_the_line_total(
    total: int, units_and_steps: tuple[int, list[int]]
) -> None:
    units, steps = units_and_steps
    start, blocks = 0, []
    for step in steps:
        count = min(step, units - start)
        if count:
            blocks.append((unit_share(total, units, start, count), count))
            start += count
    if start < units:
        blocks.append((unit_share(total, units, start, units - start), units - start))
    assert sum(share for share, _ in blocks) == total
    for share, count in blocks:  # each share within one unit of its exact proportion
        assert abs(share * units - total * count) < units


def test_unit_share_refuses_units_outside_the_line() -> None:
    with pytest.raises(ValueError):
        unit_share(100, 3, 2, 2)


# --- compute_refund -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "unit_price", "tax", "discount", "shipping", "shipping_tax"),
    [
        ("JPY", 3333, 1000, 100, 700, 70),  # 0 digits
        ("EUR", 1999, 1000, 1, 499, 95),  # 2 digits
        ("KWD", 12345, 2000, 7, 1001, 0),  # 3 digits
    ],
)
def test_partial_refunds_of_one_line_sum_exactly_to_the_line_total(
    currency: str, unit_price: int, tax: int, discount: int, shipping: int, shipping_tax: int
) -> None:
    order = PaidOrder(
        currency=currency,
        lines=(PaidLine("a", quantity=3, unit_price=unit_price, tax=tax, discount=discount),),
        shipping=shipping,
        shipping_tax=shipping_tax,
    )
    refunds = []
    for already, qty in [(0, 1), (1, 1), (2, 1)]:
        refunds.append(
            compute_refund(
                order,
                [LineRefundRequest("a", qty, already_refunded=already)],
                refund_outbound_shipping=True,
            )
        )
    for refund in refunds:
        _sums_up(refund)
    paid = Money.from_minor(order.paid_total, currency)
    refunded = sum((r.total_money for r in refunds), Money.zero(currency))
    assert refunded == paid
    assert sum(r.lines[0].tax for r in refunds) == tax
    assert sum(r.lines[0].discount for r in refunds) == discount
    assert sum(r.lines[0].shipping for r in refunds) == shipping


def test_order_discount_and_shipping_allocation_add_up_exactly() -> None:
    order = PaidOrder(
        currency="EUR",
        lines=(
            PaidLine("a", quantity=1, unit_price=1000, tax=190),
            PaidLine("b", quantity=2, unit_price=333, tax=127),
            PaidLine("c", quantity=7, unit_price=101, discount=7),
        ),
        shipping=499,
        shipping_tax=95,
        order_discount=101,
    )
    refund = compute_refund(
        order,
        [
            LineRefundRequest("a", 1),
            LineRefundRequest("b", 2),
            LineRefundRequest("c", 7),
        ],
        refund_outbound_shipping=True,
    )
    _sums_up(refund)
    assert sum(line.shipping for line in refund.lines) == 499
    assert sum(line.shipping_tax for line in refund.lines) == 95
    assert sum(line.discount for line in refund.lines) == 101 + 7
    assert refund.total == order.paid_total
    # the biggest line carries the biggest share of the order discount
    assert refund.lines[0].discount == max(line.discount for line in refund.lines)


def test_outbound_shipping_is_refunded_only_when_asked() -> None:
    order = PaidOrder("EUR", (PaidLine("a", 1, 1000),), shipping=500, shipping_tax=95)
    without = compute_refund(order, [LineRefundRequest("a", 1)])
    with_shipping = compute_refund(
        order, [LineRefundRequest("a", 1)], refund_outbound_shipping=True
    )
    assert without.total == 1000
    assert with_shipping.total == 1595


def test_restocking_fee_is_a_percent_of_what_was_paid_up_to_its_cap() -> None:
    order = PaidOrder("EUR", (PaidLine("a", quantity=4, unit_price=2500, tax=2000),))
    fee = RestockingFeeTerms(percent=Decimal("10"), cap=700)
    first = compute_refund(order, [LineRefundRequest("a", 2, restocking_fee=fee)])
    assert first.lines[0].restocking_fee == 600  # 10% of 5000 + 1000 tax
    assert first.total == 6000 - 600
    # the cap counts across refunds of the line: only 100 left of it
    second = compute_refund(
        order,
        [
            LineRefundRequest(
                "a", 2, already_refunded=2, restocking_fee=fee, fee_already_charged=600
            )
        ],
    )
    assert second.lines[0].restocking_fee == 100
    _sums_up(first)
    _sums_up(second)


def test_restocking_fee_rounds_half_up_in_minor_units() -> None:
    order = PaidOrder("JPY", (PaidLine("a", quantity=1, unit_price=1005),))
    fee = RestockingFeeTerms(percent=Decimal("10"))
    refund = compute_refund(order, [LineRefundRequest("a", 1, restocking_fee=fee)])
    assert refund.lines[0].restocking_fee == 101  # 100.5 → 101
    assert refund.total == 904


def test_restocking_fee_is_never_applied_when_it_does_not_apply() -> None:
    order = PaidOrder("EUR", (PaidLine("a", quantity=1, unit_price=2500, tax=475),))
    fee = RestockingFeeTerms(percent=Decimal("15"), cap=None, applies=False)
    refund = compute_refund(order, [LineRefundRequest("a", 1, restocking_fee=fee)])
    assert refund.lines[0].restocking_fee == 0
    assert refund.total == 2975


def test_buyer_paid_return_label_is_deducted_once_per_refund() -> None:
    order = PaidOrder("EUR", (PaidLine("a", 1, 2000), PaidLine("b", 1, 3000)))
    refund = compute_refund(
        order,
        [LineRefundRequest("a", 1), LineRefundRequest("b", 1)],
        return_shipping_deduction=595,
    )
    assert refund.return_shipping_deduction == 595
    assert refund.total == 5000 - 595
    _sums_up(refund)


def test_refund_total_is_never_negative() -> None:
    order = PaidOrder("EUR", (PaidLine("a", 1, 300),))
    fee = RestockingFeeTerms(percent=Decimal("100"))
    refund = compute_refund(
        order, [LineRefundRequest("a", 1, restocking_fee=fee)], return_shipping_deduction=595
    )
    assert refund.total == 0
    assert refund.return_shipping_deduction == 0
    cheap = compute_refund(
        PaidOrder("EUR", (PaidLine("a", 1, 300),)),
        [LineRefundRequest("a", 1)],
        return_shipping_deduction=595,
    )
    assert cheap.total == 0
    assert cheap.return_shipping_deduction == 300


def test_keep_the_item_refunds_the_offered_percent_of_every_part() -> None:
    order = PaidOrder("EUR", (PaidLine("a", quantity=1, unit_price=4999, tax=950, discount=1),))
    refund = compute_refund(order, [LineRefundRequest("a", 1, keep_percent=Decimal("30"))])
    line = refund.lines[0]
    assert (line.item, line.tax, line.discount) == (1500, 285, 0)  # 1499.7, 285, 0.3
    assert line.total == refund.total == 1785
    assert line.keep_percent == Decimal("30")


def test_keep_the_item_with_a_restocking_fee_is_refused() -> None:
    order = PaidOrder("EUR", (PaidLine("a", 1, 1000),))
    with pytest.raises(ValueError, match="keeps"):
        compute_refund(
            order,
            [
                LineRefundRequest(
                    "a",
                    1,
                    keep_percent=Decimal("20"),
                    restocking_fee=RestockingFeeTerms(Decimal(5)),
                )
            ],
        )


@pytest.mark.parametrize(
    "request_",
    [
        LineRefundRequest("a", 3),  # more units than the line has
        LineRefundRequest("a", 1, already_refunded=2),  # all units already refunded
        LineRefundRequest("a", 0),
        LineRefundRequest("zzz", 1),  # not on the order
    ],
)
def test_refunds_beyond_the_line_are_refused(request_: LineRefundRequest) -> None:
    order = PaidOrder("EUR", (PaidLine("a", 2, 1000),))
    with pytest.raises(ValueError):
        compute_refund(order, [request_])


@pytest.mark.parametrize("percent", [Decimal("100.01"), Decimal("-1"), Decimal("12.345")])
def test_percentages_outside_0_to_100_or_too_precise_are_refused(percent: Decimal) -> None:
    with pytest.raises(ValueError):
        basis_points(percent)


def test_float_percentages_are_refused() -> None:
    with pytest.raises(ValueError, match="never a float"):
        basis_points(12.5)  # type: ignore[arg-type]


# --- property: random sequences of partial refunds ----------------------------------------

_lines = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=6),  # quantity
        st.integers(min_value=0, max_value=100_000),  # unit price
        st.integers(min_value=0, max_value=30_000),  # tax
        st.integers(min_value=0, max_value=100),  # discount, percent of the line's price
    ),
    min_size=1,
    max_size=4,
)


@given(
    lines=_lines,
    shipping=st.integers(min_value=0, max_value=5_000),
    shipping_tax=st.integers(min_value=0, max_value=1_000),
    order_discount_percent=st.integers(min_value=0, max_value=100),
    refund_shipping=st.booleans(),
    data=st.data(),
)
def test_random_partial_refunds_never_exceed_what_was_paid(
    lines: list[tuple[int, int, int, int]],
    shipping: int,
    shipping_tax: int,
    order_discount_percent: int,
    refund_shipping: bool,
    data: st.DataObject,
) -> None:
    paid_lines = tuple(
        PaidLine(str(i), qty, price, tax, price * qty * pct // 100)
        for i, (qty, price, tax, pct) in enumerate(lines)
    )
    net = sum(line.unit_price * line.quantity - line.discount for line in paid_lines)
    order = PaidOrder(
        "EUR",
        paid_lines,
        shipping=shipping,
        shipping_tax=shipping_tax,
        order_discount=net * order_discount_percent // 100,
    )
    full = compute_refund(
        order,
        [LineRefundRequest(line.id, line.quantity) for line in paid_lines],
        refund_outbound_shipping=True,
    )
    paid_per_line = {line.order_line_id: line.total for line in full.lines}
    assert full.total == order.paid_total

    refunded_units = {line.id: 0 for line in paid_lines}
    refunded_money = dict.fromkeys(refunded_units, 0)
    refunded_total = 0
    while any(refunded_units[line.id] < line.quantity for line in paid_lines):
        open_lines = [line for line in paid_lines if refunded_units[line.id] < line.quantity]
        chosen = data.draw(st.lists(st.sampled_from(open_lines), min_size=1, unique=True))
        requests = []
        for line in chosen:
            left = line.quantity - refunded_units[line.id]
            qty = data.draw(st.integers(min_value=1, max_value=left))
            fee = data.draw(
                st.none()
                | st.builds(
                    RestockingFeeTerms,
                    percent=st.integers(0, 10_000).map(lambda bp: Decimal(bp) / 100),
                    cap=st.none() | st.integers(0, 10_000),
                    applies=st.booleans(),
                )
            )
            keep = data.draw(st.none() | st.integers(0, 100).map(Decimal))
            if keep is not None:
                fee = None
            requests.append(
                LineRefundRequest(
                    line.id,
                    qty,
                    already_refunded=refunded_units[line.id],
                    restocking_fee=fee,
                    keep_percent=keep,
                )
            )
        refund = compute_refund(
            order,
            requests,
            refund_outbound_shipping=refund_shipping,
            return_shipping_deduction=data.draw(st.integers(0, 1_000)),
        )
        _sums_up(refund)
        assert refund.total >= 0
        for refund_line in refund.lines:
            assert refund_line.total >= 0
            refunded_units[str(refund_line.order_line_id)] += refund_line.quantity
            refunded_money[str(refund_line.order_line_id)] += refund_line.total
            line_id = refund_line.order_line_id
            assert refunded_money[str(line_id)] <= paid_per_line[line_id]
        refunded_total += refund.total
        assert refunded_total <= order.paid_total


def test_a_freed_position_is_taken_again_with_its_own_share() -> None:
    """2 units, tax 5 for the line: the units carry 2 and 3 cents of it. The unit a
    cancelled refund held (position 0) is the next one refunded, at its own share."""
    from returnguard.domain.refunds import free_positions

    order = PaidOrder("EUR", (PaidLine("a", 2, 1000, tax=5),))
    second = compute_refund(
        order, [LineRefundRequest("a", 1, occupied=((0, 1),))]
    )  # position 0 is held by a live refund
    assert second.lines[0].positions == ((1, 1),) and second.total == 1003
    # The refund holding position 0 was cancelled: only position 1 is still held.
    third = compute_refund(order, [LineRefundRequest("a", 1, occupied=((1, 1),))])
    assert third.lines[0].positions == ((0, 1),) and third.total == 1002
    assert second.total + third.total == order.paid_total
    assert free_positions(5, 3, ((1, 1), (3, 1))) == ((0, 1), (2, 1), (4, 1))
    with pytest.raises(ValueError, match="cannot refund 2 unit"):
        free_positions(2, 2, ((0, 1),))
    with pytest.raises(ValueError, match="held twice"):
        free_positions(3, 1, ((0, 2), (1, 1)))


@given(
    quantity=st.integers(1, 6),
    tax=st.integers(0, 999),
    order_of_refunds=st.permutations(range(6)),
)
def test_positions_refunded_in_any_order_give_back_exactly_what_was_paid(
    quantity: int, tax: int, order_of_refunds: list[int]
) -> None:
    """Refund unit by unit, cancelling every other refund before refunding again: the
    units still held always sum to their positions' shares, and all of them to the line."""
    order = PaidOrder("EUR", (PaidLine("a", quantity, 333, tax=tax, discount=quantity),))
    held: dict[tuple[tuple[int, int], ...], int] = {}
    for step in order_of_refunds[:quantity]:
        occupied = tuple(run for runs in held for run in runs)
        refund = compute_refund(order, [LineRefundRequest("a", 1, occupied=occupied)])
        held[refund.lines[0].positions] = refund.total
        if step % 2 and len(held) < quantity:
            # Cancel it and refund the same unit again: it gets the same share back.
            again = held.pop(refund.lines[0].positions)
            redo = compute_refund(order, [LineRefundRequest("a", 1, occupied=occupied)])
            assert redo.total == again
            held[redo.lines[0].positions] = redo.total
    assert sum(held.values()) == order.paid_total
