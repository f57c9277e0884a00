"""Legal floors per buyer country: at decision time the floor wins and says which law.

Policies here are built with `PolicyDocument.model_validate` only, without the save-time
checks (which would refuse most of them), to show what the engine does when a policy
goes below a floor anyway.
"""

from __future__ import annotations

from typing import Any

import pytest

from returnguard.domain.policy.document import FeeApplies, Payer, PolicyDocument
from returnguard.domain.policy.engine import (
    CompiledPolicy,
    LineDecision,
    LineFacts,
    Outcome,
    ReturnFacts,
    compile_policy,
    evaluate,
)
from returnguard.domain.policy.law import EU_COUNTRIES, FLOORS, floor_for
from returnguard.domain.reasons import ReasonCode
from tests.unit.policy import builders

EU_LAW = "Directive 2011/83/EU"
EU_GUARANTEE = "Directive (EU) 2019/771"
UK_LAW = "Consumer Contracts Regulations 2013"
UK_GUARANTEE = "Consumer Rights Act 2015"
JP_LAW = "Act on Specified Commercial Transactions"

# (buyer country, region, withdrawal law, guarantee law, guarantee days)
WITHDRAWAL = [
    pytest.param("DE", "EU/EEA", EU_LAW, EU_GUARANTEE, 730, id="EU-DE"),
    pytest.param("NO", "EU/EEA", EU_LAW, EU_GUARANTEE, 730, id="EEA-NO"),
    pytest.param("GB", "UK", UK_LAW, UK_GUARANTEE, 30, id="UK-GB"),
]


def line(reason: ReasonCode = ReasonCode.CHANGED_MIND, value: str = "40.00") -> LineFacts:
    return builders.line(reason=reason, value=value)


def facts(
    buyer_country: str | None,
    days: int | None,
    reason: ReasonCode = ReasonCode.CHANGED_MIND,
) -> ReturnFacts:
    return builders.facts(
        line(reason),
        channel="shop",
        marketplace_country="DE",
        buyer_country=buyer_country,
        days_since_delivery=days,
    )


def policy(then: dict[str, Any] | None = None, **defaults: Any) -> CompiledPolicy:
    rules = [{"id": "house-rule", "then": then}] if then else []
    return compile_policy(
        PolicyDocument.model_validate({"name": "law", "defaults": defaults, "rules": rules})
    )


def decide(p: CompiledPolicy, case: ReturnFacts) -> tuple[Outcome, LineDecision]:
    decision = evaluate(p, case)
    [ln] = decision.lines
    return decision.outcome, ln


def legal_for(ln: LineDecision, setting: str) -> dict[str, str]:
    [entry] = [e for e in ln.legal if e["setting"] == setting]
    return entry


# --- the floor table ----------------------------------------------------------------

MEMBER_STATES = "AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE"


def test_every_eu_and_eea_country_has_the_eu_floor() -> None:
    members = set(MEMBER_STATES.split())
    assert len(members) == 27
    assert members == EU_COUNTRIES
    for country in (*members, "IS", "LI", "NO"):
        floor = floor_for(country)
        assert floor is not None, country
        assert floor.region == "EU/EEA"


def test_countries_without_a_floor() -> None:
    for country in ("US", "CH", "CN", "AU", None, ""):
        assert floor_for(country) is None
    assert floor_for("GB") is not None and floor_for("GB") is FLOORS[1]
    assert floor_for("JP") is FLOORS[2]


# --- 14-day withdrawal: EU, EEA, UK -------------------------------------------------


@pytest.mark.parametrize(("country", "region", "law", "guarantee", "days"), WITHDRAWAL)
def test_window_below_14_days_is_raised(
    country: str, region: str, law: str, guarantee: str, days: int
) -> None:
    p = policy(return_window_days=7)

    outcome, ln = decide(p, facts(country, 12))
    assert outcome is Outcome.AUTO_APPROVE
    assert ln.settings["return_window_days"] == 14
    assert ln.sources["return_window_days"] == f"law:{region}"
    entry = legal_for(ln, "return_window_days")
    assert law in entry["law"]
    assert entry["effect"] == "window raised to the legal 14 days"

    late, _ = decide(p, facts(country, 15))
    assert late is Outcome.REJECT


