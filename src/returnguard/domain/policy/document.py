"""The policy document: ordered rules that match facts about a return and set settings.

A policy is data (YAML or JSON). Each rule has `when` (conditions; all must hold; an
absent condition matches anything) and `then` (settings). Rules are read in order: each
setting is decided by the first matching rule that sets it, and `defaults` fill the rest.
A rule with `stop: true` ends the reading when it matches.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

from returnguard.domain.reasons import ReasonClass, ReasonCode
from returnguard.kit.money import MoneyError, check_currency

RuleId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")]
Code = Annotated[str, Field(min_length=1, max_length=64)]
Country = Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
Percent = Annotated[Decimal, Field(ge=0, le=100, max_digits=6, decimal_places=2)]
Amount = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=3)]
Days = Annotated[int, Field(ge=0, le=3650)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _decimal_text(value: Any) -> Any:
    # Policies are written by people in YAML: amounts may come as numbers there, but a
    # float must never reach a money path, so it is read through its decimal text.
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


class RiskLevel(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Payer(StrEnum):
    BUYER = "buyer"
    SELLER = "seller"


class FeeApplies(StrEnum):
    OPENED = "opened"  # only when inspection finds the item opened or used
    ALWAYS = "always"


class Range(_Strict):
    """Inclusive bounds; either may be left out."""

    min: Days | None = None
    max: Days | None = None


class ValueBand(_Strict):
    """Unit value of the returned item, in `currency` (the order's when left out)."""

    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = None
    min: Amount | None = None
    max: Amount | None = Field(default=None, description="Exclusive upper bound")

    _numbers = field_validator("min", "max", mode="before")(_decimal_text)


class Conditions(_Strict):
    channels: list[Code] | None = None
    marketplace_countries: list[Country] | None = None
    buyer_countries: list[Country] | None = None
    categories: list[Code] | None = None
    skus: list[Code] | None = None
    item_value: ValueBand | None = None
    reason_classes: list[ReasonClass] | None = None
    reason_codes: list[ReasonCode] | None = None
    days_since_delivery: Range | None = None
    buyer_risk: list[RiskLevel] | None = None
    watchlisted: StrictBool | None = None
    first_time_buyer: StrictBool | None = None


class RestockingFee(_Strict):
    percent: Percent
    cap: Amount | None = Field(default=None, description="In the order's currency")
    applies_to: FeeApplies = FeeApplies.OPENED

    _numbers = field_validator("percent", "cap", mode="before")(_decimal_text)


class Evidence(_Strict):
    photos: Annotated[StrictInt, Field(ge=0, le=20)] = 0
    video: StrictBool = False
    explanation: StrictBool = False

    @property
    def required(self) -> bool:
        return self.photos > 0 or self.video or self.explanation


class Shipping(_Strict):
    tracked: StrictBool = False
    signature: StrictBool = False


class Alternatives(_Strict):
    keep_partial_refund_percent: Percent | None = None
    coupon_value: Amount | None = None
    replacement: StrictBool = False

    _numbers = field_validator("keep_partial_refund_percent", "coupon_value", mode="before")(
        _decimal_text
    )

    @property
    def any(self) -> bool:
        return bool(self.keep_partial_refund_percent or self.coupon_value or self.replacement)


class Settings(_Strict):
    """What a rule decides. Every field is optional: a rule sets only what it names."""

    eligible: StrictBool | None = None
    decline_reason: Annotated[str, Field(max_length=500)] | None = None
    return_window_days: Days | None = None
    return_shipping_paid_by: Payer | None = None
    restocking_fee: RestockingFee | None = None
    evidence: Evidence | None = None
    human_review: StrictBool | None = None
    inspection_before_refund: StrictBool | None = None
    refund_before_receipt: StrictBool | None = None
    shipping: Shipping | None = None
    return_center: Code | None = None
    alternatives: Alternatives | None = None
    refund_outbound_shipping: StrictBool | None = Field(
        default=None, description="Refund the outbound delivery too (the law may require it)"
    )
    returnless_refund: StrictBool | None = Field(
        default=None,
        description="Refund without the goods when the item is worth less than the cost "
        "of bringing it back (return label + handling, from the channel)",
    )

    def set_fields(self) -> list[str]:
        return [name for name in type(self).model_fields if getattr(self, name) is not None]


SETTING_NAMES: tuple[str, ...] = tuple(Settings.model_fields)


class Rule(_Strict):
    id: RuleId
    description: Annotated[str, Field(max_length=1000)] = ""
    when: Conditions = Conditions()
    then: Settings
    stop: StrictBool = False


class HighValueThreshold(_Strict):
    """Returns worth this much or more (every requested unit at what was paid for it)
    never get money before a passed inspection, whoever decides them."""

    amount: Amount
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = Field(
        default=None, description="Default: the return's own currency"
    )

    _numbers = field_validator("amount", mode="before")(_decimal_text)

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                check_currency(value)
            except MoneyError as exc:
                raise ValueError(str(exc)) from None
        return value


class PolicyDocument(_Strict):
    """A whole policy. `defaults` decide every setting no matching rule decides."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: Annotated[str, Field(max_length=5000)] = ""
    high_value_threshold: HighValueThreshold | None = Field(
        default=None,
        description="Returns worth this much or more are inspected before any refund, "
        "however they were decided",
    )
    defaults: Settings
    rules: list[Rule] = Field(default_factory=list, max_length=500)

    def band_currencies(self) -> frozenset[str]:
        """Currencies the value bands are written in (need exchange rates for others)."""
        return frozenset(
            r.when.item_value.currency
            for r in self.rules
            if r.when.item_value is not None and r.when.item_value.currency is not None
        )


BUILTIN_DEFAULTS = Settings(
    eligible=True,
    return_window_days=30,
    return_shipping_paid_by=Payer.SELLER,
    evidence=Evidence(),
    human_review=False,
    inspection_before_refund=False,
    refund_before_receipt=False,
    shipping=Shipping(),
    alternatives=Alternatives(),
    refund_outbound_shipping=False,
    returnless_refund=False,
)
