from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictInt

from returnguard.kit.schemas import MoneyIn, MoneyOut, OutModel, PercentString, StrictModel


class RefundLineIn(StrictModel):
    return_line_id: uuid.UUID
    quantity: StrictInt = Field(gt=0, le=100_000)
    charge_restocking_fee: StrictBool = Field(
        default=False,
        description="The item came back opened or used: charge the policy's fee for it",
    )


class RefundIn(StrictModel):
    lines: list[RefundLineIn] = Field(min_length=1, max_length=500)
    reason: Annotated[str, Field(max_length=2000)] = ""
    keep_percent: PercentString | None = Field(
        default=None, description="Keep-the-item partial refund: this percent of what was paid"
    )
    override_reason: Annotated[str, Field(max_length=2000)] | None = Field(
        default=None,
        description="finance/admin only: refund before the goods are back, with this reason",
    )
    provider: Annotated[str, Field(min_length=1, max_length=100)] | None = Field(
        default=None,
        description="Name of a configured refund provider, or `manual`; default: the "
        "channel's provider, else manual",
    )
    send: StrictBool = Field(
        default=True,
        description="Send at once unless four-eyes applies; false only grants it, for "
        "finance to send with POST /refunds/{id}/send",
    )


class SettleIn(StrictModel):
    reference: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    failure: Annotated[str, Field(min_length=1, max_length=2000)] | None = None


class RefundOut(OutModel):
    id: uuid.UUID
    return_id: uuid.UUID
    status: str
    amount: MoneyOut
    lines: list[dict[str, Any]]
    return_shipping_deduction: MoneyOut
    reason: str
    override_reason: str | None
    provider: str
    provider_name: str | None = None
    provider_reference: str | None
    provider_status: str | None
    unsent: MoneyOut = Field(
        description="Granted but not sent: the provider takes the currency in a coarser "
        "unit (e.g. TWD without decimals at PayPal), so the amount was rounded down. The "
        "buyer is paid amount minus unsent"
    )
    provider_response: dict[str, Any] | None = Field(
        default=None,
        description="A provider answer ReturnGuard could not read (unknown shape or "
        "status), kept as it came; the refund stays pending until a person checks",
    )
    failure: str | None
    failure_code: str | None
    last_error: str | None
    granted_by: str
    four_eyes: bool
    four_eyes_reason: str | None
    sent_by: str | None
    sent_at: datetime | None
    settled_at: datetime | None
    created_by: str
    created_at: datetime
    updated_at: datetime


class CancelIn(StrictModel):
    reason: Annotated[str, Field(min_length=1, max_length=2000)]


class RefundSettingsIn(StrictModel):
    four_eyes_above: MoneyIn | None = Field(
        default=None,
        description="Grants above this amount (in the organization's base currency) must "
        "be sent by a different person with the finance role; null turns it off",
    )
    four_eyes_on_override: StrictBool = Field(
        default=False, description="Every override of the policy needs a second person"
    )


class RefundSettingsOut(OutModel):
    base_currency: str
    four_eyes_above: MoneyOut | None
    four_eyes_on_override: bool


class ProviderIn(StrictModel):
    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][\w.-]*$")]
    kind: Literal["manual", "shopify", "stripe", "paypal"]
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="shopify: shop_domain, api_version; stripe/paypal: base_url",
    )
    credentials: dict[str, Any] = Field(
        default_factory=dict,
        description="shopify: access_token; stripe: api_key; paypal: client_id, "
        "client_secret. Stored encrypted, never shown again",
    )


class ProviderOut(OutModel):
    id: uuid.UUID
    name: str
    kind: str
    settings: dict[str, Any]
    active: bool
    created_at: datetime


class ChannelProviderIn(StrictModel):
    provider: Annotated[str, Field(min_length=1, max_length=100)] | None


class ChannelProviderOut(OutModel):
    channel: str
    provider: str
