"""Policy benchmark: the engine alone, then a backtest of a draft over the same returns.

    python bench/policy_bench.py            # 1,000,000 returns
    python bench/policy_bench.py --n 20000  # CI smoke run, a few seconds

Returns are generated deterministically (``--seed``): reason codes, buyer countries in the
EU, UK, US, Japan and elsewhere (each in its own currency, with FX rates for the policy's
EUR value bands), categories, unit values from 3 to 900 EUR with a long tail, days since
delivery 0-60 (some unknown), about 1 % watchlisted buyers, some two-line returns. What
"actually happened" is the default policy's decision with a few human overrides.

Goals (README): >= 200,000 engine evaluations per second on one core (one process, one
thread: the figure is per core) and a 1M-return backtest in under 15 s.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from returnguard.domain.policy.backtest import BacktestCase, run_backtest
from returnguard.domain.policy.defaults import default_policy, default_policy_data
from returnguard.domain.policy.document import FeeApplies, PolicyDocument, RiskLevel
from returnguard.domain.policy.engine import (
    CompiledPolicy,
    EvidenceFacts,
    LineFacts,
    Outcome,
    ReturnFacts,
    compile_policy,
    evaluate,
)
from returnguard.domain.reasons import ReasonCode

ENGINE_GOAL = 200_000  # evaluations per second, one core
BACKTEST_GOAL_SECONDS = 15.0  # for 1,000,000 returns

# (buyer country, weight, currency)
COUNTRIES: list[tuple[str, int, str]] = [
    ("DE", 20, "EUR"),
    ("FR", 10, "EUR"),
    ("IT", 6, "EUR"),
    ("ES", 6, "EUR"),
    ("NL", 5, "EUR"),
    ("PL", 3, "EUR"),
    ("AT", 2, "EUR"),
    ("BE", 2, "EUR"),
    ("SE", 2, "EUR"),
    ("IE", 1, "EUR"),
    ("CH", 1, "EUR"),
    ("NO", 1, "EUR"),
    ("GB", 14, "GBP"),
    ("US", 17, "USD"),
    ("CA", 2, "USD"),
    ("JP", 6, "JPY"),
    ("AU", 2, "USD"),
]
# Units of the currency per EUR, as an exact fraction (numerator, denominator).
RATES: dict[str, tuple[int, int]] = {
    "EUR": (1, 1),
    "GBP": (85, 100),
    "USD": (108, 100),
    "JPY": (160, 1),
}
REASONS: list[tuple[ReasonCode, int]] = [
    (ReasonCode.SIZE_FIT, 25),
    (ReasonCode.CHANGED_MIND, 20),
    (ReasonCode.DEFECTIVE, 12),
    (ReasonCode.NOT_AS_DESCRIBED, 8),
    (ReasonCode.DAMAGED_IN_TRANSIT, 6),
    (ReasonCode.WRONG_ITEM, 5),
    (ReasonCode.ORDERED_BY_MISTAKE, 5),
    (ReasonCode.BETTER_PRICE, 3),
    (ReasonCode.MISSING_PARTS, 3),
    (ReasonCode.LATE_DELIVERY, 5),
    (ReasonCode.LOST_IN_TRANSIT, 1),
    (ReasonCode.OTHER, 7),
]
CATEGORIES: list[tuple[str | None, int]] = [
    ("apparel", 30),
    ("shoes", 15),
    ("electronics", 15),
    ("home", 12),
    ("beauty", 8),
    ("toys", 7),
    ("sports", 7),
    ("books", 3),
    (None, 3),
]
# (channel, weight, return label cost in EUR cents, handling cost in EUR cents)
CHANNELS: list[tuple[str, int, int, int]] = [
    ("amazon", 45, 490, 250),
    ("shopify", 30, 650, 200),
    ("ebay", 15, 550, 250),
    ("zalando", 10, 590, 300),
]
# Unit value bands in EUR cents (inclusive low, exclusive high): a long tail.
VALUE_BANDS: list[tuple[int, int, int]] = [
    (300, 1_500, 24),
    (1_500, 5_000, 36),
    (5_000, 15_000, 25),
    (15_000, 40_000, 10),
    (40_000, 90_001, 5),
]
RISKS: list[tuple[RiskLevel | None, int]] = [
    (RiskLevel.LOW, 78),
    (RiskLevel.MEDIUM, 15),
    (RiskLevel.HIGH, 4),
    (None, 3),
]
SELLER_FAULT = {ReasonCode.DEFECTIVE, ReasonCode.NOT_AS_DESCRIBED, ReasonCode.DAMAGED_IN_TRANSIT}
START = datetime(2024, 1, 1, tzinfo=UTC)


def _table(weighted: Sequence[tuple[Any, int]], size: int = 1024) -> list[Any]:
    """A lookup table of ``size`` slots, each value taking its share of the weight."""
    total = sum(w for _, w in weighted)
    table: list[Any] = []
    acc = 0
    for value, weight in weighted:
        acc += weight
        table.extend([value] * (acc * size // total - len(table)))
    return table


class Generator:
    """Deterministic returns, built from integer random bits only (no floats)."""

    def __init__(self, seed: int, n: int, *, single_line: bool = False) -> None:
        import random

        self.rng = random.Random(seed)
        self.n = n
        self.single_line = single_line
        self.countries = _table([((c, cur), w) for c, w, cur in COUNTRIES])
        self.reasons = _table(REASONS)
        self.categories = _table(CATEGORIES)
        self.channels = _table(
            [((name, label, handling), w) for name, w, label, handling in CHANNELS]
        )
        self.bands = _table([((lo, hi), w) for lo, hi, w in VALUE_BANDS])
        self.risks = _table(RISKS)
        self.fx = {
            cur: {"EUR": Decimal(num) / Decimal(den)} if cur != "EUR" else {}
            for cur, (num, den) in RATES.items()
        }
        self.amounts: dict[tuple[str, int], Decimal] = {}
        self.evidence = {
            "none": EvidenceFacts(),
            "one": EvidenceFacts(photos=1),
            "full": EvidenceFacts(photos=2, explanation=True),
        }
        self.skus = [f"SKU-{i:05d}" for i in range(5000)]

    def money(self, currency: str, eur_cents: int) -> Decimal:
        """An amount given in EUR cents, in ``currency``'s minor units (integer maths)."""
        num, den = RATES[currency]
        if currency == "JPY":
            minor = (eur_cents * num + 50 * den) // (100 * den)
            digits = 0
        else:
            minor = (eur_cents * num + den // 2) // den
            digits = 2
        key = (currency, minor)
        found = self.amounts.get(key)
        if found is None:
            found = self.amounts[key] = Decimal(minor).scaleb(-digits)
        return found

    def facts(self, i: int) -> tuple[ReturnFacts, Decimal | None]:
        bits = self.rng.getrandbits(128)
        (country, currency) = self.countries[bits & 1023]
        bits >>= 10
        channel, label_cents, handling_cents = self.channels[bits & 1023]
        bits >>= 10
        risk = self.risks[bits & 1023]
        bits >>= 10
        watchlisted = (bits & 1023) < 10
        bits >>= 10
        first_time = (None, True, False, False)[bits & 3]
        bits >>= 2
        days: int | None = min(bits & 63, (bits >> 6) & 63)
        if days is not None and days > 60:
            days = 60
        bits >>= 12
        if (bits & 31) == 0:
            days = None  # delivery date unknown (~3 %)
        bits >>= 5
        two_lines = (bits & 31) < 2 and not self.single_line  # ~6 % have two lines
        bits >>= 5
        no_cost = (bits & 63) == 0  # channel without a configured label cost (~1.5 %)

        lines = []
        evidence = self.evidence["none"]
        for n in range(2 if two_lines else 1):
            lbits = self.rng.getrandbits(64)
            reason = self.reasons[lbits & 1023]
            lbits >>= 10
            category = self.categories[lbits & 1023]
            lbits >>= 10
            lo, hi = self.bands[lbits & 1023]
            lbits >>= 10
            cents = lo + (lbits & 0xFFFFF) % (hi - lo)
            lbits >>= 20
            quantity = 1 if (lbits & 15) < 14 else 2 + (lbits >> 4 & 1)
            lbits >>= 5
            if reason in SELLER_FAULT:
                shown = lbits & 7
                if shown >= 3:
                    evidence = self.evidence["full"]
                elif shown == 2 and evidence is self.evidence["none"]:
                    evidence = self.evidence["one"]
            lines.append(
                LineFacts(
                    line_id=f"{i}-{n}",
                    sku=self.skus[(lbits >> 3) % len(self.skus)],
                    category=category,
                    reason_code=reason,
                    unit_value=self.money(currency, cents),
                    quantity=quantity,
                )
            )
        label = None if no_cost else self.money(currency, label_cents)
        cost = None if no_cost else self.money(currency, label_cents + handling_cents)
        facts = ReturnFacts(
            channel=channel,
            marketplace_country="DE" if channel != "amazon" else country,
            buyer_country=country,
            currency=currency,
            days_since_delivery=days,
            buyer_risk=risk,
            watchlisted=watchlisted,
            first_time_buyer=first_time,
            cost_to_return=cost,
            lines=lines,
            evidence=evidence,
            fx_rates=self.fx[currency],
        )
        return facts, label

    def case(
        self, i: int, facts: ReturnFacts, label: Decimal | None, actual: CompiledPolicy
    ) -> BacktestCase:
        requested_at = START + timedelta(minutes=(i * 525_600) // self.n)
        decision = evaluate(actual, facts, explain=False)
        outcome: Outcome | None = decision.outcome
        noise = self.rng.getrandbits(16)
        if noise < 1300:
            outcome = None  # decided before policies were recorded (~2 %)
        elif noise < 2600 and outcome is Outcome.NEEDS_REVIEW:
            outcome = Outcome.AUTO_APPROVE  # a reviewer let it through
        returnless = outcome is Outcome.RETURNLESS_REFUND
        comes_back = outcome is not None and outcome is not Outcome.REJECT and not returnless
        settings = decision.lines[0].settings
        fee_kept = Decimal(0)
        if comes_back:
            opened = (noise & 3) == 0  # inspection found a quarter of the items opened
            for ld, ln in zip(decision.lines, facts.lines, strict=True):
                fee = ld.settings.get("restocking_fee")
                if fee is None or ld.outcome is Outcome.REJECT or ln.unit_value is None:
                    continue
                if fee.applies_to is FeeApplies.ALWAYS or opened:
                    scale = Decimal(1) if facts.currency == "JPY" else Decimal("0.01")
                    amount = (ln.unit_value * ln.quantity * fee.percent / 100).quantize(
                        scale, rounding=ROUND_HALF_UP
                    )
                    fee_kept += amount if fee.cap is None else min(amount, fee.cap)
        payer = settings.get("return_shipping_paid_by")
        return BacktestCase(
            return_id=f"00000000-0000-4000-8000-{i:012d}",
            number=f"R-{i + 1:07d}",
            requested_at=requested_at,
            currency=facts.currency,
            facts=facts,
            actual_outcome=outcome,
            label_cost=label,
            actual_refund_before_receipt=returnless,
            actual_restocking_fee=fee_kept,
            actual_shipping_paid_by=str(payer) if comes_back and payer is not None else None,
            actual_returnless=returnless,
        )

    def cases(self, actual: CompiledPolicy) -> list[BacktestCase]:
        # All facts first, then what happened to them: the facts of neighbouring returns
        # sit together in memory, as when a backtest reads them from the database.
        enabled = gc.isenabled()
        gc.disable()  # nothing generated here is cyclic garbage
        try:
            generated = [self.facts(i) for i in range(self.n)]
            return [
                self.case(i, facts, label, actual) for i, (facts, label) in enumerate(generated)
            ]
        finally:
            if enabled:
                gc.enable()


def draft_policy() -> PolicyDocument:
    """The default policy, stricter: a 21-day window, returnless up to 25 EUR, and a flat
    restocking fee on opened-or-not electronics bought for a change of mind."""
    data = default_policy_data("EUR")
    data["name"] = "Draft: 21-day window, returnless up to 25 EUR"
    data["defaults"]["return_window_days"] = 21
    for rule in data["rules"]:
        if rule["id"] == "cheap-returnless":
            rule["when"]["item_value"]["max"] = "25"
    data["rules"].insert(
        1,
        {
            "id": "electronics-flat-fee",
            "when": {"categories": ["electronics"], "reason_codes": ["changed_mind"]},
            "then": {
                "restocking_fee": {"percent": "15", "cap": "40", "applies_to": "always"},
                "return_shipping_paid_by": "buyer",
            },
        },
    )
    return PolicyDocument.model_validate(data)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=1_000_000, help="returns to generate")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument(
        "--repeat", type=int, default=3, help="engine passes over all returns; the best counts"
    )
    parser.add_argument("--rows", type=int, default=5, help="differing returns to print")
    parser.add_argument("--single-line", action="store_true", help="one line per return")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)
    n = max(args.n, 1)

    actual = compile_policy(default_policy("EUR"))
    draft = compile_policy(draft_policy())

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} cores, load average {load}; "
        f"generating {n:,} returns (seed {args.seed})..."
    )
    started = time.perf_counter()
    cases = Generator(args.seed, n, single_line=args.single_line).cases(actual)
    facts = [c.facts for c in cases]
    # Everything generated lives to the end: keep the collector from re-scanning it.
    gc.collect()
    gc.freeze()
    print(f"  generated in {time.perf_counter() - started:.1f} s")

    # (a) The engine alone: the default policy, no trace, one thread (so: one core).
    evaluate(actual, facts[0], explain=False)
    engine_seconds = engine_cpu = float("inf")
    for _ in range(max(args.repeat, 1)):
        started, cpu = time.perf_counter(), time.process_time()
        for f in facts:
            evaluate(actual, f, explain=False)
        elapsed = time.perf_counter() - started
        if elapsed < engine_seconds:
            engine_seconds, engine_cpu = elapsed, time.process_time() - cpu
    rate = n / engine_seconds
    single = sum(1 for f in facts if len(f.lines) == 1)
    print()
    print(
        f"engine: {rate:,.0f} evaluations/s on one core "
        f"({n:,} returns, {single * 100 // n} % single-line; best of {max(args.repeat, 1)} "
        f"passes: {engine_seconds:.2f} s wall, {engine_cpu:.2f} s CPU)"
    )
    engine_ok = rate >= ENGINE_GOAL
    print(f"  goal >= {ENGINE_GOAL:,}/s: {_verdict(engine_ok)}")

    # (b) A backtest of the draft over every return: evaluation, comparison and money.
    started, cpu = time.perf_counter(), time.process_time()
    report = run_backtest(draft, cases)
    backtest_seconds = time.perf_counter() - started
    backtest_cpu = time.process_time() - cpu
    goal = BACKTEST_GOAL_SECONDS * n / 1_000_000
    print()
    print(
        f"backtest: {n:,} returns in {backtest_seconds:.2f} s "
        f"({backtest_cpu:.2f} s CPU; {n / backtest_seconds:,.0f} returns/s; "
        f"{report.changed:,} decisions change)"
    )
    backtest_ok = backtest_seconds < goal
    print(
        f"  goal < {BACKTEST_GOAL_SECONDS:.0f} s per 1,000,000 returns "
        f"(< {goal:.2f} s for {n:,}): {_verdict(backtest_ok)}"
    )
    print()
    print(report.to_table(rows=args.rows))
    gc.unfreeze()
    return 1 if args.strict and not (engine_ok and backtest_ok) else 0


if __name__ == "__main__":
    raise SystemExit(main())
