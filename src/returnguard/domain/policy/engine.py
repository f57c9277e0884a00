"""Evaluate a policy against the facts of a return; explain every step.

The engine compiles a policy once (`compile_policy`) into plain tuples of checks, then
evaluates returns with no I/O. Every return line is judged on its own (its reason, its
item, its value) and the line outcomes combine into one decision for the return. With
``explain=True`` the result carries the rule trace: each rule considered, whether it
matched and on which facts, and which settings it decided; legal floors that overrode
the policy are listed with the law that requires it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from returnguard.domain.policy.document import (
    BUILTIN_DEFAULTS,
    SETTING_NAMES,
    Conditions,
    FeeApplies,
    Payer,
    PolicyDocument,
    RiskLevel,
)
from returnguard.domain.policy.law import floor_for
from returnguard.domain.reasons import REASON_CLASSES, ReasonClass, ReasonCode


class Outcome(StrEnum):
    # Ordered from the most to the least cautious; a return takes its most cautious line.
    REJECT = "reject"
    NEEDS_REVIEW = "needs_review"
    REQUEST_EVIDENCE = "request_evidence"
    OFFER_ALTERNATIVES = "offer_alternatives"
    # Goods coming back is more cautious than money moving without them: a return with
    # one cheap line and one valuable line is approved, not resolved returnless.
    AUTO_APPROVE = "auto_approve"
    RETURNLESS_REFUND = "returnless_refund"


_CAUTION = {o: i for i, o in enumerate(Outcome)}


@dataclass(slots=True)
class EvidenceFacts:
    photos: int = 0
    videos: int = 0
    explanation: bool = False


@dataclass(slots=True)
class LineFacts:
    line_id: str
    sku: str
    category: str | None
    reason_code: ReasonCode
    unit_value: Decimal | None
    quantity: int


@dataclass(slots=True)
class ReturnFacts:
    """What the engine may know about a return; None means the fact is missing."""

    channel: str
    marketplace_country: str | None
    buyer_country: str | None
    currency: str
    days_since_delivery: int | None
    buyer_risk: RiskLevel | None
    watchlisted: bool
    first_time_buyer: bool | None
    cost_to_return: Decimal | None
    lines: Sequence[LineFacts]
    evidence: EvidenceFacts = field(default_factory=EvidenceFacts)
    # Units of the return's currency per unit of another currency, for value bands.
    fx_rates: dict[str, Decimal] = field(default_factory=dict)


_MISSING = object()
# (condition name, fact getter, predicate) — the getter returns _MISSING for unknown facts.
Check = tuple[str, Callable[[ReturnFacts, LineFacts], Any], Callable[[Any], bool]]


def _in(allowed: Sequence[Any]) -> Callable[[Any], bool]:
    values = frozenset(allowed)
    return values.__contains__


def _between(low: int | None, high: int | None) -> Callable[[Any], bool]:
    lo = -1 if low is None else low
    hi = 1 << 30 if high is None else high
    return lambda v: lo <= v <= hi


def _or_missing(value: Any) -> Any:
    return _MISSING if value is None else value


def _compile_conditions(when: Conditions) -> tuple[Check, ...]:
    checks: list[Check] = []
    if when.channels is not None:
        checks.append(("channels", lambda f, _: f.channel, _in(when.channels)))
    if when.marketplace_countries is not None:
        checks.append(
            (
                "marketplace_countries",
                lambda f, _: _or_missing(f.marketplace_country),
                _in(when.marketplace_countries),
            )
        )
    if when.buyer_countries is not None:
        checks.append(
            (
                "buyer_countries",
                lambda f, _: _or_missing(f.buyer_country),
                _in(when.buyer_countries),
            )
        )
    if when.categories is not None:
        checks.append(("categories", lambda _, ln: _or_missing(ln.category), _in(when.categories)))
    if when.skus is not None:
        checks.append(("skus", lambda _, ln: ln.sku, _in(when.skus)))
    if when.reason_classes is not None:
        checks.append(
            (
                "reason_classes",
                lambda _, ln: REASON_CLASSES[ln.reason_code],
                _in(when.reason_classes),
            )
        )
    if when.reason_codes is not None:
        checks.append(("reason_codes", lambda _, ln: ln.reason_code, _in(when.reason_codes)))
    if when.days_since_delivery is not None:
        r = when.days_since_delivery
        checks.append(
            (
                "days_since_delivery",
                lambda f, _: _or_missing(f.days_since_delivery),
                _between(r.min, r.max),
            )
        )
    if when.buyer_risk is not None:
        checks.append(("buyer_risk", lambda f, _: _or_missing(f.buyer_risk), _in(when.buyer_risk)))
    if when.watchlisted is not None:
        wanted = when.watchlisted
        checks.append(("watchlisted", lambda f, _: f.watchlisted, lambda v: v is wanted))
    if when.first_time_buyer is not None:
        first = when.first_time_buyer
        checks.append(
            ("first_time_buyer", lambda f, _: _or_missing(f.first_time_buyer), lambda v: v is first)
        )
    if when.item_value is not None:
        band = when.item_value
        low = band.min if band.min is not None else Decimal(0)
        high = band.max

        def value(f: ReturnFacts, ln: LineFacts) -> Any:
            if ln.unit_value is None:
                return _MISSING
            if band.currency is None or band.currency == f.currency:
                return ln.unit_value
            rate = f.fx_rates.get(band.currency)
            # A value in another currency without a rate cannot be compared.
            return _MISSING if not rate or rate < 0 else ln.unit_value / rate

        checks.append(("item_value", value, lambda v: v >= low and (high is None or v < high)))
    return tuple(checks)


# (condition name, test): the untraced path's form of a `Check`, one call per condition;
# the test returns None where the check's getter gives _MISSING, else the predicate.
Test = tuple[str, Callable[[ReturnFacts, LineFacts], bool | None]]


def _compile_tests(when: Conditions) -> tuple[Test, ...]:
    """`_compile_conditions` fused into one call per condition, for `_decide_line`.

    Same conditions in the same order with the same results; keep the two in step
    (tests/unit/policy_backtest compares explained and untraced decisions).
    """
    tests: list[Test] = []
    if when.channels is not None:
        channels = frozenset(when.channels)
        tests.append(("channels", lambda f, _: f.channel in channels))
    if when.marketplace_countries is not None:
        markets = frozenset(when.marketplace_countries)
        tests.append(
            (
                "marketplace_countries",
                lambda f, _: (
                    None if f.marketplace_country is None else f.marketplace_country in markets
                ),
            )
        )
    if when.buyer_countries is not None:
        buyers = frozenset(when.buyer_countries)
        tests.append(
            (
                "buyer_countries",
                lambda f, _: None if f.buyer_country is None else f.buyer_country in buyers,
            )
        )
    if when.categories is not None:
        categories = frozenset(when.categories)
        tests.append(
            (
                "categories",
                lambda _, ln: None if ln.category is None else ln.category in categories,
            )
        )
    if when.skus is not None:
        skus = frozenset(when.skus)
        tests.append(("skus", lambda _, ln: ln.sku in skus))
    if when.reason_classes is not None:
        classes = frozenset(when.reason_classes)
        tests.append(("reason_classes", lambda _, ln: REASON_CLASSES[ln.reason_code] in classes))
    if when.reason_codes is not None:
        codes = frozenset(when.reason_codes)
        tests.append(("reason_codes", lambda _, ln: ln.reason_code in codes))
    if when.days_since_delivery is not None:
        r = when.days_since_delivery
        lo = -1 if r.min is None else r.min
        hi = 1 << 30 if r.max is None else r.max
        tests.append(
            (
                "days_since_delivery",
                lambda f, _: (
                    None if f.days_since_delivery is None else lo <= f.days_since_delivery <= hi
                ),
            )
        )
    if when.buyer_risk is not None:
        risks = frozenset(when.buyer_risk)
        tests.append(
            ("buyer_risk", lambda f, _: None if f.buyer_risk is None else f.buyer_risk in risks)
        )
    if when.watchlisted is not None:
        wanted = when.watchlisted
        tests.append(("watchlisted", lambda f, _: f.watchlisted is wanted))
    if when.first_time_buyer is not None:
        first = when.first_time_buyer
        tests.append(
            (
                "first_time_buyer",
                lambda f, _: None if f.first_time_buyer is None else f.first_time_buyer is first,
            )
        )
    if when.item_value is not None:
        band = when.item_value
        band_currency = band.currency
        low = band.min if band.min is not None else Decimal(0)
        high = band.max

        def in_band(f: ReturnFacts, ln: LineFacts) -> bool | None:
            value = ln.unit_value
            if value is None:
                return None
            if band_currency is not None and band_currency != f.currency:
                rate = f.fx_rates.get(band_currency)
                if not rate or rate < 0:
                    return None
                value = value / rate
            return value >= low and (high is None or value < high)

        tests.append(("item_value", in_band))
    return tuple(tests)


def _fused(checks: tuple[Check, ...]) -> tuple[Test, ...]:
    """Tests from checks alone, for a `CompiledRule` built without its tests."""

    def fuse(
        getter: Callable[[ReturnFacts, LineFacts], Any], predicate: Callable[[Any], bool]
    ) -> Callable[[ReturnFacts, LineFacts], bool | None]:
        def test(f: ReturnFacts, ln: LineFacts) -> bool | None:
            value = getter(f, ln)
            return None if value is _MISSING else bool(predicate(value))

        return test

    return tuple((name, fuse(getter, predicate)) for name, getter, predicate in checks)


# A whole rule in one call: True when it matches, False when it does not, and when a fact
# is missing either the missing condition's name or None (then it is the rule's only one).
RuleTest = Callable[[ReturnFacts, LineFacts], bool | str | None]


def _always(f: ReturnFacts, ln: LineFacts) -> bool:
    return True


def _rule_test(tests: tuple[Test, ...]) -> tuple[RuleTest, str]:
    if not tests:
        return _always, ""
    if len(tests) == 1:
        name, test = tests[0]
        return test, name

    def all_of(f: ReturnFacts, ln: LineFacts) -> bool | str:
        for name, test in tests:
            ok = test(f, ln)
            if ok is not True:
                return name if ok is None else False
        return True

    return all_of, ""


@dataclass(frozen=True, slots=True)
class CompiledRule:
    id: str
    checks: tuple[Check, ...]
    sets: tuple[tuple[str, Any], ...]
    stop: bool
    tests: tuple[Test, ...] | None = field(default=None, repr=False, compare=False)
    """`checks` fused for the untraced path; derived from `checks` when left out."""


@dataclass(frozen=True)
class CompiledPolicy:
    document: PolicyDocument
    rules: tuple[CompiledRule, ...]
    defaults: tuple[tuple[str, Any, str], ...]  # (setting, value, source)
    states_window: bool
    # For the untraced path (`_decide_line`): each rule as one test with its bit in the
    # mask of matched rules, and the settings and sources each mask leads to, merged once.
    fast_rules: tuple[tuple[RuleTest, str, int, bool], ...] = field(
        init=False, repr=False, compare=False
    )
    merged: dict[int, tuple[dict[str, Any], dict[str, str]]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        fast = tuple(
            (
                *_rule_test(_fused(rule.checks) if rule.tests is None else rule.tests),
                1 << i,
                rule.stop,
            )
            for i, rule in enumerate(self.rules)
        )
        object.__setattr__(self, "fast_rules", fast)
        object.__setattr__(self, "merged", {})


def compile_policy(document: PolicyDocument) -> CompiledPolicy:
    rules = tuple(
        CompiledRule(
            id=rule.id,
            checks=_compile_conditions(rule.when),
            sets=tuple((name, getattr(rule.then, name)) for name in rule.then.set_fields()),
            stop=rule.stop,
            tests=_compile_tests(rule.when),
        )
        for rule in document.rules
    )
    defaults = []
    for name in SETTING_NAMES:
        value = getattr(document.defaults, name)
        if value is not None:
            defaults.append((name, value, "defaults"))
        elif getattr(BUILTIN_DEFAULTS, name) is not None:
            defaults.append((name, getattr(BUILTIN_DEFAULTS, name), "builtin"))
    states_window = document.defaults.return_window_days is not None or any(
        r.then.return_window_days is not None for r in document.rules
    )
    return CompiledPolicy(document, rules, tuple(defaults), states_window)


@dataclass
class LineDecision:
    line_id: str
    outcome: Outcome
    reasons: list[str]
    settings: dict[str, Any]
    sources: dict[str, str]
    missing_facts: list[str]
    trace: list[dict[str, Any]]
    legal: list[dict[str, str]]


@dataclass
class Decision:
    outcome: Outcome
    reasons: list[str]
    lines: list[LineDecision]
    missing_facts: list[str]

    def setting(self, name: str) -> Any:
        """A setting for the whole return: the first line's (lines rarely differ)."""
        return self.lines[0].settings.get(name) if self.lines else None


