from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from pydantic import ConfigDict, Field, field_validator

from returnguard.domain.ledger import AUTOMATIC_KINDS, ClaimSource, EntryKind, LabelPayer
from returnguard.kit.schemas import IsoDay, MoneyIn, MoneyOut, OutModel, StrictModel


class EntryIn(StrictModel):
    """A cost or recovery typed in by hand. Amounts are positive: the kind decides the sign."""

    kind: EntryKind = Field(
        description="Any kind except those booked from refunds (refund_paid, "
        "restocking_fee_kept, return_label_recovered)"
    )
    amount: MoneyIn = Field(
        description="Positive; in the order's currency or any other one "
        "with an exchange rate to the organization's base currency"
    )
    return_id: uuid.UUID | None = Field(default=None, description="The return it belongs to")
    order_id: uuid.UUID | None = Field(
        default=None, description="The order, when the entry is not about one return"
    )
    order_line_id: uuid.UUID | None = Field(
        default=None, description="A line of the return, when the entry is about one SKU"
    )
    occurred_on: IsoDay | None = Field(default=None, description="Default: today (UTC)")
    source: ClaimSource | None = Field(default=None, description="Who paid a claim back")
    paid_by: LabelPayer | None = Field(default=None, description="Who paid the carrier")
    memo: str = Field(default="", max_length=2000)

    @field_validator("kind")
    @classmethod
    def _manual(cls, value: EntryKind) -> EntryKind:
        if value in AUTOMATIC_KINDS:
            raise ValueError(
                f"{value.value} is booked automatically when a refund succeeds; "
                "correct it with a reversal or an other_cost / other_recovery entry"
            )
        return value


class ReverseIn(StrictModel):
    reason: str = Field(min_length=1, max_length=2000)


class EntryOut(OutModel):
    id: uuid.UUID
    kind: str
    amount: MoneyOut = Field(description="Signed: negative is money out, positive money in")
    occurred_on: date
    order_id: uuid.UUID
    return_id: uuid.UUID | None
    order_line_id: uuid.UUID | None
    sku: str | None
    channel_id: uuid.UUID
    refund_id: uuid.UUID | None
    paid_by: str | None
    source: str | None
    memo: str
    details: dict[str, Any] | None
    automatic: bool = Field(
        description="Booked by ReturnGuard from a refund, shipment, receipt or inspection"
    )
    reverses_id: uuid.UUID | None
    created_by: str
    created_at: datetime


class EntryPage(OutModel):
    items: list[EntryOut]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page")


class FiguresOut(OutModel):
    revenue: MoneyOut
    cost_of_goods: MoneyOut
    refunds: MoneyOut
    return_costs: MoneyOut
    recoveries: MoneyOut
    net: MoneyOut


class NetProfitRow(FiguresOut):
    key: str = Field(description="Order id, SKU, channel code or month (YYYY-MM)")
    label: str


class MissingRate(OutModel):
    what: str = Field(description="`order` (revenue), `cost` (product cost) or `entry`")
    id: str
    currency: str
    day: date
    amount: MoneyOut


class MissingCost(OutModel):
    sku: str
    units: int


class NetProfitOut(OutModel):
    group_by: str
    from_: date = Field(alias="from", serialization_alias="from")
    to: date
    currency: str
    rows: list[NetProfitRow]
    total: FiguresOut
    missing_rates: list[MissingRate] = Field(
        description="Amounts left out because no exchange rate to the base currency is known"
    )
    missing_costs: list[MissingCost] = Field(
        description="SKUs sold without a unit cost: their cost of goods counts as zero"
    )

    model_config = ConfigDict(populate_by_name=True)


class ReserveRow(OutModel):
    sku: str
    units_sold: int
    units_returned: int
    return_rate: str = Field(description="Returned / sold, 6 decimals")
    rate_low: str = Field(description="Wilson 95% lower bound, 6 decimals")
    rate_high: str = Field(description="Wilson 95% upper bound, 6 decimals")
    loss_per_return: MoneyOut
    reserve_per_unit: MoneyOut
    units_sold_hold: int = Field(description="Units sold in the last `hold_days` days")
    reserve: MoneyOut


class ReserveOut(OutModel):
    as_of: date
    lookback_days: int
    hold_days: int
    currency: str
    rows: list[ReserveRow]
    total_reserve: MoneyOut
    missing_rates: list[MissingRate]


class AtRiskBucket(OutModel):
    age: str = Field(description="Days since the refund was paid: 0-7, 8-14, 15-30, 31-60, >60")
    refunds: int
    not_received_units: int
    not_received: MoneyOut
    not_inspected_units: int
    not_inspected: MoneyOut = Field(description="Received but not inspected yet")


class AtRiskItem(OutModel):
    refund_id: uuid.UUID
    return_id: uuid.UUID
    return_line_id: uuid.UUID
    sku: str
    settled_on: date
    age_days: int
    age: str
    not_received_units: int
    not_received: MoneyOut
    not_inspected_units: int
    not_inspected: MoneyOut


class MoneyAtRiskOut(OutModel):
    as_of: date
    currency: str
    buckets: list[AtRiskBucket]
    total_not_received: MoneyOut
    total_not_inspected: MoneyOut
    items: list[AtRiskItem]
    missing_rates: list[MissingRate]
