"""API keys, roles and tenant isolation as a client sees them."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from returnguard.domain.policy.defaults import default_policy_data
from returnguard.kit.db import Base, Database
from tests.conftest import Api, Tenant, add_key, make_tenant, order_body, seed_every_object

PROBLEM = "application/problem+json"
ORDERS = "/api/v1/orders"
RETURNS = "/api/v1/returns"


def check_problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].split(";")[0] == PROBLEM
    problem: dict[str, Any] = r.json()
    assert problem["status"] == status
    assert problem["code"] == code
    return problem


def check_unauthorized(r: Any) -> dict[str, Any]:
    problem = check_problem(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"
    return problem


def event_count(db: Database) -> int:
    with db.engine.connect() as conn:
        table = Base.metadata.tables["events"]
        return int(conn.scalar(select(func.count()).select_from(table)) or 0)


# --- authentication --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/v1/me"), ("GET", RETURNS), ("POST", ORDERS), ("GET", "/api/v1/channels")],
)
def test_no_key_is_401_with_www_authenticate(
    client: TestClient, db: Database, method: str, path: str
) -> None:
    r = client.request(method, path, json=order_body() if method == "POST" else None)
    problem = check_unauthorized(r)
    assert "Bearer" in problem["detail"]
    with db.engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM orders")) == 0


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer rg_000000000000_" + "A" * 43,
        "Bearer not-a-key",
        "Bearer rg_\x00_secret",
        "Bearer rg_ABCDEF012345_secret",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "rg_000000000000_secret",
    ],
)
def test_bad_key_is_401(client: TestClient, tenant: Tenant, authorization: str) -> None:
    check_unauthorized(client.get("/api/v1/me", headers={"Authorization": authorization}))


def test_real_prefix_with_wrong_secret_is_401(client: TestClient, tenant: Tenant) -> None:
    # The secret itself may contain "_": split off only "rg" and the lookup prefix.
    scheme, prefix, secret = tenant.api_key.split("_", 2)
    changed = ("B" if secret[0] == "A" else "A") + secret[1:]
    forged = f"{scheme}_{prefix}_{changed}"
    assert forged != tenant.api_key
    r = client.get("/api/v1/me", headers={"Authorization": f"Bearer {forged}"})
    assert check_unauthorized(r)["detail"] == "invalid API key"
    assert client.get("/api/v1/me", headers=tenant.headers).status_code == 200


def test_revoked_key_is_401(api: Api, client: TestClient) -> None:
    r = api.post("/api/v1/api-keys", {"name": "warehouse scanner", "role": "inspector"})
    assert r.status_code == 201, r.text
    created = r.json()
    key = Tenant(api.tenant.organization_id, created["api_key"])
    me = client.get("/api/v1/me", headers=key.headers)
    assert me.status_code == 200, me.text
    assert me.json()["role"] == "inspector"
    assert me.json()["organization_id"] == str(api.tenant.organization_id)

    r = api.post(f"/api/v1/api-keys/{created['id']}/revoke")
    assert r.status_code == 200, r.text
    assert r.json()["revoked_at"] is not None
    problem = check_unauthorized(client.get("/api/v1/me", headers=key.headers))
    assert "revoked" in problem["detail"]
    check_unauthorized(client.get(RETURNS, headers=key.headers))
    # The admin key that revoked it still works.
    assert api.get("/api/v1/me").status_code == 200


def test_api_keys_are_stored_hashed(api: Api, db: Database) -> None:
    r = api.post("/api/v1/api-keys", {"name": "integration", "role": "agent"})
    assert r.status_code == 201, r.text
    plain = r.json()["api_key"]
    # rg_<hex prefix>_<secret>: the secret itself may contain "_".
    secret = plain.split("_", 2)[2]
    with db.engine.connect() as conn:
        for table in ("api_keys", "events"):
            rows = conn.execute(select(Base.metadata.tables[table])).all()
            assert rows, table
            stored = " ".join(str(value) for row in rows for value in row)
            assert plain not in stored, table
            assert secret not in stored, table
            # The fixture's key is just as secret.
            assert api.tenant.api_key not in stored, table


def test_only_admins_manage_keys(client: TestClient, db: Database, tenant: Tenant) -> None:
    agent = Api(client, add_key(db, tenant, "agent"))
    r = agent.post("/api/v1/api-keys", {"name": "sneaky", "role": "admin"})
    assert check_problem(r, 403, "forbidden")
    with db.engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM api_keys")) == 2


# --- roles -----------------------------------------------------------------------------


@pytest.fixture
def shop(api: Api) -> Any:
    """An order with an open return, made by the tenant's admin key."""
    api.channel()
    order = api.order(quantity=2)
    return {"order": order, "return": api.open_return(order)}


