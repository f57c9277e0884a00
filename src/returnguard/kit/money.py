"""Money as Decimal plus an ISO 4217 currency, always at the currency's own precision.

Storage keeps integer minor units (cents, yen, fils); the API speaks decimal strings.
Floats never enter: a value that is not already a Decimal, int or decimal string is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation, getcontext
from functools import cache

from babel import Locale
from babel.numbers import get_currency_precision, get_territory_currencies


class MoneyError(ValueError):
    """A money value that cannot be represented exactly in its currency."""


@cache
def known_currencies() -> frozenset[str]:
    """Currencies legal tender somewhere today: excludes XXX, XTS, gold (XAU), DEM…"""
    territories = [str(t) for t in Locale("en").territories if len(str(t)) == 2]
    return frozenset(c for t in territories for c in get_territory_currencies(t, tender=True))


@cache
def minor_digits(currency: str) -> int:
    """Number of decimal places the currency uses (JPY 0, EUR 2, KWD 3)."""
    code = check_currency(currency)
    return int(get_currency_precision(code))


def check_currency(currency: str) -> str:
    code = currency.strip().upper() if isinstance(currency, str) else ""
    if len(code) != 3 or code not in known_currencies():
        raise MoneyError(f"unknown currency code {currency!r}; use an ISO 4217 code like EUR")
    return code


def parse_amount(value: object, currency: str) -> Decimal:
    """Parse an amount given as a decimal string (or Decimal/int) for ``currency``.

    Raises MoneyError when the value is a float, not a number, or has more decimal
    places than the currency allows.
    """
    if isinstance(value, (bool, float)):
        raise MoneyError('amount must be a decimal string such as "12.34", not a JSON number')
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            amount = Decimal(text)
        except InvalidOperation:
            raise MoneyError(f"amount {value!r} is not a decimal number") from None
    else:
        raise MoneyError('amount must be a decimal string such as "12.34"')
    if not amount.is_finite():
        raise MoneyError(f"amount {value!r} is not a finite number")
    digits = minor_digits(currency)
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)
    # Quantizing needs every digit in the context's precision (28): a larger amount would
    # raise decimal.InvalidOperation. No amount the API stores comes near it.
    if amount.adjusted() + digits >= getcontext().prec:
        raise MoneyError(f"amount {value!r} is too large")
    if -exponent > digits and amount != amount.quantize(Decimal(1).scaleb(-digits)):
        raise MoneyError(
            f"amount {value!r} has more decimal places than {check_currency(currency)} "
            f"allows ({digits})"
        )
    return amount.quantize(Decimal(1).scaleb(-digits))


@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        code = check_currency(self.currency)
        object.__setattr__(self, "currency", code)
        object.__setattr__(self, "amount", parse_amount(self.amount, code))

    @classmethod
    def of(cls, amount: object, currency: str) -> Money:
        return cls(parse_amount(amount, currency), currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(Decimal(0), currency)

    @classmethod
    def from_minor(cls, minor: int, currency: str) -> Money:
        return cls(Decimal(minor).scaleb(-minor_digits(currency)), currency)

    @property
    def minor(self) -> int:
        """The amount in minor units, exact by construction."""
        return int(self.amount.scaleb(minor_digits(self.currency)))

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise MoneyError(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __mul__(self, quantity: int) -> Money:
        if not isinstance(quantity, int) or isinstance(quantity, bool):
            raise MoneyError("money can only be multiplied by a whole quantity")
        return Money(self.amount * quantity, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.amount <= other.amount

    def as_api(self) -> dict[str, str]:
        return {"amount": format(self.amount, "f"), "currency": self.currency}

    def __str__(self) -> str:
        return f"{format(self.amount, 'f')} {self.currency}"
