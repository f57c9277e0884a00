"""Backtest a draft policy: run it over past returns and show, in money, what it changes.

Pure: the caller loads past returns as `BacktestCase` items (facts for the engine plus
what actually happened) and gets a `BacktestReport`: how many decisions change and how,
the money effect per currency, actual beside draft, and the returns whose outcome would
differ. Built to stream a year of returns: the engine runs without its trace, money is
summed in integer minor units, and at most ``keep_rows`` differing returns are kept
(their full count is always exact).

How the draft's money effect is read from its decision (the actual side is given):

- the goods come back unless the draft rejects the return or resolves it returnless;
  outcomes that may still go ahead (review, evidence, alternatives) count as going ahead;
- refund before receipt: a returnless refund, or the return's `refund_before_receipt`
  setting where the goods come back, except for watchlisted buyers and returns that need
  an inspection before refund (DESIGN.md, money-safety invariant 3);
- restocking fee: per line that comes back, ``percent`` of the line value (unit value x
  quantity) rounded half up to the currency's minor unit, capped at ``cap``; fees that
  apply ``always`` are counted as kept, fees that apply only when the item was found
  ``opened`` are counted apart as potential;
- return shipping: one label per return that comes back, at the channel's label cost,
  paid by the return's `return_shipping_paid_by` setting;
- returnless refunds: returns the draft resolves without the goods, with their value.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any

from returnguard.domain.policy.document import FeeApplies, RestockingFee
from returnguard.domain.policy.engine import CompiledPolicy, Outcome, ReturnFacts, evaluate
from returnguard.kit.money import minor_digits
from returnguard.kit.spreadsheet import csv_text

DEFAULT_KEEP_ROWS = 10_000
_MINOR_CACHE_SIZE = 1 << 20  # distinct amounts per currency remembered in minor units

_REJECT = Outcome.REJECT
_RETURNLESS = Outcome.RETURNLESS_REFUND
_ALWAYS = FeeApplies.ALWAYS


@dataclass(slots=True)
class BacktestCase:
    """One past return: the facts the draft is evaluated on and what actually happened."""

    return_id: str | uuid.UUID
    number: str
    requested_at: datetime
    currency: str
    facts: ReturnFacts
    actual_outcome: Outcome | None
    """The recorded decision; None when the return was never decided by a policy."""
    label_cost: Decimal | None = None
    """The channel's return label cost, in ``currency``; None when unknown."""
    actual_refund_before_receipt: bool = False
    actual_restocking_fee: Decimal = Decimal(0)
    """Restocking fee actually kept, in ``currency``."""
    actual_shipping_paid_by: str | None = None
    """"buyer" or "seller" when a return label was used, else None."""
    actual_returnless: bool = False


@dataclass(frozen=True, slots=True)
class Effect:
    """One money measure: what happened, what the draft would have done, and the change.

    The actual side is None for a measure that did not exist before (potential fees).
    """

    actual_count: int | None
    actual_value: Decimal | None
    draft_count: int
    draft_value: Decimal

    @property
    def count_change(self) -> int | None:
        return None if self.actual_count is None else self.draft_count - self.actual_count

    @property
    def value_change(self) -> Decimal | None:
        return None if self.actual_value is None else self.draft_value - self.actual_value

    def as_dict(self) -> dict[str, Any]:
        def side(count: int | None, value: Decimal | None) -> dict[str, Any] | None:
            if count is None or value is None:
                return None
            return {"count": count, "value": format(value, "f")}

        return {
            "actual": side(self.actual_count, self.actual_value),
            "draft": side(self.draft_count, self.draft_value),
            "change": side(self.count_change, self.value_change),
        }


EFFECT_LABELS: dict[str, str] = {
    "refunds_before_receipt": "Refunds paid before receipt",
    "restocking_fees": "Restocking fees kept",
    "restocking_fees_if_opened": "Restocking fees if opened (potential)",
    "shipping_paid_by_seller": "Return shipping paid by seller",
    "shipping_paid_by_buyer": "Return shipping paid by buyer",
    "returnless_refunds": "Returnless refunds",
}


