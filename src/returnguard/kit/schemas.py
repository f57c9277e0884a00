"""Building blocks for API schemas: strict models, money, countries."""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from typing import Annotated, Any

from babel import Locale
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from returnguard.kit.money import Money, MoneyError, check_currency, parse_amount


class StrictModel(BaseModel):
    """Request bodies: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


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
