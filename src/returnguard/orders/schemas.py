from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field, StrictInt

from returnguard.kit.schemas import (
    AwareTimestamp,
    CountryCode,
    CurrencyCode,
    MoneyIn,
    MoneyOut,
    OutModel,
    StrictModel,
)

Code = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")]
ExternalId = Annotated[str, Field(min_length=1, max_length=128)]


class Marketplace(StrEnum):
    AMAZON = "amazon"
    SHOPIFY = "shopify"
    EBAY = "ebay"
    OWN_STORE = "own_store"
    OTHER = "other"


class ChannelIn(StrictModel):
    code: Code = Field(description="Your short name for the channel, e.g. `amazon-de`")
    name: str = Field(min_length=1, max_length=200)
    marketplace: Marketplace
    country: CountryCode
    currency: CurrencyCode
    language: str = Field(default="en", min_length=2, max_length=16)
    return_label_cost: MoneyIn | None = Field(
        default=None, description="What one return label costs (for returnless refunds)"
    )
    handling_cost: MoneyIn | None = Field(
        default=None, description="Receiving and handling one returned parcel"
    )

    def problems(self) -> list[dict[str, str]]:
        return [
            {
                "field": f"{name}.currency",
                "message": f"{money.currency} differs from the channel's {self.currency}",
            }
            for name, money in (
                ("return_label_cost", self.return_label_cost),
                ("handling_cost", self.handling_cost),
            )
            if money is not None and money.currency != self.currency
        ]


class ChannelOut(OutModel):
    id: uuid.UUID
    code: str
    name: str
    marketplace: str
    country: str
    currency: str
    language: str
    return_label_cost: MoneyOut | None
    handling_cost: MoneyOut | None
    policy_id: uuid.UUID | None = Field(description="None: the built-in default policy")
    created_at: datetime


class ProductIn(StrictModel):
    sku: ExternalId
    title: str = Field(default="", max_length=500)
    asin: str | None = Field(default=None, pattern=r"^[A-Z0-9]{10}$")
    category: str | None = Field(default=None, max_length=128)
    unit_cost: MoneyIn | None = None
    hs_code: str | None = Field(default=None, pattern=r"^\d{4,10}$")


class ProductOut(OutModel):
    id: uuid.UUID
    sku: str
    title: str
    asin: str | None
    category: str | None
    unit_cost: MoneyOut | None
    hs_code: str | None


class BuyerIn(StrictModel):
    external_id: ExternalId = Field(description="The channel's buyer id (or a hash of email)")
    email: str | None = Field(default=None, max_length=320)
    name: str | None = Field(default=None, max_length=200)
    country: CountryCode | None = None


class OrderLineIn(StrictModel):
    external_id: ExternalId = Field(description="The channel's order-item id")
    sku: ExternalId
    title: str = Field(default="", max_length=1000)
    quantity: StrictInt = Field(gt=0, le=100_000)
    unit_price: MoneyIn
    tax: MoneyIn | None = Field(
        default=None,
        description="Tax charged on top of the price for the whole line (e.g. US sales tax); "
        "empty when the price already includes VAT",
    )
    discount: MoneyIn | None = Field(default=None, description="Discount for the whole line")
    asin: str | None = Field(default=None, pattern=r"^[A-Z0-9]{10}$")
    category: str | None = Field(default=None, max_length=128)


class OrderIn(StrictModel):
    channel: Code = Field(description="Code of a channel of your organization")
    external_id: ExternalId = Field(description="The channel's order id; the upsert key")
    currency: CurrencyCode
    ordered_at: AwareTimestamp
    delivered_at: AwareTimestamp | None = None
    buyer: BuyerIn | None = None
    ship_to_country: CountryCode | None = None
    shipping: MoneyIn | None = None
    shipping_tax: MoneyIn | None = None
    captured: MoneyIn = Field(description="What the buyer actually paid")
    payment_reference: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None,
        description="The payment at the refund provider: a Shopify order id, a Stripe "
        "PaymentIntent (pi_…) or Charge (ch_…), a PayPal capture id",
    )
    lines: list[OrderLineIn] = Field(min_length=1, max_length=1000)

    def problems(self) -> list[dict[str, str]]:
        """Cross-field checks, each naming its field (currencies agree, line ids unique)."""
        problems: list[dict[str, str]] = []
        amounts: list[tuple[str, MoneyIn | None]] = [
            ("shipping", self.shipping),
            ("shipping_tax", self.shipping_tax),
            ("captured", self.captured),
        ]
        for i, line in enumerate(self.lines):
            amounts += [
                (f"lines.{i}.unit_price", line.unit_price),
                (f"lines.{i}.tax", line.tax),
                (f"lines.{i}.discount", line.discount),
            ]
        for path, money in amounts:
            if money is not None and money.currency != self.currency:
                problems.append(
                    {
                        "field": f"{path}.currency",
                        "message": f"{money.currency} differs from the order's {self.currency}",
                    }
                )
        seen: set[str] = set()
        for i, line in enumerate(self.lines):
            if line.external_id in seen:
                problems.append(
                    {
                        "field": f"lines.{i}.external_id",
                        "message": f"duplicate line id {line.external_id!r}",
                    }
                )
            seen.add(line.external_id)
        if self.delivered_at and self.delivered_at < self.ordered_at:
            problems.append({"field": "delivered_at", "message": "is before ordered_at"})
        return problems


class BuyerOut(OutModel):
    id: uuid.UUID
    external_id: str
    email: str | None
    name: str | None
    country: str | None


class OrderLineOut(OutModel):
    id: uuid.UUID
    external_id: str
    sku: str
    title: str
    quantity: int
    unit_price: MoneyOut
    tax: MoneyOut
    discount: MoneyOut
    returned_quantity: int = Field(description="Units claimed by open or completed returns")


class OrderOut(OutModel):
    id: uuid.UUID
    channel: str
    external_id: str
    currency: str
    ordered_at: datetime
    delivered_at: datetime | None
    ship_to_country: str | None
    buyer: BuyerOut | None
    shipping: MoneyOut
    shipping_tax: MoneyOut
    captured: MoneyOut
    payment_reference: str | None
    lines: list[OrderLineOut]
    created_at: datetime
    updated_at: datetime


class OrderPage(OutModel):
    items: list[OrderOut]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page")
