"""Bad input is a 4xx problem document naming the field, and nothing is written.

Every case checks the status, the problem media type, the stable `code`, which field
`errors` names, and that the row counts of every business table are unchanged.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from returnguard.kit.db import Base, Database
from tests.conftest import Api, make_tenant, order_body

ORDERS = "/api/v1/orders"
RETURNS = "/api/v1/returns"
PROBLEM = "application/problem+json"
WATCHED = (
    "orders",
    "order_lines",
    "buyers",
    "products",
    "returns",
    "return_lines",
    "return_shipments",
    "return_receipts",
    "return_inspections",
    "events",
    "outbox",
)

Body = dict[str, Any]


def row_counts(db: Database) -> dict[str, int]:
    tables = Base.metadata.tables
    with db.engine.connect() as conn:
        return {
            name: int(conn.scalar(select(func.count()).select_from(tables[name])) or 0)
            for name in WATCHED
        }


def check_problem(r: Any, status: int, code: str, field: str | None = None) -> Body:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].split(";")[0] == PROBLEM
    problem: Body = r.json()
    assert problem["status"] == status
    assert problem["code"] == code
    assert problem["type"].endswith("/" + code)
    assert problem["title"] and problem["detail"]
    if field is not None:
        fields = [e["field"] for e in problem["errors"]]
        assert field in fields, problem
        assert all(e["message"] for e in problem["errors"])
    return problem


def rejected(
    api: Api,
    db: Database,
    path: str,
    body: Any,
    *,
    status: int = 422,
    code: str = "validation_error",
    field: str | None = None,
) -> Body:
    """POST ``body``; expect a problem naming ``field`` and no row written anywhere."""
    before = row_counts(db)
    problem = check_problem(api.post(path, body), status, code, field)
    assert row_counts(db) == before
    return problem


@pytest.fixture
def order(api: Api) -> Any:
    api.channel()
    return api.order(quantity=2)


def return_body(order: Any, quantity: Any = 1, reason: Any = "changed_mind") -> Body:
    line = {"order_line_id": order["lines"][0]["id"], "quantity": quantity, "reason_code": reason}
    return {"order_id": order["id"], "lines": [line]}


# --- malformed and unknown -------------------------------------------------------------


@pytest.mark.parametrize("path", [ORDERS, RETURNS])
@pytest.mark.parametrize("raw", [b'{"channel": ', b"{'single': 'quotes'}", b'{"a": 1,}'])
def test_malformed_json_is_400(api: Api, db: Database, path: str, raw: bytes) -> None:
    api.channel()
    before = row_counts(db)
    headers = api.tenant.headers | {"Content-Type": "application/json"}
    r = api.client.post(path, content=raw, headers=headers)
    problem = check_problem(r, 400, "malformed_json", "body")
    assert problem["instance"] == path
    assert "malformed JSON" in problem["errors"][0]["message"]
    assert row_counts(db) == before


def _top_level(b: Body) -> None:
    b["colour"] = "blue"


def _in_line(b: Body) -> None:
    b["lines"][0]["colour"] = "blue"


def _in_money(b: Body) -> None:
    b["lines"][0]["unit_price"]["cents"] = 1999


def _in_buyer(b: Body) -> None:
    b["buyer"]["vip"] = True


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (_top_level, "colour"),
        (_in_line, "lines.0.colour"),
        (_in_money, "lines.0.unit_price.cents"),
        (_in_buyer, "buyer.vip"),
    ],
)
def test_unknown_order_field_is_named(
    api: Api, db: Database, mutate: Callable[[Body], None], field: str
) -> None:
    api.channel()
    body = order_body()
    mutate(body)
    problem = rejected(api, db, ORDERS, body, field=field)
    assert problem["errors"][0]["message"] == "unknown field"


def test_unknown_return_line_field_is_named(api: Api, db: Database, order: Any) -> None:
    body = return_body(order)
    body["lines"][0]["colour"] = "red"
    rejected(api, db, RETURNS, body, field="lines.0.colour")


# --- quantities ------------------------------------------------------------------------


BAD_QUANTITIES = ["2", 1.5, True, None, 0, -1, [1]]


@pytest.mark.parametrize("quantity", BAD_QUANTITIES)
def test_bad_order_line_quantity(api: Api, db: Database, quantity: Any) -> None:
    api.channel()
    body = order_body()
    body["lines"][0]["quantity"] = quantity
    rejected(api, db, ORDERS, body, field="lines.0.quantity")


@pytest.mark.parametrize("quantity", BAD_QUANTITIES)
def test_bad_return_line_quantity(api: Api, db: Database, order: Any, quantity: Any) -> None:
    rejected(api, db, RETURNS, return_body(order, quantity), field="lines.0.quantity")


def test_return_quantity_above_ordered(api: Api, db: Database, order: Any) -> None:
    problem = rejected(
        api, db, RETURNS, return_body(order, 3), code="quantity_exceeded", field="lines.0.quantity"
    )
    assert "only 2 of 2" in problem["errors"][0]["message"]


def test_return_quantity_above_what_is_left(api: Api, db: Database, order: Any) -> None:
    api.open_return(order, quantity=1)
    problem = rejected(
        api, db, RETURNS, return_body(order, 2), code="quantity_exceeded", field="lines.0.quantity"
    )
    assert "only 1 of 2" in problem["errors"][0]["message"]
    # What is left can still be returned.
    assert api.post(RETURNS, return_body(order, 1)).status_code == 201


def test_same_order_line_twice_in_one_return(api: Api, db: Database, order: Any) -> None:
    body = return_body(order, 1)
    body["lines"].append(dict(body["lines"][0]))
    rejected(api, db, RETURNS, body, code="quantity_exceeded", field="lines.1.order_line_id")


def test_line_of_another_order(api: Api, db: Database, order: Any) -> None:
    other = api.order(external_id="302-0000002-0000002")
    body = return_body(order)
    body["lines"][0]["order_line_id"] = other["lines"][0]["id"]
    rejected(api, db, RETURNS, body, code="quantity_exceeded", field="lines.0.order_line_id")


def test_return_on_another_tenants_order_looks_like_a_missing_one(
    client: TestClient, db: Database, api: Api
) -> None:
    other = Api(client, make_tenant(db, "Other Shop GmbH"))
    other.channel()
    foreign = other.order()
    foreign_problem = rejected(api, db, RETURNS, return_body(foreign), status=404, code="not_found")
    missing_id = str(uuid.uuid4())
    missing = {"id": missing_id, "lines": [{"id": str(uuid.uuid4())}]}
    missing_problem = rejected(api, db, RETURNS, return_body(missing), status=404, code="not_found")
    # Same answer as for an order that does not exist: only the echoed id differs.
    assert foreign_problem["detail"].replace(foreign["id"], "<id>") == missing_problem[
        "detail"
    ].replace(missing_id, "<id>")
    for key in ("type", "title", "status", "code", "errors"):
        assert foreign_problem[key] == missing_problem[key]
    assert foreign["external_id"] not in foreign_problem["detail"]
    assert other.get(f"{ORDERS}/{foreign['id']}").json()["lines"][0]["returned_quantity"] == 0


@pytest.mark.parametrize("reason", ["broken", "Defective", "", 3])
def test_unknown_reason_code(api: Api, db: Database, order: Any, reason: Any) -> None:
    rejected(api, db, RETURNS, return_body(order, reason=reason), field="lines.0.reason_code")


# --- money -----------------------------------------------------------------------------


CHANNELS = {"EUR": ("amazon-de", "DE"), "JPY": ("amazon-jp", "JP"), "KWD": ("shop-kw", "KW")}


def _money_order(api: Api, currency: str, price: str) -> Body:
    code, country = CHANNELS[currency]
    api.channel(code, currency, country)
    return order_body(channel=code, currency=currency, quantity=1, price=price)


@pytest.mark.parametrize(
    ("currency", "good", "bad"),
    [("EUR", "1.99", "1.999"), ("JPY", "100", "100.5"), ("KWD", "1.999", "1.9995")],
)
def test_amount_with_more_decimals_than_the_currency_allows(
    api: Api, db: Database, currency: str, good: str, bad: str
) -> None:
    body = _money_order(api, currency, good)
    wrong = copy.deepcopy(body)
    wrong["lines"][0]["unit_price"]["amount"] = bad
    problem = rejected(api, db, ORDERS, wrong, field="lines.0.unit_price.amount")
    assert currency in problem["errors"][0]["message"]
    # The same order with the currency's own precision is accepted, amount unchanged.
    r = api.post(ORDERS, body)
    assert r.status_code == 201, r.text
    assert r.json()["lines"][0]["unit_price"] == {"amount": good, "currency": currency}


@pytest.mark.parametrize("number", [19.99, 20, 1e3])
def test_json_number_where_a_decimal_string_belongs(api: Api, db: Database, number: float) -> None:
    api.channel()
    body = order_body()
    body["lines"][0]["unit_price"]["amount"] = number
    problem = rejected(api, db, ORDERS, body, field="lines.0.unit_price.amount")
    assert "decimal string" in problem["errors"][0]["message"]


@pytest.mark.parametrize("amount", ["1e3", "12,34", "NaN", "Infinity", "", " ", "0x10"])
def test_amount_that_is_not_a_plain_decimal(api: Api, db: Database, amount: str) -> None:
    api.channel()
    body = order_body()
    body["captured"]["amount"] = amount
    rejected(api, db, ORDERS, body, field="captured.amount")


@pytest.mark.parametrize("field", ["captured", "lines.0.unit_price"])
def test_negative_amount(api: Api, db: Database, field: str) -> None:
    api.channel()
    body = order_body()
    target = body["captured"] if field == "captured" else body["lines"][0]["unit_price"]
    target["amount"] = "-1.00"
    problem = rejected(api, db, ORDERS, body, field=f"{field}.amount")
    assert "negative" in problem["errors"][0]["message"]


def test_amount_too_large_to_store_is_a_validation_error(api: Api, db: Database) -> None:
    api.channel()
    body = order_body()
    body["captured"]["amount"] = "1" + "0" * 21
    problem = rejected(api, db, ORDERS, body, field="captured.amount")
    assert "too large" in problem["errors"][0]["message"]


@pytest.mark.parametrize(
    ("path", "field"),
    [("lines.0.unit_price", "lines.0.unit_price.currency"), ("captured", "captured.currency")],
)
def test_currency_differs_from_the_order(api: Api, db: Database, path: str, field: str) -> None:
    api.channel()
    body = order_body()
    target = body["captured"] if path == "captured" else body["lines"][0]["unit_price"]
    target["currency"] = "USD"
    problem = rejected(api, db, ORDERS, body, field=field)
    assert "USD" in problem["detail"] and "EUR" in problem["detail"]


@pytest.mark.parametrize("currency", ["EURO", "XYZ", "", "€"])
def test_unknown_currency(api: Api, db: Database, currency: str) -> None:
    api.channel()
    body = order_body()
    body["currency"] = currency
    rejected(api, db, ORDERS, body, field="currency")


# --- order shape -----------------------------------------------------------------------


def test_unknown_channel_code(api: Api, db: Database) -> None:
    api.channel()
    body = order_body(channel="ebay-fr")
    problem = rejected(api, db, ORDERS, body, code="unknown_channel", field="channel")
    assert "ebay-fr" in problem["detail"]


def test_duplicate_line_ids(api: Api, db: Database) -> None:
    api.channel()
    body = order_body()
    second = copy.deepcopy(body["lines"][0]) | {"sku": "MUG-RED"}
    body["lines"].append(second)
    problem = rejected(api, db, ORDERS, body, field="lines.1.external_id")
    assert "item-1" in problem["detail"]


@pytest.mark.parametrize("field", ["ordered_at", "delivered_at"])
def test_naive_datetime_without_offset(api: Api, db: Database, field: str) -> None:
    api.channel()
    body = order_body()
    body[field] = "2026-10-01T10:00:00"
    rejected(api, db, ORDERS, body, field=field)


def test_datetime_out_of_range_in_utc(api: Api, db: Database) -> None:
    api.channel()
    body = order_body() | {"ordered_at": "9999-12-31T23:00:00-14:00", "delivered_at": None}
    rejected(api, db, ORDERS, body, field="ordered_at")


def test_delivered_before_ordered(api: Api, db: Database) -> None:
    api.channel()
    body = order_body() | {"delivered_at": "2026-09-30T10:00:00+00:00"}
    rejected(api, db, ORDERS, body, field="delivered_at")


@pytest.mark.parametrize("field", ["external_id", "lines.0.title", "buyer.email"])
def test_nul_character_in_text(api: Api, db: Database, field: str) -> None:
    api.channel()
    body = order_body()
    target: Any = body
    *parents, last = field.split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[last] = "abc\u0000def"
    rejected(api, db, ORDERS, body, field=field)


def test_order_without_lines(api: Api, db: Database) -> None:
    api.channel()
    rejected(api, db, ORDERS, order_body() | {"lines": []}, field="lines")


@pytest.mark.parametrize("payload", [[], "order", 42])
def test_body_that_is_not_an_object(api: Api, db: Database, payload: Any) -> None:
    api.channel()
    rejected(api, db, ORDERS, payload, field="body")


# --- lifecycle -------------------------------------------------------------------------


def test_approving_a_rejected_return_is_an_illegal_transition(
    api: Api, db: Database, order: Any
) -> None:
    ret = api.open_return(order)
    rid = ret["id"]
    r = api.post(f"{RETURNS}/{rid}/reject", {"reason": "outside the return window"})
    assert r.status_code == 200, r.text
    problem = rejected(
        api, db, f"{RETURNS}/{rid}/approve", {}, status=409, code="illegal_transition"
    )
    assert problem["current_status"] == "rejected"
    assert problem["allowed_actions"] == []
    assert "rejected" in problem["detail"]
    after = api.get(f"{RETURNS}/{rid}").json()
    assert after["status"] == "rejected"
    assert after["lines"][0]["quantities"]["approved"] == 0


def test_illegal_transition_lists_what_is_allowed_instead(
    api: Api, db: Database, order: Any
) -> None:
    ret = api.open_return(order)
    body = {"lines": [{"return_line_id": ret["lines"][0]["id"], "passed": 1, "failed": 0}]}
    problem = rejected(
        api, db, f"{RETURNS}/{ret['id']}/inspections", body, status=409, code="illegal_transition"
    )
    assert problem["current_status"] == "requested"
    assert "approve" in problem["allowed_actions"]
    assert "inspections" not in problem["allowed_actions"]
    assert problem["allowed_actions"] == api.get(f"{RETURNS}/{ret['id']}").json()["allowed_actions"]


def test_receiving_more_than_approved(api: Api, db: Database, order: Any) -> None:
    ret = api.open_return(order, quantity=2)
    rid, line_id = ret["id"], ret["lines"][0]["id"]
    r = api.post(
        f"{RETURNS}/{rid}/approve",
        {"lines": [{"return_line_id": line_id, "quantity": 1}], "note": "checked by hand"},
    )
    assert r.status_code == 200, r.text
    r = api.post(f"{RETURNS}/{rid}/shipments", {"carrier": "DHL", "tracking_number": "X1"})
    assert r.status_code == 200, r.text
    body = {"lines": [{"return_line_id": line_id, "quantity": 2}]}
    problem = rejected(
        api,
        db,
        f"{RETURNS}/{rid}/receive",
        body,
        code="quantity_exceeded",
        field="lines.0.quantity",
    )
    assert "1 approved unit" in problem["errors"][0]["message"]
    after = api.get(f"{RETURNS}/{rid}").json()
    assert after["status"] == "in_transit"
    assert after["lines"][0]["quantities"]["received"] == 0


def test_receiving_a_line_of_another_return(api: Api, db: Database) -> None:
    api.channel()
    order = api.order(quantity=2)
    first = api.open_return(order)
    second = api.open_return(order)
    for ret in (first, second):
        assert (
            api.post(f"{RETURNS}/{ret['id']}/approve", {"note": "checked by hand"}).status_code
            == 200
        )
    body = {"lines": [{"return_line_id": second["lines"][0]["id"], "quantity": 1}]}
    rejected(
        api,
        db,
        f"{RETURNS}/{first['id']}/receive",
        body,
        code="quantity_exceeded",
        field="lines.0.return_line_id",
    )
