"""Buyers and the watchlist over HTTP: who may flag a buyer, why, and what it changes."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from returnguard.audit.models import Event
from returnguard.kit.db import Database
from tests.conftest import Api, Tenant, add_key, make_tenant

BUYERS = "/api/v1/buyers"
PROBLEM = "application/problem+json"


def event_count(db: Database) -> int:
    with db.engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(Event.__table__)) or 0)


def check_problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].split(";")[0] == PROBLEM
    problem: dict[str, Any] = r.json()
    assert problem["code"] == code
    return problem


def buyer_of(api: Api, order: dict[str, Any]) -> str:
    """The order's buyer id, found the way an integrator would: by the buyer's email."""
    page = api.get(BUYERS, params={"email": "ANNA@example.de"}).json()
    [buyer] = page["items"]
    assert buyer["id"] == order["buyer"]["id"]
    return str(buyer["id"])


@pytest.fixture
def agent(client: TestClient, db: Database, tenant: Tenant) -> Api:
    return Api(client, add_key(db, tenant, "agent"))


@pytest.fixture
def order(api: Api) -> dict[str, Any]:
    api.channel()
    return dict(api.order(quantity=2))


def test_agent_puts_a_buyer_on_the_watchlist_with_a_reason(
    api: Api, agent: Api, order: dict[str, Any]
) -> None:
    buyer_id = buyer_of(api, order)
    before = api.get(f"{BUYERS}/{buyer_id}").json()
    assert before["watchlisted"] is False and before["watchlist_reason"] is None
    assert before["counts"] == {"orders": 1, "returns": 0, "refunds": 0}

    r = agent.post(f"{BUYERS}/{buyer_id}/watchlist", {"reason": "  three chargebacks in May  "})
    assert r.status_code == 200, r.text
    assert r.json()["watchlisted"] is True
    assert r.json()["watchlist_reason"] == "three chargebacks in May"

    shown = api.get(f"{BUYERS}/{buyer_id}").json()
    assert shown["watchlisted"] is True
    assert shown["watchlist_reason"] == "three chargebacks in May"
    assert shown["channel"] == "amazon-de" and shown["external_id"] == "buyer-1"
    assert shown["email"] == "anna@example.de" and shown["country"] == "DE"

    [event] = api.get(f"{BUYERS}/{buyer_id}/events").json()
    assert event["action"] == "buyer.watchlisted"
    assert event["subject_type"] == "buyer" and event["subject_id"] == buyer_id
    assert event["actor_label"] == "agent"
    assert event["data"] == {"reason": "three chargebacks in May"}
    assert event["before"] == {"watchlisted": False, "watchlist_reason": None}
    assert event["after"] == {"watchlisted": True, "watchlist_reason": "three chargebacks in May"}

    on_list = api.get(BUYERS, params={"watchlisted": "true"}).json()["items"]
    assert [b["id"] for b in on_list] == [buyer_id]
    assert api.get(BUYERS, params={"watchlisted": "false"}).json()["items"] == []


def test_watchlisting_is_idempotent_and_taking_off_needs_a_reason_too(
    api: Api, agent: Api, order: dict[str, Any], db: Database
) -> None:
    buyer_id = buyer_of(api, order)
    watch, remove = f"{BUYERS}/{buyer_id}/watchlist", f"{BUYERS}/{buyer_id}/watchlist/remove"
    assert agent.post(watch, {"reason": "chargebacks"}).status_code == 200
    events = event_count(db)

    # The same state again changes nothing and records nothing.
    assert agent.post(watch, {"reason": "chargebacks"}).json()["watchlist_reason"] == "chargebacks"
    assert event_count(db) == events
    # Another reason replaces the reason, and says what it replaced.
    r = agent.post(watch, {"reason": "chargebacks and empty boxes"})
    assert r.json()["watchlist_reason"] == "chargebacks and empty boxes"
    assert event_count(db) == events + 1

    check_problem(agent.post(remove, {}), 422, "validation_error")
    r = agent.post(remove, {"reason": "cleared by the marketplace"})
    assert r.status_code == 200, r.text
    assert r.json()["watchlisted"] is False and r.json()["watchlist_reason"] is None
    assert agent.post(remove, {"reason": "again"}).status_code == 200
    timeline = api.get(f"{BUYERS}/{buyer_id}/events").json()
    assert [e["action"] for e in timeline] == [
        "buyer.watchlisted",
        "buyer.watchlisted",
        "buyer.unwatchlisted",
    ]
    assert timeline[1]["before"]["watchlist_reason"] == "chargebacks"
    assert timeline[2]["data"] == {"reason": "cleared by the marketplace"}
    assert timeline[2]["before"]["watchlist_reason"] == "chargebacks and empty boxes"
    assert api.get(BUYERS, params={"watchlisted": "true"}).json()["items"] == []


@pytest.mark.parametrize("role", ["viewer", "inspector", "finance"])
def test_only_agents_and_admins_change_the_watchlist(
    client: TestClient, db: Database, tenant: Tenant, api: Api, order: dict[str, Any], role: str
) -> None:
    buyer_id = buyer_of(api, order)
    other_role = Api(client, add_key(db, tenant, role))
    events = event_count(db)
    for path in ("watchlist", "watchlist/remove"):
        r = other_role.post(f"{BUYERS}/{buyer_id}/{path}", {"reason": "looks odd"})
        assert "buyers:flag" in check_problem(r, 403, "forbidden")["detail"]
    assert event_count(db) == events
    # Reading is for every role.
    assert other_role.get(f"{BUYERS}/{buyer_id}").json()["watchlisted"] is False
    assert other_role.get(f"{BUYERS}/{buyer_id}/events").json() == []
    assert api.post(f"{BUYERS}/{buyer_id}/watchlist", {"reason": "admin may"}).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reason": ""}, "reason"),
        ({"reason": "   "}, "reason"),
        ({}, "reason"),
        ({"reason": None}, "reason"),
        ({"reason": "x" * 2001}, "reason"),
        ({"reason": "bad\u0000byte"}, "reason"),
        ({"reason": "fine", "until": "2027-01-01"}, "until"),
    ],
)
def test_bad_reason_is_422_naming_the_field(
    api: Api, agent: Api, order: dict[str, Any], db: Database, body: dict[str, Any], field: str
) -> None:
    buyer_id = buyer_of(api, order)
    events = event_count(db)
    for path in ("watchlist", "watchlist/remove"):
        problem = check_problem(
            agent.post(f"{BUYERS}/{buyer_id}/{path}", body), 422, "validation_error"
        )
        assert [e["field"] for e in problem["errors"]] == [field]
    assert event_count(db) == events
    assert api.get(f"{BUYERS}/{buyer_id}").json()["watchlisted"] is False


def test_another_tenants_buyer_is_404_and_unchanged(
    api: Api, client: TestClient, db: Database, order: dict[str, Any]
) -> None:
    other = Api(client, make_tenant(db, "Other Shop GmbH"))
    other.channel()
    theirs = other.order()
    their_buyer = theirs["buyer"]["id"]
    events = event_count(db)
    for method, path, body in [
        ("GET", f"{BUYERS}/{their_buyer}", None),
        ("GET", f"{BUYERS}/{their_buyer}/events", None),
        ("POST", f"{BUYERS}/{their_buyer}/watchlist", {"reason": "x"}),
        ("POST", f"{BUYERS}/{their_buyer}/watchlist/remove", {"reason": "x"}),
        ("POST", "/api/v1/watchlist", {"buyer_id": their_buyer, "reason": "x"}),
    ]:
        r = api.get(path) if method == "GET" else api.post(path, body)
        check_problem(r, 404, "not_found")
    assert event_count(db) == events
    assert other.get(f"{BUYERS}/{their_buyer}").json()["watchlisted"] is False
    # Same email, same channel code, same external id: still two buyers, one each.
    assert [b["id"] for b in api.get(BUYERS).json()["items"]] == [order["buyer"]["id"]]
    assert [b["id"] for b in other.get(BUYERS).json()["items"]] == [their_buyer]


def test_the_watchlist_holds_back_refunds_until_the_buyer_is_taken_off(
    api: Api, agent: Api, client: TestClient, db: Database, tenant: Tenant, order: dict[str, Any]
) -> None:
    buyer_id = buyer_of(api, order)
    ret = api.open_return(order, quantity=2)
    rid, line = ret["id"], ret["lines"][0]["id"]
    assert (
        api.post(f"/api/v1/returns/{rid}/approve", {"note": "checked by hand"}).status_code == 200
    )
    assert (
        agent.post(f"{BUYERS}/{buyer_id}/watchlist", {"reason": "empty boxes"}).status_code == 200
    )

    def refund(who: Api, key: str, **extra: Any) -> Any:
        return who.client.post(
            f"/api/v1/returns/{rid}/refunds",
            json={"lines": [{"return_line_id": line, "quantity": 1}]} | extra,
            headers=who.tenant.headers | {"Idempotency-Key": key},
        )

    # Before the goods arrive not even finance's written override releases money ...
    finance = Api(client, add_key(db, tenant, "finance"))
    r = refund(finance, "early", override_reason="Amazon refunded at first scan")
    assert check_problem(r, 409, "watchlisted_needs_inspection")
    # ... and once they arrive, only units that passed inspection may be refunded.
    r = api.post(
        f"/api/v1/returns/{rid}/receive", {"lines": [{"return_line_id": line, "quantity": 2}]}
    )
    assert r.status_code == 200, r.text
    assert check_problem(refund(agent, "received"), 409, "watchlisted_needs_inspection")

    r = agent.post(f"{BUYERS}/{buyer_id}/watchlist/remove", {"reason": "marketplace cleared it"})
    assert r.status_code == 200, r.text
    r = refund(agent, "after-removal")
    assert r.status_code == 201, r.text
    counts = api.get(f"{BUYERS}/{buyer_id}").json()["counts"]
    assert counts == {"orders": 1, "returns": 1, "refunds": 1}


def test_listing_buyers_page_by_page_and_by_filter(api: Api) -> None:
    api.channel()
    api.channel("ebay-de")
    for i in range(5):
        api.order(
            f"302-000000{i}-0000000",
            channel="ebay-de" if i == 4 else "amazon-de",
            buyer={"external_id": f"buyer-{i}", "email": f"b{i}@example.de"},
        )
    pages, cursor = [], None
    while True:
        page = api.get(BUYERS, params={"limit": 2} | ({"cursor": cursor} if cursor else {})).json()
        pages.append([b["external_id"] for b in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(pages) < 10, "pagination does not end"
    assert [len(p) for p in pages] == [2, 2, 1]
    assert sorted(x for p in pages for x in p) == [f"buyer-{i}" for i in range(5)]
    everything = api.get(BUYERS).json()["items"]
    assert [b["external_id"] for b in everything] == [x for p in pages for x in p]

    ebay = api.get(BUYERS, params={"channel": "ebay-de"}).json()["items"]
    assert [(b["external_id"], b["channel"]) for b in ebay] == [("buyer-4", "ebay-de")]
    [found] = api.get(BUYERS, params={"email": "B2@EXAMPLE.DE"}).json()["items"]
    assert found["external_id"] == "buyer-2"
    assert api.get(BUYERS, params={"email": "nobody@example.de"}).json()["items"] == []


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({"channel": "otto-de"}, "unknown_channel", "channel"),
        ({"channel": "Not A Code"}, "validation_error", "channel"),
        ({"cursor": "not-a-cursor"}, "validation_error", "cursor"),
        (
            {
                "cursor": base64.urlsafe_b64encode(
                    f"2026-10-01T10:00:00|{uuid.uuid4()}".encode()
                ).decode()
            },
            "validation_error",
            "cursor",
        ),
        ({"limit": 0}, "validation_error", "limit"),
        ({"limit": 201}, "validation_error", "limit"),
        ({"watchlisted": "perhaps"}, "validation_error", "watchlisted"),
        ({"email": "a\u0000b@example.de"}, "validation_error", "email"),
    ],
)
def test_bad_list_filters_are_422_naming_the_field(
    api: Api, params: dict[str, Any], code: str, field: str
) -> None:
    api.channel()
    problem = check_problem(api.get(BUYERS, params=params), 422, code)
    assert [e["field"] for e in problem["errors"]] == [field]


def test_the_watchlist_route_puts_on_and_takes_off(
    api: Api, agent: Api, order: dict[str, Any]
) -> None:
    buyer_id = buyer_of(api, order)
    r = agent.post("/api/v1/watchlist", {"buyer_id": buyer_id, "reason": "three empty boxes"})
    assert r.status_code == 200, r.text
    assert r.json()["watchlisted"] is True
    assert r.json()["watchlist_reason"] == "three empty boxes"
    r = agent.post(
        "/api/v1/watchlist", {"buyer_id": buyer_id, "reason": "cleared", "watchlisted": False}
    )
    assert r.status_code == 200 and r.json()["watchlisted"] is False
    r = agent.post("/api/v1/watchlist", {"buyer_id": buyer_id})
    check_problem(r, 422, "validation_error")
    assert r.json()["errors"][0]["field"] == "reason"
