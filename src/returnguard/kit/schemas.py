"""Building blocks for API schemas: strict models, money, countries."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Annotated, Any

from babel import Locale
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from returnguard.kit.money import Money, MoneyError, check_currency, minor_digits, parse_amount

# Amounts are stored as 64-bit integers of minor units; this bound keeps every stored
# amount, and sums of many of them, far inside that range (and exact in JSON doubles).
MAX_MINOR_UNITS = 10**15


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list | tuple | set | frozenset):
        return any(_has_nul(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    return False


class StrictModel(BaseModel):
    """Request bodies: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul_characters(cls, value: Any) -> Any:
        # PostgreSQL cannot store NUL in text or JSON; refuse it on every database alike.
        if _has_nul(value):
            raise ValueError("must not contain NUL (U+0000) characters")
        return value


class OutModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


def _decimal_string(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError('must be a decimal string such as "12.34", not a JSON number')
    try:
        amount = Decimal(value)
    except ArithmeticError:
        raise ValueError(f"{value!r} is not a decimal number") from None
    if not amount.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return value


def _currency(value: str) -> str:
    try:
        return check_currency(value)
    except MoneyError as exc:
        raise ValueError(str(exc)) from None


CurrencyCode = Annotated[
    str, Field(min_length=3, max_length=3, examples=["EUR"]), AfterValidator(_currency)
]
DecimalString = Annotated[
    str,
    BeforeValidator(_decimal_string),
    Field(pattern=r"^-?\d+(\.\d+)?$", examples=["12.34"]),
]


def _percent(value: str) -> str:
    if not Decimal(0) < Decimal(value) <= Decimal(100):
        raise ValueError("must be above 0 and at most 100")
    return value


PercentString = Annotated[
    str,
    BeforeValidator(_decimal_string),
    Field(pattern=r"^\d{1,3}(\.\d{1,2})?$", examples=["30", "12.5"]),
    AfterValidator(_percent),
]
"""A percentage above 0 and at most 100, with at most two decimals, as a string."""


class MoneyIn(StrictModel):
    """An amount as a decimal string in the currency's minor units: never a JSON number."""

    # Currency first, so the amount's validator can check it against its precision.
    currency: CurrencyCode
    amount: DecimalString

    @field_validator("amount")
    @classmethod
    def _fits_currency(cls, value: str, info: ValidationInfo) -> str:
        currency = info.data.get("currency")
        if currency is None:
            return value
        try:
            parsed = parse_amount(value, currency)
        except MoneyError as exc:
            raise ValueError(str(exc)) from None
        if parsed < 0:
            raise ValueError("must not be negative")
        digits = minor_digits(currency)
        if abs(parsed.scaleb(digits)) > MAX_MINOR_UNITS:
            limit = Decimal(MAX_MINOR_UNITS).scaleb(-digits)
            raise ValueError(f"is too large; at most {limit:f} {currency}")
        return format(parsed, "f")

    def to_money(self) -> Money:
        return Money.of(self.amount, self.currency)

    @property
    def minor(self) -> int:
        return self.to_money().minor


class MoneyOut(BaseModel):
    amount: str = Field(examples=["12.34"])
    currency: str = Field(examples=["EUR"])

    @classmethod
    def from_minor(cls, minor: int, currency: str) -> MoneyOut:
        m = Money.from_minor(minor, currency)
        return cls(amount=format(m.amount, "f"), currency=m.currency)


def _utc_timestamp(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range") from None


AwareTimestamp = Annotated[
    AwareDatetime,
    AfterValidator(_utc_timestamp),
    Field(examples=["2026-10-01T10:00:00+02:00"]),
]
"""A timestamp that must carry a UTC offset; normalised to UTC."""


@cache
def _territories() -> frozenset[str]:
    codes = [str(k) for k in Locale("en").territories]
    return frozenset(k for k in codes if len(k) == 2 and k.isalpha())


def _country(value: str) -> str:
    code = value.upper()
    if code not in _territories():
        raise ValueError(f"unknown country code {value!r}; use ISO 3166-1 alpha-2 like DE")
    return code


CountryCode = Annotated[
    str, Field(min_length=2, max_length=2, examples=["DE"]), AfterValidator(_country)
]
