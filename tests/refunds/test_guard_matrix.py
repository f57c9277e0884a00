"""The refund guard, cell by cell: every row of the table in docs/refunds.md, over HTTP.

The table is the contract. This test reads it from the documentation, plays each row as
a seller would (a return decided by the policy, by an agent, returnless or through an
accepted offer; the buyer watchlisted or not; the goods not back, received or passed;
with or without a finance override) and checks the answer is the one the table states.
A row that the engine does not keep fails the build; so does a missing row.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from returnguard.kit.db import Database
from tests.conftest import Api, Tenant, add_key
from tests.policies.test_policies_api import _order, _setup

DOC = Path(__file__).resolve().parents[2] / "docs" / "refunds.md"
HEADING = "### The guard, cell by cell"
SKUS = {"5.00": "CHEAP", "40.00": "MUG", "300.00": "TENT"}

APPROVES = ("the policy approves", "an agent approves by hand")
GOODS_BACK = ("not received", "received", "passed inspection")
# Each way of deciding a return, with the items and goods states it can have.
PATHS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "the policy approves": (("40.00", "300.00"), GOODS_BACK),
    "an agent approves by hand": (("40.00", "300.00"), GOODS_BACK),
    "the policy resolves it returnless": (("5.00",), ("kept by the buyer",)),
    "an agent resolves it returnless by hand": (
        ("5.00", "40.00", "300.00"),
        ("kept by the buyer",),
    ),
    "the buyer accepted keeping it for 30 %": (("40.00", "300.00"), ("kept by the buyer",)),
    "the buyer accepted a coupon": (("40.00", "300.00"), ("kept by the buyer",)),
    "the buyer accepted a replacement": (("40.00", "300.00"), ("kept by the buyer",)),
}
OFFERS: dict[str, dict[str, Any]] = {
    "the buyer accepted keeping it for 30 %": {"kind": "keep_partial_refund", "percent": "30"},
    "the buyer accepted a coupon": {
        "kind": "coupon",
        "amount": {"amount": "10.00", "currency": "EUR"},
    },
    "the buyer accepted a replacement": {"kind": "replacement"},
}


@dataclass(frozen=True)
class Cell:
    path: str
    item: str
    buyer: str
    goods: str
    override: str
    asked: str
    status: int
    code: str | None

    @property
    def key(self) -> tuple[str, ...]:
        return (self.path, self.item, self.buyer, self.goods, self.override, self.asked)

    def __str__(self) -> str:
        return " | ".join(self.key)


def cells() -> list[Cell]:
    """The rows of the guard table in docs/refunds.md."""
    text = DOC.read_text(encoding="utf-8")
    lines = text[text.index(HEADING) :].splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("|"))
    rows = list(itertools.takewhile(lambda ln: ln.startswith("|"), lines[start:]))
    found = []
    for row in rows[1:]:  # the header row; the separator starts with "| ---"
        parts = [p.strip() for p in row.strip("|").split("|")]
        if parts[0].startswith("---"):
            continue
        answer = re.fullmatch(r"(\d{3})(?: `([a-z_]+)`)?", parts[6])
        assert answer, f"unreadable answer in docs/refunds.md: {row}"
        path, item, buyer, goods, override, asked = parts[:6]
        found.append(Cell(path, item, buyer, goods, override, asked, int(answer[1]), answer[2]))
    return found


def test_the_table_has_every_cell_once() -> None:
    expected = {
        (path, item, buyer, goods, override, asked)
        for path, (items, goods_states) in PATHS.items()
        for item, buyer, goods, override in itertools.product(
            items, ("ok", "watchlisted"), goods_states, ("—", "finance")
        )
        for asked in (("30 %", "in full") if path in OFFERS and "30 %" in path else ("in full",))
    }
    keys = [c.key for c in cells()]
    assert len(keys) == len(set(keys)), "a cell appears twice"
    assert set(keys) == expected


def _open(api: Api, cell: Cell, n: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """An order and its return of one unit, decided along the cell's path."""
    order = _order(api, f"matrix-{n}", buyer=f"matrix-buyer-{n}")
    line = next(ln for ln in order["lines"] if ln["sku"] == SKUS[cell.item])
    by_policy = cell.path.startswith("the policy")
    reason = "defective" if cell.path == "an agent approves by hand" else "changed_mind"
    r = api.post(
        "/api/v1/returns",
        {
            "order_id": order["id"],
            "decide": by_policy,
            "lines": [{"order_line_id": line["id"], "quantity": 1, "reason_code": reason}],
        },
    )
    assert r.status_code == 201, r.text
    ret = r.json()
    rid = ret["id"]
    if cell.path == "an agent approves by hand":
        r = api.post(f"/api/v1/returns/{rid}/approve", {"note": "photos seen in the buyer's email"})
    elif cell.path == "an agent resolves it returnless by hand":
        r = api.post(f"/api/v1/returns/{rid}/resolve-returnless", {"reason": "goodwill"})
    elif cell.path in OFFERS:
        offer = OFFERS[cell.path] | {"note": "instead of sending it back"}
        r = api.post(f"/api/v1/returns/{rid}/offer", offer)
        assert r.status_code == 200, r.text
        r = api.post(f"/api/v1/returns/{rid}/accept-offer", None)
    else:
        r = api.get(f"/api/v1/returns/{rid}")
    assert r.status_code == 200, r.text
    ret = r.json()
    expected = "approved" if cell.path in APPROVES else "resolved"
    assert ret["status"] == expected, f"{cell}: the return is {ret['status']}"
    return order, ret


