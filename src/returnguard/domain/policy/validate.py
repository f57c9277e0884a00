"""Checks a policy before it is saved: every problem, each with the path of its field.

Beyond the schema (unknown fields, types, fees above 100 %): a rule that could take a
buyer below a legal floor, a rule that can never apply because an earlier rule always
decides first, repeated rule ids and empty ranges.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from returnguard.domain.policy.document import (
    Conditions,
    FeeApplies,
    PolicyDocument,
    Range,
    Rule,
    Settings,
)
from returnguard.domain.policy.law import FLOORS, Floor
from returnguard.domain.reasons import REASON_CLASSES, ReasonClass

Problem = dict[str, str]


def parse_policy(data: Any) -> tuple[PolicyDocument | None, list[Problem]]:
    """Parse and check a policy document; returns it only when there are no problems."""
    try:
        document = PolicyDocument.model_validate(data)
    except ValidationError as exc:
        return None, [
            {"field": ".".join(str(p) for p in e["loc"]) or "policy", "message": _message(e)}
            for e in exc.errors()
        ]
    problems = check_policy(document)
    return (None if problems else document), problems


def _message(error: Any) -> str:
    if error.get("type") == "extra_forbidden":
        return "unknown field"
    if error.get("type") == "missing":
        return "field required"
    return str(error.get("msg", "invalid")).removeprefix("Value error, ")


def check_policy(document: PolicyDocument) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for i, rule in enumerate(document.rules):
        if rule.id in seen:
            problems.append(
                {"field": f"rules.{i}.id", "message": f"repeats the id of rules.{seen[rule.id]}"}
            )
        seen.setdefault(rule.id, i)
        problems += _empty_ranges(rule.when, f"rules.{i}.when")
        problems += _below_floor(rule.when, rule.then, f"rules.{i}", f"rule {rule.id!r}")
        problems += _shadowed(document.rules, i)
    problems += _below_floor(Conditions(), document.defaults, "defaults", "the policy by default")
    return problems


def _empty_ranges(when: Conditions, path: str) -> list[Problem]:
    problems = []
    r = when.days_since_delivery
    if r is not None and r.min is not None and r.max is not None and r.min > r.max:
        problems.append({"field": f"{path}.days_since_delivery", "message": "min is above max"})
    band = when.item_value
    if band is not None and band.min is not None and band.max is not None and band.min >= band.max:
        problems.append({"field": f"{path}.item_value", "message": "min must be below max"})
    for name in Conditions.model_fields:
        value = getattr(when, name)
        if isinstance(value, list) and not value:
            problems.append({"field": f"{path}.{name}", "message": "an empty list never matches"})
    return problems


def _reaches(when: Conditions, floor: Floor) -> bool:
    return when.buyer_countries is None or bool(floor.countries & set(when.buyer_countries))


def _can_be_withdrawal(when: Conditions) -> bool:
    classes = set(when.reason_classes) if when.reason_classes is not None else set(ReasonClass)
    if when.reason_codes is not None:
        classes &= {REASON_CLASSES[c] for c in when.reason_codes}
    return bool(classes - {ReasonClass.SELLER_FAULT})


def _overlaps(r: Range | None, low: int, high: int) -> bool:
    if r is None:
        return True
    return (r.min is None or r.min <= high) and (r.max is None or r.max >= low)


def _below_floor(when: Conditions, then: Settings, path: str, who: str) -> list[Problem]:
    problems = []
    for floor in FLOORS:
        days = floor.withdrawal_days
        if days is None or not _reaches(when, floor) or not _can_be_withdrawal(when):
            continue
        window = then.return_window_days
        if window is not None and window < days:
            problems.append(
                {
                    "field": f"{path}.then.return_window_days"
                    if path != "defaults"
                    else "defaults.return_window_days",
                    "message": f"{who} sets {window} days but buyers in {floor.region} may "
                    f"withdraw for {days} days ({floor.law}); raise it or limit the rule's "
                    "buyer_countries",
                }
            )
        within = _overlaps(when.days_since_delivery, 0, days)
        if then.eligible is False and within:
            problems.append(
                {
                    "field": f"{path}.then.eligible" if path != "defaults" else "defaults.eligible",
                    "message": f"{who} refuses returns that buyers in {floor.region} may make "
                    f"within {days} days of delivery ({floor.law}); limit it with "
                    f"days_since_delivery min {days + 1}, reason_classes or buyer_countries",
                }
            )
        fee = then.restocking_fee
        if (
            floor.no_flat_fee_on_withdrawal
            and fee is not None
            and fee.applies_to is FeeApplies.ALWAYS
            and within
        ):
            field = "restocking_fee.applies_to"
            problems.append(
                {
                    "field": f"{path}.then.{field}" if path != "defaults" else f"defaults.{field}",
                    "message": f"{who} charges a flat restocking fee on withdrawals that buyers "
                    f"in {floor.region} may make within {days} days of delivery ({floor.law}); "
                    "only loss of value from handling may be deducted: use applies_to opened, "
                    f"days_since_delivery min {days + 1}, reason_classes or buyer_countries",
                }
            )
        if floor.outbound_shipping_refunded and then.refund_outbound_shipping is False and within:
            field = "refund_outbound_shipping"
            problems.append(
                {
                    "field": f"{path}.then.{field}" if path != "defaults" else f"defaults.{field}",
                    "message": f"{who} keeps the outbound delivery charge on withdrawals that "
                    f"buyers in {floor.region} may make within {days} days of delivery "
                    f"({floor.law}); the refund must include it: limit it with "
                    f"days_since_delivery min {days + 1}, reason_classes or buyer_countries",
                }
            )
    return problems


def _covers(earlier: Conditions, later: Conditions) -> bool:
    """True when `earlier` matches every return `later` matches."""
    for name in Conditions.model_fields:
        a, b = getattr(earlier, name), getattr(later, name)
        if a is None:
            continue
        if b is None:
            return False
        if isinstance(a, list):
            if not set(b) <= set(a):
                return False
        elif isinstance(a, Range):
            if (a.min is not None and (b.min is None or b.min < a.min)) or (
                a.max is not None and (b.max is None or b.max > a.max)
            ):
                return False
        elif hasattr(a, "currency"):  # item value band
            if a.currency != b.currency:
                return False
            if (a.min is not None and (b.min is None or b.min < a.min)) or (
                a.max is not None and (b.max is None or b.max > a.max)
            ):
                return False
        elif a != b:
            return False
    return True


def _shadowed(rules: list[Rule], i: int) -> list[Problem]:
    rule = rules[i]
    wanted = set(rule.then.set_fields())
    decided: set[str] = set()
    for j, earlier in enumerate(rules[:i]):
        if not _covers(earlier.when, rule.when):
            continue
        decided |= set(earlier.then.set_fields())
        if earlier.stop or wanted <= decided:
            why = (
                "stops the reading"
                if earlier.stop
                else "already decides " + ", ".join(sorted(wanted))
            )
            return [
                {
                    "field": f"rules.{i}",
                    "message": f"rule {rule.id!r} can never apply: rules.{j} ({earlier.id!r}) "
                    f"matches whenever it does and {why}",
                }
            ]
    return []
