"""The ledger's pure rules, checked against numbers worked out by hand."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from returnguard.domain.ledger import (
    AUTOMATIC_KINDS,
    CATEGORY,
    MANUAL_KINDS,
    SIGN,
    Category,
    EntryKind,
    Figures,
    PaidUnits,
    RefundedLine,
    age_bucket,
    convert,
    exposures,
    loss_per_return,
    refund_entries,
    reserve_per_unit,
    residual_value,
    signed_amount,
    split_signed,
    wilson,
)


def test_every_kind_has_a_category_and_a_sign() -> None:
    assert set(EntryKind) == set(CATEGORY) == set(SIGN)
    assert set(EntryKind) == AUTOMATIC_KINDS | MANUAL_KINDS
    assert not AUTOMATIC_KINDS & MANUAL_KINDS
    for kind in EntryKind:
        assert SIGN[kind] == (1 if CATEGORY[kind] is Category.RECOVERY else -1)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (EntryKind.REFUND_PAID, -650),
        (EntryKind.RESTOCKING_FEE_KEPT, 650),
        (EntryKind.RETURN_LABEL, -650),
        (EntryKind.RETURN_LABEL_RECOVERED, 650),
        (EntryKind.OUTBOUND_SHIPPING_UNRECOVERED, -650),
        (EntryKind.HANDLING_FEE, -650),
        (EntryKind.DUTIES_UNRECOVERED, -650),
        (EntryKind.RESIDUAL_VALUE, 650),
        (EntryKind.CLAIM_REIMBURSED, 650),
        (EntryKind.OTHER_COST, -650),
        (EntryKind.OTHER_RECOVERY, 650),
    ],
)
def test_users_type_positive_amounts_and_the_kind_decides_the_sign(
    kind: EntryKind, expected: int
) -> None:
    assert signed_amount(kind, 650) == expected


def test_a_negative_typed_amount_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        signed_amount(EntryKind.HANDLING_FEE, -1)


def test_refund_entries_add_up_to_what_was_paid_out() -> None:
    # Line A: 1 unit, item 50.00, 10% restocking fee 5.00 -> total paid 45.00.
    # Line B: 2 units, total 30.00, no fee. Label 6.50 deducted from the refund.
    # Paid out = 45.00 + 30.00 - 6.50 = 68.50.
    planned = refund_entries(
        [RefundedLine("A", 1, 4500, 500), RefundedLine("B", 2, 3000, 0)], label_deduction=650
    )
    assert [(p.kind, p.amount_minor, p.order_line_id) for p in planned] == [
        (EntryKind.REFUND_PAID, -5000, "A"),  # gross: 45.00 + 5.00
        (EntryKind.RESTOCKING_FEE_KEPT, 500, "A"),
        (EntryKind.REFUND_PAID, -3000, "B"),
        (EntryKind.RETURN_LABEL_RECOVERED, 650, None),
    ]
    assert sum(p.amount_minor for p in planned) == -6850


@pytest.mark.parametrize(
    ("disposition", "expected"),
    [
        ("restock", 4000),  # 2 x 20.00 x 100%
        ("refurbish", 3200),  # 2 x 20.00 x 80%
        ("relabel", 3800),  # 2 x 20.00 x 95%
        ("return_to_supplier", 4000),  # 2 x 20.00 x 100%
        ("liquidate", 800),  # 2 x 20.00 x 20%
        ("dispose", 0),
    ],
)
def test_residual_value_by_disposition(disposition: str, expected: int) -> None:
    assert residual_value(2000, 2, disposition) == expected


def test_residual_value_with_an_overridden_percentage_and_a_rate() -> None:
    # 3 x 12.34 USD liquidated at 27.5% = 10.18050 USD; at 0.9 EUR per USD = 9.162450 EUR
    # -> 9.16 EUR (one rounding, half up).
    assert (
        residual_value(
            1234,
            3,
            "liquidate",
            percent=Decimal("27.5"),
            rate=Decimal("0.9"),
            cost_currency="USD",
            currency="EUR",
        )
        == 916
    )
    # 1 x 1000 JPY restocked, 0.00625 EUR per JPY = 6.25 EUR: minor digits 0 -> 2.
    assert residual_value(1000, 1, "restock", rate=Decimal("0.00625"), cost_currency="JPY") == 625


def test_conversion_rounds_half_up_and_symmetrically() -> None:
    # 10.00 USD at 0.80 EUR/USD = 8.00 EUR; 0.05 USD at 0.5 = 0.025 -> 0.03 EUR.
    assert convert(1000, Decimal("0.8"), "USD", "EUR") == 800
    assert convert(5, Decimal("0.5"), "USD", "EUR") == 3
    assert convert(-5, Decimal("0.5"), "USD", "EUR") == -3
    # 100.00 EUR at 161.5 JPY/EUR = 16150 JPY; 1 JPY at 0.0062 EUR/JPY = 0.0062 -> 0.01 EUR.
    assert convert(10000, Decimal("161.5"), "EUR", "JPY") == 16150
    assert convert(1, Decimal("0.0062"), "JPY", "EUR") == 1
    assert convert(1234, Decimal("7"), "EUR", "EUR") == 1234


@given(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(1000), places=4),
)
def test_a_reversal_converts_to_the_exact_opposite(amount: int, rate: Decimal) -> None:
    assert convert(-amount, rate, "USD", "EUR") == -convert(amount, rate, "USD", "EUR")


def test_wilson_interval_by_hand() -> None:
    # k = 20 of n = 200, z = 1.96: p = 0.1, z² = 3.8416
    # centre = p + z²/2n = 0.1 + 0.009604 = 0.109604
    # margin = z·√(p(1-p)/n + z²/4n²) = 1.96·√(0.00045 + 0.00002401) = 1.96·√0.00047401
    #        = 1.96 x 0.0217717707134720670611 = 0.0426726705984052514397
    # divide by 1 + z²/n = 1.019208:
    low, high = wilson(20, 200)
    assert high.quantize(Decimal("1e-15")) == Decimal("0.149406863563086")
    assert low.quantize(Decimal("1e-15")) == Decimal("0.065669941171571")
    assert isinstance(high, Decimal) and isinstance(low, Decimal)


def test_wilson_edges() -> None:
    assert wilson(0, 0) == (Decimal(0), Decimal(1))
    low, high = wilson(0, 10)
    assert low == 0
    # z²/n / (1 + z²/n) = 0.38416 / 1.38416 = 0.277540...
    assert high.quantize(Decimal("1e-6")) == Decimal("0.277540")
    low, high = wilson(10, 10)
    assert high == 1
    assert low.quantize(Decimal("1e-6")) == Decimal("0.722460")
    with pytest.raises(ValueError):
        wilson(3, 2)


@given(st.integers(min_value=1, max_value=5000), st.data())
def test_wilson_brackets_the_observed_rate(n: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(min_value=0, max_value=n))
    low, high = wilson(k, n)
    assert 0 <= low <= Decimal(k) / n <= high <= 1


def test_reserve_by_hand() -> None:
    # Loss per return: ledger of 20 returned units sums to -690.00 EUR -> 34.50 per unit.
    assert loss_per_return(-69000, 20) == 3450
    # Reserve per unit = 0.149406863563086 x 34.50 = 5.154536792... -> 5.15 EUR.
    _, high = wilson(20, 200)
    assert reserve_per_unit(high, 3450) == 515
    # Returns that made money (the ledger is positive) reserve nothing.
    assert loss_per_return(1000, 4) == 0
    assert loss_per_return(-1000, 0) == 0
    # 10.00 / 3 = 3.333... -> 3.33; 20.00 / 3 = 6.666... -> 6.67 (half up).
    assert loss_per_return(-1000, 3) == 333
    assert loss_per_return(-2000, 3) == 667


@pytest.mark.parametrize(
    ("days", "bucket"),
    [
        (0, "0-7"),
        (7, "0-7"),
        (8, "8-14"),
        (14, "8-14"),
        (15, "15-30"),
        (30, "15-30"),
        (31, "31-60"),
        (60, "31-60"),
        (61, ">60"),
        (400, ">60"),
    ],
)
def test_age_buckets(days: int, bucket: str) -> None:
    assert age_bucket(days) == bucket


def test_age_in_the_future_is_refused() -> None:
    with pytest.raises(ValueError):
        age_bucket(-1)


def test_goods_received_cover_the_earliest_refunds_first() -> None:
    # Refund r1 (Oct 1) paid 2 units for 90.00; r2 (Oct 20) paid 1 unit for 45.00.
    # 2 units received, 1 inspected: r1 is covered by goods, 1 of its units inspected;
    # r2's unit is not received at all.
    paid = [
        PaidUnits("r2", date(2026, 10, 20), 1, 4500),
        PaidUnits("r1", date(2026, 10, 1), 2, 9000),
    ]
    found = exposures(paid, received=2, inspected=1)
    assert [(e.key, e.not_received_units, e.not_received) for e in found] == [
        ("r1", 0, 0),
        ("r2", 1, 4500),
    ]
    assert [(e.key, e.not_inspected_units, e.not_inspected) for e in found] == [
        ("r1", 1, 4500),
        ("r2", 0, 0),
    ]
    assert exposures(paid, received=3, inspected=3) == []


def test_a_refund_split_over_units_adds_up_to_its_total() -> None:
    # 3 units for 100.00: not received 2 units -> the last 2 of ⌊10000·k/3⌋ shares:
    # ⌊10000·3/3⌋ - ⌊10000·1/3⌋ = 10000 - 3333 = 6667; the received one carries 33.33.
    [exposure] = exposures([PaidUnits("r", date(2026, 10, 1), 3, 10000)], 1, 1)
    assert (exposure.not_received_units, exposure.not_received) == (2, 6667)
    [exposure] = exposures([PaidUnits("r", date(2026, 10, 1), 3, 10000)], 1, 0)
    assert (exposure.not_inspected_units, exposure.not_inspected) == (1, 3333)
    assert exposure.not_received + exposure.not_inspected == 10000


def test_figures_net() -> None:
    # The hand example of docs/ledger.md: revenue 105.00, cost of 2 units 40.00, refund
    # 50.00, fee kept 5.00, handling 3.00, label 6.50, restocked at cost 20.00.
    f = Figures(revenue=10500, cost_of_goods=4000)
    f.add_entry(EntryKind.REFUND_PAID, -5000)
    f.add_entry(EntryKind.RESTOCKING_FEE_KEPT, 500)
    f.add_entry(EntryKind.HANDLING_FEE, -300)
    f.add_entry(EntryKind.RETURN_LABEL, -650)
    f.add_entry(EntryKind.RESIDUAL_VALUE, 2000)
    assert (f.refunds, f.return_costs, f.recoveries) == (5000, 950, 2500)
    # 105.00 - 40.00 - 50.00 - 9.50 + 25.00 = 30.50
    assert f.net == 3050
    # A reversal of the label nets it out.
    f.add_entry(EntryKind.RETURN_LABEL, 650)
    assert f.return_costs == 300 and f.net == 3700


def test_split_signed_keeps_the_sign_and_the_sum() -> None:
    assert split_signed(-1000, [1, 2]) == [-333, -667]
    assert split_signed(1000, [1, 2]) == [333, 667]
    assert sum(split_signed(-1001, [3, 3, 3])) == -1001