def evaluate(policy: CompiledPolicy, facts: ReturnFacts, *, explain: bool = True) -> Decision:
    """Decide a return. Pure: the same policy and facts always give the same decision."""
    if not explain:
        # The hot path of backtests: the same decision, without building a trace.
        lines = facts.lines
        if len(lines) == 1:
            only = _decide_line(policy, facts, lines[0])
            missing_facts = only.missing_facts
            return Decision(
                only.outcome,
                only.reasons[:],
                [only],
                sorted(set(missing_facts)) if missing_facts else [],
            )
        line_decisions = [_decide_line(policy, facts, line) for line in lines]
    else:
        line_decisions = [_evaluate_line(policy, facts, line, explain) for line in facts.lines]
    missing = sorted({m for d in line_decisions for m in d.missing_facts})
    if not line_decisions:
        return Decision(Outcome.NEEDS_REVIEW, ["the return has no lines"], [], missing)
    eligible = [d for d in line_decisions if d.outcome is not Outcome.REJECT]
    if not eligible:
        outcome = Outcome.REJECT
    else:
        outcome = min((d.outcome for d in eligible), key=_CAUTION.__getitem__)
    reasons = [r for d in line_decisions for r in d.reasons]
    return Decision(outcome, reasons, line_decisions, missing)