@pytest.mark.parametrize(("country", "region", "law", "guarantee", "days"), WITHDRAWAL)
def test_refusal_within_14_days_is_overridden(
    country: str, region: str, law: str, guarantee: str, days: int
) -> None:
    p = policy({"eligible": False, "decline_reason": "no returns"})

    outcome, ln = decide(p, facts(country, 14))
    assert outcome is Outcome.AUTO_APPROVE
    assert ln.settings["eligible"] is True
    assert ln.sources["eligible"] == f"law:{region}"
    assert law in legal_for(ln, "eligible")["law"]

    # After the withdrawal period the policy's refusal stands again.
    late, late_ln = decide(p, facts(country, 15))
    assert late is Outcome.REJECT
    assert late_ln.sources["eligible"] == "house-rule"
    assert all(e["setting"] != "eligible" for e in late_ln.legal)


@pytest.mark.parametrize(("country", "region", "law", "guarantee", "days"), WITHDRAWAL)
def test_flat_restocking_fee_is_dropped_on_withdrawal(
    country: str, region: str, law: str, guarantee: str, days: int
) -> None:
    flat = policy({"restocking_fee": {"percent": "10", "applies_to": "always"}})

    _, ln = decide(flat, facts(country, 10))
    assert ln.settings["restocking_fee"] is None
    assert ln.sources["restocking_fee"] == f"law:{region}"
    assert law in legal_for(ln, "restocking_fee")["law"]

    # After the withdrawal period a flat fee is the policy's business.
    _, late = decide(flat, facts(country, 20))
    assert late.settings["restocking_fee"].applies_to is FeeApplies.ALWAYS
    assert late.sources["restocking_fee"] == "house-rule"


@pytest.mark.parametrize(("country", "region", "law", "guarantee", "days"), WITHDRAWAL)
def test_fee_for_opened_items_is_kept_on_withdrawal(
    country: str, region: str, law: str, guarantee: str, days: int
) -> None:
    opened = policy({"restocking_fee": {"percent": "10", "applies_to": "opened"}})
    _, ln = decide(opened, facts(country, 10))
    assert ln.settings["restocking_fee"].applies_to is FeeApplies.OPENED
    assert ln.sources["restocking_fee"] == "house-rule"
    assert all(e["setting"] != "restocking_fee" for e in ln.legal)


@pytest.mark.parametrize(("country", "region", "law", "guarantee", "days"), WITHDRAWAL)
def test_outbound_shipping_is_refunded_on_withdrawal(
    country: str, region: str, law: str, guarantee: str, days: int
) -> None:
    p = policy({"refund_outbound_shipping": False})

    _, ln = decide(p, facts(country, 3))
    assert ln.settings["refund_outbound_shipping"] is True
    assert ln.sources["refund_outbound_shipping"] == f"law:{region}"
    entry = legal_for(ln, "refund_outbound_shipping")
    assert law in entry["law"]
    assert entry["effect"] == "refund includes the standard outbound delivery"

    _, late = decide(p, facts(country, 20))
    assert late.settings["refund_outbound_shipping"] is False


@pytest.mark.parametrize(
    "reason", [ReasonCode.LATE_DELIVERY, ReasonCode.OTHER], ids=["delivery", "other"]
)
def test_withdrawal_floor_covers_every_reason_but_seller_fault(reason: ReasonCode) -> None:
    outcome, ln = decide(policy({"eligible": False}), facts("FR", 5, reason))
    assert outcome is Outcome.AUTO_APPROVE
    assert EU_LAW in legal_for(ln, "eligible")["law"]


# --- seller-fault guarantee: EU 2 years, UK 30 days ---------------------------------


@pytest.mark.parametrize(("country", "region", "law", "guarantee", "days"), WITHDRAWAL)
def test_faulty_items_cannot_be_refused_within_the_guarantee(
    country: str, region: str, law: str, guarantee: str, days: int
) -> None:
    p = policy({"eligible": False}, return_window_days=20)

    outcome, ln = decide(p, facts(country, days, ReasonCode.DEFECTIVE))
    assert outcome is Outcome.AUTO_APPROVE
    assert ln.settings["eligible"] is True
    assert ln.sources["eligible"] == f"law:{region}"
    assert guarantee in legal_for(ln, "eligible")["law"]
    # The window is stretched to the guarantee so the faulty item may come back.
    assert ln.settings["return_window_days"] == days
    assert guarantee in legal_for(ln, "return_window_days")["law"]

    after, after_ln = decide(p, facts(country, days + 1, ReasonCode.DEFECTIVE))
    assert after is Outcome.REJECT
    assert after_ln.legal == []


