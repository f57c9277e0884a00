from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, StrictInt

from returnguard.domain.reasons import ReasonCode
from returnguard.kit.schemas import (
    AwareTimestamp,
    MoneyIn,
    MoneyOut,
    OutModel,
    PercentString,
    StrictModel,
)

Note = Annotated[str, Field(max_length=5000)]


class ReturnLineIn(StrictModel):
    order_line_id: uuid.UUID
    quantity: StrictInt = Field(gt=0, le=100_000)
    reason_code: ReasonCode
    comment: Note = ""


class ReturnIn(StrictModel):
    order_id: uuid.UUID
    lines: list[ReturnLineIn] = Field(min_length=1, max_length=500)
    buyer_comment: Note = ""
    decide: bool = Field(
        default=True,
        description="Apply the channel's published policy now (approve, ask for evidence, "
        "review, offer, refund without the goods, or reject); false records the request "
        "for a manual decision",
    )
    requested_at: AwareTimestamp | None = Field(
        default=None,
        description="When the buyer asked, if earlier than now (e.g. synced from a "
        "marketplace); between the order date and now",
    )


class LineQuantityIn(StrictModel):
    return_line_id: uuid.UUID
    quantity: StrictInt = Field(ge=0, le=100_000)


class ApproveIn(StrictModel):
    lines: list[LineQuantityIn] | None = Field(
        default=None, description="Approve fewer units than requested; omit to approve all"
    )
    note: Note = ""


class ReasonIn(StrictModel):
    reason: Annotated[str, Field(min_length=1, max_length=2000)]


class OptionalReasonIn(StrictModel):
    reason: Note = ""


class OfferKind(StrEnum):
    KEEP_PARTIAL_REFUND = "keep_partial_refund"
    COUPON = "coupon"
    REPLACEMENT = "replacement"


class OfferIn(StrictModel):
    kind: OfferKind
    amount: MoneyIn | None = Field(default=None, description="Partial refund or coupon value")
    percent: PercentString | None = Field(default=None, description="Partial refund in %")
    note: Note = ""


class ShipmentIn(StrictModel):
    carrier: Annotated[str, Field(min_length=1, max_length=64)]
    tracking_number: Annotated[str, Field(min_length=1, max_length=128)]
    label_cost: MoneyIn | None = None
    label_paid_by: Annotated[str, Field(pattern="^(seller|buyer|marketplace)$")] | None = None


class ReceiveLineIn(StrictModel):
    return_line_id: uuid.UUID
    quantity: StrictInt = Field(gt=0, le=100_000)


class ReceiveIn(StrictModel):
    lines: list[ReceiveLineIn] = Field(min_length=1)
    notes: Note = ""


class Disposition(StrEnum):
    RESTOCK = "restock"
    REFURBISH = "refurbish"
    RELABEL = "relabel"
    RETURN_TO_SUPPLIER = "return_to_supplier"
    LIQUIDATE = "liquidate"
    DISPOSE = "dispose"


class InspectionLineIn(StrictModel):
    return_line_id: uuid.UUID
    passed: StrictInt = Field(ge=0, le=100_000)
    failed: StrictInt = Field(ge=0, le=100_000)
    grade: Annotated[str, Field(max_length=32)] | None = None
    disposition: Disposition | None = None
    notes: Note = ""


class InspectionIn(StrictModel):
    lines: list[InspectionLineIn] = Field(min_length=1)
    notes: Note = ""


class QuantitiesOut(OutModel):
    requested: int
    approved: int
    received: int
    inspected: int
    passed: int
    refunded: int


class ReturnLineOut(OutModel):
    id: uuid.UUID
    order_line_id: uuid.UUID
    sku: str
    reason_code: str
    reason_class: str
    comment: str
    quantities: QuantitiesOut


class ShipmentOut(OutModel):
    id: uuid.UUID
    carrier: str
    tracking_number: str
    label_cost: MoneyOut | None
    label_paid_by: str | None
    created_at: datetime


class ReceiptOut(OutModel):
    id: uuid.UUID
    lines: list[dict[str, Any]]
    notes: str
    received_at: datetime


class InspectionOut(OutModel):
    id: uuid.UUID
    outcome: str
    lines: list[dict[str, Any]]
    notes: str
    inspected_at: datetime


class ReturnOut(OutModel):
    id: uuid.UUID
    number: str
    status: str
    version: int
    order_id: uuid.UUID
    channel: str
    currency: str
    buyer_comment: str
    status_reason: str | None
    offer: dict[str, Any] | None
    lines: list[ReturnLineOut]
    shipments: list[ShipmentOut] | None = Field(
        default=None, description="Only on a single return, not in lists"
    )
    receipts: list[ReceiptOut] | None = Field(
        default=None, description="Only on a single return, not in lists"
    )
    inspections: list[InspectionOut] | None = Field(
        default=None, description="Only on a single return, not in lists"
    )
    allowed_actions: list[str]
    requested_at: datetime
    updated_at: datetime


class ReturnPage(OutModel):
    items: list[ReturnOut]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page")


class EventOut(OutModel):
    id: uuid.UUID
    seq: int
    action: str
    subject_type: str
    subject_id: str
    actor_type: str
    actor_id: str | None
    actor_label: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    data: dict[str, Any] | None
    occurred_at: datetime
    hash: str
    prev_hash: str


class EvidenceOut(OutModel):
    id: uuid.UUID
    kind: str
    filename: str | None
    content_type: str | None
    size: int
    sha256: str | None
    text: str | None
    uploaded_by: str
    source: str = Field(description="buyer | agent | inspector | carrier")
    created_at: datetime
