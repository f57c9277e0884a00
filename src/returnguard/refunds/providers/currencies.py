"""Each payment provider's own money rules: the unit its amounts are in, the step they
must be a multiple of, and which currencies it takes at all.

ReturnGuard keeps amounts in the minor units of ``kit.money`` (Babel's digits for the
currency: JPY 0, EUR 2, KWD 3, and HUF, ISK, COP 0). A provider may want another unit
(Stripe takes ISK and UGX in hundredths), a coarser step (Stripe's three-decimal
currencies end in 0) or no decimals at all (PayPal's HUF, JPY, TWD). ``to_provider``
converts a granted amount into what the provider can be asked for, always rounding
DOWN so a buyer is never sent more than was granted, and says what was not sent.

The facts below come from the providers' public documentation (checked 2026-12):

- Stripe: https://docs.stripe.com/currencies — presentment currencies, "Zero-decimal
  currencies", "Three-decimal currencies" and "Special cases". The special cases make
  ISK and UGX two-decimal in the API with whole units only (a multiple of 100), although
  UGX is also in the zero-decimal list; the special case is the more specific rule and
  the one Stripe enforces ("charged amounts must be evenly divisible by 100"), as
  Shopify's own money library does (github.com/Shopify/money,
  lib/money/converters/stripe_converter.rb). The HUF and TWD notes are about payouts
  only: refunds, like charges, take two-decimal amounts.
- PayPal: https://developer.paypal.com/reference/currency-codes/ (and
  .../docs/reports/reference/paypal-supported-currencies/): the 24 currencies the REST
  API takes; HUF, JPY and TWD take no decimals. The `Money.value` of the v2 payments
  API (paypal-rest-api-specifications, openapi/payments_payment_v2.json) is a decimal
  string with the currency's number of decimals.
- Shopify: the `CurrencyCode` enum of the Admin GraphQL API
  (https://shopify.dev/docs/api/admin-graphql/latest/enums/CurrencyCode) lists what it
  takes; amounts are decimal strings in the currency's ISO 4217 minor unit, as in
  Shopify's money library (github.com/Shopify/money, config/currency_iso.yml).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from math import lcm

from returnguard.kit.money import Money, check_currency, known_currencies, minor_digits

PROVIDERS = ("stripe", "paypal", "shopify")
_NAMES = {"stripe": "Stripe", "paypal": "PayPal", "shopify": "Shopify"}


def codes(text: str) -> frozenset[str]:
    return frozenset(text.split())


# --- Stripe -------------------------------------------------------------------------
_STRIPE_SUPPORTED = codes(
    """USD AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BIF BMD BND BOB BRL
    BSD BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CVE CZK DJF DKK DOP DZD EGP ETB EUR FJD
    FKP GBP GEL GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR ISK JMD JPY KES KGS KHR
    KMF KRW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MUR MVR MWK MXN MYR
    MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD
    SCR SEK SGD SHP SLE SOS SRD STD SZL THB TJS TOP TRY TTD TWD TZS UAH UGX UYU UZS VND
    VUV WST XAF XCD XOF XPF YER ZAR ZMW BHD JOD KWD OMR TND"""
)
_STRIPE_ZERO_DECIMAL = codes("BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF VND VUV XAF XOF XPF")
_STRIPE_WHOLE_UNITS_IN_HUNDREDTHS = frozenset({"ISK", "UGX"})  # special cases
_STRIPE_THREE_DECIMAL = codes("BHD JOD KWD OMR TND")  # last digit must be 0

# --- PayPal -------------------------------------------------------------------------
_PAYPAL_SUPPORTED = codes(
    """AUD BRL CAD CNY CZK DKK EUR HKD HUF ILS JPY MYR MXN TWD NZD NOK PHP PLN GBP SGD
    SEK CHF THB USD"""
)
_PAYPAL_NO_DECIMALS = frozenset({"HUF", "JPY", "TWD"})

# --- Shopify ------------------------------------------------------------------------
_SHOPIFY_SUPPORTED = codes(
    """AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL
    BSD BTN BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CVE CZK DJF DKK DOP DZD EGP ERN ETB
    EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK
    JMD JOD JPY KES KGS KHR KMF KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD
    MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP
    PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SOS SRD SSP STN SYP SZL
    THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VES VND VUV WST XAF XCD XOF
    XPF YER ZAR ZMW"""
)
_SHOPIFY_ZERO_DECIMAL = codes(
    "BIF CLP DJF GNF ISK JPY KMF KRW MGA MRU PYG RWF UGX VND VUV XAF XOF XPF"
)
_SHOPIFY_THREE_DECIMAL = codes("BHD IQD JOD KWD LYD OMR TND")


@dataclass(frozen=True, slots=True)
class CurrencyRule:
    """How one provider takes amounts in one currency."""

    provider: str
    currency: str
    supported: bool
    exponent: int = 2  # decimal places of the provider's amount (its unit is 10**-exponent)
    step: int = 1  # the amount in provider units must be a multiple of this

    @property
    def step_minor(self) -> int:
        """The smallest amount, in ReturnGuard minor units, the provider can pay exactly:
        every representable amount is a multiple of it."""
        digits = minor_digits(self.currency)
        scale: int = 10 ** abs(self.exponent - digits)
        if self.exponent <= digits:
            return self.step * scale
        return lcm(self.step, scale) // scale


class NotPayable(ValueError):
    """The provider cannot be asked for this amount at all; nothing is sent."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class ProviderAmount:
    """What the provider is asked to pay, and what of the granted amount it is not."""

    currency: str
    units: int  # in the provider's unit (10**-exponent), a multiple of the rule's step
    exponent: int
    sent_minor: int  # the same amount in ReturnGuard minor units, exactly
    unsent_minor: int  # granted but not sent: below the provider's step (never negative)

    @property
    def value(self) -> Decimal:
        return Decimal(self.units).scaleb(-self.exponent)

    def decimal_string(self) -> str:
        """The amount as the decimal string the provider reads ("19.99", "100", "1.250")."""
        return format(self.value.quantize(Decimal(1).scaleb(-self.exponent)), "f")


