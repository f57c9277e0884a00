from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import Field, StrictBool, StrictInt

from returnguard.kit.schemas import DecimalString, MoneyOut, OutModel, StrictModel


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
    keep_percent: DecimalString | None = Field(
        default=None, description="Keep-the-item partial refund: this percent of what was paid"
    )
    override_reason: Annotated[str, Field(max_length=2000)] | None = Field(
        default=None,
        description="finance/admin only: refund before the goods are back, with this reason",
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
    provider_reference: str | None
    failure: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime
