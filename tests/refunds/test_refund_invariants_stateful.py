"""Random refund sequences through the real HTTP API, checked against the money-safety
invariants (DESIGN.md 1-5) by reading the database after every step.

A Hypothesis state machine creates orders (1-3 lines, odd prices, tax, discounts,
shipping, sometimes a partial capture; EUR, JPY and KWD), opens returns and approves
them (fully, partly, or returnless), ships, receives and inspects them, puts buyers on
the watchlist and takes them off, and requests, replays, sends, settles and cancels
refunds as admin, finance and agent keys, with and without an override.

It keeps its own model of every line's quantities, every refund and every watchlist
flag, and predicts each answer exactly (status code and problem ``code``) from its own
reading of the rules: no refund beyond the approved units, none beyond the received ones
without a finance/admin override (unless the return was resolved returnless), none
beyond the passed ones for a watchlisted buyer, never more than is left of what was
captured, and the amount split per unit cumulatively. After every step it reads the
tables directly and checks the invariants, whatever the API said. Runs on SQLite and on
PostgreSQL.

Returns are opened with ``decide: false``, so no policy decision applies: receipt is
required, inspection is not (unless the buyer is watchlisted), no restocking fee, no
outbound shipping refunded, the manual provider, no four-eyes.

The bugs it found (or that showed up while building it) are kept at the end of the file
as strict xfail tests.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
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
ROLES = ("admin", "finance", "agent")
OVERRIDE_ROLES = frozenset({"admin", "finance"})  # may release money before the goods
SETTLE_ROLES = frozenset({"admin", "finance"})  # may send and settle refunds
FREED = frozenset({"failed", "cancelled"})  # refunds whose money and units are free again

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


# --- orders ------------------------------------------------------------------------------


@st.composite
def order_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """An order body (without its external id): odd prices, line tax and discounts,
    shipping, and sometimes less captured than the order is worth (a gift card)."""
    currency = draw(st.sampled_from(list(CURRENCIES)), label="currency")
    lines = []
    paid = 0
    for i in range(draw(st.integers(1, 3), label="lines")):
        qty = draw(st.integers(1, 4), label="qty")
        price = draw(st.integers(1, 20_000), label="unit price (minor)")
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
    shipping = draw(st.integers(0, 1_000), label="shipping (minor)")
    shipping_tax = draw(st.integers(0, shipping // 5), label="shipping tax (minor)")
    paid += shipping + shipping_tax
    short = draw(st.one_of(st.just(0), st.integers(0, paid)), label="not captured (minor)")
    return {
        "channel": f"shop-{currency.lower()}",
        "currency": currency,
        "ordered_at": "2026-10-01T10:00:00+00:00",
        "delivered_at": "2026-10-03T15:00:00+00:00",
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


@dataclass
class ModelOrder:
    id: str
    currency: str
    captured: int
    buyer_id: str
    lines: dict[str, ModelOrderLine]
    body: dict[str, Any]

    def __repr__(self) -> str:  # short, for Hypothesis' report of a failing sequence
        return f"<order {self.body['external_id']} {self.currency} captured={self.captured}>"


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
    decided: bool = False

    def __repr__(self) -> str:
        return f"<return {self.id[:8]} {self.status.value} {self.lines}>"

    def held(self, line: ModelLine) -> int:
        """Units of the order line this return line keeps from other returns."""
        if self.status in RELEASED:
            return 0
        if not self.decided and (self.status in UNDECIDED or self.status is S.DISPUTED):
            return line.q.requested
        return line.q.approved


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
    # Order line id: the unit positions of that line this refund holds (see _positions).
    positions: dict[str, list[int]] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"<refund {self.key} {self.status} {self.amount} {self.units}>"


@dataclass(frozen=True)
class Expected:
    status: int
    code: str | None = None
    amount: int = 0


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

    def _refunded_units(self, order_line_id: str) -> int:
        """Units of an order line in live refunds, over every return (cancelled ones too)."""
        return sum(
            line.q.refunded
            for ret in self.returns.values()
            for line in ret.lines
            if line.order_line_id == order_line_id
        )

    def _positions(self, order_line_id: str, units: int, qty: int) -> list[int] | None:
        """The unit positions a new refund of ``qty`` units takes: the lowest ones no live
        refund holds (a failed or cancelled refund gives its positions back); None when
        fewer are free."""
        held = {
            p
            for r in self.refunds.values()
            if r.status not in FREED
            for p in r.positions.get(order_line_id, [])
        }
        free = [p for p in range(units) if p not in held][:qty]
        return free if len(free) == qty else None

    def _spent(self, order_id: str) -> int:
        return sum(
            r.amount
            for r in self.refunds.values()
            if r.order_id == order_id and r.status not in FREED
        )

    def _line(self, return_line_id: str) -> ModelLine:
        for ret in self.returns.values():
            for line in ret.lines:
                if line.id == return_line_id:
                    return line
        raise KeyError(return_line_id)

    def _free(self, refund: ModelRefund) -> None:
        for line_id, qty in refund.units.items():
            line = self._line(line_id)
            line.q = replace(line.q, refunded=line.q.refunded - qty)

    def _transition(
        self,
        ret: ModelReturn,
        action: ReturnAction,
        role: str,
        path: str,
        body: Any,
        plan: Plan | None = None,
    ) -> bool:
        """Predict a return transition from the lifecycle table and the quantity rules,
        run it over HTTP, compare, and update the model; True when it was accepted."""
        expected = Expected(200)
        new_lines = [line.q for line in ret.lines]
        try:
            target = LIFECYCLE.next_status(ret.status, action)
        except IllegalTransition:
            expected, target = Expected(409, "illegal_transition"), ret.status
        else:
            live = any(
                r.return_id == ret.id and r.status not in FREED for r in self.refunds.values()
            )
            if action in (A.CANCEL, A.REJECT) and live:
                # Units with money granted or paid for them are never let go.
                expected = Expected(409, "return_has_refunds")
            else:
                try:
                    if plan is not None:
                        new_lines = plan(ret.lines)
                except QuantityError:
                    expected = Expected(422, "quantity_exceeded")
        r = self._post(role, f"/returns/{ret.id}{path}", body)
        self._check(r, expected, f"{action.value} on {ret.status.value}")
        if expected.status != 200:
            return False
        ret.status = target
        for line, q in zip(ret.lines, new_lines, strict=True):
            line.q = q
        if action in (A.APPROVE, A.RESOLVE_RETURNLESS):
            ret.decided = True
        assert r.json()["status"] == ret.status.value
        return True

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
        buyer_id = out["buyer"]["id"]
        self.watchlisted.setdefault(buyer_id, False)
        self.order_model[out["id"]] = ModelOrder(
            out["id"], currency, minor(body["captured"]), buyer_id, lines, body
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
        """Open a return (decide: false) and mostly decide it at once: approve all or
        some units, or resolve it returnless; now and then ask for too many units."""
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
        r = self._post(
            "agent",
            "/returns",
            {
                "order_id": order.id,
                "decide": False,
                "lines": [
                    {"order_line_id": i, "quantity": q, "reason_code": "changed_mind"}
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
        )
        self.returns[ret.id] = ret
        decision = data.draw(
            st.sampled_from(["approve", "approve some", "returnless", "undecided"]),
            label="decision",
        )
        if decision == "approve":
            self._approve(ret, None)
        elif decision == "approve some":
            some = {
                ln.id: data.draw(st.integers(0, ln.q.requested), label="approve qty")
                for ln in ret.lines
            }
            self._approve(ret, some)
        elif decision == "returnless":

            def everything(current: list[ModelLine]) -> list[LineQuantities]:
                return [approve_line(ln.q, None, "q") for ln in current]

            self._transition(
                ret, A.RESOLVE_RETURNLESS, "agent", "/resolve-returnless", {}, everything
            )

    def _approve(self, ret: ModelReturn, chosen: dict[str, int] | None) -> None:
        def plan(current: list[ModelLine]) -> list[LineQuantities]:
            new = [
                approve_line(ln.q, None if chosen is None else chosen[ln.id], "q") for ln in current
            ]
            if sum(q.approved for q in new) == 0:
                raise QuantityError("lines", "nothing approved")
            return new

        body: dict[str, Any] = {}
        if chosen is not None:
            body = {"lines": [{"return_line_id": i, "quantity": q} for i, q in chosen.items()]}
        self._transition(ret, A.APPROVE, "agent", "/approve", body, plan)

    def _returns_where(self, ok: Callable[[ModelReturn], bool]) -> bool:
        return any(ok(r) for r in self.returns.values())

    @staticmethod
    def _undecided(r: ModelReturn) -> bool:
        return r.status in UNDECIDED

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
    def approve_later(self, data: st.DataObject) -> None:
        ret = self._pick(data, list(self.returns.values()), self._undecided, "return")
        self._approve(ret, None)

    # What happens to a parcel outside the warehouse, and to the return around it.
    PARCEL_EVENTS = (
        (A.SHIP, "/shipments"),
        (A.SHIP, "/shipments"),
        (A.CANCEL, "/cancel"),
        (A.MARK_LOST, "/mark-lost"),
        (A.DISPUTE, "/dispute"),
        (A.CLOSE, "/close"),
    )

    @precondition(lambda self: self._returns_where(lambda r: r.status not in LIFECYCLE.terminal))
    @rule(data=st.data())
    def parcel_event(self, data: st.DataObject) -> None:
        """The buyer ships the parcel back or cancels the return (whatever was refunded
        already); the carrier loses it; a dispute is opened; the return is closed."""
        action, path = data.draw(st.sampled_from(self.PARCEL_EVENTS), label="event")
        ret = self._pick(data, list(self.returns.values()), self._allows(action), "return")
        body: dict[str, Any] = {"reason": "parcel"}
        if action is A.SHIP:
            body = {"carrier": "DHL", "tracking_number": self._next("track")}
        self._transition(ret, action, "agent", path, body)

    @precondition(lambda self: self._returns_where(self._receivable))
    @rule(data=st.data())
    def receive(self, data: st.DataObject) -> None:
        ret = self._pick(data, list(self.returns.values()), self._receivable, "return")
        subset = data.draw(
            st.lists(st.sampled_from(ret.lines), min_size=1, unique_by=lambda ln: ln.id),
            label="lines",
        )
        qty = {ln.id: self._qty(data, ln.q.approved - ln.q.received, "qty") for ln in subset}

        def plan(current: list[ModelLine]) -> list[LineQuantities]:
            return [receive_line(ln.q, qty[ln.id], "q") if ln.id in qty else ln.q for ln in current]

        body = {"lines": [{"return_line_id": i, "quantity": n} for i, n in qty.items()]}
        if self._transition(ret, A.RECEIVE, "admin", "/receive", body, plan) and data.draw(
            st.booleans(), label="inspect at once"
        ):
            self._inspect(ret, data)

    @precondition(lambda self: self._returns_where(self._inspectable))
    @rule(data=st.data())
    def inspect(self, data: st.DataObject) -> None:
        self._inspect(
            self._pick(data, list(self.returns.values()), self._inspectable, "return"), data
        )

    def _inspect(self, ret: ModelReturn, data: st.DataObject) -> None:
        subset = data.draw(
            st.lists(st.sampled_from(ret.lines), min_size=1, unique_by=lambda ln: ln.id),
            label="lines",
        )
        counts: dict[str, tuple[int, int]] = {}
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
        self._transition(ret, A.INSPECT, "admin", "/inspections", body, plan)

    @rule(data=st.data(), on=st.booleans())
    def watchlist(self, data: st.DataObject, on: bool) -> None:
        buyer_id = data.draw(st.sampled_from(list(self.watchlisted)), label="buyer")
        role = data.draw(st.sampled_from(["admin", "agent"]), label="role")
        path = f"/buyers/{buyer_id}/watchlist" + ("" if on else "/remove")
        r = self._post(role, path, {"reason": "chargebacks" if on else "cleared"})
        self._check(r, Expected(200), "watchlist" if on else "unwatchlist")
        assert r.json()["watchlisted"] is on
        self.watchlisted[buyer_id] = on

    # --- refunds -----------------------------------------------------------------------

    def _covered(self, ret: ModelReturn, line: ModelLine, override_ok: bool) -> int:
        """Units of the line the model says may be refunded in total (refunded included)."""
        if self.watchlisted[self._order_of(ret).buyer_id]:
            return line.q.passed
        # No policy decision (decide: false): receipt is required unless the return was
        # resolved returnless or a finance/admin overrides it with a written reason.
        if ret.status is S.RESOLVED or override_ok:
            return line.q.approved
        return line.q.received

    def _predict(
        self, ret: ModelReturn, items: list[tuple[ModelLine, int]], role: str, body: dict[str, Any]
    ) -> Expected:
        """The answer to a new refund request, from the model alone."""
        if ret.status not in REFUNDABLE_STATES:
            return Expected(409, "refund_state")
        if any(line not in ret.lines for line, _ in items):
            return Expected(422, "validation_error")
        order = self._order_of(ret)
        violations: list[tuple[int, str]] = []
        reason = body.get("override_reason")
        if reason is not None:
            if role not in OVERRIDE_ROLES:
                violations.append((422, "override_role_not_allowed"))
            if not reason.strip():
                violations.append((422, "override_reason_required"))
        override_ok = reason is not None and not violations
        watchlisted = self.watchlisted[order.buyer_id]
        for line, qty in items:
            wanted = line.q.refunded + qty
            if wanted > line.q.approved:
                violations.append((409, "exceeds_refundable_quantity"))
            elif watchlisted and wanted > line.q.passed:
                violations.append((409, "watchlisted_needs_inspection"))
            elif wanted > self._covered(ret, line, override_ok):
                violations.append((409, "refund_before_receipt_not_allowed"))
        if violations:
            return Expected(*violations[0])
        amount = 0
        for line, qty in items:
            ol = order.lines[line.order_line_id]
            n = ol.quantity
            positions = self._positions(ol.id, n, qty)
            if positions is None:
                # Units refunded for a cancelled return still count against the order line.
                return Expected(422, "validation_error")
            amount += sum(
                share(ol.unit_price * n, n, p, 1)
                + share(ol.tax, n, p, 1)
                - share(ol.discount, n, p, 1)
                for p in positions
            )
        if amount > max(order.captured - self._spent(order.id), 0):
            return Expected(409, "exceeds_captured")
        if amount <= 0:
            return Expected(422, "validation_error")
        return Expected(201, None, amount)

    @precondition(lambda self: bool(self.returns))
    @rule(target=keys, data=st.data())
    def request_refund(self, data: st.DataObject) -> MultipleResults[str]:
        """Any units of any return: as many as may still go out, or one more."""
        return self._refund(data, covered=False)

    @precondition(lambda self: bool(self.returns))
    @rule(target=keys, data=st.data())
    def refund_covered_units(self, data: st.DataObject) -> MultipleResults[str]:
        """Units the model says are covered (received, passed, or overridden): these
        mostly go out, so that refunds pile up and the money limits get tested."""
        return self._refund(data, covered=True)

    def _refund(self, data: st.DataObject, covered: bool) -> MultipleResults[str]:
        role = data.draw(st.sampled_from(ROLES), label="role")
        override = data.draw(st.integers(0, 9), label="override")
        reason = None if override < 7 else "carrier scanned the parcel" if override < 9 else " "
        override_ok = reason is not None and role in OVERRIDE_ROLES and bool(reason.strip())

        def room(ret: ModelReturn, line: ModelLine) -> int:
            if not covered:
                return line.q.approved - line.q.refunded
            return min(self._covered(ret, line, override_ok), line.q.approved) - line.q.refunded

        returns = list(self.returns.values())
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
        if covered:
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
            "lines": [asdict(ln.q) for ln, _ in items],
        }
        r = self._post(role, f"/returns/{ret.id}/refunds", body, key=key)
        self._check(r, expected, f"refund as {role} on {ret.status.value}")
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
        )
        order_lines = self._order_of(ret).lines
        for ln, q in items:
            taken = self._positions(ln.order_line_id, order_lines[ln.order_line_id].quantity, q)
            assert taken is not None
            refund.positions[ln.order_line_id] = taken
        self.refunds[refund.id] = refund
        self.by_key[key] = refund.id
        for ln, q in items:
            ln.q = replace(ln.q, refunded=ln.q.refunded + q)
        if not hold:
            self._sent(refund)
        return multiple(key)

    def _sent(self, refund: ModelRefund) -> None:
        refund.events.append("refund.sent")
        ret = self.returns[refund.return_id]
        # Lost or disputed: refunded at once; received: once every unit is settled.
        settled = all(
            ln.q.refunded + ln.q.inspected - ln.q.passed >= ln.q.approved for ln in ret.lines
        )
        if ret.status in (S.LOST, S.DISPUTED) or (
            ret.status in (S.RECEIVED, S.INSPECTED) and settled
        ):
            ret.status = S.REFUNDED

    @rule(key=keys, data=st.data())
    def replay(self, key: str, data: st.DataObject) -> None:
        """The same key again: the same request gets the same refund (200), another
        request is refused (422), whoever sends it and whatever happened since."""
        refund = self.refunds[self.by_key[key]]
        body = dict(refund.body)
        return_id = refund.return_id
        change = data.draw(
            st.sampled_from(["same", "explicit defaults", "reason", "quantity", "send", "return"]),
            label="change",
        )
        if change == "explicit defaults":
            body = {"send": True, "reason": "", "provider": None, "keep_percent": None} | body
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

        # Each refund's lines are lines of its own return, for the order lines they name.
        assert set(returns) == set(self.returns)
        for row in refunds:
            own = {str(ln.id): str(ln.order_line_id) for ln in returns[str(row.return_id)].lines}
            for part in row.lines:
                assert own.get(part["return_line_id"]) == part["order_line_id"], (row.id, part)

        # 2. Units: a line's refunded count is exactly what its live refunds hold, never
        #    above the approved units; per order line never above the ordered units, and
        #    the amounts never above what was paid for the units refunded.
        held: dict[str, int] = defaultdict(int)
        for row in live:
            for part in row.lines:
                held[part["return_line_id"]] += part["quantity"]
        per_order_line: dict[str, int] = defaultdict(int)
        for ret in returns.values():
            model = self.returns[str(ret.id)]
            assert ret.status == model.status.value, (ret.status, model.status)
            by_id = {str(ln.id): ln for ln in ret.lines}
            for line in model.lines:
                db = by_id[line.id]
                actual = LineQuantities(
                    db.requested, db.approved, db.received, db.inspected, db.passed, db.refunded
                )
                assert actual == line.q, (actual, line.q)
                assert db.refunded == held[line.id], (line.id, db.refunded, held[line.id])
                assert 0 <= db.refunded <= db.approved, actual
                per_order_line[str(db.order_line_id)] += db.refunded
        parts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for row in live:
            for part in row.lines:
                for name in ("item", "tax", "discount", "restocking_fee", "total"):
                    parts[part["order_line_id"]][name] += part[name]
        for order in orders.values():
            for ol in order.lines:
                line_id, units, n = str(ol.id), per_order_line[str(ol.id)], ol.quantity
                assert units <= n, (line_id, units, n)
                got = parts[line_id]
                price, tax, discount = ol.unit_price_minor, ol.tax_minor, ol.discount_minor
                # DESIGN 2: never more than the units refunded x the amount paid per unit
                # (a unit's share of the line's tax rounded up, of its discount rounded down).
                per_unit = price + ceil_div(tax, n) - discount // n
                assert got["item"] <= units * price, (line_id, got, units)
                assert got["total"] <= units * per_unit, (
                    f"order line {line_id}: {units}/{n} unit(s) refunded for {got['total']}, "
                    f"more than {units} x {per_unit} paid per unit",
                    self._history(line_id),
                )
                # Unit positions: each live refund carries the fixed shares of the unit
                # positions it holds (a freed refund gives its positions back), so all the
                # units of a line give back exactly what was paid, in any order.
                positions = [
                    p
                    for r in self.refunds.values()
                    if r.status not in FREED
                    for p in r.positions.get(line_id, [])
                ]
                assert len(positions) == len(set(positions)) == units, (line_id, positions)
                exact = sum(
                    price + share(tax, n, p, 1) - share(discount, n, p, 1) for p in positions
                )
                assert got["total"] == exact, (line_id, got, exact, self._history(line_id))

        # 3. Without an override, no unit went out before it was received (unless the
        #    return was resolved returnless); while the buyer was on the watchlist (as the
        #    event log tells it), none went out before it passed inspection.
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
        for row in live:
            for part in row.lines:
                if row.override_reason is None:
                    plain[part["return_line_id"]] += part["quantity"]
                if watched_at_grant[str(row.id)]:
                    watched[part["return_line_id"]] += part["quantity"]
        for ret in returns.values():
            for ln in ret.lines:
                if ret.status != S.RESOLVED.value:
                    assert plain[str(ln.id)] <= ln.received, (ln.id, plain[str(ln.id)], ln.received)
                assert watched[str(ln.id)] <= ln.passed, (ln.id, watched[str(ln.id)], ln.passed)

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
    assert api.post(f"/api/v1/returns/{ret['id']}/approve", {}).status_code == 200
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