def test_viewer_reads_but_cannot_write(
    client: TestClient, db: Database, tenant: Tenant, shop: Any
) -> None:
    viewer = Api(client, add_key(db, tenant, "viewer"))
    order, ret = shop["order"], shop["return"]
    events = event_count(db)

    r = viewer.post(ORDERS, order_body(external_id="302-9999999-9999999"))
    assert "orders:write" in check_problem(r, 403, "forbidden")["detail"]
    r = viewer.post(ORDERS, order_body() | {"captured": {"amount": "1.00", "currency": "EUR"}})
    check_problem(r, 403, "forbidden")
    check_problem(
        viewer.post(f"{RETURNS}/{ret['id']}/approve", {"note": "checked by hand"}), 403, "forbidden"
    )
    line = {"order_line_id": order["lines"][0]["id"], "quantity": 1, "reason_code": "other"}
    r = viewer.post(RETURNS, {"order_id": order["id"], "lines": [line]})
    check_problem(r, 403, "forbidden")
    assert event_count(db) == events

    r = viewer.get(f"{ORDERS}/{order['id']}")
    assert r.status_code == 200, r.text
    assert r.json()["captured"] == order["captured"]
    assert viewer.get(f"{RETURNS}/{ret['id']}").json()["status"] == "requested"
    assert [x["id"] for x in viewer.get(RETURNS).json()["items"]] == [ret["id"]]
    assert viewer.get(f"{RETURNS}/{ret['id']}/events").status_code == 200


