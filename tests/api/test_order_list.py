"""The order list: every match once, newest first across pages (ties on ordered_at broken
by id), for every filter; bad input a 422 naming the parameter; never another
organization's orders; a page costs the same statements whatever its size; and on
PostgreSQL each filter reads an index."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Table, event, insert, text

from returnguard.kit.db import Base, Database, new_id
from returnguard.orders import repository as repo
from returnguard.orders.models import Buyer, Channel, Order, OrderLine
from returnguard.returns import repository as returns_repo
from tests.conftest import Api, make_tenant, order_body

ORDERS = "/api/v1/orders"
# Order times with ties, and two on one UTC day's edges.
TIMES = [
    "2026-10-05T09:00:00+00:00",
    "2026-10-05T09:00:00+00:00",
    "2026-10-05T23:59:59+00:00",
    "2026-10-06T01:30:00+02:00",  # 2026-10-05T23:30Z: still the 5th in UTC
    "2026-10-06T00:00:00+00:00",
    "2026-10-07T12:00:00+00:00",
    "2026-10-07T12:00:00+00:00",
    "2026-10-07T12:00:00+00:00",
    "2026-10-09T08:00:00+00:00",
]
EMAILS = ["Anna@Example.de", "anna@example.de", "bob@example.fr"]


@contextmanager
def counted(db: Database) -> Iterator[list[tuple[str, Any]]]:
    sent: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        sent.append((statement, params))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def _order(api: Api, i: int, channel: str, at: str, external_id: str | None = None) -> Any:
    body = order_body(external_id or f"O-{i}", channel=channel)
    body["ordered_at"] = at
    body["delivered_at"] = None
    body["buyer"] = {"external_id": f"b-{i % 3}", "email": EMAILS[i % 3], "country": "DE"}
    if i % 2:
        body["lines"].append(
            {
                "external_id": "item-2",
                "sku": f"SKU-{i}",
                "quantity": 1,
                "unit_price": {"amount": "5.00", "currency": "EUR"},
            }
        )
        body["captured"]["amount"] = "44.98"
    r = api.post(ORDERS, body)
    assert r.status_code == 201, r.text
    return r.json()


def _shop(api: Api) -> list[dict[str, Any]]:
    """Orders on two channels, with ties; one marketplace id on both channels."""
    api.channel("amazon-de")
    api.channel("shop-fr")
    made = []
    for i, at in enumerate(TIMES * 2):
        channel = "amazon-de" if i % 3 else "shop-fr"
        made.append(_order(api, i, channel, at))
    made.append(_order(api, 100, "amazon-de", TIMES[0], "SAME-1"))
    made.append(_order(api, 101, "shop-fr", TIMES[5], "SAME-1"))
    return made


def _pages(api: Api, params: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = params | {"limit": limit} | ({"cursor": cursor} if cursor else {})
        r = api.get(ORDERS, params=query)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["items"]) <= limit
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
        assert len(items) < 1000, "pagination does not end"


def _at(order: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(order["ordered_at"].replace("Z", "+00:00"))


def _newest_first(items: list[dict[str, Any]]) -> list[str]:
    ordered = sorted(items, key=lambda o: (_at(o), uuid.UUID(o["id"])), reverse=True)
    return [o["id"] for o in ordered]


def _day(order: dict[str, Any]) -> str:
    return _at(order).astimezone(UTC).date().isoformat()


FILTERS: list[dict[str, Any]] = [
    {},
    {"channel": "shop-fr"},
    {"channel": "amazon-de", "ordered_from": "2026-10-06"},
    {"external_id": "SAME-1"},
    {"external_id": "SAME-1", "channel": "shop-fr"},
    {"external_id": "O-4"},
    {"buyer_email": "ANNA@example.DE"},
    {"buyer_email": "bob@example.fr", "channel": "amazon-de"},
    {"ordered_from": "2026-10-05", "ordered_to": "2026-10-05"},
    {"ordered_to": "2026-10-06"},
    {"ordered_from": "2026-10-07"},
]


def _matches(order: dict[str, Any], f: dict[str, Any]) -> bool:
    email = order["buyer"]["email"] if order["buyer"] else None
    return (
        ("channel" not in f or order["channel"] == f["channel"])
        and ("external_id" not in f or order["external_id"] == f["external_id"])
        and ("buyer_email" not in f or (email or "").lower() == f["buyer_email"].lower())
        and ("ordered_from" not in f or _day(order) >= f["ordered_from"])
        and ("ordered_to" not in f or _day(order) <= f["ordered_to"])
    )


def test_filters_give_every_match_once_newest_first_across_pages(api: Api) -> None:
    made = _shop(api)
    everything = _pages(api, {}, 200)
    assert sorted(o["id"] for o in everything) == sorted(o["id"] for o in made)
    by_id = {o["id"]: o for o in everything}
    for f in FILTERS:
        expected = _newest_first([o for o in everything if _matches(o, f)])
        assert expected, f
        for limit in (1, 3, 50):
            got = _pages(api, f, limit)
            assert [o["id"] for o in got] == expected, (f, limit)
            assert all(o == by_id[o["id"]] for o in got)
    # Both ends of a day range are included, in UTC.
    fifth = _pages(api, {"ordered_from": "2026-10-05", "ordered_to": "2026-10-05"}, 50)
    assert len(fifth) == 2 * 4 + 1
    # The same marketplace id on two channels: both, each with its channel.
    same = _pages(api, {"external_id": "SAME-1"}, 50)
    assert sorted(o["channel"] for o in same) == ["amazon-de", "shop-fr"]


def test_listed_orders_show_lines_buyer_and_returned_units(api: Api) -> None:
    made = _shop(api)
    ret = api.open_return(made[1], quantity=1)
    assert ret["status"] == "requested"
    listed = {o["id"]: o for o in _pages(api, {}, 4)}
    for order in made:
        row = listed[order["id"]]
        assert row["lines"] == [
            ln | {"returned_quantity": 1 if order is made[1] and n == 0 else 0}
            for n, ln in enumerate(order["lines"])
        ]
        assert row["buyer"] == order["buyer"]
        assert row["channel"] == order["channel"]
    assert api.get(f"{ORDERS}/{made[1]['id']}").json() == listed[made[1]["id"]]


def test_a_page_with_more_lines_than_one_statement_takes_shows_them_all(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = _shop(api)
    api.open_return(made[1], quantity=1)
    whole = _pages(api, {}, 50)
    # As if every line id of the page passed the database's limit of bound parameters.
    monkeypatch.setattr(returns_repo, "MAX_IDS_PER_STATEMENT", 2)
    assert _pages(api, {}, 50) == whole
    assert sum(ln["returned_quantity"] for o in whole for ln in o["lines"]) == 1


def test_channel_by_id_or_code(api: Api) -> None:
    _shop(api)
    channels = {c["code"]: c["id"] for c in api.get("/api/v1/channels").json()}
    by_code = _pages(api, {"channel": "shop-fr"}, 50)
    assert _pages(api, {"channel_id": channels["shop-fr"]}, 50) == by_code
    both = {"channel": "shop-fr", "channel_id": channels["shop-fr"]}
    assert _pages(api, both, 50) == by_code
    r = api.get(ORDERS, params={"channel": "shop-fr", "channel_id": channels["amazon-de"]})
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["channel_id"]


def test_a_page_sends_as_many_statements_for_50_orders_as_for_5(api: Api, db: Database) -> None:
    _shop(api)
    for params in ({}, {"buyer_email": "anna@example.de"}, {"channel": "amazon-de"}):
        sizes = {}
        for limit in (2, 50):
            with counted(db) as sent:
                page = api.get(ORDERS, params=params | {"limit": limit}).json()
            assert len(page["items"]) > 1
            sizes[limit] = len(sent)
        assert sizes[2] == sizes[50], (params, sizes)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "MjAyNi0xMC0wNVQwOTowMDowMHxub3QtYW4taWQ="}, "cursor"),
        ({"ordered_from": "2026-13-01"}, "ordered_from"),
        ({"ordered_from": "0"}, "ordered_from"),
        ({"ordered_to": "2026-10-01T00:00:00Z"}, "ordered_to"),
        ({"ordered_to": "1899-12-31"}, "ordered_to"),
        ({"ordered_from": "2026-10-02", "ordered_to": "2026-10-01"}, "ordered_to"),
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"channel_id": "amazon-de"}, "channel_id"),
        ({"external_id": ""}, "external_id"),
        ({"buyer_email": "x" * 321}, "buyer_email"),
        ({"email": "anna@example.de"}, "email"),
    ],
)
def test_bad_input_is_a_422_naming_the_parameter(
    api: Api, params: dict[str, Any], field: str
) -> None:
    api.channel()
    r = api.get(ORDERS, params=params)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "validation_error"
    assert [e["field"] for e in r.json()["errors"]] == [field]


def test_an_unknown_channel_is_a_422_naming_it(api: Api, db: Database, client: TestClient) -> None:
    api.channel()
    stranger = Api(client, make_tenant(db, "Other GmbH"))
    foreign = stranger.channel("shop-fr")
    for params, field in (
        ({"channel": "shop-fr"}, "channel"),
        ({"channel_id": foreign["id"]}, "channel_id"),
    ):
        r = api.get(ORDERS, params=params)
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "unknown_channel"
        assert [e["field"] for e in r.json()["errors"]] == [field]


def test_never_another_organizations_orders(api: Api, db: Database, client: TestClient) -> None:
    mine = _shop(api)
    stranger = Api(client, make_tenant(db, "Other GmbH"))
    stranger.channel("amazon-de")
    theirs = [_order(stranger, i, "amazon-de", at) for i, at in enumerate(TIMES)]
    theirs.append(_order(stranger, 100, "amazon-de", TIMES[0], "SAME-1"))
    for f in ({}, {"external_id": "SAME-1"}, {"buyer_email": "anna@example.de"}):
        assert {o["id"] for o in _pages(api, f, 3)} <= {o["id"] for o in mine}, f
        assert {o["id"] for o in _pages(stranger, f, 3)} <= {o["id"] for o in theirs}, f
    assert len(_pages(stranger, {}, 50)) == len(theirs)
    assert _pages(stranger, {"external_id": "O-10"}, 50) == []


# --- PostgreSQL plans ------------------------------------------------------------------

CHANNELS, BUYERS, ORDERS_PER_BUYER = 4, 400, 5
START = datetime(2026, 1, 1, tzinfo=UTC)


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


@pytest.mark.postgresql_only
def test_every_filter_reads_an_index(pg_db: Database) -> None:
    """Each filter's statement, taken as the code sends it, explained on enough rows for
    the planner to see what an index saves: none reads a whole table."""
    org = make_tenant(pg_db).organization_id
    other = make_tenant(pg_db, "Other GmbH").organization_id
    channel_ids = [new_id() for _ in range(CHANNELS)]
    buyers, orders, lines = [], [], []
    for owner in (org, other):
        for b in range(BUYERS):
            buyer_id = new_id()
            # Most orders on one channel, a few on each other: a small channel's page
            # must not be found by reading past the big one's orders.
            small = channel_ids[1 + (b // 20) % (CHANNELS - 1)]
            channel_id = (small if b % 20 == 0 else channel_ids[0]) if owner == org else None
            buyers.append((buyer_id, owner, channel_id, b))
    with pg_db.engine.begin() as conn:
        for owner, ids in ((org, channel_ids), (other, [new_id()])):
            conn.execute(
                insert(_table(Channel)),
                [
                    {
                        "id": cid,
                        "organization_id": owner,
                        "code": f"c-{i}",
                        "name": f"C {i}",
                        "marketplace": "amazon",
                        "country": "DE",
                        "currency": "EUR",
                        "language": "en",
                        "created_at": START,
                    }
                    for i, cid in enumerate(ids)
                ],
            )
            if owner == other:
                other_channel = ids[0]
        rows = []
        for buyer_id, owner, channel_id, b in buyers:
            cid = channel_id or other_channel
            rows.append(
                {
                    "id": buyer_id,
                    "organization_id": owner,
                    "channel_id": cid,
                    "external_id": f"b-{b}",
                    "email": f"Buyer{b}@Example.com",
                    "watchlisted": False,
                    "created_at": START,
                }
            )
            for k in range(ORDERS_PER_BUYER):
                order_id = new_id()
                at = START + timedelta(hours=(b * ORDERS_PER_BUYER + k) // 3)
                orders.append(
                    {
                        "id": order_id,
                        "organization_id": owner,
                        "channel_id": cid,
                        "external_id": f"o-{b}-{k}",
                        "buyer_id": buyer_id,
                        "currency": "EUR",
                        "ordered_at": at,
                        "captured_minor": 1000,
                        "shipping_minor": 0,
                        "shipping_tax_minor": 0,
                        "created_at": at,
                        "updated_at": at,
                    }
                )
                lines.append(
                    {
                        "id": new_id(),
                        "organization_id": owner,
                        "order_id": order_id,
                        "position": 0,
                        "external_id": "l-1",
                        "sku": "SKU",
                        "title": "",
                        "quantity": 1,
                        "unit_price_minor": 1000,
                        "tax_minor": 0,
                        "discount_minor": 0,
                    }
                )
        conn.execute(insert(_table(Buyer)), rows)
        conn.execute(insert(_table(Order)), orders)
        conn.execute(insert(_table(OrderLine)), lines)
        conn.execute(text("ANALYZE buyers; ANALYZE orders; ANALYZE channels"))
    cursor = (START + timedelta(days=10), uuid.UUID(int=2**127))
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "ix_orders_org_ordered_at"),
        ({"after": cursor}, "ix_orders_org_ordered_at"),
        ({"ordered_from": START + timedelta(days=5)}, "ix_orders_org_ordered_at"),
        ({"channel_id": channel_ids[1]}, "ix_orders_channel_ordered"),
        ({"channel_id": channel_ids[1], "after": cursor}, "ix_orders_channel_ordered"),
        ({"external_id": "o-7-2"}, "orders_channel_id_external_id"),
        ({"external_id": "o-7-2", "channel_id": channel_ids[3]}, "orders_channel_id_external_id"),
        ({"buyer_email": "BUYER7@example.com"}, "ix_buyers_org_email_lower"),
    ]
    for kwargs, index in cases:
        with counted(pg_db) as sent, pg_db.session() as session:
            repo.list_orders(session, org, limit=51, **kwargs)
        sql, params = next((s, p) for s, p in sent if "FROM orders" in s and "LIMIT" in s)
        plan = _explain(pg_db, sql, params)
        assert "Seq Scan on orders" not in plan and "Seq Scan on buyers" not in plan, (
            kwargs,
            plan,
        )
        if "external_id" in kwargs or "buyer_email" in kwargs:
            # A handful of rows through a unique key or a buyer's few orders, then sorted.
            assert index in plan, (kwargs, plan)
            if "buyer_email" in kwargs:
                assert "ix_orders_buyer_ordered" in plan, plan
            continue
        # A range of one index in the keyset order: made expensive, a Sort is left only if
        # no index gives that order (a few rows would otherwise be sorted as cheaply).
        plan = _explain(pg_db, sql, params, ordered=True)
        assert index in plan, (kwargs, plan)
        # At most the ties of one timestamp are sorted (ix_orders_org_ordered_at has no id).
        assert not re.search(r"(?<!Incremental )Sort  \(", plan), (kwargs, plan)
        if "channel_id" in kwargs:
            assert "Sort  (" not in plan, (kwargs, plan)
    by_email = [kw for kw, _ in cases if "buyer_email" in kw]
    with pg_db.session() as session:
        assert len(repo.list_orders(session, org, **by_email[0])) == ORDERS_PER_BUYER


def _explain(db: Database, sql: str, params: Any, *, ordered: bool = False) -> str:
    with db.engine.connect() as conn:
        if ordered:
            for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
                conn.execute(text(f"SET {setting} = off"))
        return "\n".join(row[0] for row in conn.exec_driver_sql("EXPLAIN " + sql, params))
