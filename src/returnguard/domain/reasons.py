"""The closed set of return reason codes and their classes (DESIGN.md)."""

from __future__ import annotations

from enum import StrEnum


class ReasonClass(StrEnum):
    NO_FAULT = "no_fault"
    SELLER_FAULT = "seller_fault"
    DELIVERY = "delivery"
    OTHER = "other"


class ReasonCode(StrEnum):
    CHANGED_MIND = "changed_mind"
    SIZE_FIT = "size_fit"
    ORDERED_BY_MISTAKE = "ordered_by_mistake"
    BETTER_PRICE = "better_price"
    DEFECTIVE = "defective"
    NOT_AS_DESCRIBED = "not_as_described"
    DAMAGED_IN_TRANSIT = "damaged_in_transit"
    WRONG_ITEM = "wrong_item"
    MISSING_PARTS = "missing_parts"
    LATE_DELIVERY = "late_delivery"
    LOST_IN_TRANSIT = "lost_in_transit"
    OTHER = "other"

    @property
    def reason_class(self) -> ReasonClass:
        return REASON_CLASSES[self]


REASON_CLASSES: dict[ReasonCode, ReasonClass] = {
    ReasonCode.CHANGED_MIND: ReasonClass.NO_FAULT,
    ReasonCode.SIZE_FIT: ReasonClass.NO_FAULT,
    ReasonCode.ORDERED_BY_MISTAKE: ReasonClass.NO_FAULT,
    ReasonCode.BETTER_PRICE: ReasonClass.NO_FAULT,
    ReasonCode.DEFECTIVE: ReasonClass.SELLER_FAULT,
    ReasonCode.NOT_AS_DESCRIBED: ReasonClass.SELLER_FAULT,
    ReasonCode.DAMAGED_IN_TRANSIT: ReasonClass.SELLER_FAULT,
    ReasonCode.WRONG_ITEM: ReasonClass.SELLER_FAULT,
    ReasonCode.MISSING_PARTS: ReasonClass.SELLER_FAULT,
    ReasonCode.LATE_DELIVERY: ReasonClass.DELIVERY,
    ReasonCode.LOST_IN_TRANSIT: ReasonClass.DELIVERY,
    ReasonCode.OTHER: ReasonClass.OTHER,
}
