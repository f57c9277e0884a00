"""The policy every channel starts with, in the channel's currency.

Seed behaviour: the buyer pays return shipping for no-fault returns; a restocking fee on
opened no-fault returns; photos for defective, not-as-described and damaged items, whose
refund (like every seller-fault return's) includes the original delivery charge;
inspection before any refund above a value threshold; a returnless refund when the item
is worth less than bringing it back.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from returnguard.domain.policy.document import PolicyDocument

# Thresholds in units of the major currencies; scaled for others by a rough factor.
_SCALE = {
    "JPY": Decimal(150),
    "KRW": Decimal(1300),
    "HUF": Decimal(380),
    "SEK": Decimal(11),
    "NOK": Decimal(11),
    "DKK": Decimal(7),
    "PLN": Decimal(4),
    "CZK": Decimal(23),
    "CNY": Decimal(7),
    "INR": Decimal(83),
    "MXN": Decimal(17),
}


def default_policy_data(currency: str) -> dict[str, Any]:
    scale = _SCALE.get(currency, Decimal(1))

    def amount(value: int) -> str:
        return str(Decimal(value) * scale)

    return {
        "name": f"Default policy ({currency})",
        "description": "ReturnGuard's starting policy. Copy it, change it, backtest it.",
        "high_value_threshold": {"amount": amount(150), "currency": currency},
        "defaults": {
            "eligible": True,
            "return_window_days": 30,
            "return_shipping_paid_by": "seller",
            "human_review": False,
            "inspection_before_refund": False,
            "refund_before_receipt": False,
            "returnless_refund": False,
        },
        "rules": [
            {
                # First, so no later rule can give a watchlisted buyer money before the
                # goods are back (DESIGN.md, money-safety invariant 3).
                "id": "watchlist-review",
                "description": "Watchlisted buyers always get a human review and inspection",
                "when": {"watchlisted": True},
                "then": {
                    "human_review": True,
                    "inspection_before_refund": True,
                    "refund_before_receipt": False,
                    "returnless_refund": False,
                },
            },
            {
                "id": "high-value-inspect",
                "description": "Valuable items are inspected before any money moves",
                "when": {"item_value": {"currency": currency, "min": amount(150)}},
                "then": {
                    "inspection_before_refund": True,
                    "refund_before_receipt": False,
                    "shipping": {"tracked": True, "signature": True},
                    "returnless_refund": False,
                },
            },
            {
                "id": "seller-fault-evidence",
                "description": "Photos first for defective, not-as-described or damaged items",
                "when": {"reason_codes": ["defective", "not_as_described", "damaged_in_transit"]},
                "then": {
                    "evidence": {"photos": 2, "explanation": True},
                    "return_shipping_paid_by": "seller",
                },
            },
            {
                "id": "seller-fault-free",
                "description": "Seller-fault returns are free for the buyer, delivery included",
                "when": {"reason_classes": ["seller_fault"]},
                "then": {"return_shipping_paid_by": "seller", "refund_outbound_shipping": True},
            },
            {
                "id": "no-fault-buyer-pays",
                "description": "Buyer's-choice returns: buyer pays shipping, fee if opened",
                "when": {"reason_classes": ["no_fault"]},
                "then": {
                    "return_shipping_paid_by": "buyer",
                    "restocking_fee": {
                        "percent": "10",
                        "cap": amount(25),
                        "applies_to": "opened",
                    },
                },
            },
            {
                "id": "cheap-returnless",
                "description": "Not worth shipping back: refund without the goods",
                "when": {"item_value": {"currency": currency, "max": amount(15)}},
                "then": {"returnless_refund": True},
            },
        ],
    }


def default_policy(currency: str) -> PolicyDocument:
    return PolicyDocument.model_validate(default_policy_data(currency))