def test_inspector_receives_and_inspects_but_cannot_approve(
    client: TestClient, db: Database, tenant: Tenant, api: Api, shop: Any
) -> None:
    inspector = Api(client, add_key(db, tenant, "inspector"))
    rid, line_id = shop["return"]["id"], shop["return"]["lines"][0]["id"]

    r = inspector.post(f"{RETURNS}/{rid}/approve", {"note": "checked by hand"})
    assert "returns:decide" in check_problem(r, 403, "forbidden")["detail"]
    assert api.get(f"{RETURNS}/{rid}").json()["status"] == "requested"

    assert api.post(f"{RETURNS}/{rid}/approve", {"note": "checked by hand"}).status_code == 200
    r = inspector.post(
        f"{RETURNS}/{rid}/receive", {"lines": [{"return_line_id": line_id, "quantity": 1}]}
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "received"
    r = inspector.post(
        f"{RETURNS}/{rid}/inspections",
        {"lines": [{"return_line_id": line_id, "passed": 1, "failed": 0, "grade": "A"}]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "inspected"
    events = api.get(f"{RETURNS}/{rid}/events").json()
    assert [e["actor_label"] for e in events if e["action"] == "return.inspect"] == ["inspector"]


def test_agent_cannot_inspect(client: TestClient, db: Database, tenant: Tenant, shop: Any) -> None:
    agent = Api(client, add_key(db, tenant, "agent"))
    rid, line_id = shop["return"]["id"], shop["return"]["lines"][0]["id"]
    assert agent.post(f"{RETURNS}/{rid}/approve", {"note": "checked by hand"}).status_code == 200
    r = agent.post(
        f"{RETURNS}/{rid}/receive", {"lines": [{"return_line_id": line_id, "quantity": 1}]}
    )
    assert r.status_code == 200, r.text
    r = agent.post(
        f"{RETURNS}/{rid}/inspections",
        {"lines": [{"return_line_id": line_id, "passed": 1, "failed": 0}]},
    )
    assert "returns:inspect" in check_problem(r, 403, "forbidden")["detail"]
    after = agent.get(f"{RETURNS}/{rid}").json()
    assert after["status"] == "received"
    assert after["lines"][0]["quantities"]["inspected"] == 0


# --- tenant isolation ------------------------------------------------------------------


@pytest.fixture
def other(client: TestClient, db: Database) -> Api:
    return Api(client, make_tenant(db, "Other Shop GmbH"))


@pytest.fixture
def foreign(other: Api) -> dict[str, Any]:
    """Another tenant's order, open return, webhook endpoint, API key and the rest."""
    return seed_every_object(other)


# Bodies that pass validation, so that only the ownership check can refuse the request.
def _body(path: str, ids: dict[str, Any]) -> Any:
    line = ids["line_id"]
    bodies: dict[str, Any] = {
        "reject": {"reason": "no"},
        "offer": {"kind": "coupon", "amount": {"amount": "5.00", "currency": "EUR"}},
        "shipments": {"carrier": "DHL", "tracking_number": "X1"},
        "receive": {"lines": [{"return_line_id": line, "quantity": 1}]},
        "inspections": {"lines": [{"return_line_id": line, "passed": 1, "failed": 0}]},
        "approve": {"lines": [{"return_line_id": line, "quantity": 1}]},
        "versions": {"document": default_policy_data("EUR")},
        "publish": {"version": 1},
        "backtest": {"from": "2026-01-01", "to": "2026-01-31"},
        "refunds": {"lines": [{"return_line_id": line, "quantity": 1}]},
        "settle": {"reference": "X-1"},
        "reverse": {"reason": "booked twice"},
        "cancel": {"reason": "granted by mistake"},
        "watchlist": {"reason": "chargebacks"},
        "remove": {"reason": "cleared"},
    }
    return bodies.get(path.rsplit("/", 1)[-1], {})


# Routes meant for anyone, without a key: buyers open a shop's return policy page by its
# organization id (tests/policies/test_public_policy_page.py).
PUBLIC_ROUTES = {("GET", "/policies/{organization_id}/{channel_code}")}


def _routes(client: TestClient) -> list[tuple[str, str]]:
    """Every documented GET and POST route that names one object of a tenant by its id."""
    paths: dict[str, dict[str, Any]] = client.get("/openapi.json").json()["paths"]
    return [
        (method.upper(), path)
        for path, operations in paths.items()
        if re.search(r"\{\w+_id\}", path)
        for method in operations
        if method in {"get", "post"} and (method.upper(), path) not in PUBLIC_ROUTES
    ]


def test_public_routes_are_documented_and_need_no_key(
    client: TestClient, other: Api, foreign: dict[str, Any]
) -> None:
    paths: dict[str, dict[str, Any]] = client.get("/openapi.json").json()["paths"]
    for method, path in PUBLIC_ROUTES:
        assert method.lower() in paths[path], path
        url = path.format(organization_id=other.tenant.organization_id, channel_code="amazon-de")
        r = client.request(method, url)
        assert r.status_code == 200, (path, r.text)
        assert "authorization" not in {h.lower() for h in r.request.headers}


def test_another_tenants_objects_are_404_on_every_route(
    api: Api, client: TestClient, db: Database, other: Api, foreign: dict[str, Any]
) -> None:
    routes = _routes(client)
    assert len(routes) >= 20, routes
    before = other.get(f"{RETURNS}/{foreign['return_id']}").json()
    events = event_count(db)
    for method, path in routes:
        url = path.format(**foreign)
        missing = {
            k: str(uuid.uuid4())
            for k in (
                "order_id",
                "return_id",
                "endpoint_id",
                "key_id",
                "policy_id",
                "refund_id",
                "entry_id",
                "buyer_id",
                "provider_id",
                "evidence_id",
                "external_id",
            )
        }
        missing_url = path.format(**(foreign | missing))
        body = _body(path, foreign)
        if method == "GET":
            r, r_missing = api.get(url), api.get(missing_url)
        elif path.endswith("/evidence"):
            # A form, as the upload reads (a JSON body is a 415 before any lookup).
            form = {"text": "the lid was broken"}
            r, r_missing = api.post(url, data=form), api.post(missing_url, data=form)
        else:
            r, r_missing = api.post(url, body), api.post(missing_url, body)
        problem = check_problem(r, 404, "not_found")
        missing_problem = check_problem(r_missing, 404, "not_found")
        # Indistinguishable from an id that does not exist anywhere.
        for key, value in foreign.items():
            if key in missing:
                problem["detail"] = problem["detail"].replace(value, "<id>")
                missing_problem["detail"] = missing_problem["detail"].replace(missing[key], "<id>")
        assert problem["detail"] == missing_problem["detail"], (method, path)
        assert problem["errors"] == missing_problem["errors"] == []

    r = api.post(
        RETURNS,
        {
            "order_id": foreign["order_id"],
            "lines": [
                {
                    "order_line_id": foreign["order_line_id"],
                    "quantity": 1,
                    "reason_code": "defective",
                }
            ],
        },
    )
    check_problem(r, 404, "not_found")

    # Nothing happened to the other tenant's data.
    assert event_count(db) == events
    after = other.get(f"{RETURNS}/{foreign['return_id']}").json()
    assert after == before
    other_key = Tenant(other.tenant.organization_id, foreign["key"])
    assert client.get("/api/v1/me", headers=other_key.headers).status_code == 200


def test_lists_show_only_own_data(
    api: Api, client: TestClient, other: Api, foreign: dict[str, Any]
) -> None:
    api.channel()
    order = api.order(quantity=1)
    own = api.open_return(order)

    page = api.get(RETURNS).json()
    assert [x["id"] for x in page["items"]] == [own["id"]]
    assert page["next_cursor"] is None
    assert api.get(RETURNS, params={"order_id": foreign["order_id"]}).json()["items"] == []
    assert [x["id"] for x in api.get(RETURNS, params={"channel": "amazon-de"}).json()["items"]] == [
        own["id"]
    ]
    assert [c["code"] for c in api.get("/api/v1/channels").json()] == ["amazon-de"]
    assert api.get("/api/v1/webhooks/endpoints").json() == []

    theirs = other.get(RETURNS).json()["items"]
    assert [x["id"] for x in theirs] == [foreign["return_id"]]
    assert [e["id"] for e in other.get("/api/v1/webhooks/endpoints").json()] == [
        foreign["endpoint_id"]
    ]


def test_same_channel_and_order_ids_in_two_tenants_stay_apart(
    api: Api, other: Api, db: Database
) -> None:
    api.channel()
    other.channel()
    mine = api.order(price="10.00", quantity=1)
    theirs = other.order(price="99.00", quantity=1)
    assert mine["id"] != theirs["id"]
    assert api.get(f"{ORDERS}/{mine['id']}").json()["captured"]["amount"] == "10.00"
    assert other.get(f"{ORDERS}/{theirs['id']}").json()["captured"]["amount"] == "99.00"
    with db.engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM orders")) == 2
