"""Limits no policy can lift (DESIGN.md money-safety invariants), and facts that must be known."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from returnguard.domain.policy.document import PolicyDocument
from returnguard.domain.policy.engine import (
    SAFETY,
    LineFacts,
    Outcome,
    ReturnFacts,
    compile_policy,
    evaluate,
)
from returnguard.domain.reasons import ReasonCode


def _facts(**over: Any) -> ReturnFacts:
    reason = over.pop("reason", ReasonCode.CHANGED_MIND)
    value = over.pop("value", Decimal("9.00"))
    base: dict[str, Any] = {
        "channel": "shop",
        "marketplace_country": "US",
        "buyer_country": "US",
        "currency": "USD",
        "days_since_delivery": 3,
        "buyer_risk": None,
        "watchlisted": False,
        "first_time_buyer": False,
        "cost_to_return": Decimal("12.00"),
        "lines": [LineFacts("l1", "SKU-1", "toys", reason, value, 1)],
    }
    base.update(over)
    return ReturnFacts(**base)


def _policy(defaults: dict[str, Any], rules: list[dict[str, Any]] | None = None) -> Any:
    return compile_policy(
        PolicyDocument.model_validate({"name": "p", "defaults": defaults, "rules": rules or []})
    )


GENEROUS = {
    "restocking_fee": {"percent": "15", "applies_to": "always"},
    "refund_before_receipt": True,
    "returnless_refund": True,
}


def _both(policy: Any, facts: ReturnFacts) -> Any:
    """Both engine paths must agree; return the explained one."""
    fast, explained = evaluate(policy, facts, explain=False), evaluate(policy, facts)
    assert fast.outcome == explained.outcome
    assert fast.lines[0].settings == explained.lines[0].settings
    return explained


def test_restocking_fee_only_on_buyers_choice_returns() -> None:
    policy = _policy(GENEROUS)
    kept = _both(policy, _facts()).lines[0]
    assert kept.settings["restocking_fee"].percent == Decimal(15)
    faulty = _both(policy, _facts(reason=ReasonCode.DEFECTIVE)).lines[0]
    assert faulty.settings["restocking_fee"] is None
    assert faulty.sources["restocking_fee"] == "safety"
    assert {
        "law": SAFETY,
        "setting": "restocking_fee",
        "effect": "restocking fees apply only to buyer's-choice returns",
    } in faulty.legal


def test_watchlisted_buyer_never_gets_money_before_the_goods() -> None:
    policy = _policy(GENEROUS)
    assert _both(policy, _facts()).outcome is Outcome.RETURNLESS_REFUND
    decision = _both(policy, _facts(watchlisted=True))
    line = decision.lines[0]
    assert decision.outcome is Outcome.AUTO_APPROVE
    assert line.settings["refund_before_receipt"] is False
    assert line.settings["returnless_refund"] is False
    assert line.settings["inspection_before_refund"] is True
    assert {e["setting"] for e in line.legal} >= {
        "refund_before_receipt",
        "returnless_refund",
        "inspection_before_refund",
    }


def test_inspection_before_refund_overrides_refund_before_receipt() -> None:
    policy = _policy(GENEROUS, [{"id": "inspect", "then": {"inspection_before_refund": True}}])
    line = _both(policy, _facts()).lines[0]
    assert line.outcome is Outcome.AUTO_APPROVE
    assert line.settings["refund_before_receipt"] is False
    assert line.sources["returnless_refund"] == "safety"


def test_unknown_buyer_country_goes_to_review() -> None:
    decision = _both(_policy({}), _facts(buyer_country=None))
    assert decision.outcome is Outcome.NEEDS_REVIEW
    assert decision.missing_facts == ["buyer_country"]


def test_a_zero_exchange_rate_is_a_missing_fact_not_a_crash() -> None:
    policy = _policy(
        {},
        [
            {
                "id": "cheap",
                "when": {"item_value": {"currency": "EUR", "max": "20"}},
                "then": {"human_review": True},
            }
        ],
    )
    decision = _both(policy, _facts(fx_rates={"EUR": Decimal(0)}))
    assert decision.outcome is Outcome.NEEDS_REVIEW
    assert "item_value" in decision.missing_facts
    ok = _both(policy, _facts(fx_rates={"EUR": Decimal("1.10")}))
    assert ok.outcome is Outcome.NEEDS_REVIEW and ok.missing_facts == []
    assert ok.lines[0].sources["human_review"] == "cheap"
