"""The returns list: complete and in order across pages, for every filter, at a cost
that does not grow with the page (one query per kind of child, never one per row), and
read from an index in its keyset order on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, text

from returnguard.kit.db import Database
from tests.conftest import Api, order_body

RETURNS = "/api/v1/returns"
# Request times with ties: the keyset order must break them by id, and so must pages.
TIMES = [f"2026-10-{day:02d}T09:00:00+00:00" for day in (5, 5, 6, 7, 7, 7, 8, 9)]


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


def _shop(api: Api) -> list[dict[str, Any]]:
    """Returns in two channels and four statuses, some with two lines and a refund."""
    api.channel("amazon-de")
    api.channel("shop-fr")
    made = []
    for i, at in enumerate(TIMES * 2):
        channel = "amazon-de" if i % 3 else "shop-fr"
        body = order_body(f"O-{i}", channel=channel, quantity=3)
        body["lines"].append(
            {
                "external_id": "item-2",
                "sku": f"SKU-{i}",
                "title": "Second",
                "quantity": 1,
                "unit_price": {"amount": "5.00", "currency": "EUR"},
            }
        )
        body["captured"]["amount"] = "64.97"
        order = api.post("/api/v1/orders", body).json()
        lines = [
            {"order_line_id": ln["id"], "quantity": 1, "reason_code": "defective"}
            for ln in order["lines"][: 1 + i % 2]
        ]
        r = api.post(
            RETURNS, {"order_id": order["id"], "lines": lines, "decide": False, "requested_at": at}
        )
        assert r.status_code == 201, r.text
        ret = r.json()
        if i % 4 == 1:
            ret = api.post(f"{RETURNS}/{ret['id']}/reject", {"reason": "out of window"}).json()
        elif i % 4 == 2:
            ret = api.post(f"{RETURNS}/{ret['id']}/approve", {"note": "ok"}).json()
        elif i % 4 == 3:
            ret = api.post(f"{RETURNS}/{ret['id']}/cancel").json()
        made.append(ret | {"channel": channel})
    # A refund on some approved returns, so refund counts show in allowed actions.
    for ret in [r for r in made if r["status"] == "approved"][:2]:
        r = api.client.post(
            f"{RETURNS}/{ret['id']}/refunds",
            json={
                "lines": [{"return_line_id": ret["lines"][0]["id"], "quantity": 1}],
                "override_reason": "goods on their way",
                "send": False,
            },
            headers=api.tenant.headers | {"Idempotency-Key": f"k-{ret['id']}"},
        )
        assert r.status_code == 201, r.text
    return made


def _pages(api: Api, params: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = params | {"limit": limit} | ({"cursor": cursor} if cursor else {})
        r = api.get(RETURNS, params=query)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["items"]) <= limit
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def _newest_first(items: list[dict[str, Any]]) -> list[str]:
    ordered = sorted(items, key=lambda r: (r["requested_at"], uuid.UUID(r["id"])), reverse=True)
    return [r["id"] for r in ordered]


FILTERS: list[dict[str, Any]] = [
    {},
    {"status": "requested"},
    {"status": ["requested", "approved"]},
    {"status": ["rejected", "cancelled", "approved"], "channel": "amazon-de"},
    {"channel": "shop-fr"},
    {"channel": "amazon-de", "status": "approved"},
    {"requested_from": "2026-10-06T00:00:00Z", "requested_to": "2026-10-08T00:00:00Z"},
    {"status": "requested", "requested_from": "2026-10-07T09:00:00Z"},
]


def _matches(ret: dict[str, Any], f: dict[str, Any]) -> bool:
    statuses = f.get("status", [])
    statuses = [statuses] if isinstance(statuses, str) else statuses
    at = ret["requested_at"].replace("Z", "+00:00")
    return (
        (not statuses or ret["status"] in statuses)
        and ("channel" not in f or ret["channel"] == f["channel"])
        and ("requested_from" not in f or at >= f["requested_from"].replace("Z", "+00:00"))
        and ("requested_to" not in f or at < f["requested_to"].replace("Z", "+00:00"))
    )


def test_list_filters_give_every_match_once_newest_first_across_pages(api: Api) -> None:
    made = _shop(api)
    everything = _pages(api, {}, 200)
    assert {r["id"] for r in everything} == {r["id"] for r in made}
    by_id = {r["id"]: r for r in everything}
    for f in FILTERS:
        expected = _newest_first([r for r in everything if _matches(r, f)])
        assert expected, f
        for limit in (1, 3, 50):
            got = _pages(api, f, limit)
            assert [r["id"] for r in got] == expected, (f, limit)
            # The same JSON whatever the page size or the filter.
            assert all(r == by_id[r["id"]] for r in got)
    by_order = _pages(api, {"order_id": made[0]["order_id"]}, 1)
    assert [r["id"] for r in by_order] == [made[0]["id"]]


def test_list_rows_show_channel_skus_and_refund_state(api: Api) -> None:
    made = _shop(api)
    listed = {r["id"]: r for r in _pages(api, {}, 7)}
    for ret in made:
        row = listed[ret["id"]]
        assert row["channel"] == ret["channel"]
        assert [ln["sku"] for ln in row["lines"]] == [ln["sku"] for ln in ret["lines"]]
        assert row["shipments"] is None and row["inspections"] is None
    # An approved return with a granted refund cannot be cancelled; one without can.
    approved = [r for r in listed.values() if r["status"] == "approved"]
    with_refund = {
        r["id"] for r in approved if api.get(f"{RETURNS}/{r['id']}/refunds").json() != []
    }
    assert len(with_refund) == 2
    for r in approved:
        assert ("cancel" in r["allowed_actions"]) is (r["id"] not in with_refund), r


def test_a_page_sends_as_many_statements_for_50_returns_as_for_5(api: Api, db: Database) -> None:
    _shop(api)
    counts = {}
    for limit in (5, 50):
        with counted(db) as sent:
            page = api.get(RETURNS, params={"limit": limit}).json()
        counts[limit] = len(sent)
        assert len(page["items"]) == min(limit, len(TIMES) * 2)
    assert counts[5] == counts[50], counts
    # And with filters, several statuses included.
    for params in ({"status": ["requested", "approved"], "channel": "amazon-de"},):
        sizes = set()
        for limit in (1, 50):
            with counted(db) as sent:
                assert api.get(RETURNS, params=params | {"limit": limit}).status_code == 200
            sizes.add(len(sent))
        assert len(sizes) == 1, sizes


def test_an_old_style_or_forged_cursor_is_a_422_naming_cursor(api: Api) -> None:
    api.channel()
    for cursor in ("not-a-cursor", "MjAyNi0xMC0wNVQwOTowMDowMHxub3QtYW4taWQ="):
        r = api.get(RETURNS, params={"cursor": cursor})
        assert r.status_code == 422, r.text
        assert [e["field"] for e in r.json()["errors"]] == ["cursor"]


@pytest.mark.postgresql_only
def test_first_pages_are_read_in_index_order_not_sorted(api: Api, db: Database) -> None:
    """Each filter's page is a range of one composite index in the keyset order: no Sort
    node, however many rows match (the planner is kept off whole-table scans, which it
    would pick for a table this small)."""
    _shop(api)
    single_status = [f for f in FILTERS if not isinstance(f.get("status"), list)]
    for f in single_status:
        with counted(db) as sent:
            assert api.get(RETURNS, params=f | {"limit": 5}).status_code == 200
        sql, params = next((s, p) for s, p in sent if "FROM returns" in s and "LIMIT" in s)
        with db.engine.connect() as conn:
            conn.execute(text("SET enable_seqscan = off"))
            conn.execute(text("SET enable_bitmapscan = off"))
            # On a few rows, another index plus a sort can cost the same as the range; made
            # expensive, a Sort is only left if no index gives the keyset order.
            conn.execute(text("SET enable_sort = off"))
            plan = [row[0] for row in conn.exec_driver_sql("EXPLAIN " + sql, params)]
        shown = "\n".join(plan)
        assert "Index Scan" in shown and "ix_returns_org_" in shown, (f, shown)
        assert "Sort" not in shown, (f, shown)
