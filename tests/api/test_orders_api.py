"""Orders over the API: idempotent upsert, updates with an audit trail, lines in use."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from sqlalchemy import func, select

from returnguard.audit.models import Event
from returnguard.kit.db import Base, Database
from tests.conftest import Api, order_body

ORDERS = "/api/v1/orders"
RETURNS = "/api/v1/returns"


def row_counts(db: Database, *names: str) -> dict[str, int]:
    tables = Base.metadata.tables
    with db.engine.connect() as conn:
        return {
            name: int(conn.scalar(select(func.count()).select_from(tables[name])) or 0)
            for name in names
        }


def order_events(db: Database, order_id: str) -> list[Event]:
    with db.session() as session:
        stmt = select(Event).where(Event.subject_id == order_id).order_by(Event.seq)
        return list(session.scalars(stmt))


def two_line_body() -> dict[str, Any]:
    body = order_body(quantity=1, price="10.00")
    second = copy.deepcopy(body["lines"][0]) | {"external_id": "item-2", "sku": "MUG-RED"}
    body["lines"].append(second)
    body["captured"]["amount"] = "20.00"
    return body


def return_lines(*lines: tuple[str, int]) -> list[dict[str, Any]]:
    return [
        {"order_line_id": line_id, "quantity": qty, "reason_code": "size_fit"}
        for line_id, qty in lines
    ]


def test_same_order_twice_is_one_order(api: Api, db: Database) -> None:
    api.channel()
    body = order_body()
    first = api.post(ORDERS, body)
    assert first.status_code == 201, first.text
    counts = row_counts(db, "orders", "order_lines", "buyers", "products", "events")

    again = api.post(ORDERS, body)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["lines"][0]["id"] == first.json()["lines"][0]["id"]
    # No duplicate rows, and an unchanged order records no update.
    assert row_counts(db, "orders", "order_lines", "buyers", "products", "events") == counts
    assert [e.action for e in order_events(db, first.json()["id"])] == ["order.created"]


def test_same_instant_in_another_offset_is_no_change(api: Api, db: Database) -> None:
    api.channel()
    created = api.order()
    body = order_body() | {"ordered_at": "2026-10-01T12:00:00+02:00"}
    r = api.post(ORDERS, body)
    assert r.status_code == 200, r.text
    assert r.json()["ordered_at"] == created["ordered_at"] == "2026-10-01T10:00:00Z"
    assert [e.action for e in order_events(db, created["id"])] == ["order.created"]


def test_update_changes_delivery_and_capture_and_is_recorded(api: Api, db: Database) -> None:
    api.channel()
    created = api.order()
    body = order_body()
    body["delivered_at"] = "2026-10-05T09:30:00+02:00"
    body["captured"]["amount"] = "35.00"

    r = api.post(ORDERS, body)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == created["id"]
    shown = api.get(f"{ORDERS}/{created['id']}").json()
    assert shown["delivered_at"] == "2026-10-05T07:30:00Z"
    assert shown["captured"] == {"amount": "35.00", "currency": "EUR"}

    events = order_events(db, created["id"])
    assert [e.action for e in events] == ["order.created", "order.updated"]
    update = events[1]
    assert update.before is not None and update.after is not None
    assert update.before["captured_minor"] == 3998
    assert update.after["captured_minor"] == 3500
    assert update.before["delivered_at"] != update.after["delivered_at"]
    assert update.actor_label == "test"


def test_update_adds_a_line(api: Api) -> None:
    api.channel()
    created = api.order(quantity=1, price="10.00")
    r = api.post(ORDERS, two_line_body())
    assert r.status_code == 200, r.text
    lines = r.json()["lines"]
    assert [ln["external_id"] for ln in lines] == ["item-1", "item-2"]
    assert lines[0]["id"] == created["lines"][0]["id"]


def test_line_quantity_cannot_drop_below_what_is_being_returned(api: Api, db: Database) -> None:
    api.channel()
    order = api.order(quantity=3)
    api.open_return(order, quantity=2)
    events = row_counts(db, "events")

    r = api.post(ORDERS, order_body(quantity=1))
    assert r.status_code == 409, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["code"] == "order_line_in_use"
    assert [e["field"] for e in problem["errors"]] == ["lines.0.quantity"]
    assert "2 unit(s)" in problem["errors"][0]["message"]
    assert row_counts(db, "events") == events
    shown = api.get(f"{ORDERS}/{order['id']}").json()
    assert shown["lines"][0]["quantity"] == 3
    assert shown["captured"]["amount"] == "59.97"

    # Down to exactly what is being returned is fine.
    r = api.post(ORDERS, order_body(quantity=2))
    assert r.status_code == 200, r.text
    assert r.json()["lines"][0]["quantity"] == 2


def test_rejected_return_releases_the_units(api: Api) -> None:
    api.channel()
    order = api.order(quantity=2)
    ret = api.open_return(order, quantity=2)
    assert api.post(f"{RETURNS}/{ret['id']}/reject", {"reason": "late"}).status_code == 200
    r = api.post(ORDERS, order_body(quantity=1))
    assert r.status_code == 200, r.text
    assert r.json()["lines"][0]["quantity"] == 1
    assert r.json()["lines"][0]["returned_quantity"] == 0


def test_line_with_returns_cannot_be_removed(api: Api, db: Database) -> None:
    api.channel()
    r = api.post(ORDERS, two_line_body())
    assert r.status_code == 201, r.text
    order = r.json()
    first, second = order["lines"]
    r = api.post(
        RETURNS,
        {"order_id": order["id"], "decide": False, "lines": return_lines((first["id"], 1))},
    )
    assert r.status_code == 201, r.text

    without_first = two_line_body()
    without_first["lines"] = without_first["lines"][1:]
    r = api.post(ORDERS, without_first)
    assert r.status_code == 409, r.text
    problem = r.json()
    assert problem["code"] == "order_line_in_use"
    assert [e["field"] for e in problem["errors"]] == ["lines"]
    assert "item-1" in problem["errors"][0]["message"]
    shown = api.get(f"{ORDERS}/{order['id']}").json()
    assert [ln["id"] for ln in shown["lines"]] == [first["id"], second["id"]]

    # The line without returns can go.
    without_second = two_line_body()
    without_second["lines"] = without_second["lines"][:1]
    r = api.post(ORDERS, without_second)
    assert r.status_code == 200, r.text
    assert [ln["id"] for ln in r.json()["lines"]] == [first["id"]]
    assert row_counts(db, "order_lines") == {"order_lines": 1}


def test_currency_of_an_order_with_returns_cannot_change(api: Api) -> None:
    api.channel()
    order = api.order()
    api.open_return(order)
    r = api.post(ORDERS, order_body(currency="USD"))
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "order_line_in_use"
    assert [e["field"] for e in r.json()["errors"]] == ["currency"]
    assert api.get(f"{ORDERS}/{order['id']}").json()["currency"] == "EUR"


def test_order_shows_returned_quantity(api: Api) -> None:
    api.channel()
    order = api.order(quantity=3)
    line_id = order["lines"][0]["id"]
    assert order["lines"][0]["returned_quantity"] == 0

    first = api.open_return(order, quantity=2)
    assert api.get(f"{ORDERS}/{order['id']}").json()["lines"][0]["returned_quantity"] == 2
    api.open_return(order, quantity=1)
    assert api.get(f"{ORDERS}/{order['id']}").json()["lines"][0]["returned_quantity"] == 3

    # Approving fewer units than requested frees the rest.
    r = api.post(
        f"{RETURNS}/{first['id']}/approve",
        {"lines": [{"return_line_id": first["lines"][0]["id"], "quantity": 1}], "note": "ok"},
    )
    assert r.status_code == 200, r.text
    shown = api.get(f"{ORDERS}/{order['id']}").json()
    assert shown["lines"][0]["id"] == line_id
    assert shown["lines"][0]["returned_quantity"] == 2


@pytest.mark.parametrize(
    ("currency", "country", "price", "shipping", "captured"),
    [
        ("JPY", "JP", "1500", "800", "3800"),
        ("EUR", "DE", "19.99", "4.90", "44.88"),
        ("KWD", "KW", "12.345", "1.250", "25.940"),
        ("USD", "US", "0.01", "0.00", "0.02"),
    ],
)
def test_amounts_round_trip_exactly(
    api: Api, currency: str, country: str, price: str, shipping: str, captured: str
) -> None:
    code = f"shop-{currency.lower()}"
    api.channel(code, currency, country)
    body = order_body(channel=code, currency=currency, quantity=2, price=price)
    body["shipping"] = {"amount": shipping, "currency": currency}
    body["captured"] = {"amount": captured, "currency": currency}
    body["lines"][0]["tax"] = {"amount": price, "currency": currency}
    r = api.post(ORDERS, body)
    assert r.status_code == 201, r.text

    for shown in (r.json(), api.get(f"{ORDERS}/{r.json()['id']}").json()):
        assert shown["currency"] == currency
        assert shown["captured"] == {"amount": captured, "currency": currency}
        assert shown["shipping"] == {"amount": shipping, "currency": currency}
        line = shown["lines"][0]
        assert line["unit_price"] == {"amount": price, "currency": currency}
        assert line["tax"] == {"amount": price, "currency": currency}


@pytest.mark.parametrize(
    ("currency", "country", "sent", "shown"),
    [("EUR", "DE", "19.9", "19.90"), ("JPY", "JP", "1500.0", "1500"), ("KWD", "KW", "7", "7.000")],
)
def test_amounts_are_shown_in_the_currencys_minor_units(
    api: Api, currency: str, country: str, sent: str, shown: str
) -> None:
    code = f"shop-{currency.lower()}"
    api.channel(code, currency, country)
    body = order_body(channel=code, currency=currency, quantity=1, price=sent)
    r = api.post(ORDERS, body)
    assert r.status_code == 201, r.text
    assert r.json()["lines"][0]["unit_price"]["amount"] == shown
    assert r.json()["captured"]["amount"] == shown


def test_unknown_order_is_404(api: Api) -> None:
    r = api.get(f"{ORDERS}/00000000-0000-4000-8000-000000000000")
    assert r.status_code == 404, r.text
    assert r.json()["code"] == "not_found"
