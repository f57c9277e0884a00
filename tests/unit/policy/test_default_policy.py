"""The default policy every channel starts with: valid, and the seed behaviours hold."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from returnguard.domain.policy.defaults import default_policy, default_policy_data
from returnguard.domain.policy.document import (
    Evidence,
    FeeApplies,
    Payer,
    RestockingFee,
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
from returnguard.domain.policy.validate import check_policy, parse_policy
from returnguard.domain.reasons import ReasonCode
from tests.unit.policy import builders

NO_FAULT = [ReasonCode.CHANGED_MIND, ReasonCode.SIZE_FIT, ReasonCode.ORDERED_BY_MISTAKE]
PHOTO_FIRST = [ReasonCode.DEFECTIVE, ReasonCode.NOT_AS_DESCRIBED, ReasonCode.DAMAGED_IN_TRANSIT]


def line(
    line_id: str = "l1", *, reason: ReasonCode = ReasonCode.CHANGED_MIND, value: str | None = "40"
) -> LineFacts:
    return builders.line(line_id, reason=reason, value=value)


def facts(*lines: LineFacts, **overrides: Any) -> ReturnFacts:
    return builders.facts(*lines or (line(),), **({"cost_to_return": Decimal("8.00")} | overrides))


_COMPILED: dict[str, CompiledPolicy] = {}


def default(currency: str = "EUR") -> CompiledPolicy:
    if currency not in _COMPILED:
        _COMPILED[currency] = compile_policy(default_policy(currency))
    return _COMPILED[currency]


def decide(case: ReturnFacts, currency: str = "EUR") -> tuple[Decision, LineDecision]:
    decision = evaluate(default(currency), case)
    return decision, decision.lines[0]


@pytest.mark.parametrize("currency", ["EUR", "USD", "JPY", "GBP", "SEK"])
def test_the_default_policy_passes_the_save_time_checks(currency: str) -> None:
    assert check_policy(default_policy(currency)) == []
    document, found = parse_policy(default_policy_data(currency))
    assert found == []
    assert document == default_policy(currency)


def test_thresholds_scale_with_the_currency() -> None:
    def bands(currency: str) -> dict[str, Any]:
        rules = default_policy(currency).rules
        return {r.id: r.when.item_value for r in rules if r.when.item_value is not None}

    eur, jpy = bands("EUR"), bands("JPY")
    assert eur["high-value-inspect"].min == Decimal(150)
    assert eur["cheap-returnless"].max == Decimal(15)
    assert jpy["high-value-inspect"].min == Decimal(22500)
    assert jpy["cheap-returnless"].max == Decimal(2250)
    assert jpy["high-value-inspect"].currency == "JPY"


@pytest.mark.parametrize("reason", NO_FAULT)
def test_no_fault_buyer_pays_and_a_fee_if_opened(reason: ReasonCode) -> None:
    decision, ln = decide(facts(line(reason=reason)))

    assert decision.outcome is Outcome.AUTO_APPROVE
    assert ln.settings["return_shipping_paid_by"] is Payer.BUYER
    assert ln.settings["restocking_fee"] == RestockingFee(
        percent=Decimal(10), cap=Decimal(25), applies_to=FeeApplies.OPENED
    )
    assert ln.sources["return_shipping_paid_by"] == "no-fault-buyer-pays"
    assert ln.sources["restocking_fee"] == "no-fault-buyer-pays"


def test_no_fault_fee_cap_in_yen() -> None:
    _, ln = decide(facts(line(value="3000"), currency="JPY"), "JPY")
    assert ln.settings["restocking_fee"].cap == Decimal(3750)


def test_no_fault_fee_for_opened_items_survives_the_eu_floor() -> None:
    decision, ln = decide(facts(line(), buyer_country="DE"))
    assert decision.outcome is Outcome.AUTO_APPROVE
    assert ln.settings["restocking_fee"].applies_to is FeeApplies.OPENED
    assert ln.settings["refund_outbound_shipping"] is True
    assert ln.sources["refund_outbound_shipping"] == "law:EU/EEA"


@pytest.mark.parametrize("reason", PHOTO_FIRST)
def test_seller_fault_asks_for_photos_and_the_seller_pays(reason: ReasonCode) -> None:
    decision, ln = decide(facts(line(reason=reason)))

    assert decision.outcome is Outcome.REQUEST_EVIDENCE
    assert decision.reasons == ["evidence required: 2 more photo(s), a written explanation"]
    assert ln.settings["evidence"] == Evidence(photos=2, explanation=True)
    assert ln.settings["return_shipping_paid_by"] is Payer.SELLER
    assert ln.sources["evidence"] == "seller-fault-evidence"
    assert ln.sources["return_shipping_paid_by"] == "seller-fault-evidence"
    assert ln.settings.get("restocking_fee") is None


@pytest.mark.parametrize("reason", PHOTO_FIRST)
def test_seller_fault_with_the_evidence_is_approved(reason: ReasonCode) -> None:
    given = EvidenceFacts(photos=2, explanation=True)
    decision, _ = decide(facts(line(reason=reason), evidence=given))
    assert decision.outcome is Outcome.AUTO_APPROVE

    one_photo = EvidenceFacts(photos=1, explanation=True)
    decision, _ = decide(facts(line(reason=reason), evidence=one_photo))
    assert decision.outcome is Outcome.REQUEST_EVIDENCE


@pytest.mark.parametrize("reason", [ReasonCode.WRONG_ITEM, ReasonCode.MISSING_PARTS])
def test_other_seller_fault_is_free_without_photos(reason: ReasonCode) -> None:
    decision, ln = decide(facts(line(reason=reason)))
    assert decision.outcome is Outcome.AUTO_APPROVE
    assert ln.settings["return_shipping_paid_by"] is Payer.SELLER
    assert ln.sources["return_shipping_paid_by"] == "seller-fault-free"


@pytest.mark.parametrize(("value", "inspected"), [("150", True), ("2000", True), ("149.99", False)])
def test_high_value_is_inspected_and_shipped_tracked_and_signed(
    value: str, inspected: bool
) -> None:
    decision, ln = decide(facts(line(value=value)))

    assert decision.outcome is Outcome.AUTO_APPROVE
    assert ln.settings["inspection_before_refund"] is inspected
    assert ln.settings["refund_before_receipt"] is False
    if inspected:
        assert ln.settings["shipping"] == Shipping(tracked=True, signature=True)
        assert ln.sources["inspection_before_refund"] == "high-value-inspect"
        assert ln.sources["shipping"] == "high-value-inspect"
    else:
        assert ln.settings["shipping"] == Shipping()
        assert ln.sources["inspection_before_refund"] == "defaults"


def test_high_value_in_yen() -> None:
    _, ln = decide(facts(line(value="30000"), currency="JPY"), "JPY")
    assert ln.settings["inspection_before_refund"] is True


@pytest.mark.parametrize(
    ("value", "cost", "outcome"),
    [
        ("5", "8.00", Outcome.RETURNLESS_REFUND),
        ("14.99", "20.00", Outcome.RETURNLESS_REFUND),
        ("15", "20.00", Outcome.AUTO_APPROVE),  # not below 15
        ("10", "8.00", Outcome.AUTO_APPROVE),  # worth more than the trip back
    ],
)
def test_cheap_items_worth_less_than_the_trip_back_are_refunded_without_return(
    value: str, cost: str, outcome: Outcome
) -> None:
    decision, ln = decide(facts(line(value=value), cost_to_return=Decimal(cost)))
    assert decision.outcome is outcome
    if outcome is Outcome.RETURNLESS_REFUND:
        assert ln.sources["returnless_refund"] == "cheap-returnless"


def test_a_cheap_line_does_not_resolve_a_valuable_one_returnless() -> None:
    decision = evaluate(default(), facts(line("a", value="5"), line("b", value="400")))
    assert [ln.outcome for ln in decision.lines] == [
        Outcome.RETURNLESS_REFUND,
        Outcome.AUTO_APPROVE,
    ]
    assert decision.outcome is Outcome.AUTO_APPROVE


@pytest.mark.parametrize("value", ["5", "60", "400"])
def test_watchlisted_buyers_are_reviewed_and_never_refunded_before_receipt(value: str) -> None:
    decision, ln = decide(facts(line(value=value), watchlisted=True))

    assert decision.outcome is Outcome.NEEDS_REVIEW
    assert decision.reasons == ["the policy asks for a human review"]
    assert ln.sources["human_review"] == "watchlist-review"
    assert ln.settings["inspection_before_refund"] is True
    assert ln.settings["refund_before_receipt"] is False
    assert ln.settings["returnless_refund"] is False


def test_a_missing_delivery_date_is_reviewed() -> None:
    decision, _ = decide(facts(days_since_delivery=None))
    assert decision.outcome is Outcome.NEEDS_REVIEW
    assert "days_since_delivery" in decision.missing_facts


def test_an_unknown_item_value_is_reviewed() -> None:
    decision, _ = decide(facts(line(value=None)))
    assert decision.outcome is Outcome.NEEDS_REVIEW
    assert decision.missing_facts == ["item_value"]


def test_an_order_in_another_currency_needs_a_rate() -> None:
    case = facts(line(value="100"), currency="USD")
    assert evaluate(default("EUR"), case).missing_facts == ["item_value"]

    case.fx_rates = {"EUR": Decimal("1.25")}  # 100 USD = 80 EUR
    decision = evaluate(default("EUR"), case)
    assert decision.outcome is Outcome.AUTO_APPROVE
    assert decision.missing_facts == []


def test_the_default_window_is_30_days_and_the_eu_floor_holds() -> None:
    assert decide(facts(days_since_delivery=30))[0].outcome is Outcome.AUTO_APPROVE
    assert decide(facts(days_since_delivery=31))[0].outcome is Outcome.REJECT
    late_faulty = facts(
        line(reason=ReasonCode.WRONG_ITEM), buyer_country="DE", days_since_delivery=200
    )
    decision, ln = decide(late_faulty)
    assert decision.outcome is Outcome.AUTO_APPROVE
    assert ln.sources["return_window_days"] == "law:EU/EEA"


EXPLAIN_CASES = {
    "no-fault": facts(),
    "faulty": facts(line(reason=ReasonCode.DEFECTIVE)),
    "faulty-with-evidence": facts(
        line(reason=ReasonCode.DEFECTIVE), evidence=EvidenceFacts(photos=2, explanation=True)
    ),
    "valuable": facts(line(value="900")),
    "cheap": facts(line(value="3")),
    "watchlisted": facts(watchlisted=True),
    "no-date": facts(days_since_delivery=None),
    "no-value": facts(line(value=None)),
    "late": facts(days_since_delivery=45),
    "eu-buyer": facts(buyer_country="DE", days_since_delivery=10),
    "eu-faulty-late": facts(
        line(reason=ReasonCode.WRONG_ITEM), buyer_country="FR", days_since_delivery=300
    ),
    "jp-buyer": facts(buyer_country="JP"),
    "two-lines": facts(line("a", value="3"), line("b", reason=ReasonCode.NOT_AS_DESCRIBED)),
}


@pytest.mark.parametrize("name", list(EXPLAIN_CASES))
def test_explain_false_gives_the_same_decision(name: str) -> None:
    case = EXPLAIN_CASES[name]
    explained = evaluate(default(), case, explain=True)
    quiet = evaluate(default(), case, explain=False)

    assert quiet.outcome is explained.outcome
    assert quiet.reasons == explained.reasons
    assert quiet.missing_facts == explained.missing_facts
    for q, e in zip(quiet.lines, explained.lines, strict=True):
        assert (q.line_id, q.outcome, q.reasons) == (e.line_id, e.outcome, e.reasons)
        assert q.settings == e.settings
        assert q.sources == e.sources
        assert q.missing_facts == e.missing_facts
        assert q.legal == e.legal
        assert q.trace == []
        assert e.trace