def _play(api: Api, finance: Api, cell: Cell, n: int) -> tuple[int, str | None, Any]:
    order, ret = _open(api, cell, n)
    rid, line = ret["id"], ret["lines"][0]["id"]
    if cell.buyer == "watchlisted":
        r = api.post(
            f"/api/v1/buyers/{order['buyer']['id']}/watchlist", {"reason": "empty parcels"}
        )
        assert r.status_code == 200, r.text
    if cell.goods in ("received", "passed inspection"):
        r = api.post(
            f"/api/v1/returns/{rid}/receive", {"lines": [{"return_line_id": line, "quantity": 1}]}
        )
        assert r.status_code == 200, r.text
    if cell.goods == "passed inspection":
        r = api.post(
            f"/api/v1/returns/{rid}/inspections",
            {"lines": [{"return_line_id": line, "passed": 1, "failed": 0}]},
        )
        assert r.status_code == 200, r.text
    body: dict[str, Any] = {"lines": [{"return_line_id": line, "quantity": 1}]}
    if cell.asked == "30 %":
        body["keep_percent"] = "30"
    who = api
    if cell.override == "finance":
        who, body["override_reason"] = finance, "the carrier confirmed the parcel; goodwill"
    r = who.client.post(
        f"/api/v1/returns/{rid}/refunds",
        json=body,
        headers=who.tenant.headers | {"Idempotency-Key": f"matrix-{n}"},
    )
    payload = r.json()
    code = payload.get("code") if r.status_code >= 400 else None
    return r.status_code, code, payload


@pytest.mark.parametrize("path", list(PATHS))
def test_every_cell_of_the_guard_table_holds(
    path: str, api: Api, db: Database, client: TestClient, tenant: Tenant
) -> None:
    _setup(api)
    finance = Api(client, add_key(db, tenant, "finance"))
    wrong = []
    rows = [c for c in cells() if c.path == path]
    assert rows
    for n, cell in enumerate(rows):
        status, code, payload = _play(api, finance, cell, n)
        if (status, code) != (cell.status, cell.code):
            wrong.append(f"{cell}: expected {cell.status} {cell.code}, got {status} {payload}")
        elif status == 201 and cell.asked == "30 %":
            # 30 % of 40.00 EUR: the buyer keeps the item.
            assert payload["amount"] == {"amount": "12.00", "currency": "EUR"}, payload
        elif status == 409:
            # The refusal names the rule and the numbers behind it.
            [first, *_] = payload["violations"]
            assert first["code"] == cell.code and first["numbers"], payload
            if cell.code == "accepted_offer_no_cash":
                assert first["numbers"] == {"requested": 4000, "allowed": 0}, payload
    assert not wrong, "\n".join(wrong)
