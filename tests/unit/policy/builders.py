"""Facts for the policy engine tests: one builder, each test module sets its own defaults."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from returnguard.domain.policy.document import RiskLevel
from returnguard.domain.policy.engine import LineFacts, ReturnFacts
from returnguard.domain.reasons import ReasonCode


def line(
    line_id: str = "l1",
    *,
    sku: str = "SKU-1",
    category: str | None = "shoes",
    reason: ReasonCode = ReasonCode.CHANGED_MIND,
    value: str | None = "40.00",
    quantity: int = 1,
) -> LineFacts:
    return LineFacts(
        line_id=line_id,
        sku=sku,
        category=category,
        reason_code=reason,
        unit_value=None if value is None else Decimal(value),
        quantity=quantity,
    )


def facts(*lines: LineFacts, **overrides: Any) -> ReturnFacts:
    """A US buyer's one-line return 5 days after delivery, unless told otherwise."""
    values: dict[str, Any] = {
        "channel": "shop-us",
        "marketplace_country": "US",
        "buyer_country": "US",
        "currency": "EUR",
        "days_since_delivery": 5,
        "buyer_risk": RiskLevel.LOW,
        "watchlisted": False,
        "first_time_buyer": False,
        "cost_to_return": Decimal("6.00"),
        "lines": list(lines) or [line()],
    }
    values.update(overrides)
    return ReturnFacts(**values)
