"""Building blocks for API schemas: strict models, money, countries."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache
from typing import Annotated, Any

from annotated_types import Ge, Le
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

# Integer columns are 32-bit on PostgreSQL (`integer`): a larger value sent to one is a
# database error (a 500), so every integer the API reads is checked against this range.
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

# Days the API accepts: wide enough for any shop's history and plans, narrow enough that
# date arithmetic in reports (a lookback of years, a hold period) can never overflow.
MIN_DAY = date(1900, 1, 1)
MAX_DAY = date(2999, 12, 31)

# Decimal text with more digits than Decimal's default precision (28) would be rounded
# in arithmetic; no amount, rate or percentage a person means has that many.
MAX_DECIMAL_DIGITS = 28


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list | tuple | set | frozenset):
        return any(_has_nul(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    return False


def _out_of_int32(value: Any) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return not INT32_MIN <= value <= INT32_MAX
    if isinstance(value, list | tuple | set | frozenset):
        return any(_out_of_int32(v) for v in value)
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
        # Every integer field fits the 32-bit columns, whether or not the field states a
        # narrower bound of its own (free-form documents keep their own checks).
        if _out_of_int32(value):
            raise ValueError(f"is out of range; at most {INT32_MAX} and at least {INT32_MIN}")
        return value


def _no_nul(value: str) -> str:
    if NUL in value:
        raise ValueError("must not contain NUL (U+0000) characters")
    return value


NUL = "\x00"

PlainText = Annotated[str, AfterValidator(_no_nul)]
"""Text outside a StrictModel (form fields, query values) that PostgreSQL can store."""


class OutModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


def _decimal_string(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError('must be a decimal string such as "12.34", not a JSON number')
    if sum(c.isdigit() for c in value) > MAX_DECIMAL_DIGITS:
        raise ValueError(f"has more than {MAX_DECIMAL_DIGITS} digits")
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


def _not_a_number(value: Any) -> Any:
    # Pydantic reads a number (or a string of digits) as seconds since 1970: `0` would be
    # 1970-01-01. The API's timestamps and days are ISO 8601 text only.
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMERIC.match(value)):
        raise ValueError("must be an ISO 8601 text such as 2026-10-01, not a number")
    return value


_NUMERIC = re.compile(r"^\s*[-+]?\d+(\.\d*)?\s*$")
_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _iso_day(value: Any) -> Any:
    if isinstance(value, datetime):
        raise ValueError("must be a day such as 2026-10-01, not a timestamp")
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _ISO_DAY.match(value):
        raise ValueError("must be an ISO 8601 day such as 2026-10-01")
    return value


def _sane_day(value: date) -> date:
    if not MIN_DAY <= value <= MAX_DAY:
        raise ValueError(f"must be between {MIN_DAY} and {MAX_DAY}")
    return value


IsoDay = Annotated[
    date,
    BeforeValidator(_iso_day),
    AfterValidator(_sane_day),
    Field(examples=["2026-10-01"]),
]
"""A calendar day as ISO 8601 text (`2026-10-01`) between MIN_DAY and MAX_DAY."""

# Bounds as annotated-types metadata (not `Field`), so the aliases also serve as path and
# query parameter types next to FastAPI's own `Path()` / `Query()`.
Int32 = Annotated[int, Ge(INT32_MIN), Le(INT32_MAX)]
"""An integer a 32-bit column holds."""

PositiveInt32 = Annotated[int, Ge(1), Le(INT32_MAX)]
"""A count or version number from 1 up to what a 32-bit column holds."""


def _utc_timestamp(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range") from None


AwareTimestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_not_a_number),
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
