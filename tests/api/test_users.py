"""Staff users get personal keys; their changes are recorded under their email."""

from __future__ import annotations

from fastapi.testclient import TestClient

from returnguard.kit.db import Database
from tests.conftest import Api, Tenant, add_key


def test_admin_adds_a_user_whose_key_acts_under_their_name(api: Api, client: TestClient) -> None:
    r = api.post("/api/v1/users", {"email": "Ines@Shop.example", "role": "agent", "name": "Ines"})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["email"] == "ines@shop.example"
    assert created["role"] == "agent"
    ines = {"Authorization": f"Bearer {created['api_key']}"}
    me = client.get("/api/v1/me", headers=ines).json()
    assert me == {
        "organization_id": str(api.tenant.organization_id),
        "role": "agent",
        "actor_type": "user",
        "label": "ines@shop.example",
    }
    api.channel()
    order = api.order()
    ret = api.open_return(order)
    r = client.post(f"/api/v1/returns/{ret['id']}/reject", json={"reason": "no"}, headers=ines)
    assert r.status_code == 200, r.text
    events = api.get(f"/api/v1/returns/{ret['id']}/events").json()
    assert events[-1]["actor_type"] == "user"
    assert events[-1]["actor_label"] == "ines@shop.example"
    listed = api.get("/api/v1/users").json()
    assert [u["email"] for u in listed] == ["ines@shop.example"]
    assert "api_key" not in listed[0]


def test_user_email_must_be_unique_and_valid(api: Api) -> None:
    assert api.post("/api/v1/users", {"email": "a@b.example", "role": "viewer"}).status_code == 201
    r = api.post("/api/v1/users", {"email": "A@b.example", "role": "viewer"})
    assert r.status_code == 409
    assert r.json()["code"] == "user_exists"
    r = api.post("/api/v1/users", {"email": "not-an-email", "role": "viewer"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "email"
    r = api.post("/api/v1/users", {"email": "c@b.example", "role": "owner"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "role"


def test_only_admins_manage_users_and_keys(
    db: Database, client: TestClient, tenant: Tenant
) -> None:
    agent = add_key(db, tenant, "agent")
    for method, path in [
        ("POST", "/api/v1/users"),
        ("GET", "/api/v1/users"),
        ("GET", "/api/v1/api-keys"),
        ("POST", "/api/v1/api-keys"),
    ]:
        r = client.request(
            method,
            path,
            headers=agent.headers,
            json={"email": "x@y.example", "role": "admin", "name": "k"}
            if method == "POST"
            else None,
        )
        assert r.status_code == 403, (path, r.text)
        assert r.json()["code"] == "forbidden"


def test_key_listing_never_shows_the_key(api: Api) -> None:
    created = api.post("/api/v1/api-keys", {"name": "erp", "role": "viewer"}).json()
    listed = api.get("/api/v1/api-keys").json()
    assert {k["name"] for k in listed} == {"test", "erp"}
    assert created["api_key"] not in str(listed)
    assert all(
        created["api_key"].split("_")[1] != k["prefix"] or k["name"] == "erp" for k in listed
    )
