"""Rule settings: one test per setting, rule order, `stop`, defaults and line combination.

Every case uses a US buyer so no legal floor interferes.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from returnguard.domain.policy.document import (
    BUILTIN_DEFAULTS,
    SETTING_NAMES,
    Alternatives,
    Evidence,
    FeeApplies,
    Payer,
    PolicyDocument,
    RestockingFee,
    RiskLevel,
    Shipping,
)
from returnguard.domain.policy.engine import (
    CompiledPolicy,
    Decision,
    EvidenceFacts,
    LineDecision,
    LineFacts,
    Outcome,
    ReturnFacts,
    compile_policy,
    evaluate,
)
from returnguard.domain.reasons import ReasonCode
from tests.unit.policy import builders
from tests.unit.policy.builders import line


def facts(*lines: LineFacts, **overrides: Any) -> ReturnFacts:
    return builders.facts(*lines, **({"currency": "USD"} | overrides))


def rule(
    rule_id: str, then: dict[str, Any], when: dict[str, Any] | None = None, *, stop: bool = False
) -> dict[str, Any]:
    return {"id": rule_id, "when": when or {}, "then": then, "stop": stop}


def policy(*rules: dict[str, Any], **defaults: Any) -> CompiledPolicy:
    return compile_policy(
        PolicyDocument.model_validate({"name": "test", "defaults": defaults, "rules": list(rules)})
    )


def decide_one(p: CompiledPolicy, case: ReturnFacts | None = None) -> tuple[Decision, LineDecision]:
    decision = evaluate(p, case or facts())
    [ln] = decision.lines
    return decision, ln


def set_by(ln: LineDecision, rule_id: str) -> dict[str, Any]:
    [entry] = [e for e in ln.trace if e["rule"] == rule_id]
    result: dict[str, Any] = entry["set"]
    return result


# The settings this file has a test for; a new field in Settings must get one too.
TESTED = {
    "eligible",
    "decline_reason",
    "return_window_days",
    "return_shipping_paid_by",
    "restocking_fee",
    "evidence",
    "human_review",
    "inspection_before_refund",
    "refund_before_receipt",
    "shipping",
    "return_center",
    "alternatives",
    "refund_outbound_shipping",
    "returnless_refund",
}


def test_every_setting_has_a_test() -> None:
    assert set(SETTING_NAMES) == TESTED


# --- one test per setting -----------------------------------------------------------


def test_eligible_false_rejects() -> None:
    p = policy(rule("no-shoes", {"eligible": False}, {"categories": ["shoes"]}))

    decision, ln = decide_one(p)
    assert decision.outcome is Outcome.REJECT
    assert decision.reasons == ["not eligible for return"]
    assert ln.settings["eligible"] is False
    assert ln.sources["eligible"] == "no-shoes"
    assert set_by(ln, "no-shoes") == {"eligible": False}

    other, _ = decide_one(p, facts(line(category="bags")))
    assert other.outcome is Outcome.AUTO_APPROVE


def test_decline_reason_is_the_rejection_reason() -> None:
    p = policy(
        rule(
            "final-sale",
            {"eligible": False, "decline_reason": "Final sale items cannot be returned"},
            {"skus": ["SKU-1"]},
        )
    )
    decision, ln = decide_one(p)
    assert decision.outcome is Outcome.REJECT
    assert decision.reasons == ["Final sale items cannot be returned"]
    assert ln.sources["decline_reason"] == "final-sale"


def test_return_window_days() -> None:
    p = policy(rule("short", {"return_window_days": 10}, {"categories": ["shoes"]}))

    inside, ln = decide_one(p, facts(days_since_delivery=10))
    assert inside.outcome is Outcome.AUTO_APPROVE
    assert ln.settings["return_window_days"] == 10
    assert ln.sources["return_window_days"] == "short"

    outside, _ = decide_one(p, facts(days_since_delivery=11))
    assert outside.outcome is Outcome.REJECT
    assert outside.reasons == ["outside the 10-day return window (11 days since delivery)"]


def test_return_shipping_paid_by() -> None:
    p = policy(
        rule("buyer-pays", {"return_shipping_paid_by": "buyer"}, {"reason_classes": ["no_fault"]})
    )

    _, ln = decide_one(p)
    assert ln.settings["return_shipping_paid_by"] is Payer.BUYER
    assert ln.sources["return_shipping_paid_by"] == "buyer-pays"
    assert set_by(ln, "buyer-pays") == {"return_shipping_paid_by": "buyer"}

    _, faulty = decide_one(p, facts(line(reason=ReasonCode.WRONG_ITEM)))
    assert faulty.settings["return_shipping_paid_by"] is Payer.SELLER
    assert faulty.sources["return_shipping_paid_by"] == "builtin"


def test_restocking_fee_for_no_fault_reasons_only() -> None:
    fee = {"percent": "15", "cap": "20.00", "applies_to": "opened"}
    p = policy(rule("fee", {"restocking_fee": fee}, {"reason_classes": ["no_fault"]}))

    decision, ln = decide_one(p)
    assert decision.outcome is Outcome.AUTO_APPROVE
    assert ln.settings["restocking_fee"] == RestockingFee(
        percent=Decimal(15), cap=Decimal("20.00"), applies_to=FeeApplies.OPENED
    )
    assert ln.sources["restocking_fee"] == "fee"
    assert set_by(ln, "fee") == {
        "restocking_fee": {"percent": "15", "cap": "20.00", "applies_to": "opened"}
    }

    _, faulty = decide_one(p, facts(line(reason=ReasonCode.DEFECTIVE)))
    assert faulty.settings.get("restocking_fee") is None
    assert "restocking_fee" not in faulty.sources


def test_evidence_requested() -> None:
    p = policy(
        rule(
            "proof",
            {"evidence": {"photos": 2, "video": True, "explanation": True}},
            {"reason_codes": ["defective"]},
        )
    )
    decision, ln = decide_one(p, facts(line(reason=ReasonCode.DEFECTIVE)))
    assert decision.outcome is Outcome.REQUEST_EVIDENCE
    assert decision.reasons == [
        "evidence required: 2 more photo(s), a video, a written explanation"
    ]
    assert ln.settings["evidence"] == Evidence(photos=2, video=True, explanation=True)
    assert ln.sources["evidence"] == "proof"


def test_evidence_satisfied_is_no_longer_requested() -> None:
    p = policy(
        rule(
            "proof",
            {"evidence": {"photos": 2, "video": True, "explanation": True}},
            {"reason_codes": ["defective"]},
        )
    )
    faulty = line(reason=ReasonCode.DEFECTIVE)

    partial = evaluate(p, facts(faulty, evidence=EvidenceFacts(photos=1, explanation=True)))
    assert partial.outcome is Outcome.REQUEST_EVIDENCE
    assert partial.reasons == ["evidence required: 1 more photo(s), a video"]

    given = EvidenceFacts(photos=3, videos=1, explanation=True)
    assert evaluate(p, facts(faulty, evidence=given)).outcome is Outcome.AUTO_APPROVE


def test_human_review() -> None:
    p = policy(rule("risky", {"human_review": True}, {"buyer_risk": ["high"]}))
    decision, ln = decide_one(p, facts(buyer_risk=RiskLevel.HIGH))
    assert decision.outcome is Outcome.NEEDS_REVIEW
    assert decision.reasons == ["the policy asks for a human review"]
    assert ln.sources["human_review"] == "risky"


def test_inspection_before_refund() -> None:
    p = policy(rule("inspect", {"inspection_before_refund": True}, {"categories": ["shoes"]}))
    decision, ln = decide_one(p)
    assert decision.outcome is Outcome.AUTO_APPROVE  # approval, with an inspection to pass
    assert decision.setting("inspection_before_refund") is True
    assert ln.sources["inspection_before_refund"] == "inspect"


def test_refund_before_receipt() -> None:
    p = policy(rule("trusted", {"refund_before_receipt": True}, {"buyer_risk": ["low"]}))
    _, ln = decide_one(p)
    assert ln.settings["refund_before_receipt"] is True
    assert ln.sources["refund_before_receipt"] == "trusted"

    _, risky = decide_one(p, facts(buyer_risk=RiskLevel.HIGH))
    assert risky.settings["refund_before_receipt"] is False


def test_shipping_tracked_and_signed() -> None:
    p = policy(
        rule(
            "tracked",
            {"shipping": {"tracked": True, "signature": True}},
            {"item_value": {"min": "100"}},
        )
    )
    _, ln = decide_one(p, facts(line(value="250.00")))
    assert ln.settings["shipping"] == Shipping(tracked=True, signature=True)
    assert ln.sources["shipping"] == "tracked"
    assert set_by(ln, "tracked") == {"shipping": {"tracked": True, "signature": True}}

    _, cheap = decide_one(p, facts(line(value="20.00")))
    assert cheap.settings["shipping"] == Shipping()


def test_return_center() -> None:
    p = policy(rule("route-us", {"return_center": "rc-us-reno"}, {"marketplace_countries": ["US"]}))
    decision, ln = decide_one(p)
    assert decision.setting("return_center") == "rc-us-reno"
    assert ln.sources["return_center"] == "route-us"


@pytest.mark.parametrize(
    "offer",
    [{"keep_partial_refund_percent": "30"}, {"coupon_value": "10.00"}, {"replacement": True}],
    ids=["keep-partial-refund", "coupon", "replacement"],
)
def test_alternatives_are_offered_first(offer: dict[str, Any]) -> None:
    p = policy(rule("offer", {"alternatives": offer}, {"reason_classes": ["no_fault"]}))
    decision, ln = decide_one(p)
    assert decision.outcome is Outcome.OFFER_ALTERNATIVES
    assert decision.reasons == ["alternatives are offered first"]
    assert ln.settings["alternatives"] == Alternatives.model_validate(offer)
    assert ln.sources["alternatives"] == "offer"


def test_empty_alternatives_offer_nothing() -> None:
    p = policy(rule("none", {"alternatives": {"keep_partial_refund_percent": "0"}}))
    assert decide_one(p)[0].outcome is Outcome.AUTO_APPROVE


def test_refund_outbound_shipping() -> None:
    p = policy(rule("goodwill", {"refund_outbound_shipping": True}, {"first_time_buyer": True}))
    _, ln = decide_one(p, facts(first_time_buyer=True))
    assert ln.settings["refund_outbound_shipping"] is True
    assert ln.sources["refund_outbound_shipping"] == "goodwill"
    assert ln.legal == []


def test_returnless_refund_when_worth_less_than_bringing_it_back() -> None:
    p = policy(rule("returnless", {"returnless_refund": True}, {"item_value": {"max": "15"}}))

    decision, ln = decide_one(p, facts(line(value="5.00"), cost_to_return=Decimal("6.00")))
    assert decision.outcome is Outcome.RETURNLESS_REFUND
    assert decision.reasons == ["item value 5.00 is below the cost of bringing it back (6.00)"]
    assert ln.sources["returnless_refund"] == "returnless"

    # Worth more than the trip back, or the trip's cost unknown: the goods come back.
    worth_it, _ = decide_one(p, facts(line(value="7.00"), cost_to_return=Decimal("6.00")))
    assert worth_it.outcome is Outcome.AUTO_APPROVE
    unknown_cost, _ = decide_one(p, facts(line(value="5.00"), cost_to_return=None))
    assert unknown_cost.outcome is Outcome.AUTO_APPROVE


# --- rule order, stop, defaults -----------------------------------------------------


def test_the_first_matching_rule_decides_a_setting() -> None:
    p = policy(
        rule("bags-only", {"return_window_days": 90}, {"categories": ["bags"]}),
        rule(
            "shoes",
            {"return_window_days": 45, "return_center": "rc-shoes"},
            {"categories": ["shoes"]},
        ),
        rule("everything", {"return_window_days": 60, "human_review": True}),
    )
    decision, ln = decide_one(p)

    assert ln.settings["return_window_days"] == 45
    assert ln.sources["return_window_days"] == "shoes"
    # A later matching rule still decides what no earlier rule decided.
    assert ln.settings["human_review"] is True
    assert ln.sources["human_review"] == "everything"
    assert decision.outcome is Outcome.NEEDS_REVIEW

    assert [(e["rule"], e["matched"]) for e in ln.trace] == [
        ("bags-only", False),
        ("shoes", True),
        ("everything", True),
    ]
    assert set_by(ln, "bags-only") == {}
    assert set_by(ln, "shoes") == {"return_window_days": 45, "return_center": "rc-shoes"}
    assert set_by(ln, "everything") == {"human_review": True}


def test_stop_ends_the_reading() -> None:
    p = policy(
        rule("vip", {"return_window_days": 100}, {"buyer_risk": ["low"]}, stop=True),
        rule("review-all", {"human_review": True}),
    )
    decision, ln = decide_one(p)
    assert decision.outcome is Outcome.AUTO_APPROVE
    assert [e["rule"] for e in ln.trace] == ["vip"]
    assert ln.sources["human_review"] == "builtin"

    # A stop rule that does not match does not stop anything.
    _, risky = decide_one(p, facts(buyer_risk=RiskLevel.HIGH))
    assert [e["rule"] for e in risky.trace] == ["vip", "review-all"]
    assert risky.sources["human_review"] == "review-all"


def test_no_fact_is_missing_for_rules_after_a_stop() -> None:
    p = policy(
        rule("stop-here", {}, stop=True),
        rule("unreachable", {"human_review": True}, {"buyer_risk": ["high"]}),
    )
    decision = evaluate(p, facts(buyer_risk=None))
    assert decision.outcome is Outcome.AUTO_APPROVE
    assert decision.missing_facts == []


def test_policy_defaults_fill_what_no_rule_decides() -> None:
    p = policy(
        rule("shoes", {"return_window_days": 60}, {"categories": ["shoes"]}),
        return_window_days=45,
        return_center="rc-main",
    )
    _, shoes = decide_one(p)
    assert shoes.settings["return_window_days"] == 60
    assert shoes.sources["return_window_days"] == "shoes"
    assert shoes.settings["return_center"] == "rc-main"
    assert shoes.sources["return_center"] == "defaults"

    _, bags = decide_one(p, facts(line(category="bags")))
    assert bags.settings["return_window_days"] == 45
    assert bags.sources["return_window_days"] == "defaults"


def test_builtin_defaults_fill_what_the_policy_does_not_say() -> None:
    _, ln = decide_one(policy())
    builtin = {n: getattr(BUILTIN_DEFAULTS, n) for n in SETTING_NAMES}
    expected = {n: v for n, v in builtin.items() if v is not None}

    assert ln.settings == expected
    assert ln.sources == dict.fromkeys(expected, "builtin")
    assert ln.settings["eligible"] is True
    assert ln.settings["return_window_days"] == 30
    assert ln.settings["return_shipping_paid_by"] is Payer.SELLER
    assert "restocking_fee" not in ln.settings


# --- combining lines ----------------------------------------------------------------


def _per_sku() -> CompiledPolicy:
    return policy(
        rule("final-sale", {"eligible": False, "decline_reason": "final sale"}, {"skus": ["SALE"]}),
        rule("faulty-proof", {"evidence": {"photos": 1}}, {"reason_classes": ["seller_fault"]}),
        rule("watch", {"human_review": True}, {"skus": ["WATCH"]}),
        rule("cheap", {"returnless_refund": True}, {"skus": ["CHEAP"]}),
    )


def test_one_rejected_line_and_one_approved_line_approve_the_return() -> None:
    decision = evaluate(_per_sku(), facts(line("a", sku="SALE"), line("b", sku="OK")))
    assert decision.outcome is Outcome.AUTO_APPROVE
    assert [ln.outcome for ln in decision.lines] == [Outcome.REJECT, Outcome.AUTO_APPROVE]
    assert decision.reasons == ["final sale", "within the policy"]


def test_all_lines_rejected_reject_the_return() -> None:
    decision = evaluate(_per_sku(), facts(line("a", sku="SALE"), line("b", sku="SALE")))
    assert decision.outcome is Outcome.REJECT


def test_evidence_on_one_line_requests_evidence_for_the_return() -> None:
    decision = evaluate(
        _per_sku(), facts(line("a", sku="OK"), line("b", reason=ReasonCode.DEFECTIVE))
    )
    assert decision.outcome is Outcome.REQUEST_EVIDENCE
    assert [ln.outcome for ln in decision.lines] == [
        Outcome.AUTO_APPROVE,
        Outcome.REQUEST_EVIDENCE,
    ]


def test_the_most_cautious_line_wins() -> None:
    decision = evaluate(
        _per_sku(),
        facts(
            line("a", reason=ReasonCode.DEFECTIVE), line("b", sku="WATCH"), line("c", sku="SALE")
        ),
    )
    assert decision.outcome is Outcome.NEEDS_REVIEW


def test_a_returnless_line_does_not_make_a_valuable_line_returnless() -> None:
    decision = evaluate(
        _per_sku(), facts(line("a", sku="CHEAP", value="2.00"), line("b", value="400.00"))
    )
    assert [ln.outcome for ln in decision.lines] == [
        Outcome.RETURNLESS_REFUND,
        Outcome.AUTO_APPROVE,
    ]
    assert decision.outcome is Outcome.AUTO_APPROVE

    only_cheap = evaluate(_per_sku(), facts(line("a", sku="CHEAP", value="2.00")))
    assert only_cheap.outcome is Outcome.RETURNLESS_REFUND


def test_a_return_without_lines_is_reviewed() -> None:
    empty = facts()
    empty.lines = []
    decision = evaluate(_per_sku(), empty)
    assert decision.outcome is Outcome.NEEDS_REVIEW
    assert decision.lines == []
    assert decision.setting("eligible") is None


def test_a_line_outside_the_window_is_rejected_but_others_still_count() -> None:
    p = policy(rule("short-for-bags", {"return_window_days": 3}, {"categories": ["bags"]}))
    decision = evaluate(p, facts(line("a", category="bags"), line("b"), days_since_delivery=5))
    assert [ln.outcome for ln in decision.lines] == [Outcome.REJECT, Outcome.AUTO_APPROVE]
    assert decision.outcome is Outcome.AUTO_APPROVE


def test_the_same_facts_always_give_the_same_decision() -> None:
    p = _per_sku()
    case = facts(line("a", sku="SALE"), line("b", reason=ReasonCode.DEFECTIVE))
    first, second = evaluate(p, case), evaluate(p, case)
    assert first == second