def _evaluate_line(
    policy: CompiledPolicy, facts: ReturnFacts, line: LineFacts, explain: bool
) -> LineDecision:
    settings: dict[str, Any] = {}
    sources: dict[str, str] = {}
    missing: list[str] = []
    trace: list[dict[str, Any]] = []
    for rule in policy.rules:
        matched = True
        undetermined: str | None = None
        checked: list[dict[str, Any]] | None = [] if explain else None
        for name, getter, predicate in rule.checks:
            value = getter(facts, line)
            if value is _MISSING:
                undetermined = name
                matched = False
                if checked is not None:
                    checked.append({"condition": name, "fact": None, "ok": None})
                break
            ok = predicate(value)
            if checked is not None:
                checked.append({"condition": name, "fact": _show(value), "ok": ok})
            if not ok:
                matched = False
                break
        if undetermined is not None:
            missing.append(undetermined)
        decided: dict[str, Any] = {}
        if matched:
            for name, value in rule.sets:
                if name not in settings:
                    settings[name] = value
                    sources[name] = rule.id
                    decided[name] = value
        if explain:
            trace.append(
                {
                    "rule": rule.id,
                    "matched": matched,
                    "undetermined_by": undetermined,
                    "checks": checked,
                    "set": {k: _show(v) for k, v in decided.items()},
                }
            )
        if matched and rule.stop:
            break
    for name, value, source in policy.defaults:
        if name not in settings:
            settings[name] = value
            sources[name] = source
    legal = _apply_floors(policy, facts, line, settings, sources)
    legal += _apply_safety(facts, line, settings, sources)
    if facts.buyer_country is None:
        missing.append("buyer_country")
    outcome, reasons = _outcome(facts, line, settings, missing)
    if facts.days_since_delivery is None and "days_since_delivery" not in missing:
        missing.append("days_since_delivery")
    return LineDecision(line.line_id, outcome, reasons, settings, sources, missing, trace, legal)