def test_faulty_item_within_the_window_keeps_the_policy_window() -> None:
    outcome, ln = decide(policy(return_window_days=60), facts("DE", 40, ReasonCode.WRONG_ITEM))
    assert outcome is Outcome.AUTO_APPROVE
    assert ln.settings["return_window_days"] == 60
    assert ln.legal == []


# --- Japan: 8 days and the buyer pays, only when no window is stated ----------------


def test_japan_default_when_the_policy_states_no_window() -> None:
    p = policy()  # no window anywhere: the built-in 30 days are not a stated policy

    outcome, ln = decide(p, facts("JP", 8))
    assert outcome is Outcome.AUTO_APPROVE
    assert ln.settings["return_window_days"] == 8
    assert ln.settings["return_shipping_paid_by"] is Payer.BUYER
    assert ln.sources["return_window_days"] == "law:JP"
    assert ln.sources["return_shipping_paid_by"] == "law:JP"
    assert JP_LAW in legal_for(ln, "return_window_days")["law"]
    assert JP_LAW in legal_for(ln, "return_shipping_paid_by")["law"]

    late, _ = decide(p, facts("JP", 9))
    assert late is Outcome.REJECT


def test_japan_default_does_not_apply_when_a_window_is_stated() -> None:
    for p in (
        policy(return_window_days=30),
        policy({"return_window_days": 20}),
    ):
        outcome, ln = decide(p, facts("JP", 9))
        assert outcome is Outcome.AUTO_APPROVE
        assert ln.settings["return_shipping_paid_by"] is Payer.SELLER
        assert ln.legal == []


def test_japan_default_keeps_a_stated_payer() -> None:
    _, ln = decide(policy(return_shipping_paid_by="seller"), facts("JP", 5))
    assert ln.settings["return_window_days"] == 8
    assert ln.settings["return_shipping_paid_by"] is Payer.SELLER
    assert ln.sources["return_shipping_paid_by"] == "defaults"


def test_japan_default_does_not_apply_to_faulty_items() -> None:
    outcome, ln = decide(policy(), facts("JP", 20, ReasonCode.DEFECTIVE))
    assert outcome is Outcome.AUTO_APPROVE
    assert ln.settings["return_shipping_paid_by"] is Payer.SELLER
    assert ln.legal == []


def test_japan_has_no_withdrawal_or_guarantee_floor() -> None:
    outcome, ln = decide(policy({"eligible": False}), facts("JP", 1))
    assert outcome is Outcome.REJECT
    assert all(e["setting"] != "eligible" for e in ln.legal)


# --- no floor -----------------------------------------------------------------------


def test_a_us_buyer_gets_no_floor() -> None:
    short = policy(
        {
            "restocking_fee": {"percent": "20", "applies_to": "always"},
            "refund_outbound_shipping": False,
        },
        return_window_days=7,
    )
    outcome, ln = decide(short, facts("US", 5))
    assert outcome is Outcome.AUTO_APPROVE
    assert ln.settings["return_window_days"] == 7
    assert ln.settings["restocking_fee"].applies_to is FeeApplies.ALWAYS
    assert ln.settings["refund_outbound_shipping"] is False
    assert ln.legal == []

    assert decide(short, facts("US", 8))[0] is Outcome.REJECT
    assert decide(policy({"eligible": False}), facts("US", 1))[0] is Outcome.REJECT
    assert decide(policy({"eligible": False}), facts("US", 1, ReasonCode.DEFECTIVE))[0] is (
        Outcome.REJECT
    )


def test_the_floor_is_applied_even_without_a_delivery_date() -> None:
    outcome, ln = decide(policy(return_window_days=7), facts("DE", None))
    assert outcome is Outcome.NEEDS_REVIEW
    assert ln.settings["return_window_days"] == 14
    assert "days_since_delivery" in ln.missing_facts


def test_a_refusal_without_a_delivery_date_is_reviewed_not_rejected() -> None:
    # Without the date the guarantee cannot be checked, so the refusal cannot stand.
    refuse_faulty = policy({"eligible": False})
    outcome, ln = decide(refuse_faulty, facts("DE", None, ReasonCode.DEFECTIVE))
    assert outcome is Outcome.NEEDS_REVIEW
    assert ln.missing_facts == ["days_since_delivery"]
