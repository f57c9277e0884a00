"""Random refund sequences through the real HTTP API, checked against the money-safety
invariants (DESIGN.md 1-5) by reading the database after every step.

A Hypothesis state machine creates orders (1-3 lines, odd prices, tax, discounts,
shipping, sometimes a partial capture; EUR, JPY and KWD; delivered 3 days ago or 59),
opens returns (the buyer changed their mind, or the item is defective) and decides them
by hand: approves them (fully or partly), resolves them returnless, or offers the buyer
an alternative (keep the item for N % or for an amount, a coupon, a replacement) that
the buyer accepts or declines; with a reason, or now and then without one. It ships,
receives and inspects returns, loses parcels, opens disputes and closes returns, puts
buyers on the watchlist and takes them off, and requests, replays, sends, settles and
cancels refunds as admin, finance and agent keys, with and without an override, a
``keep_percent`` or a restocking fee.

It keeps its own model of every line's quantities, every refund, every watchlist flag
and the channel's default policy (docs/policies.md), and predicts each answer exactly
(status code, problem ``code``, amount, and every part of every refund) from its own
reading of docs/refunds.md: a person deciding against the policy must say why; the
policy's terms are stored with every decision, whoever makes it; no refund beyond the
approved units, none beyond the received ones without a finance/admin override (unless
the return was resolved returnless where the policy gives that, or the buyer accepted
an alternative), none beyond the passed ones for a watchlisted buyer, a high-value
return or where the policy asks for an inspection (override or not), none beyond what
the accepted alternative allows (without an override), never more than is left of
what was captured, the amount split per unit cumulatively (outbound shipping too,
where EU withdrawal or a fault refunds it). A freed refund puts a refunded return back
where it was; a return with unsettled refunds is not closed; ``allowed_actions`` lists
what the model says would be accepted. After every step it reads the tables directly
and checks the invariants, whatever the API said. Runs on SQLite and on PostgreSQL.

Returns are opened with ``decide: false``, so only the hand decisions move them; the
default policy's terms are stored with each one. The channels cost 6 (label) + 2
(handling) to bring an item back, so of the items under 15 (the policy's returnless
setting) only those under 8 are refunded without the goods by the policy itself.

The bugs it found (or that showed up while building it) are kept at the end of the file
as plain tests.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import httpx
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from returnguard.audit import service as audit
from returnguard.audit.models import Event
from returnguard.domain.returns import (
    LIFECYCLE,
    LineQuantities,
    QuantityError,
    ReturnAction,
    ReturnStatus,
    approve_line,
    inspect_line,
    receive_line,
)
from returnguard.kit.db import Database
from returnguard.kit.state_machine import IllegalTransition
from returnguard.orders.models import Order
from returnguard.refunds.models import Refund
from returnguard.returns.models import Return
from tests.conftest import Api, Tenant, add_key, make_tenant, order_body

S = ReturnStatus
A = ReturnAction

CURRENCIES = {"EUR": 2, "JPY": 0, "KWD": 3}
# Minor units of one unit of the default policy's amounts (it scales them by 150 for JPY:
# domain/policy/defaults.py), and those amounts: the high-value threshold and the item
# value inspected first, the value below which an item is not worth bringing back, the
# restocking fee's cap.
POLICY_UNIT = {"EUR": 100, "JPY": 150, "KWD": 1000}
HIGH_VALUE, CHEAP, FEE_CAP = 150, 15, 25
# The machine's channels: a return label of 6 and handling of 2 (as in docs/refunds.md).
# An item under CHEAP has the policy's returnless setting, but the policy refunds it
# without the goods only when it is also worth less than bringing it back.
RETURN_LABEL, HANDLING = 6, 2
FEE_BASIS_POINTS = 1_000  # the default policy's 10 % restocking fee (opened items)
RETURN_WINDOW_DAYS = 30  # the default policy's window
WITHDRAWAL_DAYS = 14  # EU: no-fault returns, outbound shipping refunded
DELIVERED_DAYS_AGO = (3, 59)
REASONS = ("changed_mind", "defective")  # buyer's choice / seller's fault (2 photos first)
ROLES = ("admin", "finance", "agent")
OVERRIDE_ROLES = frozenset({"admin", "finance"})  # may release money before the goods
SETTLE_ROLES = frozenset({"admin", "finance"})  # may send and settle refunds
FREED = frozenset({"failed", "cancelled"})  # refunds whose money and units are free again
UNSETTLED = frozenset({"granted", "pending"})  # refunds a closed return could not take back
KEEP = "keep_partial_refund"

# The model's own reading of the refund service: where a refund may be asked for at all.
REFUNDABLE_STATES = frozenset(
    {
        S.APPROVED,
        S.IN_TRANSIT,
        S.RECEIVED,
        S.INSPECTED,
        S.REFUNDED,
        S.LOST,
        S.DISPUTED,
        S.RESOLVED,
    }
)
# Returns that no longer hold units of their order line (see the lifecycle machine).
RELEASED = frozenset({S.REJECTED, S.CANCELLED, S.EXPIRED})
UNDECIDED = frozenset({S.REQUESTED, S.AWAITING_EVIDENCE, S.PENDING_REVIEW, S.OFFERED})
# The statuses a refunded return goes back to when a freed refund no longer settles it.
SETTLED_AT_ONCE = frozenset({S.LOST, S.DISPUTED})  # refunded by their first refund

# Each action by the name of its route, as `allowed_actions` names it (docs/api.md).
ROUTES: dict[ReturnAction, str] = {
    A.REQUEST_EVIDENCE: "request-evidence",
    A.SUBMIT_EVIDENCE: "submit-evidence",
    A.SEND_TO_REVIEW: "review",
    A.APPROVE: "approve",
    A.OFFER: "offer",
    A.ACCEPT_OFFER: "accept-offer",
    A.DECLINE_OFFER: "decline-offer",
    A.RESOLVE_RETURNLESS: "resolve-returnless",
    A.REJECT: "reject",
    A.CANCEL: "cancel",
    A.SHIP: "shipments",
    A.RECEIVE: "receive",
    A.INSPECT: "inspections",
    A.CLOSE: "close",
    A.EXPIRE: "expire",
    A.MARK_LOST: "mark-lost",
    A.DISPUTE: "dispute",
}

# Policy outcomes (most cautious first) and, per hand decision, the outcomes it goes
# against: then the person must say why (docs/refunds.md, "The guard").
OUTCOMES = (
    "reject",
    "needs_review",
    "request_evidence",
    "offer_alternatives",
    "auto_approve",
    "returnless_refund",
)
AGAINST_POLICY: dict[ReturnAction, frozenset[str]] = {
    A.APPROVE: frozenset({"reject", "request_evidence"}),
    A.RESOLVE_RETURNLESS: frozenset(OUTCOMES) - {"returnless_refund"},
    A.OFFER: frozenset({"reject"}),
}
# What each hand decision records as decided (the policy's own outcome is kept beside it).
HAND_DECISIONS = {
    A.APPROVE: "auto_approve",
    A.RESOLVE_RETURNLESS: "returnless_refund",
    A.OFFER: "offer_alternatives",
    A.ACCEPT_OFFER: "offer_alternatives",
}


def money(minor: int, currency: str) -> dict[str, str]:
    """An API amount: a decimal string at the currency's own precision."""
    return {
        "amount": format(Decimal(minor).scaleb(-CURRENCIES[currency]), "f"),
        "currency": currency,
    }


