"""Backtests: a draft policy over past returns, compared with what actually happened.

Buyers are in the US unless a test says otherwise, so no legal floor interferes; every
money figure below is worked out by hand in the test.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from returnguard.domain.policy.backtest import (
    CSV_HEADER,
    BacktestCase,
    BacktestReport,
    Effect,
    run_backtest,
)
from returnguard.domain.policy.defaults import default_policy
from returnguard.domain.policy.document import PolicyDocument, RiskLevel
from returnguard.domain.policy.engine import (
    CompiledPolicy,
    CompiledRule,
    EvidenceFacts,
    LineFacts,
    Outcome,
    ReturnFacts,
    compile_policy,
    evaluate,
)
from returnguard.domain.reasons import ReasonCode

AA = Outcome.AUTO_APPROVE
REJECT = Outcome.REJECT
REVIEW = Outcome.NEEDS_REVIEW
RETURNLESS = Outcome.RETURNLESS_REFUND
START = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
BENCH = Path(__file__).resolve().parents[3] / "bench" / "policy_bench.py"


def draft(defaults: dict[str, Any] | None = None, *rules: dict[str, Any]) -> CompiledPolicy:
    return compile_policy(
        PolicyDocument.model_validate(
            {"name": "draft", "defaults": defaults or {}, "rules": list(rules)}
        )
    )


def line(
    value: str | None = "40.00",
    *,
    quantity: int = 1,
    reason: ReasonCode = ReasonCode.CHANGED_MIND,
    line_id: str = "l1",
) -> LineFacts:
    return LineFacts(
        line_id=line_id,
        sku="SKU-1",
        category="shoes",
        reason_code=reason,
        unit_value=None if value is None else Decimal(value),
        quantity=quantity,
    )


def facts(
    *lines: LineFacts,
    days: int | None = 5,
    country: str = "US",
    currency: str = "EUR",
    cost: str | None = "8.00",
    watchlisted: bool = False,
) -> ReturnFacts:
    return ReturnFacts(
        channel="shop",
        marketplace_country="US",
        buyer_country=country,
        currency=currency,
        days_since_delivery=days,
        buyer_risk=RiskLevel.LOW,
        watchlisted=watchlisted,
        first_time_buyer=False,
        cost_to_return=None if cost is None else Decimal(cost),
        lines=list(lines) or [line()],
    )


def case(
    n: int,
    f: ReturnFacts,
    actual: Outcome | None = AA,
    *,
    label: str | None = "5.00",
    payer: str | None = None,
    fee: str = "0",
    refund_before_receipt: bool = False,
    returnless: bool = False,
) -> BacktestCase:
    return BacktestCase(
        return_id=f"id-{n}",
        number=f"R-{n}",
        requested_at=START + timedelta(days=n),
        currency=f.currency,
        facts=f,
        actual_outcome=actual,
        label_cost=None if label is None else Decimal(label),
        actual_refund_before_receipt=refund_before_receipt,
        actual_restocking_fee=Decimal(fee),
        actual_shipping_paid_by=payer,
        actual_returnless=returnless,
    )


def pair(effect: Effect) -> tuple[int | None, str | None, int, str]:
    """An effect as (actual count, actual value, draft count, draft value), amounts as text."""
    actual = None if effect.actual_value is None else str(effect.actual_value)
    return (effect.actual_count, actual, effect.draft_count, str(effect.draft_value))


def window_report() -> BacktestReport:
    # Window 30 -> 20: of four returns two change, the other two stay as they were.
    return run_backtest(
        draft({"return_window_days": 20}),
        [
            case(1, facts(days=5), AA),
            case(2, facts(days=25), AA),
            case(3, facts(days=40), REJECT),
            case(4, facts(days=None), AA),
        ],
    )


# --- outcomes ------------------------------------------------------------------------


def test_counts_how_many_decisions_change_and_how() -> None:
    report = window_report()

    assert report.total == 4
    assert report.changed == 2
    assert report.undecided == 0
    assert report.transitions == {
        (AA, AA): 1,
        (AA, REJECT): 1,
        (REJECT, REJECT): 1,
        (AA, REVIEW): 1,
    }
    assert [(r.number, r.actual, r.draft) for r in report.differing] == [
        ("R-2", AA, REJECT),
        ("R-4", AA, REVIEW),
    ]
    assert report.differing[0].reasons == [
        "outside the 20-day return window (25 days since delivery)"
    ]
    assert report.first_requested_at == START + timedelta(days=1)
    assert report.last_requested_at == START + timedelta(days=4)
    assert not report.truncated


def test_returns_never_decided_are_counted_apart_not_as_changes() -> None:
    report = run_backtest(draft(), [case(1, facts(), None), case(2, facts(), AA)])

    assert report.undecided == 1
    assert report.changed == 0
    assert report.transitions == {(None, AA): 1, (AA, AA): 1}
    assert report.differing == []


def test_cases_are_streamed_once_from_any_iterable() -> None:
    cases = (case(n, facts(days=n)) for n in range(1, 41))
    report = run_backtest(draft({"return_window_days": 20}), cases)

    assert report.total == 40
    assert report.changed == 20  # days 21..40
    assert report.transitions == {(AA, AA): 20, (AA, REJECT): 20}


def test_differing_rows_are_capped_but_counts_stay_exact() -> None:
    cases = [case(n, facts(days=25 + n % 5)) for n in range(30)]
    report = run_backtest(draft({"return_window_days": 20}), cases, keep_rows=10)

    assert report.changed == 30
    assert len(report.differing) == 10
    assert [r.number for r in report.differing] == [f"R-{n}" for n in range(10)]
    assert report.truncated
    assert report.transitions == {(AA, REJECT): 30}
    assert report.to_csv().count("\n") == 11  # header + the 10 kept
    summary = report.summary_dict(rows=3)
    assert summary["differing"]["count"] == 30
    assert summary["differing"]["kept"] == 10
    assert summary["differing"]["truncated"] is True
    assert len(summary["differing"]["returns"]) == 3

    none_kept = run_backtest(draft({"return_window_days": 20}), cases, keep_rows=0)
    assert none_kept.changed == 30
    assert none_kept.differing == []


def test_a_negative_row_cap_is_refused() -> None:
    with pytest.raises(ValueError, match="keep_rows"):
        run_backtest(draft(), [], keep_rows=-1)


def test_an_empty_backtest_reports_nothing_changed() -> None:
    report = run_backtest(draft(), [])

    assert (report.total, report.changed, report.money) == (0, 0, {})
    assert "No return's outcome would differ." in report.to_table()
    assert report.to_csv() == ",".join(CSV_HEADER) + "\n"


# --- money -----------------------------------------------------------------------------


def test_restocking_fee_is_a_percent_of_the_line_value_rounded_half_up_and_capped() -> None:
    fee = {"percent": "10", "cap": "25", "applies_to": "always"}
    cases = [
        case(1, facts(line("40.00")), fee="2.00"),  # 4.00
        case(2, facts(line("300.00"))),  # 30.00, capped at 25.00
        case(3, facts(line("19.99", quantity=3))),  # 59.97 -> 5.997 -> 6.00
        # two lines: 10.05 -> 1.005 -> 1.01 (half up, not half even), 0.50 -> 0.05
        case(4, facts(line("10.05"), line("0.50", line_id="l2"))),
        case(5, facts(line("40.00"), days=40)),  # rejected: nothing comes back, no fee
    ]
    always = run_backtest(draft({}, {"id": "fee", "then": {"restocking_fee": fee}}), cases)
    eur = always.money["EUR"]

    assert pair(eur.restocking_fees) == (1, "2.00", 4, "36.06")
    assert eur.restocking_fees.count_change == 3
    assert eur.restocking_fees.value_change == Decimal("34.06")
    assert pair(eur.restocking_fees_if_opened) == (None, None, 0, "0.00")

    opened = run_backtest(
        draft({}, {"id": "fee", "then": {"restocking_fee": {**fee, "applies_to": "opened"}}}),
        cases,
    )
    eur = opened.money["EUR"]
    assert pair(eur.restocking_fees) == (1, "2.00", 0, "0.00")
    assert pair(eur.restocking_fees_if_opened) == (None, None, 4, "36.06")
    assert eur.restocking_fees_if_opened.value_change is None


def test_the_law_takes_a_flat_fee_off_a_withdrawal_within_14_days() -> None:
    fee = {"percent": "10", "applies_to": "always"}
    report = run_backtest(
        draft({}, {"id": "fee", "then": {"restocking_fee": fee}}),
        [
            case(1, facts(line("50.00"), country="DE", days=5)),  # EU withdrawal: no fee
            case(2, facts(line("50.00"), country="DE", days=20)),  # past 14 days: 5.00
        ],
    )

    assert pair(report.money["EUR"].restocking_fees) == (0, "0.00", 1, "5.00")


def test_return_shipping_costs_one_label_per_return_by_whoever_pays() -> None:
    policy = draft(
        {"return_shipping_paid_by": "seller"},
        {
            "id": "buyer-pays",
            "when": {"reason_classes": ["no_fault"]},
            "then": {"return_shipping_paid_by": "buyer"},
        },
    )
    report = run_backtest(
        policy,
        [
            case(1, facts(line(reason=ReasonCode.CHANGED_MIND)), label="5.00", payer="seller"),
            case(2, facts(line(reason=ReasonCode.WRONG_ITEM)), label="6.50", payer="seller"),
            case(3, facts(line(reason=ReasonCode.SIZE_FIT)), label=None, payer="buyer"),
            case(4, facts(line(), days=40), REJECT, label="5.00", payer=None),
        ],
    )
    eur = report.money["EUR"]

    assert pair(eur.shipping_paid_by_seller) == (2, "11.50", 1, "6.50")
    assert pair(eur.shipping_paid_by_buyer) == (1, "0.00", 2, "5.00")
    assert eur.shipping_paid_by_seller.value_change == Decimal("-5.00")
    assert eur.shipping_paid_by_buyer.value_change == Decimal("5.00")
    assert eur.returns_without_label_cost == 1


def test_returnless_refunds_count_and_value_and_are_paid_before_receipt() -> None:
    report = run_backtest(
        draft({"returnless_refund": True}),
        [
            # cost to bring back 8.00: two units of 5.00 each are worth 10.00 in all
            case(1, facts(line("5.00", quantity=2)), AA),
            case(2, facts(line("7.99")), RETURNLESS, returnless=True),
            case(3, facts(line("20.00")), AA, payer="seller"),
        ],
    )
    eur = report.money["EUR"]

    assert report.transitions == {(AA, RETURNLESS): 1, (RETURNLESS, RETURNLESS): 1, (AA, AA): 1}
    assert pair(eur.returnless_refunds) == (1, "7.99", 2, "17.99")
    assert eur.returnless_refunds.count_change == 1
    assert eur.returnless_refunds.value_change == Decimal("10.00")
    assert pair(eur.refunds_before_receipt) == (1, "7.99", 2, "17.99")
    # only the 20.00 item comes back, at the seller's expense (the built-in default)
    assert pair(eur.shipping_paid_by_seller) == (1, "5.00", 1, "5.00")
    assert eur.value == Decimal("37.99")


def test_refund_before_receipt_never_for_watchlisted_buyers_or_inspected_returns() -> None:
    policy = draft(
        {"refund_before_receipt": True},
        {
            "id": "inspect-valuable",
            "when": {"item_value": {"min": "100"}},
            "then": {"inspection_before_refund": True},
        },
    )
    report = run_backtest(
        policy,
        [
            case(1, facts(line("40.00"))),  # paid before receipt
            case(2, facts(line("150.00"))),  # inspected first
            case(3, facts(line("30.00"), watchlisted=True)),  # watchlisted
            case(4, facts(line("40.00"), days=40), REJECT),  # rejected
            case(5, facts(line("25.00")), refund_before_receipt=True),
        ],
    )

    assert pair(report.money["EUR"].refunds_before_receipt) == (1, "25.00", 2, "65.00")


def test_jpy_amounts_round_to_whole_yen_and_stay_apart_from_euros() -> None:
    fee = {"percent": "10", "cap": "2000", "applies_to": "always"}
    report = run_backtest(
        draft({}, {"id": "fee", "then": {"restocking_fee": fee}}),
        [
            case(1, facts(line("1235"), currency="JPY", cost="900"), label="800", payer="seller"),
            case(2, facts(line("1234"), currency="JPY", cost="900"), label="800"),
            case(3, facts(line("30000"), currency="JPY", cost="900"), label="800"),
            case(4, facts(line("12.35")), label="4.99"),
        ],
    )
    jpy = report.money["JPY"]
    eur = report.money["EUR"]

    # 123.5 -> 124, 123.4 -> 123, 3000 -> capped at 2000
    assert pair(jpy.restocking_fees) == (0, "0", 3, "2247")
    assert pair(jpy.shipping_paid_by_seller) == (1, "800", 3, "2400")
    assert jpy.value == Decimal("32469")
    assert jpy.restocking_fees.draft_value.as_tuple().exponent == 0
    assert pair(eur.restocking_fees) == (0, "0.00", 1, "1.24")  # 1.235 -> 1.24
    assert eur.returns == 1 and jpy.returns == 3


def test_amounts_finer_than_the_currency_round_half_up_and_caps_round_down() -> None:
    fee = {"percent": "10", "cap": "0.995", "applies_to": "always"}
    report = run_backtest(
        draft({}, {"id": "fee", "then": {"restocking_fee": fee}}),
        [case(1, facts(line("20.00")), label="4.995")],  # fee 2.00 capped at 0.99
    )
    eur = report.money["EUR"]

    assert pair(eur.restocking_fees) == (0, "0.00", 1, "0.99")
    assert pair(eur.shipping_paid_by_seller) == (0, "0.00", 1, "5.00")


def test_every_amount_is_a_decimal_never_a_float() -> None:
    report = window_report()
    for money in report.money.values():
        assert isinstance(money.value, Decimal)
        for _, effect in money.effects():
            for amount in (effect.actual_value, effect.draft_value, effect.value_change):
                assert amount is None or isinstance(amount, Decimal)
    for row in report.differing:
        assert isinstance(row.value, Decimal)


# --- output ----------------------------------------------------------------------------


def test_to_csv_lists_the_differing_returns_under_a_header() -> None:
    rows = list(csv.reader(io.StringIO(window_report().to_csv())))

    assert rows[0] == [
        "return_id",
        "number",
        "requested_at",
        "currency",
        "value",
        "actual_outcome",
        "draft_outcome",
        "draft_reasons",
    ]
    assert rows[1] == [
        "id-2",
        "R-2",
        "2024-03-03T12:00:00+00:00",
        "EUR",
        "40.00",
        "auto_approve",
        "reject",
        "outside the 20-day return window (25 days since delivery)",
    ]
    assert rows[2][:7] == [
        "id-4",
        "R-4",
        "2024-03-05T12:00:00+00:00",
        "EUR",
        "40.00",
        "auto_approve",
        "needs_review",
    ]
    assert len(rows) == 3


def test_a_reason_shared_by_several_lines_is_listed_once() -> None:
    two_lines = facts(line(), line(line_id="l2"), days=25)
    report = run_backtest(draft({"return_window_days": 20}), [case(1, two_lines)])

    assert report.differing[0].reasons == [
        "outside the 20-day return window (25 days since delivery)"
    ]
    assert report.differing[0].value == Decimal("80.00")


def test_summary_dict_is_json_ready_with_amounts_as_strings() -> None:
    summary = json.loads(json.dumps(window_report().summary_dict()))

    assert summary["returns"] == 4
    assert summary["changed"] == 2
    assert summary["transitions"][0] in (
        {"actual": "auto_approve", "draft": "reject", "count": 1},
        {"actual": "auto_approve", "draft": "needs_review", "count": 1},
    )
    assert {(t["actual"], t["draft"]) for t in summary["transitions"]} == {
        ("auto_approve", "auto_approve"),
        ("auto_approve", "reject"),
        ("reject", "reject"),
        ("auto_approve", "needs_review"),
    }
    eur = summary["money"]["EUR"]
    assert eur["value"] == "160.00"
    assert eur["shipping_paid_by_seller"] == {
        "actual": {"count": 0, "value": "0.00"},
        "draft": {"count": 2, "value": "10.00"},
        "change": {"count": 2, "value": "10.00"},
    }
    assert eur["restocking_fees_if_opened"]["actual"] is None
    assert summary["differing"]["returns"][0]["number"] == "R-2"
    assert summary["period"] == {
        "from": "2024-03-02T12:00:00+00:00",
        "to": "2024-03-05T12:00:00+00:00",
    }


def test_to_table_shows_changes_money_and_differing_returns() -> None:
    table = window_report().to_table()

    assert "Backtest of 'draft' over 4 returns" in table
    assert "Decisions changed: 2 of 4 (50.0%)" in table
    assert re.search(r"auto_approve -> reject\s+1\s+\*", table)
    assert "Money effect, EUR: 4 returns worth 160.00" in table
    assert re.search(
        r"Return shipping paid by seller\s+0\s+0\.00\s+2\s+10\.00\s+\+2\s+\+10\.00", table
    )
    assert "Returns whose outcome would differ: 2" in table
    assert re.search(r"R-2\s+2024-03-03\s+auto_approve\s+reject\s+40\.00 EUR\s+outside", table)


# --- the untraced engine path the backtest relies on ----------------------------------


def _random_when(rng: random.Random) -> dict[str, Any]:
    options: dict[str, Any] = {
        "channels": lambda: rng.sample(["shop", "amazon", "ebay"], rng.randint(1, 2)),
        "marketplace_countries": lambda: rng.sample(["DE", "US", "GB"], rng.randint(1, 2)),
        "buyer_countries": lambda: rng.sample(["DE", "US", "GB", "JP"], rng.randint(1, 3)),
        "categories": lambda: rng.sample(["shoes", "toys", "home"], rng.randint(1, 2)),
        "skus": lambda: rng.sample(["SKU-1", "SKU-2"], 1),
        "item_value": lambda: {
            "currency": rng.choice([None, "EUR", "USD"]),
            "min": rng.choice([None, "10", "50.5"]),
            "max": rng.choice([None, "30", "200"]),
        },
        "reason_classes": lambda: rng.sample(["no_fault", "seller_fault", "delivery"], 1),
        "reason_codes": lambda: rng.sample([c.value for c in ReasonCode], rng.randint(1, 4)),
        "days_since_delivery": lambda: {
            "min": rng.choice([None, 0, 10]),
            "max": rng.choice([None, 20, 400]),
        },
        "buyer_risk": lambda: rng.sample(["low", "medium", "high"], rng.randint(1, 2)),
        "watchlisted": lambda: rng.choice([True, False]),
        "first_time_buyer": lambda: rng.choice([True, False]),
    }
    names = rng.sample(sorted(options), rng.randint(0, 3))
    return {name: options[name]() for name in names}


def _random_then(rng: random.Random) -> dict[str, Any]:
    options: dict[str, Any] = {
        "eligible": lambda: rng.choice([True, False]),
        "return_window_days": lambda: rng.choice([7, 14, 30, 60]),
        "return_shipping_paid_by": lambda: rng.choice(["buyer", "seller"]),
        "restocking_fee": lambda: {
            "percent": "15",
            "cap": rng.choice([None, "20"]),
            "applies_to": rng.choice(["opened", "always"]),
        },
        "evidence": lambda: {"photos": rng.randint(0, 2), "explanation": rng.random() < 0.5},
        "human_review": lambda: rng.random() < 0.3,
        "refund_before_receipt": lambda: rng.choice([True, False]),
        "alternatives": lambda: rng.choice([{}, {"replacement": True}]),
        "returnless_refund": lambda: rng.choice([True, False]),
    }
    names = rng.sample(sorted(options), rng.randint(1, 3))
    return {name: options[name]() for name in names}


def _random_policy(rng: random.Random, n: int) -> PolicyDocument:
    return PolicyDocument.model_validate(
        {
            "name": f"random {n}",
            "defaults": _random_then(rng) if rng.random() < 0.7 else {},
            "rules": [
                {
                    "id": f"r{i}",
                    "when": _random_when(rng),
                    "then": _random_then(rng),
                    "stop": rng.random() < 0.15,
                }
                for i in range(rng.randint(0, 7))
            ],
        }
    )


def _random_facts(rng: random.Random) -> ReturnFacts:
    def maybe(value: Any) -> Any:
        return None if rng.random() < 0.1 else value

    currency = rng.choice(["EUR", "EUR", "USD"])
    lines = [
        LineFacts(
            line_id=f"l{i}",
            sku=rng.choice(["SKU-1", "SKU-2"]),
            category=maybe(rng.choice(["shoes", "toys", "home"])),
            reason_code=rng.choice(list(ReasonCode)),
            unit_value=maybe(Decimal(rng.randint(100, 30000)).scaleb(-2)),
            quantity=rng.randint(1, 3),
        )
        for i in range(rng.choice([0, 1, 1, 1, 2, 3]))
    ]
    return ReturnFacts(
        channel=rng.choice(["shop", "amazon", "ebay"]),
        marketplace_country=maybe(rng.choice(["DE", "US", "GB"])),
        buyer_country=maybe(rng.choice(["DE", "FR", "GB", "US", "JP", "NO"])),
        currency=currency,
        days_since_delivery=maybe(rng.choice([0, 3, 10, 14, 15, 25, 31, 45, 400, 800])),
        buyer_risk=maybe(rng.choice(list(RiskLevel))),
        watchlisted=rng.random() < 0.2,
        first_time_buyer=maybe(rng.choice([True, False])),
        cost_to_return=maybe(Decimal(rng.randint(300, 1500)).scaleb(-2)),
        lines=lines,
        evidence=rng.choice([EvidenceFacts(), EvidenceFacts(photos=2, explanation=True)]),
        fx_rates=rng.choice([{}, {"USD": Decimal("1.08"), "EUR": Decimal("0.92")}]),
    )


def _assert_same_decision(policy: CompiledPolicy, f: ReturnFacts) -> None:
    explained = evaluate(policy, f)
    quiet = evaluate(policy, f, explain=False)
    assert quiet.outcome is explained.outcome
    assert quiet.reasons == explained.reasons
    assert quiet.missing_facts == explained.missing_facts
    assert len(quiet.lines) == len(explained.lines)
    for q, e in zip(quiet.lines, explained.lines, strict=True):
        assert (q.line_id, q.outcome, q.reasons) == (e.line_id, e.outcome, e.reasons)
        # the same dicts, down to their key order
        assert list(q.settings.items()) == list(e.settings.items())
        assert list(q.sources.items()) == list(e.sources.items())
        assert q.missing_facts == e.missing_facts
        assert q.legal == e.legal
        assert q.trace == []


def test_untraced_evaluation_decides_exactly_as_the_explained_one() -> None:
    rng = random.Random(7)
    policies = [compile_policy(default_policy("EUR")), compile_policy(default_policy("JPY"))]
    policies += [compile_policy(_random_policy(rng, n)) for n in range(60)]
    for policy in policies:
        for _ in range(40):
            _assert_same_decision(policy, _random_facts(rng))


def test_untraced_evaluation_of_rules_compiled_by_hand_uses_their_checks() -> None:
    compiled = compile_policy(_random_policy(random.Random(3), 0))
    by_hand = CompiledPolicy(
        compiled.document,
        tuple(CompiledRule(r.id, r.checks, r.sets, r.stop) for r in compiled.rules),
        compiled.defaults,
        compiled.states_window,
    )
    rng = random.Random(4)
    for _ in range(200):
        f = _random_facts(rng)
        assert evaluate(by_hand, f, explain=False) == evaluate(compiled, f, explain=False)


# --- the benchmark ----------------------------------------------------------------------


def test_policy_benchmark_smoke_run_prints_both_figures() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--n", "2000"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert re.search(r"engine: [\d,]+ evaluations/s on one core", done.stdout)
    assert re.search(r"backtest: 2,000 returns in [\d.]+ s", done.stdout)
    assert re.search(r"goal >= 200,000/s: (PASS|FAIL)", done.stdout)
    assert re.search(r"goal < 15 s per 1,000,000 returns .*: (PASS|FAIL)", done.stdout)
