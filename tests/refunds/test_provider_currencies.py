"""Each provider's money rules for every ISO 4217 currency ReturnGuard accepts.

Pure: no database, no network. ReturnGuard amounts are ints in the currency's minor
units (kit.money); the provider is asked for the largest amount it can express that is
not more than was granted, and what it cannot express is left unsent (and said so).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from returnguard.kit.money import Money, known_currencies
from returnguard.refunds.providers import currencies
from returnguard.refunds.providers.currencies import NotPayable, rule, table, to_provider

ALL = sorted(known_currencies())
CASES = [(provider, code) for provider in currencies.PROVIDERS for code in ALL]
AMOUNTS = [1, 5, 7, 9, 10, 49, 50, 99, 100, 101, 999, 1000, 1234, 12345, 99_999_999]


@pytest.mark.parametrize(
    ("provider", "currency", "minor", "sent", "unsent"),
    [
        pytest.param("stripe", "ISK", 5000, 500000, 0, id="stripe-ISK-5000-in-hundredths"),
        pytest.param("stripe", "UGX", 5000, 500000, 0, id="stripe-UGX-5000-in-hundredths"),
        pytest.param("stripe", "JPY", 5000, 5000, 0, id="stripe-JPY-zero-decimal"),
        pytest.param("stripe", "KWD", 12345, 12340, 5, id="stripe-KWD-12.345-to-12.340"),
        pytest.param("stripe", "BHD", 1009, 1000, 9, id="stripe-BHD-rounded-down"),
        pytest.param("stripe", "USD", 1234, 1234, 0, id="stripe-USD-12.34"),
        pytest.param("stripe", "HUF", 4990, 499000, 0, id="stripe-HUF-two-decimal"),
        pytest.param("stripe", "TWD", 10050, 10050, 0, id="stripe-TWD-two-decimal"),
        pytest.param("stripe", "COP", 5000, 500000, 0, id="stripe-COP-two-decimal"),
        pytest.param("paypal", "TWD", 10050, 100, 50, id="paypal-TWD-100.50-to-100"),
        pytest.param("paypal", "HUF", 4990, 4990, 0, id="paypal-HUF-no-decimals"),
        pytest.param("paypal", "JPY", 1500, 1500, 0, id="paypal-JPY-no-decimals"),
        pytest.param("paypal", "EUR", 1999, 1999, 0, id="paypal-EUR-19.99"),
        pytest.param("shopify", "KWD", 12345, 12345, 0, id="shopify-KWD-thousandths"),
        pytest.param("shopify", "MRU", 10050, 100, 50, id="shopify-MRU-whole-units"),
        pytest.param("shopify", "JPY", 1500, 1500, 0, id="shopify-JPY"),
    ],
)
def test_known_examples(provider: str, currency: str, minor: int, sent: int, unsent: int) -> None:
    amount = to_provider(provider, minor, currency)
    assert (amount.units, amount.unsent_minor) == (sent, unsent)


@pytest.mark.parametrize(
    ("provider", "currency", "minor", "text"),
    [
        ("paypal", "TWD", 10050, "100"),
        ("paypal", "HUF", 4990, "4990"),
        ("paypal", "EUR", 1000, "10.00"),
        ("shopify", "KWD", 1250, "1.250"),
        ("shopify", "EUR", 1999, "19.99"),
    ],
)
def test_decimal_string_has_the_providers_decimals(
    provider: str, currency: str, minor: int, text: str
) -> None:
    assert to_provider(provider, minor, currency).decimal_string() == text


def test_every_currency_has_a_rule_for_every_provider() -> None:
    for provider in currencies.PROVIDERS:
        assert sorted(table(provider)) == ALL


@pytest.mark.parametrize(("provider", "currency"), CASES)
def test_each_currency_never_sends_more_than_granted(provider: str, currency: str) -> None:
    found = rule(provider, currency)
    if not found.supported:
        with pytest.raises(NotPayable) as caught:
            to_provider(provider, 1000, currency)
        assert caught.value.code == "currency_not_supported"
        return
    step = found.step_minor
    for minor in AMOUNTS:
        granted = Money.from_minor(minor, currency).amount
        if minor < step:
            with pytest.raises(NotPayable) as below:
                to_provider(provider, minor, currency)
            assert below.value.code == "amount_below_provider_unit"
            continue
        amount = to_provider(provider, minor, currency)
        # The provider's amount, in its own unit, is exactly what ReturnGuard records as sent.
        assert amount.value == Money.from_minor(amount.sent_minor, currency).amount
        assert amount.value <= granted
        assert amount.sent_minor + amount.unsent_minor == minor
        assert 0 <= amount.unsent_minor < step
        assert amount.units % found.step == 0
        assert (amount.unsent_minor == 0) == (minor % step == 0)
        # What was sent is representable as it is: converting it again leaves nothing.
        assert to_provider(provider, amount.sent_minor, currency).unsent_minor == 0


@given(
    case=st.sampled_from([c for c in CASES if rule(*c).supported]),
    minor=st.integers(min_value=1, max_value=10**12),
)
@settings(max_examples=300, deadline=None)
def test_rounding_is_down_to_the_largest_payable_amount(case: tuple[str, str], minor: int) -> None:
    provider, currency = case
    step = rule(provider, currency).step_minor
    if minor < step:
        with pytest.raises(NotPayable):
            to_provider(provider, minor, currency)
        return
    amount = to_provider(provider, minor, currency)
    assert amount.sent_minor <= minor < amount.sent_minor + step
    assert amount.value * Decimal(10) ** amount.exponent == amount.units


def test_paypal_takes_its_24_currencies_huf_jpy_twd_without_decimals() -> None:
    """developer.paypal.com/reference/currency-codes: the REST API's currencies."""
    supported = {c: r.exponent for c, r in table("paypal").items() if r.supported}
    assert supported == {
        code: 0 if code in {"HUF", "JPY", "TWD"} else 2
        for code in currencies.codes(
            "AUD BRL CAD CNY CZK DKK EUR HKD HUF ILS JPY MYR MXN TWD NZD NOK PHP PLN GBP "
            "SGD SEK CHF THB USD"
        )
    }


@pytest.mark.parametrize(
    ("provider", "missing"),
    [
        # Not in docs.stripe.com/currencies (STN: Stripe still names it STD).
        (
            "stripe",
            "BTN CUP ERN GHS IQD IRR KPW LYD MRU SDG SSP STN SYP TMT VES XCG ZWG",
        ),
        # Not in Shopify's CurrencyCode enum (it still has SLL, not SLE).
        ("shopify", "CUP KPW SLE XCG ZWG"),
    ],
)
def test_currencies_the_provider_does_not_take(provider: str, missing: str) -> None:
    assert {c for c, r in table(provider).items() if not r.supported} == currencies.codes(missing)


def test_stripe_units_that_are_not_plain_two_decimal() -> None:
    """docs.stripe.com/currencies: zero-decimal, three-decimal (ending in 0) and the special
    cases ISK and UGX (hundredths of whole units)."""
    special = {
        c: (r.exponent, r.step)
        for c, r in table("stripe").items()
        if r.supported and (r.exponent, r.step) != (2, 1)
    }
    assert special == (
        {
            c: (0, 1)
            for c in currencies.codes("BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF VND VUV XAF XOF XPF")
        }
        | {c: (3, 10) for c in ("BHD", "JOD", "KWD", "OMR", "TND")}
        | {"ISK": (2, 100), "UGX": (2, 100)}
    )


def test_unknown_currency_code_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown currency"):
        to_provider("stripe", 100, "XYZ")