_MERGED_CACHE_SIZE = 4096


def _decide_line(policy: CompiledPolicy, facts: ReturnFacts, line: LineFacts) -> LineDecision:
    """`_evaluate_line` without the trace: the same settings, sources, outcome and reasons.

    Which rules match is all that the settings depend on before the legal floors, so the
    merged settings are computed once per set of matched rules and copied after that.
    """
    missing: list[str] = []
    matched = 0
    for test, name, bit, stop in policy.fast_rules:
        ok = test(facts, line)
        if ok is True:
            matched |= bit
            if stop:
                break
        elif ok is not False:
            missing.append(ok or name)
    merged = policy.merged.get(matched)
    if merged is None:
        merged = _merge(policy, matched)
    settings = merged[0].copy()
    sources = merged[1].copy()
    legal = _apply_floors(policy, facts, line, settings, sources)
    legal += _apply_safety(facts, line, settings, sources)
    if facts.buyer_country is None:
        missing.append("buyer_country")
    outcome, reasons = _outcome(facts, line, settings, missing)
    if facts.days_since_delivery is None and "days_since_delivery" not in missing:
        missing.append("days_since_delivery")
    return LineDecision(line.line_id, outcome, reasons, settings, sources, missing, [], legal)


def _merge(policy: CompiledPolicy, matched: int) -> tuple[dict[str, Any], dict[str, str]]:
    """Settings and sources when the rules in the ``matched`` mask match, as in
    `_evaluate_line`: the first matching rule decides a setting, defaults fill the rest."""
    settings: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for rule, (_, _, bit, _) in zip(policy.rules, policy.fast_rules, strict=True):
        if matched & bit:
            for name, value in rule.sets:
                if name not in settings:
                    settings[name] = value
                    sources[name] = rule.id
    for name, value, source in policy.defaults:
        if name not in settings:
            settings[name] = value
            sources[name] = source
    if len(policy.merged) < _MERGED_CACHE_SIZE:
        policy.merged[matched] = (settings, sources)
    return settings, sources


