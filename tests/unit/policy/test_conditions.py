"""Rule conditions: each one matches, fails to match, or cannot be decided (missing fact).

Every case uses a US buyer so no legal floor interferes, and a probe rule that only
asks for a human review: matched -> needs_review, not matched -> auto_approve.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from returnguard.domain.policy.document import PolicyDocument, RiskLevel
from returnguard.domain.policy.engine import (
    CompiledPolicy,
    Decision,
    Outcome,
    ReturnFacts,
    compile_policy,
    evaluate,
)
from returnguard.domain.reasons import ReasonCode
from tests.unit.policy.builders import facts, line


def probe(when: dict[str, Any]) -> CompiledPolicy:
    """A policy whose only rule asks for a review when `when` holds."""
    return compile_policy(
        PolicyDocument.model_validate(
            {
                "name": "probe",
                "defaults": {},
                "rules": [{"id": "probe", "when": when, "then": {"human_review": True}}],
            }
        )
    )


def only_trace(decision: Decision) -> dict[str, Any]:
    [ln] = decision.lines
    [entry] = ln.trace
    return entry


# condition -> (when, facts that match, fact shown, facts that do not match, fact shown)
CASES: dict[str, tuple[dict[str, Any], ReturnFacts, Any, ReturnFacts, Any]] = {
    "channels": (
        {"channels": ["shop-us", "amazon.com"]},
        facts(channel="amazon.com"),
        "amazon.com",
        facts(channel="ebay.com"),
        "ebay.com",
    ),
    "marketplace_countries": (
        {"marketplace_countries": ["US", "CA"]},
        facts(marketplace_country="CA"),
        "CA",
        facts(marketplace_country="MX"),
        "MX",
    ),
    "buyer_countries": (
        {"buyer_countries": ["US"]},
        facts(buyer_country="US"),
        "US",
        facts(buyer_country="MX"),
        "MX",
    ),
    "categories": (
        {"categories": ["shoes", "bags"]},
        facts(line(category="bags")),
        "bags",
        facts(line(category="toys")),
        "toys",
    ),
    "skus": (
        {"skus": ["SKU-1"]},
        facts(line(sku="SKU-1")),
        "SKU-1",
        facts(line(sku="SKU-2")),
        "SKU-2",
    ),
    "item_value": (
        {"item_value": {"min": "20", "max": "50"}},
        facts(line(value="20.00")),  # the lower bound is inclusive
        "20.00",
        facts(line(value="50.00")),  # the upper bound is exclusive
        "50.00",
    ),
    "reason_classes": (
        {"reason_classes": ["no_fault"]},
        facts(line(reason=ReasonCode.SIZE_FIT)),
        "no_fault",
        facts(line(reason=ReasonCode.DEFECTIVE)),
        "seller_fault",
    ),
    "reason_codes": (
        {"reason_codes": ["size_fit", "better_price"]},
        facts(line(reason=ReasonCode.BETTER_PRICE)),
        "better_price",
        facts(line(reason=ReasonCode.CHANGED_MIND)),
        "changed_mind",
    ),
    "days_since_delivery": (
        {"days_since_delivery": {"min": 3, "max": 10}},
        facts(days_since_delivery=10),  # both bounds are inclusive
        10,
        facts(days_since_delivery=11),
        11,
    ),
    "buyer_risk": (
        {"buyer_risk": ["high", "medium"]},
        facts(buyer_risk=RiskLevel.HIGH),
        "high",
        facts(buyer_risk=RiskLevel.LOW),
        "low",
    ),
    "watchlisted": (
        {"watchlisted": True},
        facts(watchlisted=True),
        True,
        facts(watchlisted=False),
        False,
    ),
    "first_time_buyer": (
        {"first_time_buyer": True},
        facts(first_time_buyer=True),
        True,
        facts(first_time_buyer=False),
        False,
    ),
}


def test_every_condition_has_a_case() -> None:
    from returnguard.domain.policy.document import Conditions

    assert set(CASES) == set(Conditions.model_fields)


@pytest.mark.parametrize("condition", list(CASES))
def test_condition_matches(condition: str) -> None:
    when, matching, shown, _, _ = CASES[condition]
    decision = evaluate(probe(when), matching)

    assert decision.outcome is Outcome.NEEDS_REVIEW
    assert decision.reasons == ["the policy asks for a human review"]
    assert decision.lines[0].sources["human_review"] == "probe"
    assert decision.missing_facts == []
    assert only_trace(decision) == {
        "rule": "probe",
        "matched": True,
        "undetermined_by": None,
        "checks": [{"condition": condition, "fact": shown, "ok": True}],
        "set": {"human_review": True},
    }


@pytest.mark.parametrize("condition", list(CASES))
def test_condition_does_not_match(condition: str) -> None:
    when, _, _, other, shown = CASES[condition]
    decision = evaluate(probe(when), other)

    assert decision.outcome is Outcome.AUTO_APPROVE
    assert decision.lines[0].settings["human_review"] is False
    assert decision.lines[0].sources["human_review"] == "builtin"
    assert decision.missing_facts == []
    assert only_trace(decision) == {
        "rule": "probe",
        "matched": False,
        "undetermined_by": None,
        "checks": [{"condition": condition, "fact": shown, "ok": False}],
        "set": {},
    }


def test_watchlisted_false_matches_a_buyer_not_on_the_watchlist() -> None:
    decision = evaluate(probe({"watchlisted": False}), facts(watchlisted=False))
    assert decision.outcome is Outcome.NEEDS_REVIEW
    assert only_trace(decision)["checks"] == [
        {"condition": "watchlisted", "fact": False, "ok": True}
    ]


def test_first_time_buyer_false_matches_a_repeat_buyer() -> None:
    decision = evaluate(probe({"first_time_buyer": False}), facts(first_time_buyer=False))
    assert decision.outcome is Outcome.NEEDS_REVIEW
    assert only_trace(decision)["checks"] == [
        {"condition": "first_time_buyer", "fact": False, "ok": True}
    ]


def test_open_ended_ranges() -> None:
    at_least_20 = probe({"item_value": {"min": "20"}})
    assert evaluate(at_least_20, facts(line(value="1000000"))).outcome is Outcome.NEEDS_REVIEW
    assert evaluate(at_least_20, facts(line(value="19.99"))).outcome is Outcome.AUTO_APPROVE

    up_to_day_7 = probe({"days_since_delivery": {"max": 7}})
    assert evaluate(up_to_day_7, facts(days_since_delivery=0)).outcome is Outcome.NEEDS_REVIEW
    assert evaluate(up_to_day_7, facts(days_since_delivery=8)).outcome is Outcome.AUTO_APPROVE


def test_all_conditions_of_a_rule_must_hold() -> None:
    policy = probe({"channels": ["shop-us"], "categories": ["shoes"]})

    both = evaluate(policy, facts(line(category="shoes")))
    assert both.outcome is Outcome.NEEDS_REVIEW
    assert only_trace(both)["checks"] == [
        {"condition": "channels", "fact": "shop-us", "ok": True},
        {"condition": "categories", "fact": "shoes", "ok": True},
    ]

    one = evaluate(policy, facts(line(category="toys")))
    assert one.outcome is Outcome.AUTO_APPROVE
    entry = only_trace(one)
    assert entry["matched"] is False
    assert entry["checks"][-1] == {"condition": "categories", "fact": "toys", "ok": False}


def test_a_rule_without_conditions_matches_anything() -> None:
    decision = evaluate(probe({}), facts())
    assert decision.outcome is Outcome.NEEDS_REVIEW
    assert only_trace(decision)["checks"] == []
    assert only_trace(decision)["matched"] is True


def test_explain_false_decides_the_same_without_a_trace() -> None:
    when, matching, _, other, _ = CASES["categories"]
    policy = probe(when)
    for case in (matching, other):
        explained = evaluate(policy, case)
        quiet = evaluate(policy, case, explain=False)
        assert quiet.outcome is explained.outcome
        assert quiet.lines[0].settings == explained.lines[0].settings
        assert quiet.lines[0].trace == []


# --- item value bands in another currency -------------------------------------------


def test_value_band_in_the_orders_currency_needs_no_rate() -> None:
    decision = evaluate(
        probe({"item_value": {"currency": "EUR", "min": "30"}}), facts(line(value="40.00"))
    )
    assert decision.outcome is Outcome.NEEDS_REVIEW
    assert only_trace(decision)["checks"] == [
        {"condition": "item_value", "fact": "40.00", "ok": True}
    ]


def test_value_band_in_another_currency_is_converted_with_the_rate() -> None:
    # The order is in GBP; the band is in EUR; 1 EUR = 0.80 GBP.
    policy = probe({"item_value": {"currency": "EUR", "min": "100"}})
    rates = {"EUR": Decimal("0.80")}

    above = evaluate(policy, facts(line(value="84.00"), currency="GBP", fx_rates=rates))
    assert above.outcome is Outcome.NEEDS_REVIEW  # 84 GBP = 105 EUR
    assert only_trace(above)["checks"] == [{"condition": "item_value", "fact": "105", "ok": True}]

    below = evaluate(policy, facts(line(value="76.00"), currency="GBP", fx_rates=rates))
    assert below.outcome is Outcome.AUTO_APPROVE  # 76 GBP = 95 EUR
    assert only_trace(below)["checks"] == [{"condition": "item_value", "fact": "95", "ok": False}]


def test_value_band_in_another_currency_without_a_rate_is_a_missing_fact() -> None:
    policy = probe({"item_value": {"currency": "EUR", "min": "100"}})
    decision = evaluate(policy, facts(line(value="500.00"), currency="GBP", fx_rates={}))

    assert decision.outcome is Outcome.NEEDS_REVIEW
    assert decision.missing_facts == ["item_value"]
    assert decision.lines[0].missing_facts == ["item_value"]
    assert any("item_value" in reason for reason in decision.reasons)
    # The probe rule did not match: the review comes from the missing fact, not from it.
    assert decision.lines[0].sources["human_review"] == "builtin"
    assert only_trace(decision) == {
        "rule": "probe",
        "matched": False,
        "undetermined_by": "item_value",
        "checks": [{"condition": "item_value", "fact": None, "ok": None}],
        "set": {},
    }


def test_unknown_item_value_is_a_missing_fact() -> None:
    decision = evaluate(probe({"item_value": {"max": "15"}}), facts(line(value=None)))
    assert decision.outcome is Outcome.NEEDS_REVIEW
    assert decision.missing_facts == ["item_value"]


# --- missing facts: never auto-approved ---------------------------------------------


MISSING = [
    ({"buyer_countries": ["US"]}, "buyer_countries", facts(buyer_country=None)),
    ({"marketplace_countries": ["US"]}, "marketplace_countries", facts(marketplace_country=None)),
    ({"categories": ["shoes"]}, "categories", facts(line(category=None))),
    ({"buyer_risk": ["high"]}, "buyer_risk", facts(buyer_risk=None)),
    ({"first_time_buyer": True}, "first_time_buyer", facts(first_time_buyer=None)),
    ({"days_since_delivery": {"max": 30}}, "days_since_delivery", facts(days_since_delivery=None)),
]


@pytest.mark.parametrize(("when", "missing", "case"), MISSING, ids=[m[1] for m in MISSING])
def test_a_missing_fact_falls_back_to_review_naming_it(
    when: dict[str, Any], missing: str, case: ReturnFacts
) -> None:
    decision = evaluate(probe(when), case)

    assert decision.outcome is Outcome.NEEDS_REVIEW
    assert missing in decision.missing_facts
    said = "delivery date unknown" if missing == "days_since_delivery" else missing
    assert any(said in reason for reason in decision.reasons)
    entry = only_trace(decision)
    assert entry["matched"] is False
    assert entry["undetermined_by"] == missing
    assert entry["checks"] == [{"condition": missing, "fact": None, "ok": None}]


def test_a_missing_fact_is_reviewed_even_when_a_later_rule_refuses() -> None:
    # The undecided rule might have made the line eligible: review it, never guess.
    policy = compile_policy(
        PolicyDocument.model_validate(
            {
                "name": "goodwill",
                "defaults": {},
                "rules": [
                    {
                        "id": "welcome",
                        "when": {"first_time_buyer": True},
                        "then": {"eligible": True},
                    },
                    {"id": "no-returns", "then": {"eligible": False}},
                ],
            }
        )
    )
    assert evaluate(policy, facts(first_time_buyer=True)).outcome is Outcome.AUTO_APPROVE
    assert evaluate(policy, facts(first_time_buyer=False)).outcome is Outcome.REJECT

    unknown = evaluate(policy, facts(first_time_buyer=None))
    assert unknown.outcome is Outcome.NEEDS_REVIEW
    assert unknown.missing_facts == ["first_time_buyer"]


def test_a_fact_no_rule_asks_for_is_not_missing() -> None:
    case = facts(line(category=None), buyer_risk=None, first_time_buyer=None)
    decision = evaluate(probe({"channels": ["shop-us"]}), case)
    assert decision.outcome is Outcome.NEEDS_REVIEW
    assert decision.missing_facts == []
