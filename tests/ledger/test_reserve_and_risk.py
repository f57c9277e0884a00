"""The return-risk reserve and money-at-risk, against numbers worked out by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from returnguard.kit.db import Database
from tests.conftest import Api
from tests.ledger.conftest import money, noon, ok, pay_refund, walk_return

LEDGER = "/api/v1/ledger"
RESERVE = "/api/v1/reports/reserve"
AT_RISK = "/api/v1/reports/money-at-risk"
AS_OF = "2026-11-20"


def order_on(api: Api, ext: str, day: str, quantity: int, sku: str = "TENT") -> Any:
    body: dict[str, Any] = {
        "ordered_at": f"{day}T10:00:00+00:00",
        "delivered_at": f"{day}T18:00:00+00:00",
        "lines": [
            {
                "external_id": "item-1",
                "sku": sku,
                "title": sku.title(),
                "quantity": quantity,
                "unit_price": money("50.00"),
            }
        ],
    }
    return api.order(ext, quantity=quantity, price="50.00", **body)


def book(api: Api, ret: dict[str, Any], kind: str, amount: str, day: str = "2026-10-10") -> None:
    ok(
        api.post(
            LEDGER,
            {"kind": kind, "amount": money(amount), "return_id": ret["id"], "occurred_on": day},
        ),
        201,
    )


@pytest.fixture
def tents(api: Api, db: Database) -> None:
    """200 TENT units sold in the 180 days up to 20 Nov 2026, 50 of them in the last 30;
    20 units returned, whose ledger sums to -690.00 EUR."""
    api.channel()
    order_on(api, "A", "2026-11-15", 50)  # in the last 30 days
    b = order_on(api, "B", "2026-07-01", 50)
    order_on(api, "C", "2026-08-15", 50)
    d = order_on(api, "D", "2026-10-01", 50)
    old = order_on(api, "OLD", "2026-05-01", 50)  # before the 180 days: not counted

    returned = api.open_return(d, quantity=20)
    walk_return(api, returned, [("approve", {"note": "checked by hand"})])
    # Refund of 20 x 50.00 = 1000.00 less a 100.00 restocking fee: -1000.00 + 100.00.
    pay_refund(
        db,
        api.tenant.organization_id,
        returned,
        [{"line": 0, "quantity": 20, "item": 100000, "fee": 10000}],
        settled_at=noon(date(2026, 10, 10)),
    )
    book(api, returned, "handling_fee", "60.00")
    book(api, returned, "return_label", "130.00")
    book(api, returned, "residual_value", "400.00")
    # Ledger: -1000.00 + 100.00 - 60.00 - 130.00 + 400.00 = -690.00 -> 34.50 per unit.
    book(api, returned, "other_cost", "99.00", day="2026-11-25")  # after as_of: left out

    cancelled = api.open_return(b, quantity=5)
    walk_return(api, cancelled, [("cancel", {"reason": "changed mind again"})])
    too_old = api.open_return(old, quantity=10)
    walk_return(api, too_old, [("approve", {"note": "checked by hand"})])
    book(api, too_old, "other_cost", "1000.00")


def test_reserve_per_sku_by_hand(api: Api, tents: None) -> None:
    body = ok(api.get(RESERVE, params={"as_of": AS_OF}))
    assert body["currency"] == "EUR"
    assert (body["lookback_days"], body["hold_days"]) == (180, 30)
    [row] = body["rows"]
    assert row["sku"] == "TENT"
    assert (row["units_sold"], row["units_returned"]) == (200, 20)
    assert row["return_rate"] == "0.100000"
    # Wilson, k = 20, n = 200, z = 1.96 (see tests/unit/ledger): 0.065670 .. 0.149407
    assert (row["rate_low"], row["rate_high"]) == ("0.065670", "0.149407")
    # 690.00 / 20 = 34.50 lost per returned unit.
    assert row["loss_per_return"] == money("34.50")
    # 0.149406863563086 x 34.50 = 5.1545 -> 5.15 per unit sold.
    assert row["reserve_per_unit"] == money("5.15")
    # Units sold 22 Oct - 20 Nov: 50 -> hold 50 x 5.15 = 257.50.
    assert row["units_sold_hold"] == 50
    assert row["reserve"] == money("257.50")
    assert body["total_reserve"] == money("257.50")


def test_a_longer_hold_window_holds_more(api: Api, tents: None) -> None:
    body = ok(api.get(RESERVE, params={"as_of": AS_OF, "hold_days": 90}))
    [row] = body["rows"]
    # 23 Aug - 20 Nov: orders of 1 Oct and 15 Nov -> 100 units x 5.15 = 515.00.
    assert row["units_sold_hold"] == 100
    assert row["reserve"] == money("515.00")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"hold_days": 200}, "hold_days"),
        ({"lookback_days": 0}, "lookback_days"),
        ({"as_of": "yesterday"}, "as_of"),
    ],
)
def test_bad_reserve_parameters_name_the_field(
    api: Api, params: dict[str, Any], field: str
) -> None:
    r = api.get(RESERVE, params=params)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == field


@pytest.fixture
def paid_refunds(api: Api, db: Database) -> date:
    """Refunds paid 3, 20, 90 and 10 days ago in different states of receipt."""
    as_of = datetime.now(UTC).date()
    org = api.tenant.organization_id
    api.channel()

    def paid(ext: str, quantity: int, days_ago: int) -> None:
        order = api.order(ext, quantity=2, price="45.00")
        ret = api.open_return(order, quantity=quantity)
        walk_return(api, ret, [("approve", {"note": "checked by hand"})])
        pay_refund(
            db,
            org,
            ret,
            [{"line": 0, "quantity": quantity, "item": 4500 * quantity}],
            settled_at=noon(as_of - timedelta(days=days_ago)),
        )

    # 1: paid 3 days ago, parcel not here yet -> 45.00 not received, 0-7 days.
    paid("R1", 1, 3)
    # 3: paid 90 days ago, never came back -> 45.00 not received, >60 days.
    paid("R3", 1, 90)
    # 2: paid 20 days ago, both units here, one inspected -> 45.00 not inspected, 15-30.
    # 4: paid 10 days ago, both units received and inspected -> nothing at risk.
    for ext, days_ago, inspected in (("R2", 20, 1), ("R4", 10, 2)):
        order = api.order(ext, quantity=2, price="45.00")
        ret = api.open_return(order, quantity=2)
        line = ret["lines"][0]["id"]
        walk_return(
            api,
            ret,
            [
                ("approve", {"note": "checked by hand"}),
                ("receive", {"lines": [{"return_line_id": line, "quantity": 2}]}),
                (
                    "inspections",
                    {"lines": [{"return_line_id": line, "passed": inspected, "failed": 0}]},
                ),
            ],
        )
        pay_refund(
            db,
            org,
            ret,
            [{"line": 0, "quantity": 2, "item": 9000}],
            settled_at=noon(as_of - timedelta(days=days_ago)),
        )
    # A returnless refund: no goods are expected, so nothing is at risk.
    order = api.order("R5", quantity=2, price="45.00")
    ret = api.open_return(order, quantity=1)
    walk_return(api, ret, [("resolve-returnless", {"reason": "cheaper than the label"})])
    pay_refund(db, org, ret, [{"line": 0, "quantity": 1, "item": 4500}])
    return as_of


def test_money_at_risk_by_age(api: Api, paid_refunds: date) -> None:
    body = ok(api.get(AT_RISK, params={"as_of": paid_refunds.isoformat()}))
    assert body["currency"] == "EUR"
    buckets = {
        b["age"]: (
            b["refunds"],
            b["not_received_units"],
            b["not_received"]["amount"],
            b["not_inspected_units"],
            b["not_inspected"]["amount"],
        )
        for b in body["buckets"]
    }
    assert buckets == {
        "0-7": (1, 1, "45.00", 0, "0.00"),  # R1
        "8-14": (0, 0, "0.00", 0, "0.00"),  # R4 is received and inspected
        "15-30": (1, 0, "0.00", 1, "45.00"),  # R2: 2 received, 1 of 2 inspected
        "31-60": (0, 0, "0.00", 0, "0.00"),
        ">60": (1, 1, "45.00", 0, "0.00"),  # R3
    }
    assert body["total_not_received"] == money("90.00")
    assert body["total_not_inspected"] == money("45.00")
    assert [(i["age"], i["age_days"]) for i in body["items"]] == [
        (">60", 90),
        ("15-30", 20),
        ("0-7", 3),
    ]


def test_goods_arriving_take_money_off_the_risk(api: Api, paid_refunds: date) -> None:
    items = ok(api.get(AT_RISK))["items"]
    r1 = next(i for i in items if i["age_days"] == 3)
    ret = ok(api.get(f"/api/v1/returns/{r1['return_id']}"))
    line = ret["lines"][0]["id"]
    walk_return(api, ret, [("receive", {"lines": [{"return_line_id": line, "quantity": 1}]})])
    body = ok(api.get(AT_RISK))
    bucket = next(b for b in body["buckets"] if b["age"] == "0-7")
    # Received but not inspected yet: it moves to the second column.
    assert bucket["not_received"] == money("0.00")
    assert bucket["not_inspected"] == money("45.00")