def _apply_floors(
    policy: CompiledPolicy,
    facts: ReturnFacts,
    line: LineFacts,
    settings: dict[str, Any],
    sources: dict[str, str],
) -> list[dict[str, str]]:
    floor = floor_for(facts.buyer_country)
    if floor is None:
        return []
    applied: list[dict[str, str]] = []
    days = facts.days_since_delivery
    reason_class = REASON_CLASSES[line.reason_code]

    def override(name: str, value: Any, law: str, effect: str) -> None:
        settings[name] = value
        sources[name] = f"law:{floor.region}"
        applied.append({"law": law, "setting": name, "effect": effect})

    if (
        floor.default_window_days is not None
        and not policy.states_window
        and reason_class is not ReasonClass.SELLER_FAULT
    ):
        # The statutory default covers buyer's-choice returns, not faulty goods, and
        # never overrides who pays when the policy says so itself.
        override(
            "return_window_days",
            floor.default_window_days,
            floor.law,
            f"no window stated: {floor.default_window_days} days apply",
        )
        if sources.get("return_shipping_paid_by") == "builtin":
            override(
                "return_shipping_paid_by", Payer.BUYER, floor.law, "the buyer pays return shipping"
            )
    withdrawal = floor.withdrawal_days
    if withdrawal is not None and reason_class is not ReasonClass.SELLER_FAULT:
        if settings["return_window_days"] < withdrawal:
            override(
                "return_window_days",
                withdrawal,
                floor.law,
                f"window raised to the legal {withdrawal} days",
            )
        if days is not None and days <= withdrawal:
            if settings.get("eligible") is False:
                override(
                    "eligible",
                    True,
                    floor.law,
                    "withdrawal within the legal period cannot be refused",
                )
            fee = settings.get("restocking_fee")
            if (
                floor.no_flat_fee_on_withdrawal
                and fee is not None
                and (fee.applies_to is FeeApplies.ALWAYS)
            ):
                override(
                    "restocking_fee",
                    None,
                    floor.law,
                    "no flat fee on withdrawal; only loss of value from handling",
                )
            if floor.outbound_shipping_refunded:
                override(
                    "refund_outbound_shipping",
                    True,
                    floor.law,
                    "refund includes the standard outbound delivery",
                )
    if (
        floor.guarantee_days is not None
        and reason_class is ReasonClass.SELLER_FAULT
        and days is not None
        and days <= floor.guarantee_days
    ):
        if settings.get("eligible") is False:
            override(
                "eligible",
                True,
                floor.guarantee_law,
                "a faulty item cannot be refused within the legal guarantee",
            )
        if settings["return_window_days"] < days:
            override(
                "return_window_days",
                floor.guarantee_days,
                floor.guarantee_law,
                f"faulty items may come back within {floor.guarantee_days} days",
            )
    return applied