def _stripe(currency: str) -> CurrencyRule:
    if currency not in _STRIPE_SUPPORTED:
        return CurrencyRule("stripe", currency, supported=False)
    if currency in _STRIPE_ZERO_DECIMAL:
        return CurrencyRule("stripe", currency, True, exponent=0)
    if currency in _STRIPE_WHOLE_UNITS_IN_HUNDREDTHS:
        return CurrencyRule("stripe", currency, True, exponent=2, step=100)
    if currency in _STRIPE_THREE_DECIMAL:
        return CurrencyRule("stripe", currency, True, exponent=3, step=10)
    return CurrencyRule("stripe", currency, True, exponent=2)


def _paypal(currency: str) -> CurrencyRule:
    if currency not in _PAYPAL_SUPPORTED:
        return CurrencyRule("paypal", currency, supported=False)
    exponent = 0 if currency in _PAYPAL_NO_DECIMALS else 2
    return CurrencyRule("paypal", currency, True, exponent=exponent)


def _shopify(currency: str) -> CurrencyRule:
    if currency not in _SHOPIFY_SUPPORTED:
        return CurrencyRule("shopify", currency, supported=False)
    if currency in _SHOPIFY_ZERO_DECIMAL:
        return CurrencyRule("shopify", currency, True, exponent=0)
    if currency in _SHOPIFY_THREE_DECIMAL:
        return CurrencyRule("shopify", currency, True, exponent=3)
    return CurrencyRule("shopify", currency, True, exponent=2)


_RULES = {"stripe": _stripe, "paypal": _paypal, "shopify": _shopify}


def rule(provider: str, currency: str) -> CurrencyRule:
    """The provider's rule for a currency ReturnGuard knows (unknown codes: MoneyError)."""
    if provider not in _RULES:
        raise ValueError(f"no currency rules for provider {provider!r}")
    return _RULES[provider](check_currency(currency))


@cache
def table(provider: str) -> dict[str, CurrencyRule]:
    """The provider's rule for every ISO 4217 currency ReturnGuard accepts."""
    return {code: rule(provider, code) for code in sorted(known_currencies())}


def to_provider(provider: str, amount_minor: int, currency: str) -> ProviderAmount:
    """The largest amount the provider can pay that is not more than ``amount_minor``
    (ReturnGuard minor units of ``currency``), and the residue left unsent.

    Raises NotPayable (``currency_not_supported``, or ``amount_below_provider_unit`` when
    the amount rounds down to nothing) so that nothing is sent.
    """
    if amount_minor <= 0:
        raise ValueError("a refund amount is positive")
    found = rule(provider, currency)
    name = _NAMES[provider]
    if not found.supported:
        raise NotPayable(
            "currency_not_supported", f"{name} does not take refunds in {found.currency}"
        )
    step = found.step_minor
    sent_minor = amount_minor - amount_minor % step
    if sent_minor == 0:
        smallest = Money.from_minor(step, found.currency)
        raise NotPayable(
            "amount_below_provider_unit",
            f"{Money.from_minor(amount_minor, found.currency)} is less than the smallest "
            f"amount {name} can refund ({smallest})",
        )
    shift = found.exponent - minor_digits(found.currency)
    scale: int = 10 ** abs(shift)
    units = sent_minor * scale if shift >= 0 else sent_minor // scale
    return ProviderAmount(
        currency=found.currency,
        units=units,
        exponent=found.exponent,
        sent_minor=sent_minor,
        unsent_minor=amount_minor - sent_minor,
    )
