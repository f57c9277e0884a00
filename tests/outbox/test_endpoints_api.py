from __future__ import annotations

from typing import Any

import pytest

from returnguard.kit.db import Database
from tests.conftest import Api, Tenant, add_key, make_tenant
from tests.outbox.conftest import register

ENDPOINTS = "/api/v1/webhooks/endpoints"


def test_registering_returns_the_secret_once_and_lists_without_it(api: Api) -> None:
    created = register(api, "https://example.com/hooks/rg", ["return.created"])
    assert created["secret"].startswith("whsec_")
    assert len(created["secret"]) > 30
    assert created["url"] == "https://example.com/hooks/rg"
    assert created["event_types"] == ["return.created"]
    assert created["active"] is True

    other = register(api, "http://127.0.0.1:9/other")
    assert other["secret"] != created["secret"]

    listed = api.get(ENDPOINTS)
    assert listed.status_code == 200
    items = listed.json()
    assert [e["id"] for e in items] == [created["id"], other["id"]]
    assert all("secret" not in e for e in items)
    assert created["secret"] not in listed.text
    assert items[0]["event_types"] == ["return.created"]
    assert items[1]["event_types"] == ["*"]


def test_duplicate_event_types_are_stored_once(api: Api) -> None:
    created = register(api, "https://example.com/h", ["return.created", "return.created"])
    assert created["event_types"] == ["return.created"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://example.com/x", "event_types": ["*"]}, "url"),
        ({"url": "/relative/path", "event_types": ["*"]}, "url"),
        ({"url": "http:///no-host", "event_types": ["*"]}, "url"),
        ({"url": "http://[::1/broken-ipv6", "event_types": ["*"]}, "url"),
        ({"url": "http://example.com:99999/port", "event_types": ["*"]}, "url"),
        ({"url": "http://exa mple.com/", "event_types": ["*"]}, "url"),
        ({"url": "http://example.com/\u0001", "event_types": ["*"]}, "url"),
        ({"url": "https://example.com/x", "event_types": ["return.deleted"]}, "event_types"),
        ({"url": "https://example.com/x", "event_types": []}, "event_types"),
    ],
)
def test_invalid_registrations_are_problem_documents(
    api: Api, body: dict[str, Any], field: str
) -> None:
    r = api.post(ENDPOINTS, body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["code"] == "validation_error"
    assert any(field in str(e.get("field", e.get("loc", ""))) for e in problem["errors"]), problem
    assert api.get(ENDPOINTS).json() == []


def test_only_admins_manage_webhooks(api: Api, db: Database, tenant: Tenant) -> None:
    agent = Api(api.client, add_key(db, tenant, "agent"))
    assert (
        agent.post(ENDPOINTS, {"url": "https://e.com/x", "event_types": ["*"]}).status_code == 403
    )
    assert agent.get(ENDPOINTS).status_code == 403
    assert api.client.get(ENDPOINTS).status_code == 401


def test_endpoints_and_deliveries_are_per_organization(api: Api, db: Database) -> None:
    mine = register(api, "https://example.com/mine")
    stranger = Api(api.client, make_tenant(db, "Other Ltd"))
    assert stranger.get(ENDPOINTS).json() == []
    r = stranger.get(f"{ENDPOINTS}/{mine['id']}/deliveries")
    assert r.status_code == 404
    assert r.json()["code"] == "not_found"
    assert api.get(f"{ENDPOINTS}/{mine['id']}/deliveries").json() == []
