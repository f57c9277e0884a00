"""The return policy page is true: the engine keeps every promise the page makes.

For buyers in the EU (DE, FR), the UK, the US and Japan, the public page of a channel is
read as data (`format=json`): each promise with the sentence that makes it. Every
sentence must be on the HTML and plain-text page in all seven languages, with the same
promises behind it; then each promise is tried on returns made through the HTTP API —
orders delivered N days ago, returns with each reason, refunds — on both sides of every
boundary the page states (the last day kept and the first day after; the value
threshold and one cent below it). A promise the engine does not keep fails here, with
the sentence, the day and what the engine did.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from markupsafe import escape
from PIL import Image

from returnguard.domain.reasons import ReasonClass, ReasonCode
from returnguard.kit.money import minor_digits
from returnguard.policies.page import Amount, Promise, PromiseKind
from returnguard.policies.page_messages import CATALOGUES
from tests.conftest import Api

# buyer country -> (currency, language of the shop's channel)
SHOPS = {
    "DE": ("EUR", "de"),
    "FR": ("EUR", "fr"),
    "GB": ("GBP", "en"),
    "US": ("USD", "en"),
    "JP": ("JPY", "ja"),
}
# What one return label costs the channel: above every returnless threshold of the
# policies below, so "worth less than bringing it back" holds for the cheap items.
LABEL_COST = {"EUR": Decimal("50.00"), "GBP": Decimal("50.00"), "USD": Decimal("50.00")}
LABEL_COST["JPY"] = Decimal(7500)


def _generous() -> dict[str, Any]:
    """A policy unlike the default: longer window, the seller pays, a flat fee for US
    buyers, an excluded category, everything inspected from a value, cheap items kept."""
    return {
        "name": "Generous",
        "defaults": {
            "return_window_days": 60,
            "return_shipping_paid_by": "seller",
            "refund_outbound_shipping": True,
        },
        "rules": [
            {
                "id": "hygiene",
                "when": {
                    "categories": ["underwear"],
                    "reason_classes": ["no_fault"],
                    "days_since_delivery": {"min": 15},
                },
                "then": {"eligible": False},
            },
            {
                "id": "flat-fee-us",
                "when": {"buyer_countries": ["US"], "reason_classes": ["no_fault"]},
                "then": {"restocking_fee": {"percent": "15", "applies_to": "always"}},
            },
            {
                "id": "faulty-45",
                "when": {"reason_classes": ["seller_fault"]},
                "then": {"return_window_days": 45},
            },
            {
                "id": "inspect-valuable",
                "when": {"item_value": {"min": "500"}},
                "then": {"inspection_before_refund": True, "shipping": {"tracked": True}},
            },
            {
                "id": "cheap",
                "when": {"item_value": {"max": "20"}},
                "then": {"returnless_refund": True},
            },
        ],
    }


CASES = [(country, "default") for country in SHOPS] + [("DE", "generous"), ("US", "generous")]


def _flat(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _jpeg(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (shade, 90, 160)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


# --------------------------------------------------------------------------- the shop


@dataclass
class Shop:
    """One channel of one tenant, and returns made on it by one buyer."""

    api: Api
    country: str
    currency: str
    language: str
    code: str = ""
    cost: Decimal = Decimal(0)
    orders: int = 0
    keys: int = 0
    decided: dict[tuple[int, Decimal, str | None, str | None], dict[ReasonCode, Any]] = field(
        default_factory=dict
    )

    def __post_init__(self) -> None:
        self.code = f"shop-{self.country.lower()}"
        self.cost = LABEL_COST[self.currency]
        r = self.api.post(
            "/api/v1/channels",
            {
                "code": self.code,
                "name": f"Nordlicht {self.country}",
                "marketplace": "shopify",
                "country": self.country,
                "currency": self.currency,
                "language": self.language,
                "return_label_cost": {"amount": str(self.cost), "currency": self.currency},
            },
        )
        assert r.status_code == 201, r.text

    @property
    def cent(self) -> Decimal:
        return Decimal(1).scaleb(-minor_digits(self.currency))

    def money(self, value: Decimal) -> str:
        return str(value.quantize(self.cent))

    def publish(self, document: dict[str, Any]) -> None:
        r = self.api.post("/api/v1/policies", {"name": document["name"], "document": document})
        assert r.status_code == 201, r.text
        policy = r.json()["id"]
        assert (
            self.api.post(f"/api/v1/policies/{policy}/publish", {"version": 1}).status_code == 200
        )
        r = self.api.post(f"/api/v1/channels/{self.code}/policy", {"policy_id": policy})
        assert r.status_code == 200, r.text

    def page(self, fmt: str, language: str | None = None) -> Any:
        params = {"buyer_country": self.country, "format": fmt}
        if language:
            params["language"] = language
        url = f"/policies/{self.api.tenant.organization_id}/{self.code}"
        r = self.api.client.get(url, params=params)  # no key: as a buyer opens it
        assert r.status_code == 200, r.text
        return r

    def order(
        self,
        day: int,
        items: list[tuple[ReasonCode, Decimal]],
        category: str | None = None,
        sku: str | None = None,
    ) -> dict[str, Any]:
        """An order delivered `day` days ago (by the UTC date, as decisions count), one
        line per item (the reason it will be returned for, what it cost)."""
        self.orders += 1
        delivered = datetime.combine(date.today() - timedelta(days=day), time(0, 0, 1), UTC)
        lines = [
            {
                "external_id": f"line-{i}",
                # Products are kept by SKU with the category first seen: one per category.
                "sku": sku or f"{category or 'general'}-{code.value}",
                "quantity": 1,
                "unit_price": {"amount": self.money(value), "currency": self.currency},
                # A category the pages never exclude: a rule on categories then knows it.
                "category": category or "general",
            }
            for i, (code, value) in enumerate(items)
        ]
        total = sum((value.quantize(self.cent) for _, value in items), Decimal(0))
        r = self.api.post(
            "/api/v1/orders",
            {
                "channel": self.code,
                "external_id": f"{self.code}-{self.orders:05d}",
                "currency": self.currency,
                "ordered_at": (delivered - timedelta(days=1)).isoformat(),
                "delivered_at": delivered.isoformat(),
                "buyer": {"external_id": "buyer-1", "country": self.country},
                "captured": {"amount": self.money(total), "currency": self.currency},
                "lines": lines,
            },
        )
        assert r.status_code == 201, r.text
        return dict(r.json())

    def request(
        self, order: dict[str, Any], items: list[tuple[ReasonCode, Decimal]]
    ) -> dict[str, Any]:
        """A return of every line of the order, each for its reason."""
        lines = {ln["external_id"]: ln["id"] for ln in order["lines"]}
        r = self.api.post(
            "/api/v1/returns",
            {
                "order_id": order["id"],
                "lines": [
                    {
                        "order_line_id": lines[f"line-{i}"],
                        "quantity": 1,
                        "reason_code": code.value,
                    }
                    for i, (code, _) in enumerate(items)
                ],
            },
        )
        assert r.status_code == 201, r.text
        return dict(r.json())

    def decision(self, ret: dict[str, Any]) -> dict[str, Any]:
        r = self.api.get(f"/api/v1/returns/{ret['id']}/decision")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def lines(
        self, day: int, value: Decimal, category: str | None = None, sku: str | None = None
    ) -> dict[ReasonCode, Any]:
        """What the engine decides for each reason code on a return made `day` days after
        delivery: one return with a line per code (each line is decided on its own)."""
        key = (day, value, category, sku)
        if key not in self.decided:
            items = [(code, value) for code in ReasonCode]
            ret = self.request(self.order(day, items, category, sku), items)
            by_line = {ln["id"]: ReasonCode(ln["reason_code"]) for ln in ret["lines"]}
            decision = self.decision(ret)
            assert decision["facts"]["days_since_delivery"] == day
            self.decided[key] = {by_line[ln["return_line_id"]]: ln for ln in decision["lines"]}
        return self.decided[key]

    def single(self, day: int, code: ReasonCode, *values: Decimal) -> dict[str, Any]:
        """A return of items worth `values`, all for `code`, with the evidence the policy
        asks for sent if it asks."""
        items = [(code, value) for value in values]
        ret = self.request(self.order(day, items), items)
        if ret["status"] == "awaiting_evidence":
            r = self.api.client.post(
                f"/api/v1/returns/{ret['id']}/evidence",
                files=[
                    ("files", (f"photo-{i}.jpg", _jpeg(40 * i + self.orders % 40), "image/jpeg"))
                    for i in range(1, 4)
                ],
                data={"text": "The seam came apart on first use."},
                headers=self.api.tenant.headers,
            )
            assert r.status_code == 201, r.text
            ret = dict(self.api.get(f"/api/v1/returns/{ret['id']}").json())
        return ret

    def receive(self, ret: dict[str, Any]) -> None:
        lines = [{"return_line_id": ln["id"], "quantity": 1} for ln in ret["lines"]]
        r = self.api.post(f"/api/v1/returns/{ret['id']}/receive", {"lines": lines})
        assert r.status_code == 200, r.text

    def inspect(self, ret: dict[str, Any]) -> None:
        lines = [{"return_line_id": ln["id"], "passed": 1, "failed": 0} for ln in ret["lines"]]
        r = self.api.post(f"/api/v1/returns/{ret['id']}/inspections", {"lines": lines})
        assert r.status_code == 200, r.text

    def refund(self, ret: dict[str, Any]) -> Any:
        """A refund of every unit of the return."""
        self.keys += 1
        return self.api.client.post(
            f"/api/v1/returns/{ret['id']}/refunds",
            json={"lines": [{"return_line_id": ln["id"], "quantity": 1} for ln in ret["lines"]]},
            headers=self.api.tenant.headers | {"Idempotency-Key": f"page-{self.keys}"},
        )


# ---------------------------------------------------------------- checking a promise


@dataclass
class Checker:
    shop: Shop
    promises: list[Promise]
    failures: list[str] = field(default_factory=list)

    # Items the page makes no value promise about: above every returnless threshold, below
    # every inspection threshold, and not in an excluded value band.
    @property
    def plain(self) -> Decimal:
        low = Decimal(0)
        high: Decimal | None = None
        for p in self.promises:
            if p.kind is PromiseKind.RETURNLESS:
                low = max(low, p.value_below.value if p.value_below else self.shop.cost)
            if p.kind in {PromiseKind.INSPECTION, PromiseKind.TRACKED_SHIPPING} and p.value_from:
                high = p.value_from.value if high is None else min(high, p.value_from.value)
        value = (low + (high if high is not None else low * 4 + 100)) / 2
        return value.quantize(self.shop.cent)

    def fail(self, p: Promise, message: str) -> None:
        self.failures.append(f"{p.kind.value} {p.text!r}: {message}")

    def amount(self, a: Amount | None) -> Decimal:
        assert a is None or a.currency == self.shop.currency, a
        return a.value if a is not None else self.plain

    @staticmethod
    def inside(p: Promise) -> list[int]:
        """Days the promise speaks of: its first and its last (or the day after the
        first when it has no end)."""
        return sorted({p.first_day, p.first_day + 1 if p.last_day is None else p.last_day})

    def item(self, p: Promise) -> tuple[Decimal, str | None, str | None]:
        value = self.plain
        if p.value_from is not None:
            value = self.amount(p.value_from)
        elif p.value_below is not None:
            value = self.amount(p.value_below) - self.shop.cent
        return value, (p.categories[0] if p.categories else None), (p.skus[0] if p.skus else None)

    def each_line(
        self, p: Promise, days: list[int], test: Callable[[dict[str, Any]], str | None]
    ) -> None:
        value, category, sku = self.item(p)
        for day in days:
            lines = self.shop.lines(day, value, category, sku)
            for code in p.reason_codes:
                problem = test(lines[code])
                if problem:
                    self.fail(p, f"day {day}, {code.value}, item worth {value}: {problem}")

    def accepted_codes(self, p: Promise) -> dict[ReasonClass, ReasonCode]:
        """One code per reason class the page gives a window, to make single returns with."""
        open_classes = {q.reason_class: q for q in self.promises if q.kind is PromiseKind.WINDOW}
        found: dict[ReasonClass, ReasonCode] = {}
        for code in p.reason_codes:
            if code.reason_class in open_classes and code.reason_class not in found:
                found[code.reason_class] = code
        return found

    # One method per kind; `check` fails for a kind without one.

    def window(self, p: Promise) -> None:
        assert p.last_day is not None, p
        self.each_line(p, self.inside(p), _not_rejected)
        self.each_line(p, [p.last_day + 1], _rejected)

    def no_returns(self, p: Promise) -> None:
        self.each_line(p, [0, 1], _rejected)

    def accepted(self, p: Promise) -> None:
        self.each_line(p, self.inside(p), _not_rejected)

    def excluded(self, p: Promise) -> None:
        self.each_line(p, self.inside(p), _rejected)

    def return_shipping(self, p: Promise) -> None:
        assert p.payer is not None
        wanted = p.payer.value
        self.each_line(
            p,
            self.inside(p),
            lambda ln: _differs(
                "return shipping paid by", wanted, _setting(ln, "return_shipping_paid_by")
            ),
        )

    def restocking_fee(self, p: Promise) -> None:
        fee = p.fee
        assert fee is not None

        def test(ln: dict[str, Any]) -> str | None:
            got = _setting(ln, "restocking_fee")
            if not got:
                return "no restocking fee"
            cap = Decimal(got["cap"]) if got.get("cap") is not None else None
            wanted = (fee.percent, fee.cap, "opened" if fee.opened_only else "always")
            actual = (Decimal(got["percent"]), cap, got["applies_to"])
            return _differs("restocking fee (percent, cap, applies to)", wanted, actual)

        self.each_line(p, self.inside(p), test)

    def no_restocking_fee(self, p: Promise) -> None:
        self.each_line(
            p,
            self.inside(p),
            lambda ln: _differs("restocking fee", None, _setting(ln, "restocking_fee")),
        )

    def outbound_shipping(self, p: Promise) -> None:
        self.each_line(
            p,
            self.inside(p),
            lambda ln: _differs(
                "outbound delivery refunded",
                p.refunded,
                bool(_setting(ln, "refund_outbound_shipping")),
            ),
        )

    def evidence(self, p: Promise) -> None:
        wanted = (p.photos, p.video, p.explanation)

        def test(ln: dict[str, Any]) -> str | None:
            ev = _setting(ln, "evidence") or {}
            asked = (ev.get("photos", 0), bool(ev.get("video")), bool(ev.get("explanation")))
            if ln["outcome"] != "request_evidence":
                return f"outcome {ln['outcome']}, not a request for evidence"
            return _differs("evidence asked (photos, video, explanation)", wanted, asked)

        self.each_line(p, self.inside(p), test)
        # Sending what the page asks for is enough.
        ret = self.shop.single(p.first_day, p.reason_codes[0], self.plain)
        if ret["status"] != "approved":
            self.fail(p, f"with the evidence sent the return is {ret['status']}, not approved")

    def inspection(self, p: Promise) -> None:
        threshold = self.amount(p.value_from)
        cent = self.shop.cent

        def items(total: Decimal) -> list[Decimal]:
            if not p.whole_return:
                return [total]
            # Two items, neither worth much on its own, together worth `total`.
            half = (total / 2).quantize(cent)
            return [half, total - half]

        for code in self.accepted_codes(p).values():
            at = items(threshold)
            ret = self.shop.single(1, code, *at)
            if ret["status"] != "approved":
                self.fail(p, f"{code.value} worth {at}: return {ret['status']}")
                continue
            self.shop.receive(ret)
            early = self.shop.refund(ret)
            if early.status_code != 409:
                self.fail(
                    p,
                    f"{code.value} worth {at}, received, not inspected: refund answered "
                    f"{early.status_code} {early.text[:200]}",
                )
            self.shop.inspect(ret)
            after = self.shop.refund(ret)
            if after.status_code != 201:
                self.fail(p, f"{code.value} inspected: refund answered {after.status_code}")
            if p.value_from is None:
                continue
            # One cent below the threshold the page states, no inspection is needed.
            below = items(threshold - cent)
            ret = self.shop.single(1, code, *below)
            if ret["status"] != "approved":
                self.fail(p, f"{code.value} worth {below}: return {ret['status']}")
                continue
            self.shop.receive(ret)
            r = self.shop.refund(ret)
            if r.status_code != 201:
                self.fail(
                    p,
                    f"{code.value} worth {below}, received: refund answered {r.status_code} "
                    f"{r.text[:200]}",
                )

    def tracked_shipping(self, p: Promise) -> None:
        def test(ln: dict[str, Any]) -> str | None:
            ship = _setting(ln, "shipping") or {}
            wanted = (True, True) if p.signature else (True, bool(ship.get("signature")))
            return _differs(
                "shipping (tracked, signature)",
                wanted,
                (bool(ship.get("tracked")), bool(ship.get("signature"))),
            )

        self.each_line(p, [1], test)

    def returnless(self, p: Promise) -> None:
        limit = self.amount(p.value_below) if p.value_below else self.shop.cost
        cheap = limit - self.shop.cent
        assert cheap < self.shop.cost, "the label must cost more than the cheap item"
        for code in self.accepted_codes(p).values():
            ret = self.shop.single(1, code, cheap)
            outcome = self.shop.decision(ret)["outcome"]
            if (outcome, ret["status"]) != ("returnless_refund", "resolved"):
                self.fail(p, f"{code.value} worth {cheap}: {outcome}, return {ret['status']}")
            if p.value_below is None:
                continue
            at = self.shop.single(1, code, limit)
            outcome = self.shop.decision(at)["outcome"]
            if outcome == "returnless_refund":
                self.fail(p, f"{code.value} worth {limit} (not under it): returnless refund")

    def check(self, p: Promise) -> None:
        getattr(self, p.kind.value)(p)


def _setting(line: dict[str, Any], name: str) -> Any:
    return line["settings"].get(name)


def _differs(what: str, wanted: Any, actual: Any) -> str | None:
    return None if wanted == actual else f"{what} is {actual!r}, the page says {wanted!r}"


def _rejected(line: dict[str, Any]) -> str | None:
    return None if line["outcome"] == "reject" else f"not rejected ({line['outcome']})"


def _not_rejected(line: dict[str, Any]) -> str | None:
    return f"rejected: {line['reasons']}" if line["outcome"] == "reject" else None


def test_every_kind_of_promise_has_a_check() -> None:
    assert all(callable(getattr(Checker, kind.value, None)) for kind in PromiseKind)


# ---------------------------------------------------------------------------- the test


@pytest.mark.parametrize(("country", "policy"), CASES)
def test_the_engine_keeps_every_promise_of_the_page(api: Api, country: str, policy: str) -> None:
    currency, language = SHOPS[country]
    shop = Shop(api, country, currency, language)
    if policy == "generous":
        shop.publish(_generous())

    # The page's own promises, as a buyer in that country gets the page.
    served = shop.page("json").json()
    assert served["language"] == language and served["buyer_country"] == country
    promises = [Promise.from_json(p) for p in served["promises"]]
    assert [p.to_json() for p in promises] == served["promises"]
    kinds = {p.kind for p in promises}
    assert {PromiseKind.WINDOW, PromiseKind.RETURN_SHIPPING, PromiseKind.OUTBOUND_SHIPPING} <= kinds

    # Every promise is on the page, in every language, and says the same thing in each.
    structure = [replace(p, text="") for p in promises]
    for other in CATALOGUES:
        data = shop.page("json", other).json()
        said = [Promise.from_json(p) for p in data["promises"]]
        assert [replace(p, text="") for p in said] == structure, other
        html, text = shop.page("html", other).text, _flat(shop.page("text", other).text)
        for p in said:
            assert str(escape(p.text)) in html, (other, p.text)
            assert _flat(p.text) in text, (other, p.text)

    checker = Checker(shop, promises)
    for p in promises:
        checker.check(p)
    assert checker.failures == [], "the engine does not keep:\n" + "\n".join(checker.failures)


def test_the_us_page_states_the_window_for_faulty_items_the_engine_applies(api: Api) -> None:
    """Issue 14: the US page implied no limit for defective items; the engine has 30 days."""
    shop = Shop(api, "US", "USD", "en")
    promises = [Promise.from_json(p) for p in shop.page("json").json()["promises"]]
    windows = {p.reason_class: p.last_day for p in promises if p.kind is PromiseKind.WINDOW}
    assert windows == {ReasonClass.NO_FAULT: 30, ReasonClass.SELLER_FAULT: 30}
    text = _flat(shop.page("text").text)
    assert (
        _flat("You can report damaged, defective or wrong items up to 30\xa0days after delivery.")
        in text
    )
    day_77 = shop.lines(77, Decimal("40.00"))[ReasonCode.DEFECTIVE]
    assert day_77["outcome"] == "reject"


def test_eu_and_uk_pages_state_the_legal_period_for_faulty_items(api: Api) -> None:
    de = Shop(api, "DE", "EUR", "de")
    windows = {
        p["reason_class"]: p["last_day"]
        for p in de.page("json").json()["promises"]
        if p["kind"] == "window"
    }
    assert windows == {"no_fault": 30, "seller_fault": 730}
    assert "bis zu 2\xa0Jahre nach der Lieferung" in de.page("html").text
    gb = Shop(api, "GB", "GBP", "en")
    windows = {
        p["reason_class"]: p["last_day"]
        for p in gb.page("json").json()["promises"]
        if p["kind"] == "window"
    }
    assert windows == {"no_fault": 30, "seller_fault": 30}
