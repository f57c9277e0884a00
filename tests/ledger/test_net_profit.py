"""The ledger as a finance user sees it: entries booked by the workflow, net profit by hand."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from openpyxl import load_workbook

from returnguard.auth.actor import Actor
from returnguard.kit.db import Database
from returnguard.ledger import service as ledger
from returnguard.refunds.models import Refund
from returnguard.returns import repository as returns_repo
from tests.conftest import Api
from tests.ledger.conftest import money, ok

LEDGER = "/api/v1/ledger"
NET = "/api/v1/reports/net-profit"
FIRST = "2026-10-01"


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def report(api: Api, group_by: str, **params: Any) -> Any:
    query = {"group_by": group_by, "from": FIRST, "to": today()} | params
    return ok(api.get(NET, params=query))


def amounts(figures: dict[str, Any]) -> dict[str, str]:
    keys = ("revenue", "cost_of_goods", "refunds", "return_costs", "recoveries", "net")
    return {k: figures[k]["amount"] for k in keys}


# revenue 105.00 (2 x 50.00 + 5.00 shipping), cost of goods 2 x 20.00 = 40.00,
# refunds 50.00 (45.00 paid + 5.00 fee), return costs 6.50 label + 3.00 handling = 9.50,
# recoveries 5.00 fee kept + 20.00 restocked at cost = 25.00.
# net = 105.00 - 40.00 - 50.00 - 9.50 + 25.00 = 30.50
# (check: the unit kept earned 50.00 - 20.00 = 30.00, shipping 5.00 and the fee 5.00 were
#  kept, the return cost 9.50: 30.00 + 5.00 + 5.00 - 9.50 = 30.50)
HAND_EXAMPLE = {
    "revenue": "105.00",
    "cost_of_goods": "40.00",
    "refunds": "50.00",
    "return_costs": "9.50",
    "recoveries": "25.00",
    "net": "30.50",
}


def test_the_workflow_books_every_money_effect_of_a_return(
    api: Api, hand_example: dict[str, Any]
) -> None:
    rid = hand_example["return"]["id"]
    page = ok(api.get(LEDGER, params={"return_id": rid}))
    booked = sorted((e["kind"], e["amount"]["amount"], e["sku"]) for e in page["items"])
    assert booked == [
        ("handling_fee", "-3.00", None),
        ("refund_paid", "-50.00", "MUG-BLUE"),
        ("residual_value", "20.00", "MUG-BLUE"),
        ("restocking_fee_kept", "5.00", "MUG-BLUE"),
        ("return_label", "-6.50", None),
    ]
    assert all(e["automatic"] for e in page["items"])
    assert all(e["amount"]["currency"] == "EUR" for e in page["items"])
    label = next(e for e in page["items"] if e["kind"] == "return_label")
    assert label["paid_by"] == "seller"
    residual = next(e for e in page["items"] if e["kind"] == "residual_value")
    assert residual["details"]["disposition"] == "restock"
    assert residual["details"]["unit_cost"] == money("20.00")
    # The money paid out: 45.00 = -(-50.00 + 5.00).
    refund_entries = [e for e in page["items"] if e["refund_id"] == str(hand_example["refund_id"])]
    assert sum(Decimal(e["amount"]["amount"]) for e in refund_entries) == Decimal("-45.00")
    # Every entry is an event on the return's timeline.
    events = ok(api.get(f"/api/v1/returns/{rid}/events"))
    assert [e["action"] for e in events].count("ledger.entry_booked") == 5


def test_replayed_hooks_book_nothing_twice(
    api: Api, db: Database, hand_example: dict[str, Any]
) -> None:
    org = api.tenant.organization_id
    actor = Actor.system(org, "replay")
    with db.session() as session:
        refund = session.get(Refund, hand_example["refund_id"])
        assert refund is not None
        ledger.record_refund_paid(session, actor, refund)
        ret = returns_repo.get(session, org, refund.return_id)
        assert ret is not None
        assert ledger.sync_return(session, actor, ret) == []
    assert len(ok(api.get(LEDGER))["items"]) == 5


def test_a_refund_that_is_not_paid_books_nothing(
    api: Api, db: Database, hand_example: dict[str, Any]
) -> None:
    with db.session() as session:
        refund = session.get(Refund, hand_example["refund_id"])
        assert refund is not None
        session.expunge(refund)
    refund.status = "pending"
    with db.session() as session, pytest.raises(ValueError, match="not succeeded"):
        ledger.record_refund_paid(session, Actor.system(api.tenant.organization_id), refund)


@pytest.mark.parametrize(
    ("group_by", "key"), [("order", None), ("sku", "MUG-BLUE"), ("channel", "amazon-de")]
)
def test_net_profit_of_the_hand_example(
    api: Api, hand_example: dict[str, Any], group_by: str, key: str | None
) -> None:
    body = report(api, group_by)
    assert body["currency"] == "EUR"
    assert body["from"] == FIRST and body["to"] == today()
    [row] = body["rows"]
    assert row["key"] == (key or hand_example["order"]["id"])
    assert amounts(row) == HAND_EXAMPLE
    assert amounts(body["total"]) == HAND_EXAMPLE
    assert body["missing_rates"] == [] and body["missing_costs"] == []


def test_net_profit_by_month_puts_revenue_in_the_order_month(
    api: Api, hand_example: dict[str, Any]
) -> None:
    body = report(api, "month")
    rows = {r["key"]: amounts(r) for r in body["rows"]}
    this_month = today()[:7]
    if this_month == "2026-10":  # pragma: no cover - only when the clock says October 2026
        assert rows == {"2026-10": HAND_EXAMPLE}
        return
    # October: the sale only (105.00 - 40.00 = 65.00); the return's month: 65.00 - 34.50.
    assert rows["2026-10"] == {
        "revenue": "105.00",
        "cost_of_goods": "40.00",
        "refunds": "0.00",
        "return_costs": "0.00",
        "recoveries": "0.00",
        "net": "65.00",
    }
    assert rows[this_month]["net"] == "-34.50"
    assert amounts(body["total"]) == HAND_EXAMPLE


def test_a_period_without_the_return_shows_only_the_sale(
    api: Api, hand_example: dict[str, Any]
) -> None:
    body = report(api, "order", to="2026-10-31")
    assert amounts(body["total"])["net"] == "65.00"
    assert amounts(body["total"])["refunds"] == "0.00"


def test_a_usd_order_is_reported_in_eur_at_the_stored_rate(api: Api) -> None:
    api.channel("shop-us", currency="USD", country="US")
    # 1 EUR = 1.25 USD on 1 October, so 1 USD = 0.80 EUR.
    ok(
        api.post("/api/v1/fx-rates", {"day": FIRST, "base": "EUR", "quote": "USD", "rate": "1.25"}),
        201,
    )
    order = api.order("US-1", channel="shop-us", currency="USD", quantity=1, price="100.00")
    entry = ok(
        api.post(
            LEDGER,
            {
                "kind": "duties_unrecovered",
                "amount": money("10.00", "USD"),
                "order_id": order["id"],
                "occurred_on": "2026-10-02",
                "memo": "US import duty on the replacement",
            },
        ),
        201,
    )
    assert entry["amount"] == money("-10.00", "USD")
    body = report(api, "channel", to="2026-10-31")
    [row] = body["rows"]
    # revenue 100.00 USD x 0.80 = 80.00 EUR; duties 10.00 USD (rate of 1 Oct, the latest
    # before 2 Oct) x 0.80 = 8.00 EUR; no unit cost known: net = 80.00 - 8.00 = 72.00.
    assert row["key"] == "shop-us"
    assert amounts(row) == {
        "revenue": "80.00",
        "cost_of_goods": "0.00",
        "refunds": "0.00",
        "return_costs": "8.00",
        "recoveries": "0.00",
        "net": "72.00",
    }
    assert body["missing_costs"] == [{"sku": "MUG-BLUE", "units": 1}]


def test_amounts_without_a_rate_are_listed_not_dropped(api: Api) -> None:
    api.channel("amazon-jp", currency="JPY", country="JP")
    order = api.order("JP-1", channel="amazon-jp", currency="JPY", quantity=1, price="3000")
    body = report(api, "order")
    assert body["rows"] == []
    assert body["missing_rates"] == [
        {
            "what": "order",
            "id": order["id"],
            "currency": "JPY",
            "day": FIRST,
            "amount": money("3000", "JPY"),
        }
    ]


def test_a_reversal_nets_out_in_every_report(api: Api, hand_example: dict[str, Any]) -> None:
    entries = ok(api.get(LEDGER, params={"kind": "return_label"}))["items"]
    [label] = entries
    reversal = ok(
        api.post(f"{LEDGER}/{label['id']}/reverse", {"reason": "label was free (carrier promo)"}),
        201,
    )
    assert reversal["amount"] == money("6.50")
    assert reversal["reverses_id"] == label["id"]
    assert reversal["kind"] == "return_label"
    assert reversal["occurred_on"] == label["occurred_on"]
    assert reversal["memo"] == "label was free (carrier promo)"
    for group_by in ("order", "sku", "channel", "month"):
        total = amounts(report(api, group_by)["total"])
        # 30.50 + 6.50: the label cost is gone, everything else stays.
        assert total["return_costs"] == "3.00", group_by
        assert total["net"] == "37.00", group_by


def test_every_grouping_adds_up_to_the_same_total(api: Api, hand_example: dict[str, Any]) -> None:
    # A second SKU on another order, and a claim reimbursed on the whole first order.
    order = api.order("302-0000002", quantity=3, price="10.00")
    ok(
        api.post(
            LEDGER,
            {
                "kind": "claim_reimbursed",
                "source": "marketplace",
                "amount": money("12.34"),
                "order_id": order["id"],
            },
        ),
        201,
    )
    totals = {g: amounts(report(api, g)["total"]) for g in ("order", "sku", "channel", "month")}
    assert len({tuple(t.items()) for t in totals.values()}) == 1
    # 30.50 + 30.00 (3 x 10.00; cost 3 x 20.00 = 60.00) + 12.34 = 30.50 - 30.00 + 12.34
    assert totals["order"]["net"] == "12.84"


def test_csv_and_xlsx_exports_carry_the_same_figures(
    api: Api, hand_example: dict[str, Any]
) -> None:
    params = {"group_by": "sku", "from": FIRST, "to": today()}
    r = api.get(NET, params=params | {"format": "csv"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == [
        "sku",
        "label",
        "revenue",
        "cost_of_goods",
        "refunds",
        "return_costs",
        "recoveries",
        "net",
        "currency",
    ]
    assert rows[1] == [
        "MUG-BLUE",
        "Blue mug",
        "105.00",
        "40.00",
        "50.00",
        "9.50",
        "25.00",
        "30.50",
        "EUR",
    ]
    assert rows[2][0] == "TOTAL" and rows[2][-2] == "30.50"

    r = api.get(NET, params=params | {"format": "xlsx"})
    assert r.status_code == 200, r.text
    sheet = load_workbook(io.BytesIO(r.content)).active
    values = [[c.value for c in row] for row in sheet.iter_rows()]
    assert values[0] == rows[0]
    assert values[1][:2] == ["MUG-BLUE", "Blue mug"]
    assert [Decimal(str(v)) for v in values[1][2:8]] == [Decimal(x) for x in rows[1][2:8]]
    assert isinstance(values[1][2], int | float)  # a number the spreadsheet can add up
    assert sheet.cell(row=2, column=3).number_format == "#,##0.00"
    assert values[2][0] == "TOTAL"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"group_by": "customer"}, "group_by"),
        ({"from": "2026-11-01", "to": "2026-10-01"}, "from"),
        ({"from": "2026-13-01"}, "from"),
        ({"format": "pdf"}, "format"),
    ],
)
def test_bad_report_parameters_name_the_field(api: Api, params: dict[str, str], field: str) -> None:
    query = {"group_by": "order", "from": FIRST, "to": "2026-10-31"} | params
    r = api.get(NET, params=query)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == field


def test_every_role_reads_reports(api: Api, db: Database, hand_example: dict[str, Any]) -> None:
    from tests.conftest import add_key

    viewer = Api(api.client, add_key(db, api.tenant, "viewer"))
    body = ok(viewer.get(NET, params={"group_by": "order", "from": FIRST, "to": today()}))
    assert amounts(body["total"]) == HAND_EXAMPLE
    assert ok(viewer.get(LEDGER))["items"]
    assert date.fromisoformat(ok(viewer.get("/api/v1/reports/money-at-risk"))["as_of"])


def test_a_refund_paid_through_the_refunds_module_is_booked(api: Api) -> None:
    api.channel()
    order = api.order(quantity=2, price="19.99")
    ret = api.open_return(order)
    line = ret["lines"][0]["id"]
    ok(api.post(f"/api/v1/returns/{ret['id']}/approve", {"note": "checked by hand"}))
    ok(
        api.post(
            f"/api/v1/returns/{ret['id']}/receive",
            {"lines": [{"return_line_id": line, "quantity": 1}]},
        )
    )
    ok(
        api.post(
            f"/api/v1/returns/{ret['id']}/inspections",
            {"lines": [{"return_line_id": line, "passed": 1, "failed": 0}]},
        )
    )
    r = api.client.post(
        f"/api/v1/returns/{ret['id']}/refunds",
        json={"lines": [{"return_line_id": line, "quantity": 1}]},
        headers=api.tenant.headers | {"Idempotency-Key": "ledger-1"},
    )
    assert r.status_code == 201, r.text
    refund = r.json()
    # Granted and sent: nothing is booked before the money actually went out.
    items = ok(api.get(LEDGER, params={"return_id": ret["id"]}))["items"]
    assert "refund_paid" not in {e["kind"] for e in items}
    ok(api.post(f"/api/v1/refunds/{refund['id']}/settle", {"reference": "SC-1"}))
    paid = Decimal(refund["amount"]["amount"])
    items = [
        e
        for e in ok(api.get(LEDGER, params={"return_id": ret["id"]}))["items"]
        if e["refund_id"] == refund["id"]
    ]
    assert {e["kind"] for e in items} >= {"refund_paid"}
    # Whatever the policy's fee and deductions, the entries sum to minus what was paid.
    assert sum(Decimal(e["amount"]["amount"]) for e in items) == -paid