@dataclass(frozen=True, slots=True)
class MoneyEffect:
    """The money effect of the draft in one currency (amounts at the currency's precision)."""

    currency: str
    returns: int
    value: Decimal
    """Value of all returns in this currency (unit value x quantity, lines with a value)."""
    refunds_before_receipt: Effect
    restocking_fees: Effect
    restocking_fees_if_opened: Effect
    shipping_paid_by_seller: Effect
    shipping_paid_by_buyer: Effect
    returnless_refunds: Effect
    returns_without_label_cost: int
    """Returns whose label cost is unknown: counted for shipping, but add no money."""

    def effects(self) -> list[tuple[str, Effect]]:
        return [(name, getattr(self, name)) for name in EFFECT_LABELS]


@dataclass(frozen=True, slots=True)
class DifferingReturn:
    return_id: str
    number: str
    requested_at: datetime
    currency: str
    value: Decimal
    actual: Outcome | None
    draft: Outcome
    reasons: list[str]
    """Why the draft decided as it did."""


CSV_HEADER = (
    "return_id",
    "number",
    "requested_at",
    "currency",
    "value",
    "actual_outcome",
    "draft_outcome",
    "draft_reasons",
)


@dataclass
class BacktestReport:
    policy_name: str
    total: int
    changed: int
    """Returns with a recorded decision that the draft decides differently."""
    undecided: int
    """Returns without a recorded decision (they appear in `transitions` from None)."""
    transitions: dict[tuple[Outcome | None, Outcome], int]
    money: dict[str, MoneyEffect]
    differing: list[DifferingReturn]
    """The first `keep_rows` changed returns, in input order."""
    first_requested_at: datetime | None = None
    last_requested_at: datetime | None = None
    keep_rows: int = DEFAULT_KEEP_ROWS

    @property
    def truncated(self) -> bool:
        return self.changed > len(self.differing)

    def sorted_transitions(self) -> list[tuple[Outcome | None, Outcome, int]]:
        """Outcome changes first, the largest first; then unchanged outcomes."""
        rows = [(old, new, n) for (old, new), n in self.transitions.items()]
        rows.sort(key=lambda r: (r[0] == r[1], -r[2], str(r[0]), str(r[1])))
        return rows

    def summary_dict(self, *, rows: int = 100) -> dict[str, Any]:
        """JSON-ready summary (amounts as decimal strings) with up to ``rows`` differing."""
        return {
            "policy": self.policy_name,
            "returns": self.total,
            "changed": self.changed,
            "undecided": self.undecided,
            "period": {
                "from": _iso(self.first_requested_at),
                "to": _iso(self.last_requested_at),
            },
            "transitions": [
                {"actual": None if old is None else old.value, "draft": new.value, "count": n}
                for old, new, n in self.sorted_transitions()
            ],
            "money": {
                currency: {
                    "returns": m.returns,
                    "value": format(m.value, "f"),
                    "returns_without_label_cost": m.returns_without_label_cost,
                    **{name: effect.as_dict() for name, effect in m.effects()},
                }
                for currency, m in sorted(self.money.items())
            },
            "differing": {
                "count": self.changed,
                "kept": len(self.differing),
                "truncated": self.truncated,
                "returns": [_row_dict(r) for r in self.differing[: max(rows, 0)]],
            },
        }

    def to_csv(self) -> str:
        """The differing returns (those kept) as CSV with a header row."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        for r in self.differing:
            writer.writerow(
                [
                    r.return_id,
                    r.number,
                    r.requested_at.isoformat(),
                    r.currency,
                    format(r.value, "f"),
                    "" if r.actual is None else r.actual.value,
                    r.draft.value,
                    csv_text("; ".join(r.reasons)),
                ]
            )
        return out.getvalue()

    def to_table(self, *, rows: int = 20) -> str:
        """A plain-text report for the terminal, with up to ``rows`` differing returns."""
        lines: list[str] = []
        period = ""
        if self.first_requested_at is not None and self.last_requested_at is not None:
            period = (
                f" requested {self.first_requested_at.date().isoformat()}"
                f" .. {self.last_requested_at.date().isoformat()}"
            )
        lines.append(f"Backtest of {self.policy_name!r} over {self.total:,} returns{period}")
        decided = self.total - self.undecided
        lines.append(
            f"Decisions changed: {self.changed:,} of {decided:,}"
            f" ({_percent(self.changed, decided)})"
            + (f"; {self.undecided:,} returns had no recorded decision" if self.undecided else "")
        )
        lines.append("")
        lines.append(_row(["Outcome (actual -> draft)", "returns"], [44, 12], "<>"))
        for old, new, n in self.sorted_transitions():
            name = f"{'(none)' if old is None else old.value} -> {new.value}"
            mark = "" if old == new else "*"
            lines.append(_row([f"  {name}", f"{n:,}", mark], [44, 12, 2], "<><"))
        widths = [40, 9, 16, 9, 16, 9, 16]
        for currency, m in sorted(self.money.items()):
            lines.append("")
            lines.append(
                f"Money effect, {currency}: {m.returns:,} returns worth {_amount(m.value)}"
            )
            header = ["", "actual n", "value", "draft n", "value", "change n", "value"]
            lines.append(_row(header, widths, "<>>>>>>"))
            for name, effect in m.effects():
                cells = [
                    f"  {EFFECT_LABELS[name]}",
                    _count(effect.actual_count),
                    _amount(effect.actual_value),
                    _count(effect.draft_count),
                    _amount(effect.draft_value),
                    _count(effect.count_change, sign=True),
                    _amount(effect.value_change, sign=True),
                ]
                lines.append(_row(cells, widths, "<>>>>>>"))
            if m.returns_without_label_cost:
                lines.append(
                    f"  ({m.returns_without_label_cost:,} returns without a label cost:"
                    " counted, no money)"
                )
        if self.money:
            lines.append("")
            lines.append(
                "Restocking fees kept: actual = fees kept; draft = fees that always apply."
                " Fees on opened items depend on inspection: potential."
            )
        lines.append("")
        shown = self.differing[: max(rows, 0)]
        if not self.changed:
            lines.append("No return's outcome would differ.")
        else:
            lines.append(
                f"Returns whose outcome would differ: {self.changed:,}"
                + (f" (first {len(shown):,} shown)" if len(shown) < self.changed else "")
            )
            widths = [12, 10, 18, 18, 16, 0]
            header = ["number", "requested", "actual", "draft", "value", "reason"]
            lines.append(_row(header, widths, "<<<<><"))
            for r in shown:
                cells = [
                    r.number,
                    r.requested_at.date().isoformat(),
                    "(none)" if r.actual is None else r.actual.value,
                    r.draft.value,
                    f"{format(r.value, 'f')} {r.currency}",
                    "; ".join(r.reasons),
                ]
                lines.append(_row(cells, widths, "<<<<><"))
        return "\n".join(lines) + "\n"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _row_dict(r: DifferingReturn) -> dict[str, Any]:
    return {
        "return_id": r.return_id,
        "number": r.number,
        "requested_at": r.requested_at.isoformat(),
        "currency": r.currency,
        "value": format(r.value, "f"),
        "actual": None if r.actual is None else r.actual.value,
        "draft": r.draft.value,
        "reasons": list(r.reasons),
    }


def _row(cells: list[str], widths: list[int], align: str) -> str:
    """Cells padded to their widths ("<" left, ">" right), two spaces apart."""
    padded = [
        cell.ljust(width) if side == "<" else cell.rjust(width)
        for cell, width, side in zip(cells, widths, align, strict=True)
    ]
    return "  ".join(padded).rstrip()


def _count(value: int | None, *, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+,}" if sign else f"{value:,}"


def _amount(value: Decimal | None, *, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+,f}" if sign else f"{value:,f}"


def _percent(part: int, whole: int) -> str:
    if not whole:
        return "0.0%"
    tenths = (part * 1000 * 2 + whole) // (2 * whole)  # rounded half up, integers only
    return f"{tenths // 10}.{tenths % 10}%"


class _Totals:
    """Per-currency sums, in integer minor units."""

    __slots__ = (
        "a_fee_n",
        "a_fee_v",
        "a_rbr_n",
        "a_rbr_v",
        "a_rl_n",
        "a_rl_v",
        "a_ship_b_n",
        "a_ship_b_v",
        "a_ship_s_n",
        "a_ship_s_v",
        "d_fee_n",
        "d_fee_v",
        "d_open_n",
        "d_open_v",
        "d_rbr_n",
        "d_rbr_v",
        "d_rl_n",
        "d_rl_v",
        "d_ship_b_n",
        "d_ship_b_v",
        "d_ship_s_n",
        "d_ship_s_v",
        "digits",
        "fees",
        "minor",
        "no_label",
        "returns",
        "scale",
        "value",
    )

    def __init__(self, digits: int) -> None:
        self.digits = digits
        self.scale = Decimal(1).scaleb(-self.digits)
        # Decimal amount -> minor units: prices and label costs repeat a lot.
        self.minor: dict[Decimal, int] = {}
        # id(restocking fee) -> (basis points, cap in minor units or None, always?)
        self.fees: dict[int, tuple[int, int | None, bool]] = {}
        self.returns = self.value = self.no_label = 0
        self.a_rbr_n = self.a_rbr_v = self.d_rbr_n = self.d_rbr_v = 0
        self.a_fee_n = self.a_fee_v = self.d_fee_n = self.d_fee_v = 0
        self.d_open_n = self.d_open_v = 0
        self.a_ship_s_n = self.a_ship_s_v = self.d_ship_s_n = self.d_ship_s_v = 0
        self.a_ship_b_n = self.a_ship_b_v = self.d_ship_b_n = self.d_ship_b_v = 0
        self.a_rl_n = self.a_rl_v = self.d_rl_n = self.d_rl_v = 0

    def to_minor(self, amount: Decimal) -> int:
        scaled = amount.scaleb(self.digits)
        whole = int(scaled)
        if whole != scaled:  # finer than the currency (rare): rounded half up
            whole = int(scaled.to_integral_value(rounding=ROUND_HALF_UP))
        if len(self.minor) < _MINOR_CACHE_SIZE:
            self.minor[amount] = whole
        return whole

    def fee_terms(self, fee: RestockingFee) -> tuple[int, int | None, bool]:
        terms = self.fees.get(id(fee))
        if terms is None:
            basis_points = int(fee.percent * 100)
            cap = None
            if fee.cap is not None:
                # A fee never exceeds its cap: a cap finer than the currency rounds down.
                cap = int(fee.cap.quantize(self.scale, rounding=ROUND_DOWN).scaleb(self.digits))
            terms = (basis_points, cap, fee.applies_to is _ALWAYS)
            self.fees[id(fee)] = terms
        return terms

    def amount(self, minor: int) -> Decimal:
        return Decimal(minor).scaleb(-self.digits)

    def effect(self, a_n: int | None, a_v: int | None, d_n: int, d_v: int) -> Effect:
        return Effect(a_n, None if a_v is None else self.amount(a_v), d_n, self.amount(d_v))

    def result(self, currency: str) -> MoneyEffect:
        return MoneyEffect(
            currency=currency,
            returns=self.returns,
            value=self.amount(self.value),
            refunds_before_receipt=self.effect(
                self.a_rbr_n, self.a_rbr_v, self.d_rbr_n, self.d_rbr_v
            ),
            restocking_fees=self.effect(self.a_fee_n, self.a_fee_v, self.d_fee_n, self.d_fee_v),
            restocking_fees_if_opened=self.effect(None, None, self.d_open_n, self.d_open_v),
            shipping_paid_by_seller=self.effect(
                self.a_ship_s_n, self.a_ship_s_v, self.d_ship_s_n, self.d_ship_s_v
            ),
            shipping_paid_by_buyer=self.effect(
                self.a_ship_b_n, self.a_ship_b_v, self.d_ship_b_n, self.d_ship_b_v
            ),
            returnless_refunds=self.effect(self.a_rl_n, self.a_rl_v, self.d_rl_n, self.d_rl_v),
            returns_without_label_cost=self.no_label,
        )


def run_backtest(
    policy: CompiledPolicy,
    cases: Iterable[BacktestCase],
    *,
    keep_rows: int = DEFAULT_KEEP_ROWS,
) -> BacktestReport:
    """Evaluate the draft on every case and compare it with what actually happened.

    Streams ``cases`` once; memory stays bounded by ``keep_rows`` and the distinct prices.
    """
    if keep_rows < 0:
        raise ValueError("keep_rows cannot be negative")
    totals: dict[str, _Totals] = {}
    transitions: dict[tuple[Outcome | None, Outcome], int] = {}
    count = transitions.get
    differing: list[DifferingReturn] = []
    total = changed = undecided = 0
    first: datetime | None = None
    last: datetime | None = None
    seller = "seller"
    currency: str | None = None
    t = _Totals(0)  # replaced by the first case's currency's totals
    minor = t.minor
    fees = t.fees

    for case in cases:
        total += 1
        facts = case.facts
        decision = evaluate(policy, facts, explain=False)
        new = decision.outcome
        old = case.actual_outcome
        key = (old, new)
        transitions[key] = count(key, 0) + 1

        when = case.requested_at
        if last is None or first is None:
            first = last = when
        elif when >= last:
            last = when
        elif when < first:
            first = when

        if case.currency != currency:
            currency = case.currency
            found = totals.get(currency)
            if found is None:
                found = totals[currency] = _Totals(minor_digits(currency))
            t = found
            minor = t.minor
            fees = t.fees
        t.returns += 1

        # Value of the return in minor units (and of each line, where there are several).
        lines = facts.lines
        line_values: list[int] | None = None
        if len(lines) == 1:
            unit = lines[0].unit_value
            if unit is None:
                value = 0
            else:
                m = minor.get(unit)
                value = (t.to_minor(unit) if m is None else m) * lines[0].quantity
        else:
            line_values = []
            for ln in lines:
                unit = ln.unit_value
                if unit is None:
                    line_values.append(0)
                else:
                    m = minor.get(unit)
                    line_values.append((t.to_minor(unit) if m is None else m) * ln.quantity)
            value = sum(line_values)
        t.value += value

        # What actually happened.
        if case.actual_returnless:
            t.a_rl_n += 1
            t.a_rl_v += value
            t.a_rbr_n += 1
            t.a_rbr_v += value
        elif case.actual_refund_before_receipt:
            t.a_rbr_n += 1
            t.a_rbr_v += value
        fee_kept = case.actual_restocking_fee
        if fee_kept:
            t.a_fee_n += 1
            m = minor.get(fee_kept)
            t.a_fee_v += t.to_minor(fee_kept) if m is None else m
        label = case.label_cost
        if label is None:
            t.no_label += 1
            label_minor = 0
        else:
            m = minor.get(label)
            label_minor = t.to_minor(label) if m is None else m
        payer = case.actual_shipping_paid_by
        if payer is not None:
            if payer == seller:
                t.a_ship_s_n += 1
                t.a_ship_s_v += label_minor
            else:
                t.a_ship_b_n += 1
                t.a_ship_b_v += label_minor

        # What the draft would do.
        if new is _RETURNLESS:
            t.d_rl_n += 1
            t.d_rl_v += value
            t.d_rbr_n += 1
            t.d_rbr_v += value
        elif new is not _REJECT:
            line_decisions = decision.lines
            settings = line_decisions[0].settings
            if settings.get("return_shipping_paid_by") == seller:
                t.d_ship_s_n += 1
                t.d_ship_s_v += label_minor
            else:
                t.d_ship_b_n += 1
                t.d_ship_b_v += label_minor
            if (
                settings.get("refund_before_receipt")
                and not settings.get("inspection_before_refund")
                and not facts.watchlisted
            ):
                t.d_rbr_n += 1
                t.d_rbr_v += value
            kept = potential = False
            for i, ld in enumerate(line_decisions):
                fee = ld.settings.get("restocking_fee")
                if fee is None or ld.outcome is _REJECT:
                    continue
                terms = fees.get(id(fee))
                if terms is None:
                    terms = t.fee_terms(fee)
                basis_points, cap, always = terms
                line_value = value if line_values is None else line_values[i]
                amount = (line_value * basis_points + 5000) // 10000  # half up
                if cap is not None and amount > cap:
                    amount = cap
                if always:
                    t.d_fee_v += amount
                    kept = True
                else:
                    t.d_open_v += amount
                    potential = True
            if kept:
                t.d_fee_n += 1
            if potential:
                t.d_open_n += 1

        if old is None:
            undecided += 1
        elif old is not new and old != new:
            changed += 1
            if len(differing) < keep_rows:
                differing.append(
                    DifferingReturn(
                        return_id=str(case.return_id),
                        number=case.number,
                        requested_at=when,
                        currency=case.currency,
                        value=t.amount(value),
                        actual=old,
                        draft=new,
                        # One reason per line: say each only once.
                        reasons=list(dict.fromkeys(decision.reasons)),
                    )
                )

    return BacktestReport(
        policy_name=policy.document.name,
        total=total,
        changed=changed,
        undecided=undecided,
        transitions=transitions,
        money={currency: t.result(currency) for currency, t in totals.items()},
        differing=differing,
        first_requested_at=first,
        last_requested_at=last,
        keep_rows=keep_rows,
    )