def share(total: int, units: int, start: int, count: int) -> int:
    """What units ``[start, start+count)`` of ``units`` carry of ``total`` (cumulative floor)."""
    return total * (start + count) // units - total * start // units


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def allocate(total: int, weights: list[int]) -> list[int]:
    """``total`` spread over ``weights`` by the largest remainder (earlier first on a tie;
    all-zero weights alike): how an order's shipping is spread over its lines."""
    if not any(weights):
        weights = [1] * len(weights)
    whole = sum(weights)
    parts = [total * w // whole for w in weights]
    ranked = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in ranked[: total - sum(parts)]:
        parts[i] += 1
    return parts


def basis_points(percent: str) -> int:
    return int(Decimal(percent) * 100)


def percent_of(amount: int, points: int) -> int:
    """``points`` / 10 000 of ``amount``, rounded half up."""
    return (2 * amount * points + 10_000) // 20_000


# --- orders ------------------------------------------------------------------------------


@st.composite
def order_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """An order body (without its external id): odd prices (cheap, ordinary and valuable
    for the default policy), line tax and discounts, shipping, and sometimes less captured
    than the order is worth (a gift card)."""
    currency = draw(st.sampled_from(list(CURRENCIES)), label="currency")
    unit = POLICY_UNIT[currency]
    lines = []
    paid = 0
    for i in range(draw(st.integers(1, 3), label="lines")):
        qty = draw(st.integers(1, 4), label="qty")
        price = draw(
            st.one_of(
                st.integers(1, 40 * unit),
                st.integers(1, CHEAP * unit),
                st.integers(1, 40 * unit),
                st.integers(HIGH_VALUE * unit * 2 // 3, 200 * unit),
            ),
            label="unit price (minor)",
        )
        tax = draw(st.integers(0, price * qty // 4), label="tax (minor)")
        discount = draw(st.integers(0, price * qty // 3), label="discount (minor)")
        paid += price * qty + tax - discount
        lines.append(
            {
                "external_id": f"item-{i}",
                "sku": f"SKU-{i}",
                "title": f"Item {i}",
                "quantity": qty,
                "unit_price": money(price, currency),
                "tax": money(tax, currency),
                "discount": money(discount, currency),
            }
        )
    shipping = draw(st.integers(0, 10 * unit), label="shipping (minor)")
    shipping_tax = draw(st.integers(0, shipping // 5), label="shipping tax (minor)")
    paid += shipping + shipping_tax
    short = draw(st.one_of(st.just(0), st.integers(0, paid)), label="not captured (minor)")
    # Relative to now: the policy's window and the EU withdrawal period are counted in days
    # since delivery, so the answers do not change with the day the test runs.
    days_ago = draw(st.sampled_from(DELIVERED_DAYS_AGO), label="delivered days ago")
    now = datetime.now(UTC)
    return {
        "channel": f"shop-{currency.lower()}",
        "currency": currency,
        "ordered_at": (now - timedelta(days=70)).isoformat(),
        "delivered_at": (now - timedelta(days=days_ago)).isoformat(),
        "buyer": {
            "external_id": draw(st.sampled_from(["buyer-1", "buyer-2"]), label="buyer"),
            "country": "DE",
        },
        "shipping": money(shipping, currency),
        "shipping_tax": money(shipping_tax, currency),
        "captured": money(paid - short, currency),
        "lines": lines,
    }


# --- the model ---------------------------------------------------------------------------


@dataclass
class ModelOrderLine:
    id: str
    quantity: int
    unit_price: int
    tax: int
    discount: int
    shipping: int = 0  # its share of the order's outbound shipping
    shipping_tax: int = 0

    @property
    def paid(self) -> int:
        """What the buyer paid for the whole line: price and tax, less discount."""
        return max(self.unit_price * self.quantity + self.tax - self.discount, 0)

    @property
    def unit_value(self) -> int:
        """One unit's value, as the policy sees it (minor units, rounded down)."""
        return self.paid // self.quantity


@dataclass
class ModelOrder:
    id: str
    currency: str
    captured: int
    buyer_id: str
    lines: dict[str, ModelOrderLine]
    body: dict[str, Any]
    delivered_days_ago: int

    def __repr__(self) -> str:  # short, for Hypothesis' report of a failing sequence
        return f"<order {self.body['external_id']} {self.currency} captured={self.captured}>"


@dataclass(frozen=True)
class Terms:
    """The policy's terms the refund guard reads, stored with a return's decision."""

    inspection: bool  # some line is inspected before any refund
    returnless: bool  # the policy's outcome for every line is a returnless refund
    outbound_shipping: bool  # the refund includes the outbound shipping (withdrawal, fault)
    restocking_fee: bool  # an opened item may be charged the restocking fee


@dataclass
class ModelOffer:
    kind: str
    percent: str | None
    amount: int | None
    state: str = "offered"  # accepted, declined


@dataclass
class ModelLine:
    id: str
    order_line_id: str
    q: LineQuantities

    def __repr__(self) -> str:
        return f"<return line {self.id[:8]} {self.q}>"


@dataclass
class ModelReturn:
    id: str
    order_id: str
    status: ReturnStatus
    lines: list[ModelLine]
    reason: str
    terms: Terms | None = None  # from its latest decision
    offer: ModelOffer | None = None
    refunded_from: ReturnStatus | None = None  # its status when it last became refunded

    def __repr__(self) -> str:
        return f"<return {self.id[:8]} {self.status.value} {self.reason} {self.lines}>"

    def held(self, line: ModelLine) -> int:
        """Units of the order line this return line keeps from other returns."""
        if self.status in RELEASED:
            return 0
        approved = any(ln.q.approved for ln in self.lines)
        if self.status in UNDECIDED or (self.status is S.DISPUTED and not approved):
            return line.q.requested
        return line.q.approved

    @property
    def accepted_offer(self) -> ModelOffer | None:
        """The alternative the buyer accepted instead of sending the goods back."""
        if self.offer is not None and self.offer.state == "accepted":
            assert self.status is S.RESOLVED
            return self.offer
        return None


@dataclass(frozen=True)
class Part:
    """What a refund pays for one return line, as its ``lines[]`` in the database say."""

    order_line_id: str
    quantity: int
    item: int
    tax: int
    discount: int
    shipping: int
    shipping_tax: int
    restocking_fee: int
    total: int
    positions: tuple[int, ...]


@dataclass
class ModelRefund:
    id: str
    key: str
    return_id: str
    order_id: str
    body: dict[str, Any]
    status: str
    amount: int
    units: dict[str, int]  # return line id: quantity
    override: bool
    # What the model said covered the units when it was granted (for failure messages).
    coverage: dict[str, Any] = field(default_factory=dict)
    events: list[str] = field(default_factory=lambda: ["refund.granted"])
    parts: dict[str, Part] = field(default_factory=dict)  # return line id: its part

    def __repr__(self) -> str:
        return f"<refund {self.key} {self.status} {self.amount} {self.units}>"


@dataclass(frozen=True)
class Expected:
    status: int
    code: str | None = None
    amount: int = 0
    parts: dict[str, Part] = field(default_factory=dict, compare=False)


Plan = Callable[[list[ModelLine]], list[LineQuantities]]
T = TypeVar("T")


class RefundMachine(RuleBasedStateMachine):
    """Subclassed per test with ``database`` and ``client`` set from the fixtures."""

    database: Database
    http: TestClient

    orders = Bundle("orders")
    keys = Bundle("keys")

    def __init__(self) -> None:
        super().__init__()
        self.db = self.database
        self.client = self.http
        self.tenants: dict[str, Tenant] = {}
        self.org_id: uuid.UUID | None = None
        self.order_model: dict[str, ModelOrder] = {}
        self.returns: dict[str, ModelReturn] = {}
        self.refunds: dict[str, ModelRefund] = {}  # in creation order
        self.by_key: dict[str, str] = {}  # idempotency key: refund id (every 201)
        self.refused_keys: list[str] = []  # keys whose only requests were refused
        self.watchlisted: dict[str, bool] = {}  # buyer id: on the watchlist
        self.counter = 0
        self.channels: set[str] = set()  # currencies with a channel already

    # --- helpers -----------------------------------------------------------------------

    def _next(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}"

    def _post(
        self, role: str, path: str, body: Any = None, key: str | None = None
    ) -> httpx.Response:
        headers = dict(self.tenants[role].headers)
        if key is not None:
            headers["Idempotency-Key"] = key
        r: httpx.Response = self.client.post(f"/api/v1{path}", json=body, headers=headers)
        assert r.status_code < 500, f"POST {path} as {role}: {r.status_code} {r.text}"
        return r

    @staticmethod
    def _check(r: httpx.Response, expected: Expected, what: str) -> None:
        got = r.json().get("code") if r.status_code >= 400 else None
        event(f"{what}: {r.status_code} {got or ''}".strip())
        assert (r.status_code, got) == (expected.status, expected.code), (
            f"{what}: expected {expected.status} {expected.code}, got {r.status_code} {r.text}"
        )

    @staticmethod
    def _pick(data: st.DataObject, items: list[T], ok: Callable[[T], bool], label: str) -> T:
        """Mostly an item the action makes sense for now, sometimes any (refusals too)."""
        ready = [x for x in items if ok(x)]
        if not ready or data.draw(st.integers(0, 9), label=f"any {label}") == 9:
            ready = items
        return data.draw(st.sampled_from(ready), label=label)

    def _order_of(self, ret: ModelReturn) -> ModelOrder:
        return self.order_model[ret.order_id]

    def _held(self, order_line_id: str) -> int:
        return sum(
            ret.held(line)
            for ret in self.returns.values()
            for line in ret.lines
            if line.order_line_id == order_line_id
        )

    def _live(self) -> list[ModelRefund]:
        return [r for r in self.refunds.values() if r.status not in FREED]

    def _positions(self, order_line_id: str, units: int, qty: int) -> list[int] | None:
        """The unit positions a new refund of ``qty`` units takes: the lowest ones no live
        refund holds (a failed or cancelled refund gives its positions back); None when
        fewer are free."""
        held = {
            p
            for r in self._live()
            for part in r.parts.values()
            if part.order_line_id == order_line_id
            for p in part.positions
        }
        free = [p for p in range(units) if p not in held][:qty]
        return free if len(free) == qty else None

    def _fees_kept(self, order_line_id: str) -> int:
        """Restocking fees live refunds keep on an order line (its cap counts them all)."""
        return sum(
            part.restocking_fee
            for r in self._live()
            for part in r.parts.values()
            if part.order_line_id == order_line_id
        )

    def _spent(self, order_id: str) -> int:
        return sum(r.amount for r in self._live() if r.order_id == order_id)

    def _spent_on(self, return_id: str) -> int:
        return sum(r.amount for r in self._live() if r.return_id == return_id)

    def _line(self, return_line_id: str) -> ModelLine:
        for ret in self.returns.values():
            for line in ret.lines:
                if line.id == return_line_id:
                    return line
        raise KeyError(return_line_id)

    def _free(self, refund: ModelRefund) -> None:
        """A failed or cancelled refund gives its units back; a return it had made
        refunded goes back to the status it had then, once it is no longer settled."""
        for line_id, qty in refund.units.items():
            line = self._line(line_id)
            line.q = replace(line.q, refunded=line.q.refunded - qty)
        ret = self.returns[refund.return_id]
        if ret.status is not S.REFUNDED:
            return
        back = ret.refunded_from
        assert back is not None
        if back in SETTLED_AT_ONCE:
            settled = any(ln.q.refunded for ln in ret.lines)
        else:
            settled = all(
                ln.q.refunded + ln.q.inspected - ln.q.passed >= ln.q.approved for ln in ret.lines
            )
        if not settled:
            event(f"freed: refunded -> {back.value}")
            ret.status = back

    # --- the policy --------------------------------------------------------------------

    def _policy(self, ret: ModelReturn) -> tuple[str, Terms]:
        """The default policy's outcome for the return now and the terms it stores with a
        decision (docs/policies.md: a DE buyer, so the EU floors apply)."""
        order = self._order_of(ret)
        unit = POLICY_UNIT[order.currency]
        watched = self.watchlisted[order.buyer_id]
        values = [order.lines[ln.order_line_id].unit_value for ln in ret.lines]
        # Refunded without the goods where every item has the policy's returnless setting
        # (under CHEAP) and is worth less than the label and handling it would cost.
        cheap = all(v < min(CHEAP, RETURN_LABEL + HANDLING) * unit for v in values)
        buyers_choice = ret.reason == "changed_mind"
        days = order.delivered_days_ago
        if not buyers_choice:
            # Defective: photos first; the 2-year EU guarantee keeps it inside the window.
            outcome = "request_evidence"
        elif days > RETURN_WINDOW_DAYS:
            outcome = "reject"
        elif watched:
            outcome = "needs_review"
        elif cheap:
            outcome = "returnless_refund"
        else:
            outcome = "auto_approve"
        terms = Terms(
            inspection=watched or any(v >= HIGH_VALUE * unit for v in values),
            returnless=outcome == "returnless_refund",
            # Free for a faulty item, delivery included; within the EU withdrawal period
            # for the buyer's choice.
            outbound_shipping=not buyers_choice or days <= WITHDRAWAL_DAYS,
            restocking_fee=buyers_choice,
        )
        return outcome, terms

    def _terms(self, ret: ModelReturn) -> Terms:
        """The terms of the return's latest decision; without one, the policy's now."""
        return ret.terms if ret.terms is not None else self._policy(ret)[1]

    def _high_value(self, ret: ModelReturn) -> bool:
        """Every requested unit at what was paid for it, against the policy's threshold."""
        order = self._order_of(ret)
        value = sum(
            order.lines[ln.order_line_id].paid
            * ln.q.requested
            // order.lines[ln.order_line_id].quantity
            for ln in ret.lines
        )
        return value >= HIGH_VALUE * POLICY_UNIT[order.currency]

    def _before_receipt(self, ret: ModelReturn) -> bool:
        """Settled without the goods where the policy gives a returnless refund, or by an
        alternative the buyer accepted: refundable before receipt without an override."""
        return ret.status is S.RESOLVED and (
            self._terms(ret).returnless or ret.accepted_offer is not None
        )

    def _transition(
        self,
        ret: ModelReturn,
        action: ReturnAction,
        role: str,
        body: Any,
        plan: Plan | None = None,
    ) -> bool:
        """Predict a return transition from the lifecycle table, the quantity rules and the
        policy, run it over HTTP, compare, and update the model; True when it was accepted."""
        expected = Expected(200)
        new_lines = [line.q for line in ret.lines]
        outcome, terms = self._policy(ret)
        try:
            target = LIFECYCLE.next_status(ret.status, action)
        except IllegalTransition:
            expected, target = Expected(409, "illegal_transition"), ret.status
        else:
            mine = [r for r in self.refunds.values() if r.return_id == ret.id]
            if action in (A.CANCEL, A.REJECT) and any(r.status not in FREED for r in mine):
                # Units with money granted or paid for them are never let go.
                expected = Expected(409, "return_has_refunds")
            elif action is A.CLOSE and any(r.status in UNSETTLED for r in mine):
                # A closed return could not be paid again if one of them failed.
                expected = Expected(409, "refunds_unsettled")
            else:
                try:
                    if plan is not None:
                        new_lines = plan(ret.lines)
                except QuantityError:
                    expected = Expected(422, "quantity_exceeded")
                else:
                    said = str(body.get("note") or body.get("reason") or "") if body else ""
                    if outcome in AGAINST_POLICY.get(action, ()) and not said.strip():
                        expected = Expected(422, "override_reason_required")
        r = self._post(role, f"/returns/{ret.id}/{ROUTES[action]}", body)
        self._check(r, expected, f"{action.value} on {ret.status.value} ({outcome})")
        if expected.code == "illegal_transition":
            assert set(r.json()["allowed_actions"]) == self._allowed(ret), r.text
        if expected.status != 200:
            return False
        ret.status = target
        for line, q in zip(ret.lines, new_lines, strict=True):
            line.q = q
        if action in HAND_DECISIONS:
            # Whoever decides, the policy's terms for the return are stored with it.
            ret.terms = terms
            said = str(body.get("note") or body.get("reason") or "") if body else ""
            self._check_decision(ret, action, outcome, said)
        if action is A.OFFER:
            ret.offer = self._offer_of(body, self._order_of(ret).currency)
        elif action in (A.ACCEPT_OFFER, A.DECLINE_OFFER):
            assert ret.offer is not None
            ret.offer.state = "accepted" if action is A.ACCEPT_OFFER else "declined"
        out = r.json()
        assert out["status"] == ret.status.value
        assert set(out["allowed_actions"]) == self._allowed(ret), (out["allowed_actions"], ret)
        return True

    def _check_decision(
        self, ret: ModelReturn, action: ReturnAction, outcome: str, said: str
    ) -> None:
        """The decision as recorded: who decided, against what policy outcome, why, and
        the policy's terms for the return (as the refund guard reads them)."""
        r = self.client.get(
            f"/api/v1/returns/{ret.id}/decision", headers=self.tenants["agent"].headers
        )
        assert r.status_code == 200, r.text
        decision = r.json()
        against = outcome in AGAINST_POLICY.get(action, ())
        assert (
            decision["path"],
            decision["outcome"],
            decision["policy_outcome"],
            decision["override_reason"],
        ) == (action.value, HAND_DECISIONS[action], outcome, said.strip() if against else None), (
            decision
        )
        settings = [line["settings"] for line in decision["lines"]]
        stored = Terms(
            inspection=any(s["inspection_before_refund"] for s in settings),
            returnless=all(line["outcome"] == "returnless_refund" for line in decision["lines"]),
            outbound_shipping=bool(settings[0].get("refund_outbound_shipping")),
            restocking_fee=all(s.get("restocking_fee") is not None for s in settings),
        )
        assert stored == ret.terms, (stored, ret.terms, settings)

    def _allowed(self, ret: ModelReturn) -> set[str]:
        """What the return can do now by the model, by route name: never what would be
        refused, and ``refunds`` only when the guard would pay a unit without an override."""
        mine = [r for r in self.refunds.values() if r.return_id == ret.id]
        names = set()
        for action, route in ROUTES.items():
            if ret.status not in LIFECYCLE.edges[action].sources:
                continue
            if action in (A.CANCEL, A.REJECT) and any(r.status not in FREED for r in mine):
                continue
            if action is A.CLOSE and any(r.status in UNSETTLED for r in mine):
                continue
            if action is A.RECEIVE and not any(ln.q.approved > ln.q.received for ln in ret.lines):
                continue
            if action is A.INSPECT and not any(ln.q.received > ln.q.inspected for ln in ret.lines):
                continue
            names.add(route)
        if self._can_refund(ret):
            names.add("refunds")
        return names

    def _can_refund(self, ret: ModelReturn) -> bool:
        """Whether the guard would pay a unit of the return now, for more than nothing,
        without an override (at the percent the buyer accepted to keep it for, if any)."""
        offer = ret.accepted_offer
        body = {"keep_percent": offer.percent} if offer is not None and offer.percent else {}
        return any(
            self._predict(ret, [(line, 1)], "agent", body).status == 201 for line in ret.lines
        )

    # --- orders and returns ------------------------------------------------------------

    @initialize(target=orders, body=order_bodies(), data=st.data())
    def start(self, body: dict[str, Any], data: st.DataObject) -> str:
        tenant = make_tenant(self.db, f"Shop {uuid.uuid4().hex[:8]}")
        self.org_id = tenant.organization_id
        self.tenants = {
            "admin": tenant,
            "finance": add_key(self.db, tenant, "finance"),
            "agent": add_key(self.db, tenant, "agent"),
        }
        order_id = self._create_order(body)
        # Start with a return, so that the refund rules have something to work on.
        self.open_return(data)
        return order_id

    @precondition(lambda self: len(self.order_model) < 4)
    @rule(target=orders, body=order_bodies())
    def create_order(self, body: dict[str, Any]) -> str:
        return self._create_order(body)

    def _create_order(self, body: dict[str, Any]) -> str:
        body = body | {"external_id": self._next("order")}
        currency = body["currency"]
        unit = POLICY_UNIT[currency]
        if currency not in self.channels:
            r = self._post(
                "admin",
                "/channels",
                {
                    "code": body["channel"],
                    "name": f"Shop {currency}",
                    "marketplace": "own_store",
                    "country": "DE",
                    "currency": currency,
                    "return_label_cost": money(RETURN_LABEL * unit, currency),
                    "handling_cost": money(HANDLING * unit, currency),
                },
            )
            assert r.status_code == 201, r.text
            self.channels.add(currency)
        r = self._post("admin", "/orders", body)
        assert r.status_code == 201, r.text
        out = r.json()

        def minor(m: dict[str, str]) -> int:
            return int(Decimal(m["amount"]).scaleb(CURRENCIES[currency]))

        lines = {}
        for sent, got in zip(body["lines"], out["lines"], strict=True):
            assert sent["external_id"] == got["external_id"]
            lines[got["id"]] = ModelOrderLine(
                got["id"],
                sent["quantity"],
                minor(sent["unit_price"]),
                minor(sent["tax"]),
                minor(sent["discount"]),
            )
        # Outbound shipping and its tax are spread over the lines by their value.
        weights = [ln.unit_price * ln.quantity - ln.discount for ln in lines.values()]
        shipping = allocate(minor(body["shipping"]), weights)
        shipping_tax = allocate(minor(body["shipping_tax"]), weights)
        for ln, ship, ship_tax in zip(lines.values(), shipping, shipping_tax, strict=True):
            ln.shipping, ln.shipping_tax = ship, ship_tax
        buyer_id = out["buyer"]["id"]
        self.watchlisted.setdefault(buyer_id, False)
        days = (datetime.now(UTC) - datetime.fromisoformat(body["delivered_at"])).days
        self.order_model[out["id"]] = ModelOrder(
            out["id"], currency, minor(body["captured"]), buyer_id, lines, body, days
        )
        return str(out["id"])

    @precondition(lambda self: bool(self.refunds))
    @rule(order_id=orders, role=st.sampled_from(["admin", "agent"]))
    def repost_order(self, order_id: str, role: str) -> None:
        """The channel sends the same order again: an upsert that changes nothing."""
        order = self.order_model[order_id]
        r = self._post(role, "/orders", order.body)
        self._check(r, Expected(200), "repost order")
        out = r.json()
        assert out["id"] == order_id
        assert out["captured"] == order.body["captured"]
        assert [ln["id"] for ln in out["lines"]] == list(order.lines)

    @staticmethod
    def _qty(data: st.DataObject, ok_max: int, label: str) -> int:
        """1..ok_max, and now and then one more than that (which must be refused)."""
        if ok_max < 1 or data.draw(st.integers(0, 9), label=f"{label}: one too many") == 9:
            return max(ok_max, 0) + 1
        return data.draw(st.integers(1, ok_max), label=label)

    def _returnable(self, order: ModelOrder) -> list[str]:
        """The order's lines with units no return holds yet."""
        return [i for i, ln in order.lines.items() if ln.quantity > self._held(i)]

    @precondition(lambda self: any(self._returnable(o) for o in self.order_model.values()))
    @rule(data=st.data())
    def open_return(self, data: st.DataObject) -> None:
        """Open a return (decide: false) and mostly decide it at once by hand; now and
        then ask for too many units."""
        order = self._pick(
            data, list(self.order_model.values()), lambda o: bool(self._returnable(o)), "order"
        )
        chosen = data.draw(
            st.lists(
                st.sampled_from(self._returnable(order) or list(order.lines)),
                min_size=1,
                unique=True,
            ),
            label="order lines",
        )
        left = {i: order.lines[i].quantity - self._held(i) for i in chosen}
        wanted = {i: self._qty(data, left[i], "qty") for i in chosen}
        fits = all(qty <= left[i] for i, qty in wanted.items())
        reason = data.draw(st.sampled_from(REASONS), label="reason code")
        r = self._post(
            "agent",
            "/returns",
            {
                "order_id": order.id,
                "decide": False,
                "lines": [
                    {"order_line_id": i, "quantity": q, "reason_code": reason}
                    for i, q in wanted.items()
                ],
            },
        )
        if not fits:
            self._check(r, Expected(422, "quantity_exceeded"), "open return")
            return
        self._check(r, Expected(201), "open return")
        out = r.json()
        ret = ModelReturn(
            out["id"],
            order.id,
            S.REQUESTED,
            [
                ModelLine(
                    ln["id"], ln["order_line_id"], LineQuantities(wanted[ln["order_line_id"]])
                )
                for ln in out["lines"]
            ],
            reason,
        )
        self.returns[ret.id] = ret
        assert set(out["allowed_actions"]) == self._allowed(ret), out["allowed_actions"]
        if data.draw(st.integers(0, 4), label="decide later") > 0:
            self._decide(ret, data)

    def _returns_where(self, ok: Callable[[ModelReturn], bool]) -> bool:
        return any(ok(r) for r in self.returns.values())

    @staticmethod
    def _undecided(r: ModelReturn) -> bool:
        return r.status in UNDECIDED - {S.OFFERED}

    @staticmethod
    def _allows(action: ReturnAction) -> Callable[[ModelReturn], bool]:
        return lambda r: r.status in LIFECYCLE.edges[action].sources

    @staticmethod
    def _receivable(r: ModelReturn) -> bool:
        return r.status in LIFECYCLE.edges[A.RECEIVE].sources and any(
            ln.q.approved > ln.q.received for ln in r.lines
        )

    @staticmethod
    def _inspectable(r: ModelReturn) -> bool:
        return r.status in LIFECYCLE.edges[A.INSPECT].sources and any(
            ln.q.received > ln.q.inspected for ln in r.lines
        )

    @precondition(lambda self: self._returns_where(self._undecided))
    @rule(data=st.data())
    def decide_by_hand(self, data: st.DataObject) -> None:
        ret = self._pick(data, list(self.returns.values()), self._undecided, "return")
        self._decide(ret, data)

    def _decide(self, ret: ModelReturn, data: st.DataObject) -> None:
        """A person decides: approves all or some units, resolves it returnless, or offers
        an alternative; mostly saying why, which deciding against the policy needs."""
        how = data.draw(
            st.sampled_from(["approve", "approve some", "returnless", "offer", "offer"]),
            label="decision",
        )
        said = data.draw(st.sampled_from(["checked by hand"] * 3 + ["", " "]), label="reason")
        if how == "approve":
            self._approve(ret, None, said)
        elif how == "approve some":
            some = {
                ln.id: data.draw(st.integers(0, ln.q.requested), label="approve qty")
                for ln in ret.lines
            }
            self._approve(ret, some, said)
        elif how == "returnless":
            self._transition(ret, A.RESOLVE_RETURNLESS, "agent", {"reason": said}, _everything)
        else:
            self._offer(ret, data, said)

    def _approve(self, ret: ModelReturn, chosen: dict[str, int] | None, note: str) -> None:
        def plan(current: list[ModelLine]) -> list[LineQuantities]:
            new = [
                approve_line(ln.q, None if chosen is None else chosen[ln.id], "q") for ln in current
            ]
            if sum(q.approved for q in new) == 0:
                raise QuantityError("lines", "nothing approved")
            return new

        body: dict[str, Any] = {"note": note}
        if chosen is not None:
            body["lines"] = [{"return_line_id": i, "quantity": q} for i, q in chosen.items()]
        self._transition(ret, A.APPROVE, "agent", body, plan)

    def _offer(self, ret: ModelReturn, data: st.DataObject, note: str) -> None:
        """Offer an alternative: keep the item for N % or for an amount, a coupon, a
        replacement; now and then one that is not a valid offer."""
        order = self._order_of(ret)
        currency = order.currency
        kind = data.draw(
            st.sampled_from(
                ["keep %", "keep %", "keep amount", "coupon", "replacement", "invalid"]
            ),
            label="offer",
        )
        body: dict[str, Any]
        if kind == "keep %":
            percent = data.draw(
                st.one_of(st.integers(1, 100).map(str), st.sampled_from(["12.5", "0.01"])),
                label="percent",
            )
            body = {"kind": KEEP, "percent": percent}
        elif kind == "keep amount":
            value = sum(
                order.lines[ln.order_line_id].paid
                * ln.q.requested
                // order.lines[ln.order_line_id].quantity
                for ln in ret.lines
            )
            amount = data.draw(st.integers(1, max(value, 1)), label="keep amount")
            body = {"kind": KEEP, "amount": money(amount, currency)}
        elif kind == "coupon":
            amount = data.draw(st.integers(1, 20 * POLICY_UNIT[currency]), label="coupon")
            body = {"kind": "coupon", "amount": money(amount, currency)}
        elif kind == "replacement":
            body = {"kind": "replacement"}
        else:
            other = "EUR" if currency != "EUR" else "JPY"
            body = data.draw(
                st.sampled_from(
                    [
                        {"kind": KEEP},
                        {"kind": KEEP, "percent": "30", "amount": money(100, currency)},
                        {"kind": "coupon"},
                        {"kind": "coupon", "amount": money(500, other)},
                    ]
                ),
                label="invalid offer",
            )

        def valid(current: list[ModelLine]) -> list[LineQuantities]:
            if kind == "invalid":
                raise QuantityError("offer", "not an offer")
            return [ln.q for ln in current]

        if self._transition(ret, A.OFFER, "agent", body | {"note": note}, valid):
            answer = data.draw(
                st.sampled_from(["accept", "accept", "decline", "later"]), label="answer"
            )
            if answer != "later":
                self._answer(ret, accept=answer == "accept")

    def _offer_of(self, body: dict[str, Any], currency: str) -> ModelOffer:
        amount = body.get("amount")
        return ModelOffer(
            body["kind"],
            body.get("percent"),
            int(Decimal(amount["amount"]).scaleb(CURRENCIES[currency])) if amount else None,
        )

    @precondition(lambda self: self._returns_where(lambda r: r.status is S.OFFERED))
    @rule(data=st.data(), accept=st.booleans())
    def answer_offer(self, data: st.DataObject, accept: bool) -> None:
        """The buyer accepts the alternative (resolved: the goods stay, every requested
        unit is settled by it) or declines it (approved: the return goes ahead)."""
        ret = self._pick(
            data, list(self.returns.values()), lambda r: r.status is S.OFFERED, "return"
        )
        self._answer(ret, accept=accept)

    def _answer(self, ret: ModelReturn, *, accept: bool) -> None:
        action = A.ACCEPT_OFFER if accept else A.DECLINE_OFFER
        self._transition(ret, action, "agent", None, _everything)

    # What happens to a parcel outside the warehouse, and to the return around it.
    PARCEL_EVENTS = (A.SHIP, A.SHIP, A.CANCEL, A.MARK_LOST, A.DISPUTE, A.CLOSE)

    @precondition(lambda self: self._returns_where(lambda r: r.status not in LIFECYCLE.terminal))
    @rule(data=st.data())
    def parcel_event(self, data: st.DataObject) -> None:
        """The buyer ships the parcel back or cancels the return (whatever was refunded
        already); the carrier loses it; a dispute is opened; the return is closed."""
        action = data.draw(st.sampled_from(self.PARCEL_EVENTS), label="event")
        ret = self._pick(data, list(self.returns.values()), self._allows(action), "return")
        body: dict[str, Any] = {"reason": "parcel"}
        if action is A.SHIP:
            body = {"carrier": "DHL", "tracking_number": self._next("track")}
        self._transition(ret, action, "agent", body)

    @precondition(lambda self: self._returns_where(self._receivable))
    @rule(data=st.data())
    def receive(self, data: st.DataObject) -> None:
        """Some units of some lines arrive (now and then one too many), or the whole
        parcel, mostly inspected at once."""
        ret = self._pick(data, list(self.returns.values()), self._receivable, "return")
        if data.draw(st.booleans(), label="the whole parcel"):
            outstanding = {ln.id: ln.q.approved - ln.q.received for ln in ret.lines}
            qty = {i: n for i, n in outstanding.items() if n > 0} or {ret.lines[0].id: 1}
        else:
            subset = data.draw(
                st.lists(st.sampled_from(ret.lines), min_size=1, unique_by=lambda ln: ln.id),
                label="lines",
            )
            qty = {ln.id: self._qty(data, ln.q.approved - ln.q.received, "qty") for ln in subset}

        def plan(current: list[ModelLine]) -> list[LineQuantities]:
            return [receive_line(ln.q, qty[ln.id], "q") if ln.id in qty else ln.q for ln in current]

        body = {"lines": [{"return_line_id": i, "quantity": n} for i, n in qty.items()]}
        if self._transition(ret, A.RECEIVE, "admin", body, plan) and data.draw(
            st.integers(0, 2), label="inspect at once (0: later)"
        ):
            self._inspect(ret, data)

    @precondition(lambda self: self._returns_where(self._inspectable))
    @rule(data=st.data())
    def inspect(self, data: st.DataObject) -> None:
        self._inspect(
            self._pick(data, list(self.returns.values()), self._inspectable, "return"), data
        )

    def _inspect(self, ret: ModelReturn, data: st.DataObject) -> None:
        """Some received units of some lines are inspected (now and then one too many),
        or all of them, passed."""
        counts: dict[str, tuple[int, int]] = {}
        if data.draw(st.booleans(), label="all of them, passed"):
            for ln in ret.lines:
                if ln.q.received > ln.q.inspected:
                    counts[ln.id] = (ln.q.received - ln.q.inspected, 0)
        if not counts:
            subset = data.draw(
                st.lists(st.sampled_from(ret.lines), min_size=1, unique_by=lambda ln: ln.id),
                label="lines",
            )
            for ln in subset:
                units = self._qty(data, ln.q.received - ln.q.inspected, "units")
                passed = data.draw(st.integers(0, units), label="passed")
                counts[ln.id] = (passed, units - passed)

        def plan(current: list[ModelLine]) -> list[LineQuantities]:
            return [
                inspect_line(ln.q, *counts[ln.id], "q") if ln.id in counts else ln.q
                for ln in current
            ]

        body = {
            "lines": [
                {"return_line_id": i, "passed": p, "failed": f, "disposition": "restock"}
                for i, (p, f) in counts.items()
            ]
        }
        self._transition(ret, A.INSPECT, "admin", body, plan)

    @rule(data=st.data())
    def watchlist(self, data: st.DataObject) -> None:
        # Mostly off: a watchlisted buyer is paid nothing before a passed inspection.
        on = data.draw(st.integers(0, 2), label="watchlist (2: on)") == 2
        buyer_id = data.draw(st.sampled_from(list(self.watchlisted)), label="buyer")
        role = data.draw(st.sampled_from(["admin", "agent"]), label="role")
        path = f"/buyers/{buyer_id}/watchlist" + ("" if on else "/remove")
        r = self._post(role, path, {"reason": "chargebacks" if on else "cleared"})
        self._check(r, Expected(200), "watchlist" if on else "unwatchlist")
        assert r.json()["watchlisted"] is on
        self.watchlisted[buyer_id] = on

    # --- refunds -----------------------------------------------------------------------

    def _inspected_first(self, ret: ModelReturn) -> bool:
        """Nothing before a passed inspection, override or not: a watchlisted buyer, a
        high-value return, or a policy asking for an inspection before refund."""
        watched = self.watchlisted[self._order_of(ret).buyer_id]
        return watched or self._high_value(ret) or self._terms(ret).inspection

    def _covered(self, ret: ModelReturn, line: ModelLine, override_ok: bool) -> int:
        """Units of the line the model says may be refunded in total (refunded included)."""
        if self._inspected_first(ret):
            return line.q.passed
        # Receipt is required unless the return was settled without the goods where the
        # policy or an accepted alternative allows it, or a finance/admin overrides it.
        if self._before_receipt(ret) or override_ok:
            return line.q.approved
        return line.q.received

    def _line_violation(
        self, ret: ModelReturn, line: ModelLine, qty: int, override_ok: bool
    ) -> str | None:
        wanted = line.q.refunded + qty
        if wanted > line.q.approved:
            return "exceeds_refundable_quantity"
        if wanted > line.q.passed:
            if self.watchlisted[self._order_of(ret).buyer_id]:
                return "watchlisted_needs_inspection"
            if self._high_value(ret):
                return "high_value_needs_inspection"
            if self._terms(ret).inspection:
                return "exceeds_refundable_quantity"
        if wanted > self._covered(ret, line, override_ok):
            return "refund_before_receipt_not_allowed"
        return None

    @staticmethod
    def _offer_bounds(offer: ModelOffer | None, override_ok: bool) -> ModelOffer | None:
        """The accepted alternative that bounds a refund: a valid override lifts it."""
        return None if override_ok else offer

    def _predict(
        self,
        ret: ModelReturn,
        items: list[tuple[ModelLine, int]],
        role: str,
        body: dict[str, Any],
    ) -> Expected:
        """The answer to a new refund request, from the model alone."""
        if ret.status not in REFUNDABLE_STATES:
            return Expected(409, "refund_state")
        if any(line not in ret.lines for line, _ in items):
            return Expected(422, "validation_error")
        order = self._order_of(ret)
        terms = self._terms(ret)
        charged = {
            ln["return_line_id"] for ln in body.get("lines", []) if ln.get("charge_restocking_fee")
        }
        if charged and not terms.restocking_fee:
            return Expected(422, "validation_error")  # the policy sets no fee here
        # Units first: what may never go out is refused before any amount is computed.
        violations: list[tuple[int, str]] = []
        reason = body.get("override_reason")
        if reason is not None:
            if role not in OVERRIDE_ROLES:
                violations.append((422, "override_role_not_allowed"))
            if not reason.strip():
                violations.append((422, "override_reason_required"))
        override_ok = reason is not None and not violations
        for line, qty in items:
            code = self._line_violation(ret, line, qty, override_ok)
            if code is not None:
                violations.append((409, code))
        if violations:
            return Expected(*violations[0])
        keep: str | None = body.get("keep_percent")
        parts = {}
        for line, qty in items:
            ol = order.lines[line.order_line_id]
            positions = self._positions(ol.id, ol.quantity, qty)
            if positions is None:
                # Every unit of the order line is in a live refund already.
                return Expected(422, "validation_error")
            fee = line.id in charged
            if fee and keep is not None:
                return Expected(422, "validation_error")  # no fee when the buyer keeps it
            parts[line.id] = self._part(
                order, ol, qty, positions, terms.outbound_shipping, keep, fee
            )
        amount = sum(p.total for p in parts.values())
        left = max(order.captured - self._spent(order.id), 0)
        # Then the money: what is left of the capture, and what the accepted alternative
        # allows (judged on the amount, so that the refusal can name it).
        offer = self._offer_bounds(ret.accepted_offer, override_ok)
        spent_here = self._spent_on(ret.id)
        if amount > left:
            return Expected(409, "exceeds_captured")
        if offer is not None:
            if offer.kind != KEEP:
                return Expected(409, "accepted_offer_no_cash")
            if offer.percent is not None and basis_points(keep or "100") > basis_points(
                offer.percent
            ):
                return Expected(409, "exceeds_accepted_offer")
            if offer.amount is not None and spent_here + amount > offer.amount:
                return Expected(409, "exceeds_accepted_offer")
        if amount <= 0:
            return Expected(422, "validation_error")
        return Expected(201, None, amount, parts)

    def _part(
        self,
        order: ModelOrder,
        ol: ModelOrderLine,
        qty: int,
        positions: list[int],
        outbound_shipping: bool,
        keep: str | None,
        fee: bool,
    ) -> Part:
        """What the units at ``positions`` of an order line are refunded: each position's
        fixed share of the line's price, tax, discount (and outbound shipping where it is
        refunded); ``keep`` percent of each when the buyer keeps them; less the restocking
        fee (10 %, capped per order line over all its live refunds) when charged."""
        n = ol.quantity

        def of(total: int) -> int:
            return sum(share(total, n, p, 1) for p in positions)

        item, tax, discount = of(ol.unit_price * n), of(ol.tax), of(ol.discount)
        shipping = of(ol.shipping) if outbound_shipping else 0
        shipping_tax = of(ol.shipping_tax) if outbound_shipping else 0
        if keep is not None:
            points = basis_points(keep)
            item, tax, discount, shipping, shipping_tax = (
                percent_of(v, points) for v in (item, tax, discount, shipping, shipping_tax)
            )
        restocking_fee = 0
        if fee:
            cap = FEE_CAP * POLICY_UNIT[order.currency]
            restocking_fee = min(
                percent_of(item + tax - discount, FEE_BASIS_POINTS),
                max(cap - self._fees_kept(ol.id), 0),
            )
        total = item + tax - discount + shipping + shipping_tax - restocking_fee
        return Part(
            ol.id,
            qty,
            item,
            tax,
            discount,
            shipping,
            shipping_tax,
            restocking_fee,
            total,
            tuple(positions),
        )

    @precondition(lambda self: bool(self.returns))
    @rule(target=keys, data=st.data())
    def request_refund(self, data: st.DataObject) -> MultipleResults[str]:
        """Any units of any return: as many as may still go out, or one more."""
        return self._refund(data, covered=False)

    @precondition(lambda self: self._returns_where(lambda r: r.status in REFUNDABLE_STATES))
    @rule(target=keys, data=st.data())
    def refund_covered_units(self, data: st.DataObject) -> MultipleResults[str]:
        """Units the model says are covered (received, passed, settled without the goods,
        or overridden): these mostly go out, so that refunds pile up and the money limits
        get tested."""
        return self._refund(data, covered=True)

    def _room(self, ret: ModelReturn, line: ModelLine, override_ok: bool) -> int:
        """Units of the line the model says may go out now."""
        if ret.status not in REFUNDABLE_STATES:
            return 0
        offer = self._offer_bounds(ret.accepted_offer, override_ok)
        if offer is not None and offer.kind != KEEP:
            return 0
        return min(self._covered(ret, line, override_ok), line.q.approved) - line.q.refunded

    def _refund(self, data: st.DataObject, covered: bool) -> MultipleResults[str]:
        returns = list(self.returns.values())
        reason: str | None
        if covered:
            # A valid override now and then, and whenever only an override covers units.
            plain = any(self._room(r, ln, False) > 0 for r in returns for ln in r.lines)
            override_ok = not plain or data.draw(st.integers(0, 3), label="override") == 3
            roles = sorted(OVERRIDE_ROLES) if override_ok else ROLES
            role = data.draw(st.sampled_from(roles), label="role")
            reason = "carrier scanned the parcel" if override_ok else None
        else:
            role = data.draw(st.sampled_from(ROLES), label="role")
            override = data.draw(st.integers(0, 9), label="override")
            reason = None if override < 7 else "carrier scanned the parcel" if override < 9 else " "
            override_ok = reason is not None and role in OVERRIDE_ROLES and bool(reason.strip())

        def room(ret: ModelReturn, line: ModelLine) -> int:
            if covered:
                return self._room(ret, line, override_ok)
            return line.q.approved - line.q.refunded

        ret = self._pick(
            data,
            returns,
            lambda r: r.status in REFUNDABLE_STATES and any(room(r, ln) > 0 for ln in r.lines),
            "return",
        )
        lines = [ln for ln in ret.lines if room(ret, ln) > 0] or ret.lines
        subset = data.draw(
            st.lists(st.sampled_from(lines), min_size=1, unique_by=lambda ln: ln.id),
            label="lines",
        )
        if covered and data.draw(st.booleans(), label="everything covered"):
            # All that may go out now: a received return is then refunded.
            items = [(ln, room(ret, ln)) for ln in lines if room(ret, ln) > 0] or [(lines[0], 1)]
        elif covered:
            items = [
                (ln, data.draw(st.integers(1, max(room(ret, ln), 1)), label="qty")) for ln in subset
            ]
        else:
            # One unit more than may ever go out is in range: it must always be refused.
            items = [(ln, self._qty(data, room(ret, ln), "qty")) for ln in subset]
            others = [ln for r in returns if r is not ret for ln in r.lines]
            if others and data.draw(st.integers(0, 19), label="foreign line") == 19:
                items.append((data.draw(st.sampled_from(others), label="foreign"), 1))
        body: dict[str, Any] = {
            "lines": [{"return_line_id": ln.id, "quantity": q} for ln, q in items],
            "reason": data.draw(st.sampled_from(["", "changed mind"]), label="reason"),
        }
        for line in body["lines"]:
            if data.draw(st.integers(0, 7), label="opened: charge the fee") == 7:
                line["charge_restocking_fee"] = True
        keep = self._keep_percent(data, ret)
        if keep is not None:
            body["keep_percent"] = keep
        if reason is not None:
            body["override_reason"] = reason
        hold = data.draw(st.booleans(), label="grant only")
        if hold:
            body["send"] = False
        # A key whose request was refused made nothing: it may be used again, for anything.
        key = self._next("key")
        if self.refused_keys and data.draw(st.integers(0, 4), label="refused key again") == 4:
            key = data.draw(st.sampled_from(self.refused_keys), label="refused key")
        expected = self._predict(ret, items, role, body)
        order = self._order_of(ret)
        coverage = {
            "return": ret.status.value,
            "watchlisted": self.watchlisted[order.buyer_id],
            "terms": self._terms(ret),
            "high value": self._high_value(ret),
            "offer": ret.offer,
            "lines": [asdict(ln.q) for ln, _ in items],
        }
        r = self._post(role, f"/returns/{ret.id}/refunds", body, key=key)
        offer = ret.accepted_offer
        how = "".join(
            [
                f" ({offer.kind} {offer.percent or offer.amount or ''})".replace(" )", ")")
                if offer is not None
                else "",
                " keep" if keep is not None else "",
                " fee" if any(ln.get("charge_restocking_fee") for ln in body["lines"]) else "",
                " override" if reason is not None else "",
            ]
        )
        self._check(
            r,
            expected,
            f"refund as {role} on {ret.status.value}{how}{' (covered)' if covered else ''}",
        )
        if expected.status != 201:
            if key not in self.refused_keys:
                self.refused_keys.append(key)
            return multiple()
        if key in self.refused_keys:
            self.refused_keys.remove(key)
        out = r.json()
        assert out["amount"] == money(expected.amount, order.currency), (out, expected)
        assert out["status"] == ("granted" if hold else "pending")
        refund = ModelRefund(
            out["id"],
            key,
            ret.id,
            ret.order_id,
            body,
            out["status"],
            expected.amount,
            {ln.id: q for ln, q in items},
            reason is not None,
            coverage,
            parts=expected.parts,
        )
        self.refunds[refund.id] = refund
        self.by_key[key] = refund.id
        for ln, q in items:
            ln.q = replace(ln.q, refunded=ln.q.refunded + q)
        if not hold:
            self._sent(refund)
        return multiple(key)

    @staticmethod
    def _keep_percent(data: st.DataObject, ret: ModelReturn) -> str | None:
        """Mostly the percent the buyer accepted to keep the item for (where they did),
        else mostly none (in full); now and then another one."""
        offer = ret.accepted_offer
        agreed = offer.percent if offer is not None else None
        choice = data.draw(st.integers(0, 9), label="keep percent")
        if agreed is not None and choice < 6:
            return agreed
        if choice < 8:
            return None
        return data.draw(st.sampled_from(["50", "100", "33.33", "0.01"]), label="keep percent")

    def _sent(self, refund: ModelRefund) -> None:
        refund.events.append("refund.sent")
        ret = self.returns[refund.return_id]
        # Lost or disputed: refunded at once; received: once every unit is settled.
        settled = all(
            ln.q.refunded + ln.q.inspected - ln.q.passed >= ln.q.approved for ln in ret.lines
        )
        if ret.status in SETTLED_AT_ONCE or (ret.status in (S.RECEIVED, S.INSPECTED) and settled):
            ret.refunded_from, ret.status = ret.status, S.REFUNDED

    @rule(key=keys, data=st.data())
    def replay(self, key: str, data: st.DataObject) -> None:
        """The same key again: the same request gets the same refund (200), another
        request is refused (422), whoever sends it and whatever happened since."""
        refund = self.refunds[self.by_key[key]]
        body: dict[str, Any] = dict(refund.body)
        return_id = refund.return_id
        change = data.draw(
            st.sampled_from(["same", "explicit defaults", "reason", "quantity", "send", "return"]),
            label="change",
        )
        if change == "explicit defaults":
            defaults: dict[str, Any] = {"send": True, "reason": "", "provider": None}
            body = defaults | {"keep_percent": None} | body
            body["lines"] = [{"charge_restocking_fee": False} | ln for ln in body["lines"]]
        elif change == "reason":
            body["reason"] = body["reason"] + " (again)"
        elif change == "quantity":
            first = body["lines"][0]
            body["lines"] = [first | {"quantity": first["quantity"] + 1}, *body["lines"][1:]]
        elif change == "send":
            if "send" in body:
                del body["send"]
            else:
                body["send"] = False
        elif change == "return":
            others = [r for r in self.returns if r != return_id]
            if not others:
                change = "same"
            else:
                return_id = data.draw(st.sampled_from(others), label="other return")
        role = data.draw(st.sampled_from(ROLES), label="role")
        r = self._post(role, f"/returns/{return_id}/refunds", body, key=key)
        if change in ("same", "explicit defaults"):
            self._check(r, Expected(200), "replay")
            out = r.json()
            assert out["id"] == refund.id
            assert out["status"] == refund.status
            assert out["amount"] == money(refund.amount, self.order_model[refund.order_id].currency)
        else:
            self._check(r, Expected(422, "idempotency_key_reused"), f"replay ({change})")

    def _refunds_where(self, status: str) -> bool:
        return any(r.status == status for r in self.refunds.values())

    def _pick_refund(self, data: st.DataObject, status: str) -> ModelRefund:
        return self._pick(data, list(self.refunds.values()), lambda r: r.status == status, "refund")

    @precondition(lambda self: self._refunds_where("pending"))
    @rule(data=st.data(), paid=st.booleans())
    def settle(self, data: st.DataObject, paid: bool) -> None:
        """Finance records the manual refund as paid, or as failed (units freed)."""
        refund = self._pick_refund(data, "pending")
        role = data.draw(st.sampled_from(["finance", "admin", "agent"]), label="role")
        body = {"reference": "SC-1"} if paid else {"failure": "card expired"}
        if role not in SETTLE_ROLES:
            expected = Expected(403, "forbidden")
        elif refund.status != "pending":
            expected = Expected(409, "refund_state")
        else:
            expected = Expected(200)
        r = self._post(role, f"/refunds/{refund.id}/settle", body)
        self._check(r, expected, f"settle {refund.status} as {role}")
        if expected.status != 200:
            return
        refund.status = "succeeded" if paid else "failed"
        refund.events.append(f"refund.{refund.status}")
        assert r.json()["status"] == refund.status
        if not paid:
            self._free(refund)

    @precondition(lambda self: self._refunds_where("granted"))
    @rule(data=st.data(), send=st.booleans())
    def send_or_cancel(self, data: st.DataObject, send: bool) -> None:
        """A granted refund is sent by finance, or withdrawn (units freed)."""
        refund = self._pick_refund(data, "granted")
        if send:
            role = data.draw(st.sampled_from(["finance", "admin", "agent"]), label="role")
            if role not in SETTLE_ROLES:
                expected = Expected(403, "forbidden")
            elif refund.status != "granted":
                expected = Expected(409, "refund_state")
            elif self.watchlisted[self.order_model[refund.order_id].buyer_id] and any(
                self._line(line_id).q.refunded > self._line(line_id).q.passed
                for line_id in refund.units
            ):
                # Watchlisted since the grant: nothing goes out before a passed inspection.
                expected = Expected(409, "watchlisted_needs_inspection")
            else:
                expected = Expected(200)
            r = self._post(role, f"/refunds/{refund.id}/send")
        else:
            role = data.draw(st.sampled_from(ROLES), label="role")
            ok = refund.status == "granted"
            expected = Expected(200) if ok else Expected(409, "refund_state")
            r = self._post(role, f"/refunds/{refund.id}/cancel", {"reason": "granted by mistake"})
        self._check(r, expected, f"{'send' if send else 'cancel'} {refund.status} as {role}")
        if expected.status != 200:
            return
        refund.status = "pending" if send else "cancelled"
        assert r.json()["status"] == refund.status
        if send:
            self._sent(refund)
        else:
            refund.events.append("refund.cancelled")
            self._free(refund)

    # --- invariants, read from the database --------------------------------------------

    @invariant()
    def money_is_safe(self) -> None:
        if self.org_id is None:
            return
        org = self.org_id
        with self.db.session() as session:
            orders = {
                str(o.id): o
                for o in session.scalars(
                    select(Order)
                    .where(Order.organization_id == org)
                    .options(selectinload(Order.lines))
                )
            }
            returns = {
                str(r.id): r
                for r in session.scalars(
                    select(Return)
                    .where(Return.organization_id == org)
                    .options(selectinload(Return.lines))
                )
            }
            refunds = list(
                session.scalars(
                    select(Refund).where(Refund.organization_id == org).order_by(Refund.created_at)
                )
            )
            log = [
                (action, subject)
                for action, subject in session.execute(
                    select(Event.action, Event.subject_id)
                    .where(
                        Event.organization_id == org,
                        Event.subject_type.in_(["refund", "buyer"]),
                    )
                    .order_by(Event.seq)
                )
            ]
            self._check_tables(orders, returns, refunds, log)

    def _check_tables(
        self,
        orders: dict[str, Order],
        returns: dict[str, Return],
        refunds: list[Refund],
        log: list[tuple[str, str]],
    ) -> None:
        live = [r for r in refunds if r.status not in FREED]

        # 4. One row per key that got a 201: no more, no fewer, and the same ids.
        assert len(refunds) == len(self.by_key)
        assert {r.idempotency_key: str(r.id) for r in refunds} == self.by_key
        for row in refunds:
            m = self.refunds[str(row.id)]
            assert (row.status, row.amount_minor) == (m.status, m.amount), (row.status, m)

        # 1. Per order: what is out (or on its way) never exceeds what was captured,
        #    and always in the order's currency.
        spent: dict[str, int] = defaultdict(int)
        for row in refunds:
            order = orders[str(row.order_id)]
            assert row.currency == order.currency, (row.currency, order.currency)
            assert row.amount_minor == sum(p["total"] for p in row.lines) - (
                row.return_shipping_deduction_minor
            )
            if row.status not in FREED:
                spent[str(row.order_id)] += row.amount_minor
        for order_id, out in spent.items():
            assert out <= orders[order_id].captured_minor, (order_id, out)
        for order_id, order in orders.items():
            assert order.captured_minor == self.order_model[order_id].captured

        # Each refund's lines are lines of its own return, for the order lines they name,
        # and each is exactly what the model computed: every part of the amount, and the
        # unit positions it holds.
        assert set(returns) == set(self.returns)
        for row in refunds:
            own = {str(ln.id): str(ln.order_line_id) for ln in returns[str(row.return_id)].lines}
            model = self.refunds[str(row.id)]
            assert len(row.lines) == len(model.parts), (row.lines, model)
            for part in row.lines:
                assert own.get(part["return_line_id"]) == part["order_line_id"], (row.id, part)
                found = Part(
                    part["order_line_id"],
                    part["quantity"],
                    part["item"],
                    part["tax"],
                    part["discount"],
                    part["shipping"],
                    part["shipping_tax"],
                    part["restocking_fee"],
                    part["total"],
                    tuple(p for start, n in part["positions"] for p in range(start, start + n)),
                )
                expected = model.parts[part["return_line_id"]]
                assert found == expected, (found, expected, model, model.coverage)

        # 2. Units: a line's refunded count is exactly what its live refunds hold, never
        #    above the approved units; per order line never above the ordered units, and
        #    the amounts never above what was paid for the units refunded.
        held: dict[str, int] = defaultdict(int)
        for row in live:
            for part in row.lines:
                held[part["return_line_id"]] += part["quantity"]
        per_order_line: dict[str, int] = defaultdict(int)
        for ret in returns.values():
            model_ret = self.returns[str(ret.id)]
            assert ret.status == model_ret.status.value, (ret.status, model_ret)
            by_id = {str(ln.id): ln for ln in ret.lines}
            for line in model_ret.lines:
                db = by_id[line.id]
                actual = LineQuantities(
                    db.requested, db.approved, db.received, db.inspected, db.passed, db.refunded
                )
                assert actual == line.q, (actual, line.q)
                assert db.refunded == held[line.id], (line.id, db.refunded, held[line.id])
                assert 0 <= db.refunded <= db.approved, actual
                per_order_line[str(db.order_line_id)] += db.refunded
        parts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        positions: dict[str, list[int]] = defaultdict(list)
        for row in live:
            for part in row.lines:
                for name in ("item", "tax", "discount", "shipping", "shipping_tax", "total"):
                    parts[part["order_line_id"]][name] += part[name]
                for start, n in part["positions"]:
                    positions[part["order_line_id"]].extend(range(start, start + n))
        for order_id, order in orders.items():
            model_order = self.order_model[order_id]
            for ol in order.lines:
                line_id, units, n = str(ol.id), per_order_line[str(ol.id)], ol.quantity
                assert units <= n, (line_id, units, n)
                got = parts[line_id]
                price, tax, discount = ol.unit_price_minor, ol.tax_minor, ol.discount_minor
                ship = model_order.lines[line_id]
                # DESIGN 2: never more than the units refunded x the amount paid per unit
                # (a unit's share of the line's tax and outbound shipping rounded up, of
                # its discount rounded down).
                per_unit = (
                    price
                    + ceil_div(tax, n)
                    - discount // n
                    + ceil_div(ship.shipping, n)
                    + ceil_div(ship.shipping_tax, n)
                )
                assert got["item"] <= units * price, (line_id, got, units)
                assert got["total"] <= units * per_unit, (
                    f"order line {line_id}: {units}/{n} unit(s) refunded for {got['total']}, "
                    f"more than {units} x {per_unit} paid per unit",
                    self._history(line_id),
                )
                # Unit positions: each live refund holds its own positions of the line (a
                # freed refund gives its positions back), one per unit refunded.
                held_at = positions[line_id]
                assert len(held_at) == len(set(held_at)) == units, (line_id, held_at)
                assert all(0 <= p < n for p in held_at), (line_id, held_at)

        # 3. Without an override, no unit went out before it was received (unless the
        #    return was settled without the goods where the policy gives a returnless
        #    refund, or by an alternative the buyer accepted); while the buyer was on the
        #    watchlist (as the event log tells it), none went out before it passed
        #    inspection, nor for a high-value return or one the policy inspects first,
        #    override or not. An accepted coupon or replacement pays no cash, a keep-the-
        #    item offer at most its percent or its amount, unless overridden.
        watch: dict[str, bool] = defaultdict(bool)
        watched_at_grant: dict[str, bool] = {}
        for action, subject in log:
            if action == "refund.granted":
                row_order = self.order_model[self.refunds[subject].order_id]
                watched_at_grant[subject] = watch[row_order.buyer_id]
            elif action in ("buyer.watchlisted", "buyer.unwatchlisted"):
                watch[subject] = action == "buyer.watchlisted"
        plain: dict[str, int] = defaultdict(int)
        watched: dict[str, int] = defaultdict(int)
        units_out: dict[str, int] = defaultdict(int)
        for row in live:
            for part in row.lines:
                units_out[part["return_line_id"]] += part["quantity"]
                if row.override_reason is None:
                    plain[part["return_line_id"]] += part["quantity"]
                if watched_at_grant[str(row.id)]:
                    watched[part["return_line_id"]] += part["quantity"]
        for ret in returns.values():
            model_ret = self.returns[str(ret.id)]
            inspected_first = self._high_value(model_ret) or (
                model_ret.terms is not None and model_ret.terms.inspection
            )
            for ln in ret.lines:
                line_id = str(ln.id)
                if not self._before_receipt(model_ret):
                    assert plain[line_id] <= ln.received, (line_id, plain[line_id], ln.received)
                assert watched[line_id] <= ln.passed, (line_id, watched[line_id], ln.passed)
                if inspected_first:
                    assert units_out[line_id] <= ln.passed, (line_id, units_out[line_id], ln)
            offer = model_ret.accepted_offer
            if offer is None:
                continue
            mine = [row for row in live if str(row.return_id) == str(ret.id)]
            plain_rows = [row for row in mine if row.override_reason is None]
            if offer.kind != KEEP:
                assert not plain_rows, (offer, plain_rows)
            elif offer.percent is not None:
                points = basis_points(offer.percent)
                for row in plain_rows:
                    for part in row.lines:
                        full = _unit_price(orders, row, part) * part["quantity"]
                        assert part["item"] <= percent_of(full, points), (offer, part)
            elif offer.amount is not None and len(plain_rows) == len(mine):
                assert sum(row.amount_minor for row in mine) <= offer.amount, (offer, mine)

        # 5. Every change of a refund (granted, sent, paid, failed, cancelled) has its
        #    event, in order, and nothing else does.
        trail: dict[str, list[str]] = defaultdict(list)
        for action, subject in log:
            if action.startswith("refund."):
                trail[subject].append(action)
        assert set(trail) == {str(r.id) for r in refunds}
        for refund_id, actions in trail.items():
            assert actions == self.refunds[refund_id].events, (actions, self.refunds[refund_id])
        # The watchlist as the event log tells it is the watchlist the model keeps.
        for buyer_id, on in self.watchlisted.items():
            assert watch[buyer_id] is on, (buyer_id, on)

    def _history(self, order_line_id: str) -> list[str]:
        """The refunds of an order line, for a readable failure."""
        out = []
        for r in self.refunds.values():
            for line_id, qty in r.units.items():
                if self._line(line_id).order_line_id == order_line_id:
                    out.append(f"{r.key}: {qty} unit(s), {r.amount}, {r.status}, {r.coverage}")
        return out

    def teardown(self) -> None:
        if self.org_id is None:
            return
        with self.db.session() as session:
            report = audit.verify_chain(session, self.org_id)
        assert report.ok, report


def _everything(current: list[ModelLine]) -> list[LineQuantities]:
    """Every requested unit approved: a returnless resolution, an answered offer."""
    return [approve_line(ln.q, None, "q") for ln in current]


def _unit_price(orders: dict[str, Order], row: Refund, part: dict[str, Any]) -> int:
    """The unit price of the order line a refund's part is for, from the database."""
    order = orders[str(row.order_id)]
    return next(ol.unit_price_minor for ol in order.lines if str(ol.id) == part["order_line_id"])


def test_random_refund_sequences_keep_the_money_safe(db: Database, client: TestClient) -> None:
    class Machine(RefundMachine):
        database = db
        http = client

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=25,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )


# --- what the machine found, kept as plain tests ----------------------------------------


def _approved_and_received(api: Api, order: dict[str, Any], quantity: int) -> dict[str, Any]:
    ret: dict[str, Any] = api.open_return(order, quantity=quantity)
    line = ret["lines"][0]["id"]
    assert (
        api.post(f"/api/v1/returns/{ret['id']}/approve", {"note": "checked by hand"}).status_code
        == 200
    )
    r = api.post(
        f"/api/v1/returns/{ret['id']}/receive",
        {"lines": [{"return_line_id": line, "quantity": quantity}]},
    )
    assert r.status_code == 200, r.text
    return ret


def _grant(api: Api, ret: dict[str, Any], key: str, quantity: int, **extra: Any) -> Any:
    body = {"lines": [{"return_line_id": ret["lines"][0]["id"], "quantity": quantity}]} | extra
    return api.client.post(
        f"/api/v1/returns/{ret['id']}/refunds",
        json=body,
        headers=api.tenant.headers | {"Idempotency-Key": key},
    )


def test_reimporting_an_order_never_leaves_more_refunded_than_captured(
    api: Api, db: Database
) -> None:
    api.channel()
    order = api.order(quantity=2, price="10.00")  # captured 20.00 EUR
    ret = _approved_and_received(api, order, 2)
    assert _grant(api, ret, "all", 2).status_code == 201  # 20.00 EUR refunded
    # The channel sends the order again with less captured (e.g. a corrected import).
    r = api.post(
        "/api/v1/orders", order_body(quantity=2, price="10.00") | {"captured": money(500, "EUR")}
    )
    assert r.status_code == 409 and r.json()["code"] == "order_line_in_use", r.text
    assert r.json()["errors"] == [
        {"field": "captured", "message": "cannot drop below the 20.00 EUR already refunded"}
    ]
    cheaper = order_body(quantity=2, price="9.00") | {"captured": money(2000, "EUR")}
    r = api.post("/api/v1/orders", cheaper)
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "lines.0.unit_price"
    # Refused or accepted, the database must still keep invariant 1.
    with db.session() as session:
        captured = session.scalars(select(Order.captured_minor)).one()
        refunded = sum(r.amount_minor for r in session.scalars(select(Refund)))
    assert refunded <= captured, (refunded, captured)


def test_a_freed_refund_gives_its_own_share_back_to_the_next_one(api: Api) -> None:
    api.channel()
    # Two mugs at 10.00 EUR with 0.05 EUR tax for the line: the units carry 0.02 and
    # 0.03 of it. Shipping is captured too but never refunded here.
    body = order_body(quantity=2, price="10.00") | {
        "shipping": money(500, "EUR"),
        "captured": money(2505, "EUR"),
    }
    body["lines"][0]["tax"] = money(5, "EUR")
    r = api.post("/api/v1/orders", body)
    assert r.status_code == 201, r.text
    ret = _approved_and_received(api, r.json(), 2)
    first = _grant(api, ret, "first", 1, send=False)
    assert first.json()["amount"] == money(1002, "EUR")
    assert _grant(api, ret, "second", 1).json()["amount"] == money(1003, "EUR")
    cancelled = api.post(f"/api/v1/refunds/{first.json()['id']}/cancel", {"reason": "typo"})
    assert cancelled.status_code == 200, cancelled.text
    third = _grant(api, ret, "third", 1)
    assert third.status_code == 201, third.text
    # The unit left is the one worth 10.02: 20.05 for the line, as paid.
    assert third.json()["amount"] == money(1002, "EUR")


def test_a_grant_for_a_buyer_watchlisted_since_is_not_sent_before_inspection(
    api: Api, db: Database, client: TestClient, tenant: Tenant
) -> None:
    api.channel()
    order = api.order(quantity=1, price="19.99")
    ret = _approved_and_received(api, order, 1)  # received, not inspected
    grant = _grant(api, ret, "grant", 1, send=False)
    assert grant.status_code == 201, grant.text
    r = api.post(f"/api/v1/buyers/{order['buyer']['id']}/watchlist", {"reason": "fraud ring"})
    assert r.status_code == 200, r.text
    finance = Api(client, add_key(db, tenant, "finance"))
    sent = finance.post(f"/api/v1/refunds/{grant.json()['id']}/send")
    assert sent.status_code == 409, sent.text
    assert sent.json()["code"] == "watchlisted_needs_inspection"
    assert finance.get(f"/api/v1/refunds/{grant.json()['id']}").json()["status"] == "granted"
    line = ret["lines"][0]["id"]
    r = api.post(
        f"/api/v1/returns/{ret['id']}/inspections",
        {"lines": [{"return_line_id": line, "passed": 1, "failed": 0}]},
    )
    assert r.status_code == 200, r.text
    sent = finance.post(f"/api/v1/refunds/{grant.json()['id']}/send")
    assert sent.status_code == 200 and sent.json()["status"] == "pending", sent.text


def _delivered_days_ago(days: int, quantity: int = 1, price: str = "40.00") -> dict[str, Any]:
    now = datetime.now(UTC)
    return order_body(quantity=quantity, price=price) | {
        "ordered_at": (now - timedelta(days=days + 2)).isoformat(),
        "delivered_at": (now - timedelta(days=days)).isoformat(),
    }


def _accepted_offer(api: Api, price: str, offer: dict[str, Any]) -> dict[str, Any]:
    ret: dict[str, Any] = api.open_return(api.order(quantity=1, price=price))
    r = api.post(f"/api/v1/returns/{ret['id']}/offer", offer | {"note": "keep it"})
    assert r.status_code == 200, r.text
    r = api.post(f"/api/v1/returns/{ret['id']}/accept-offer")
    assert r.status_code == 200 and r.json()["status"] == "resolved", r.text
    return ret


def test_a_returnless_resolution_by_hand_is_not_paid_before_receipt_where_the_policy_gives_none(
    api: Api,
) -> None:
    # Once paid: the policy's returnless *setting* (every item under 15) was read as a
    # returnless refund it gives, also for an item worth bringing back.
    api.channel()  # no return label or handling cost: bringing an item back costs nothing
    r = api.post("/api/v1/orders", _delivered_days_ago(3, price="5.00"))
    assert r.status_code == 201, r.text
    ret = api.open_return(r.json())
    # The policy approves it (the goods are to come back), so returnless is against it.
    r = api.post(f"/api/v1/returns/{ret['id']}/resolve-returnless", {})
    assert r.status_code == 422 and r.json()["code"] == "override_reason_required", r.text
    r = api.post(f"/api/v1/returns/{ret['id']}/resolve-returnless", {"reason": "goodwill"})
    assert r.status_code == 200, r.text
    decision = api.get(f"/api/v1/returns/{ret['id']}/decision").json()
    assert decision["policy_outcome"] == "auto_approve", decision
    # No goods, and no returnless refund the policy gives: only with an override.
    r = _grant(api, ret, "returnless", 1)
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "refund_before_receipt_not_allowed"


def test_a_keep_percent_out_of_range_is_refused_on_an_accepted_offer(api: Api) -> None:
    # Once a server error (an unhandled ValueError): the offer's bound read it unchecked.
    api.channel()
    ret = _accepted_offer(api, "40.00", {"kind": "keep_partial_refund", "percent": "30"})
    for percent in ("150", "12.345"):
        r = _grant(api, ret, f"keep-{percent}", 1, keep_percent=percent)
        assert r.status_code == 422 and r.json()["code"] == "validation_error", r.text


def test_an_offer_percent_with_three_decimals_is_refused_when_made(api: Api) -> None:
    # Once accepted, then a server error when the buyer accepted it and at every refund.
    api.channel()
    ret = api.open_return(api.order(quantity=1, price="40.00"))
    offer = {"kind": "keep_partial_refund", "percent": "33.333", "note": "keep it"}
    r = api.post(f"/api/v1/returns/{ret['id']}/offer", offer)
    assert r.status_code == 422 and r.json()["code"] == "validation_error", r.text
    assert api.get(f"/api/v1/returns/{ret['id']}").json()["status"] == "requested"


def test_allowed_actions_never_offer_a_refund_that_would_pay_nothing(api: Api) -> None:
    # Once offered: `refunds` was listed when a unit could go out, whatever it was worth.
    api.channel()
    ret = _accepted_offer(api, "0.01", {"kind": "keep_partial_refund", "percent": "1"})
    r = _grant(api, ret, "nothing", 1, keep_percent="1")  # 1 % of 0.01 EUR
    assert r.status_code == 422 and r.json()["code"] == "validation_error", r.text
    assert "refunds" not in api.get(f"/api/v1/returns/{ret['id']}").json()["allowed_actions"]
