from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from returnguard.kit.money import Money, MoneyError, minor_digits, parse_amount


@pytest.mark.parametrize(("currency", "digits"), [("JPY", 0), ("EUR", 2), ("USD", 2), ("KWD", 3)])
def test_currency_precision_comes_from_the_currency(currency: str, digits: int) -> None:
    assert minor_digits(currency) == digits


def test_amount_with_more_decimals_than_currency_allows_is_refused() -> None:
    with pytest.raises(MoneyError, match="more decimal places than EUR allows"):
        parse_amount("1.999", "EUR")
    with pytest.raises(MoneyError, match="JPY allows"):
        parse_amount("100.5", "JPY")
    assert parse_amount("12.345", "KWD") == Decimal("12.345")


def test_trailing_zeros_are_not_extra_precision() -> None:
    assert parse_amount("100.00", "JPY") == Decimal("100")
    assert parse_amount("1.50", "EUR") == Decimal("1.50")


def test_floats_never_become_money() -> None:
    with pytest.raises(MoneyError, match="not a JSON number"):
        parse_amount(19.99, "EUR")
    with pytest.raises(MoneyError):
        Money.of(True, "EUR")


@pytest.mark.parametrize("code", ["EUX", "XXX", "XTS", "XAU", "DEM", "eu"])
def test_unknown_or_non_tender_currency_is_refused(code: str) -> None:
    with pytest.raises(MoneyError, match="unknown currency"):
        Money.of("1", code)


def test_mixing_currencies_is_refused() -> None:
    with pytest.raises(MoneyError, match="cannot combine EUR with USD"):
        _ = Money.of("1", "EUR") + Money.of("1", "USD")


@given(st.integers(min_value=-(10**15), max_value=10**15), st.sampled_from(["JPY", "EUR", "KWD"]))
def test_minor_units_round_trip_exactly(minor: int, currency: str) -> None:
    money = Money.from_minor(minor, currency)
    assert money.minor == minor
    assert Money.of(money.as_api()["amount"], currency) == money


def test_arithmetic_stays_in_minor_units() -> None:
    total = Money.of("0.10", "EUR") + Money.of("0.20", "EUR")
    assert total == Money.of("0.30", "EUR")
    assert (Money.of("19.99", "EUR") * 3).as_api() == {"amount": "59.97", "currency": "EUR"}