SAFETY = "ReturnGuard money-safety rules (DESIGN.md invariants 2-3)"


def _apply_safety(
    facts: ReturnFacts, line: LineFacts, settings: dict[str, Any], sources: dict[str, str]
) -> list[dict[str, str]]:
    """Limits no policy can lift: what a rule sets here is overridden, and listed."""
    applied: list[dict[str, str]] = []

    def override(name: str, value: Any, effect: str) -> None:
        if settings.get(name) != value:
            settings[name] = value
            sources[name] = "safety"
            applied.append({"law": SAFETY, "setting": name, "effect": effect})

    if settings.get("restocking_fee") is not None and (
        REASON_CLASSES[line.reason_code] is not ReasonClass.NO_FAULT
    ):
        override("restocking_fee", None, "restocking fees apply only to buyer's-choice returns")
    if facts.watchlisted:
        override("inspection_before_refund", True, "watchlisted buyer: inspect before refund")
    if facts.watchlisted or settings.get("inspection_before_refund"):
        why = "watchlisted buyer" if facts.watchlisted else "inspection before refund"
        override("refund_before_receipt", False, f"{why}: no money before the goods")
        override("returnless_refund", False, f"{why}: the goods must come back")
    return applied


def _outcome(
    facts: ReturnFacts, line: LineFacts, s: dict[str, Any], missing: list[str]
) -> tuple[Outcome, list[str]]:
    # Missing facts come first: a rule that could not be decided, or a legal floor that
    # needs the delivery date, might have made the line eligible; review, never guess.
    days = facts.days_since_delivery
    if days is None:
        return Outcome.NEEDS_REVIEW, ["delivery date unknown: the return window cannot be checked"]
    if missing:
        return Outcome.NEEDS_REVIEW, [
            f"facts missing for rule conditions: {', '.join(sorted(set(missing)))}"
        ]
    if s.get("eligible") is False:
        return Outcome.REJECT, [s.get("decline_reason") or "not eligible for return"]
    if days > s["return_window_days"]:
        return Outcome.REJECT, [
            f"outside the {s['return_window_days']}-day return window ({days} days since delivery)"
        ]
    evidence = s.get("evidence")
    if evidence is not None and evidence.required:
        lacking = _lacking_evidence(evidence, facts.evidence)
        if lacking:
            return Outcome.REQUEST_EVIDENCE, ["evidence required: " + ", ".join(lacking)]
    if s.get("human_review"):
        return Outcome.NEEDS_REVIEW, ["the policy asks for a human review"]
    alternatives = s.get("alternatives")
    if alternatives is not None and alternatives.any:
        return Outcome.OFFER_ALTERNATIVES, ["alternatives are offered first"]
    if s.get("returnless_refund") and line.unit_value is not None:
        cost = facts.cost_to_return
        if cost is not None and line.unit_value < cost:
            return Outcome.RETURNLESS_REFUND, [
                f"item value {line.unit_value} is below the cost of bringing it back ({cost})"
            ]
    return Outcome.AUTO_APPROVE, ["within the policy"]


def _lacking_evidence(required: Any, given: EvidenceFacts) -> list[str]:
    lacking = []
    if given.photos < required.photos:
        lacking.append(f"{required.photos - given.photos} more photo(s)")
    if required.video and given.videos < 1:
        lacking.append("a video")
    if required.explanation and not given.explanation:
        lacking.append("a written explanation")
    return lacking


def _show(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return str(value)
