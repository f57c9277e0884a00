"""Save-time checks: every problem of a policy at once, each with the path of its field."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from returnguard.domain.policy.document import PolicyDocument
from returnguard.domain.policy.validate import check_policy, parse_policy

EU_LAW = "2011/83/EU"
UK_LAW = "Consumer Contracts Regulations 2013"


def doc(*rules: dict[str, Any], **defaults: Any) -> dict[str, Any]:
    return {"name": "test", "defaults": defaults, "rules": list(rules)}


def rule(
    rule_id: str, then: dict[str, Any], when: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    return {"id": rule_id, "when": when or {}, "then": then, **extra}


def problems(data: dict[str, Any]) -> list[dict[str, str]]:
    document, found = parse_policy(data)
    assert (document is None) == bool(found)
    return found


def fields(data: dict[str, Any]) -> list[str]:
    return [p["field"] for p in problems(data)]


def accepted(data: dict[str, Any]) -> PolicyDocument:
    document, found = parse_policy(data)
    assert found == []
    assert document is not None
    return document


# --- schema -------------------------------------------------------------------------


def test_every_schema_problem_is_listed_at_once_with_its_path() -> None:
    data = doc(
        rule(
            "bad",
            {"return_window_days": "two weeks", "restocking_fee": {"percent": 101}},
            {"colour": "red"},
        )
    )
    found = problems(data)
    assert {p["field"]: p["message"] for p in found} == {
        "rules.0.when.colour": "unknown field",
        "rules.0.then.return_window_days": found[1]["message"],
        "rules.0.then.restocking_fee.percent": "Input should be less than or equal to 100",
    }
    assert "integer" in found[1]["message"]


def test_unknown_fields_anywhere() -> None:
    data = doc(rule("r", {"human_review": True, "approve": True}), colour="red")
    data["owner"] = "me"
    assert sorted(fields(data)) == ["defaults.colour", "owner", "rules.0.then.approve"]
    assert {p["message"] for p in problems(data)} == {"unknown field"}


def test_required_fields() -> None:
    found = problems({"rules": [{"id": "r"}]})
    assert {p["field"]: p["message"] for p in found} == {
        "name": "field required",
        "defaults": "field required",
        "rules.0.then": "field required",
    }


@pytest.mark.parametrize(
    ("then", "path"),
    [
        ({"human_review": "yes"}, "rules.0.then.human_review"),
        ({"return_window_days": [14]}, "rules.0.then.return_window_days"),
        ({"return_shipping_paid_by": "marketplace"}, "rules.0.then.return_shipping_paid_by"),
        ({"evidence": {"photos": "two"}}, "rules.0.then.evidence.photos"),
        ({"shipping": {"tracked": 1}}, "rules.0.then.shipping.tracked"),
        ({"restocking_fee": {"percent": "ten"}}, "rules.0.then.restocking_fee.percent"),
        ({"restocking_fee": {"percent": -1}}, "rules.0.then.restocking_fee.percent"),
        (
            {"restocking_fee": {"percent": 5, "applies_to": "sometimes"}},
            "rules.0.then.restocking_fee.applies_to",
        ),
        (
            {"alternatives": {"keep_partial_refund_percent": 150}},
            "rules.0.then.alternatives.keep_partial_refund_percent",
        ),
        ({"return_window_days": -1}, "rules.0.then.return_window_days"),
    ],
)
def test_wrong_type_or_value_in_a_setting(then: dict[str, Any], path: str) -> None:
    assert fields(doc(rule("r", then))) == [path]


@pytest.mark.parametrize(
    ("when", "path"),
    [
        ({"buyer_countries": "DE"}, "rules.0.when.buyer_countries"),
        ({"buyer_countries": ["de"]}, "rules.0.when.buyer_countries.0"),
        ({"reason_codes": ["broken"]}, "rules.0.when.reason_codes.0"),
        ({"reason_classes": ["buyer_fault"]}, "rules.0.when.reason_classes.0"),
        ({"buyer_risk": ["extreme"]}, "rules.0.when.buyer_risk.0"),
        ({"watchlisted": "true"}, "rules.0.when.watchlisted"),
        ({"days_since_delivery": {"min": "soon"}}, "rules.0.when.days_since_delivery.min"),
        ({"item_value": {"currency": "euro"}}, "rules.0.when.item_value.currency"),
    ],
)
def test_wrong_type_in_a_condition(when: dict[str, Any], path: str) -> None:
    assert fields(doc(rule("r", {"human_review": True}, when))) == [path]


def test_bad_rule_id() -> None:
    assert fields(doc(rule("Not An Id", {"human_review": True}))) == ["rules.0.id"]


def test_fee_of_exactly_100_percent_is_allowed_and_101_is_not() -> None:
    fee = {"percent": 100, "applies_to": "opened"}
    accepted(doc(rule("r", {"restocking_fee": fee}, {"buyer_countries": ["US"]})))

    found = problems(doc(rule("r", {"restocking_fee": {"percent": 101}})))
    assert [p["field"] for p in found] == ["rules.0.then.restocking_fee.percent"]


# --- legal floors -------------------------------------------------------------------


def test_window_below_the_floor_names_the_rule_and_the_law() -> None:
    found = problems(doc(rule("one-week", {"return_window_days": 7})))

    assert [p["field"] for p in found] == ["rules.0.then.return_window_days"] * 2
    eu, uk = (p["message"] for p in found)
    assert "'one-week'" in eu and EU_LAW in eu and "EU/EEA" in eu
    assert "'one-week'" in uk and UK_LAW in uk


def test_window_below_the_floor_limited_to_us_buyers_is_accepted() -> None:
    accepted(doc(rule("one-week", {"return_window_days": 7}, {"buyer_countries": ["US"]})))


def test_window_below_the_floor_for_some_eu_buyers_is_refused() -> None:
    found = problems(
        doc(rule("one-week", {"return_window_days": 7}, {"buyer_countries": ["US", "AT"]}))
    )
    assert len(found) == 1
    assert EU_LAW in found[0]["message"]


def test_short_window_for_seller_fault_only_is_not_a_withdrawal_problem() -> None:
    accepted(doc(rule("faulty", {"return_window_days": 7}, {"reason_classes": ["seller_fault"]})))
    accepted(doc(rule("faulty", {"return_window_days": 7}, {"reason_codes": ["defective"]})))


def test_window_below_the_floor_in_the_defaults() -> None:
    found = problems(doc(return_window_days=10))
    assert [p["field"] for p in found] == ["defaults.return_window_days"] * 2
    assert "the policy by default" in found[0]["message"]


def test_refusing_withdrawals_within_14_days_is_refused() -> None:
    refuse = rule("no-returns", {"eligible": False}, {"reason_classes": ["no_fault"]})
    found = problems(doc(refuse))
    assert [p["field"] for p in found] == ["rules.0.then.eligible"] * 2
    assert "'no-returns'" in found[0]["message"]
    assert EU_LAW in found[0]["message"]
    assert UK_LAW in found[1]["message"]


@pytest.mark.parametrize(
    "limit",
    [
        {"days_since_delivery": {"min": 15}},
        {"buyer_countries": ["US", "JP"]},
        {"reason_classes": ["seller_fault"]},
    ],
    ids=["after-14-days", "non-eu-buyers", "seller-fault"],
)
def test_a_refusal_limited_outside_the_withdrawal_period_is_accepted(limit: dict[str, Any]) -> None:
    accepted(doc(rule("no-returns", {"eligible": False}, limit)))


def test_a_refusal_reaching_into_the_withdrawal_period_is_refused() -> None:
    found = problems(doc(rule("late", {"eligible": False}, {"days_since_delivery": {"min": 14}})))
    assert [p["field"] for p in found] == ["rules.0.then.eligible"] * 2


def test_refusing_everything_in_the_defaults() -> None:
    assert fields(doc(eligible=False)) == ["defaults.eligible"] * 2


def test_a_flat_restocking_fee_on_withdrawals_is_refused() -> None:
    flat = {"percent": 10, "applies_to": "always"}
    found = problems(doc(rule("flat", {"restocking_fee": flat})))
    assert [p["field"] for p in found] == ["rules.0.then.restocking_fee.applies_to"] * 2
    assert "'flat'" in found[0]["message"] and EU_LAW in found[0]["message"]

    accepted(doc(rule("flat", {"restocking_fee": flat}, {"buyer_countries": ["US"]})))
    accepted(doc(rule("flat", {"restocking_fee": flat}, {"days_since_delivery": {"min": 15}})))
    accepted(doc(rule("opened", {"restocking_fee": {"percent": 10, "applies_to": "opened"}})))


def test_keeping_the_outbound_shipping_on_withdrawals_is_refused() -> None:
    found = problems(doc(rule("keep", {"refund_outbound_shipping": False})))
    assert [p["field"] for p in found] == ["rules.0.then.refund_outbound_shipping"] * 2
    assert fields(doc(refund_outbound_shipping=False)) == ["defaults.refund_outbound_shipping"] * 2

    limited = {"buyer_countries": ["US"]}
    accepted(doc(rule("keep", {"refund_outbound_shipping": False}, limited)))


# --- rules that can never apply -----------------------------------------------------


def test_a_rule_after_a_catch_all_deciding_the_same_settings_is_shadowed() -> None:
    data = doc(
        rule("everyone", {"return_window_days": 30}),
        rule("shoes", {"return_window_days": 60}, {"categories": ["shoes"]}),
    )
    found = problems(data)
    assert [p["field"] for p in found] == ["rules.1"]
    assert "'shoes' can never apply" in found[0]["message"]
    assert "rules.0 ('everyone')" in found[0]["message"]


def test_a_rule_after_a_catch_all_stop_is_shadowed() -> None:
    data = doc(
        rule("done", {"human_review": True}, stop=True),
        rule("later", {"return_center": "rc-1"}),
    )
    found = problems(data)
    assert [p["field"] for p in found] == ["rules.1"]
    assert "stops the reading" in found[0]["message"]


def test_a_rule_after_a_broader_rule_is_shadowed() -> None:
    data = doc(
        rule("na", {"return_window_days": 60}, {"buyer_countries": ["US", "CA"]}),
        rule("us", {"return_window_days": 90}, {"buyer_countries": ["US"], "skus": ["X"]}),
    )
    assert fields(data) == ["rules.1"]


def test_earlier_rules_together_can_shadow_a_rule() -> None:
    data = doc(
        rule("a", {"human_review": True}),
        rule("b", {"return_center": "rc-1"}),
        rule("c", {"human_review": False, "return_center": "rc-2"}, {"skus": ["X"]}),
    )
    assert fields(data) == ["rules.2"]


def test_a_later_rule_that_sets_something_new_is_not_shadowed() -> None:
    accepted(
        doc(
            rule("everyone", {"return_window_days": 30}),
            rule(
                "shoes", {"return_window_days": 60, "human_review": True}, {"categories": ["shoes"]}
            ),
        )
    )


def test_a_narrower_earlier_rule_does_not_shadow() -> None:
    accepted(
        doc(
            rule("shoes", {"return_window_days": 60}, {"categories": ["shoes"]}),
            rule("everyone", {"return_window_days": 30}),
        )
    )
    accepted(
        doc(
            rule("us", {"return_window_days": 60}, {"buyer_countries": ["US"]}),
            rule("na", {"return_window_days": 90}, {"buyer_countries": ["US", "CA"]}),
        )
    )


def test_a_stop_rule_with_conditions_only_shadows_what_it_covers() -> None:
    accepted(
        doc(
            rule("vip", {"return_window_days": 90}, {"buyer_risk": ["low"]}, stop=True),
            rule("rest", {"return_window_days": 30}),
        )
    )


# --- ids, ranges, lists -------------------------------------------------------------


def test_duplicate_rule_ids() -> None:
    data = doc(
        rule("same", {"human_review": True}, {"skus": ["A"]}),
        rule("other", {"human_review": True}, {"skus": ["B"]}),
        rule("same", {"human_review": True}, {"skus": ["C"]}),
    )
    found = problems(data)
    assert found == [{"field": "rules.2.id", "message": "repeats the id of rules.0"}]


def test_empty_ranges() -> None:
    data = doc(
        rule("days", {"human_review": True}, {"days_since_delivery": {"min": 20, "max": 10}}),
        rule("value", {"human_review": True}, {"item_value": {"min": "50", "max": "50"}}),
    )
    found = problems(data)
    assert found == [
        {"field": "rules.0.when.days_since_delivery", "message": "min is above max"},
        {"field": "rules.1.when.item_value", "message": "min must be below max"},
    ]


def test_a_one_day_range_is_fine() -> None:
    accepted(
        doc(rule("day-3", {"human_review": True}, {"days_since_delivery": {"min": 3, "max": 3}}))
    )


def test_empty_lists() -> None:
    data = doc(rule("r", {"human_review": True}, {"skus": [], "buyer_countries": []}))
    found = problems(data)
    assert {p["field"] for p in found} == {"rules.0.when.skus", "rules.0.when.buyer_countries"}
    assert {p["message"] for p in found} == {"an empty list never matches"}


def test_every_check_problem_is_listed_at_once() -> None:
    data = doc(
        rule("dup", {"human_review": True}, {"skus": []}),
        rule("dup", {"return_window_days": 5}, {"days_since_delivery": {"min": 9, "max": 1}}),
        rule("all", {"return_center": "rc-1"}, stop=True),
        rule("never", {"human_review": False}, {"skus": ["Z"]}),
    )
    assert fields(data) == [
        "rules.0.when.skus",
        "rules.1.id",
        "rules.1.when.days_since_delivery",
        "rules.1.then.return_window_days",
        "rules.1.then.return_window_days",
        "rules.3",
    ]


def test_check_policy_takes_a_parsed_document() -> None:
    document = PolicyDocument.model_validate(doc(rule("short", {"return_window_days": 3})))
    assert [p["field"] for p in check_policy(document)] == ["rules.0.then.return_window_days"] * 2
    assert check_policy(PolicyDocument.model_validate(doc())) == []


# --- YAML ---------------------------------------------------------------------------

POLICY_YAML = """
name: Shoes in Europe
defaults:
  return_window_days: 30
rules:
  - id: shoes-fee
    description: Opened shoes pay a fee
    when:
      categories: [shoes]
      reason_classes: [no_fault]
    then:
      return_shipping_paid_by: buyer
      restocking_fee: {percent: 12.5, cap: 9.99, applies_to: opened}
  - id: pricey
    when:
      item_value: {currency: EUR, min: 150}
    then:
      inspection_before_refund: true
      shipping: {tracked: true, signature: true}
"""


def test_a_yaml_policy_is_accepted() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed: YAML text is optional")
    document = accepted(yaml.safe_load(POLICY_YAML))

    fee = document.rules[0].then.restocking_fee
    assert fee is not None
    # YAML numbers are floats; they are read through their decimal text, never as floats.
    assert fee.percent == Decimal("12.5")
    assert fee.cap == Decimal("9.99")
    assert isinstance(fee.cap, Decimal)
    assert document.rules[1].when.item_value is not None
    assert document.rules[1].when.item_value.min == Decimal(150)
