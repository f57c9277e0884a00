"""The OpenAPI document, health and metrics endpoints, and listing returns page by page."""

from __future__ import annotations

import base64
import re
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from returnguard.kit.db import Database
from tests.conftest import Api

RETURNS = "/api/v1/returns"
PROBLEM = "application/problem+json"
PROBLEM_SCHEMA = {"$ref": "#/components/schemas/Problem"}

# DESIGN.md "API shape": the routes that exist today, with `{id}` for any path parameter.
DESIGNED_ROUTES = [
    ("post", "/api/v1/orders"),
    ("get", "/api/v1/orders/{id}"),
    ("post", "/api/v1/returns"),
    ("get", "/api/v1/returns"),
    ("get", "/api/v1/returns/{id}"),
    ("post", "/api/v1/returns/{id}/approve"),
    ("post", "/api/v1/returns/{id}/reject"),
    ("post", "/api/v1/returns/{id}/offer"),
    ("post", "/api/v1/returns/{id}/accept-offer"),
    ("post", "/api/v1/returns/{id}/cancel"),
    ("post", "/api/v1/returns/{id}/shipments"),
    ("post", "/api/v1/returns/{id}/receive"),
    ("post", "/api/v1/returns/{id}/inspections"),
    ("get", "/api/v1/returns/{id}/events"),
    ("get", "/healthz"),
    ("get", "/metrics"),
    # Public, no key: a shop's return policy page for buyers (organization id, channel code).
    ("get", "/policies/{id}/{id}"),
]


@pytest.fixture
def spec(client: TestClient) -> dict[str, Any]:
    r = client.get("/openapi.json")
    assert r.status_code == 200, r.text
    document: dict[str, Any] = r.json()
    return document


def _operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, re.sub(r"\{[^}]+\}", "{id}", path)): operation
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
    }


def test_openapi_lists_every_designed_route(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"] == "ReturnGuard"
    operations = _operations(spec)
    missing = [route for route in DESIGNED_ROUTES if route not in operations]
    assert missing == []


def test_every_post_route_documents_422_as_a_problem(spec: dict[str, Any]) -> None:
    posts = {key: op for key, op in _operations(spec).items() if key[0] == "post"}
    assert len(posts) >= 20
    for (_, path), operation in posts.items():
        response = operation["responses"].get("422")
        assert response is not None, path
        assert response["content"] == {PROBLEM: {"schema": PROBLEM_SCHEMA}}, path


def test_error_responses_are_documented_as_problem_documents(spec: dict[str, Any]) -> None:
    for (method, path), operation in _operations(spec).items():
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert response["content"] == {PROBLEM: {"schema": PROBLEM_SCHEMA}}, (
                    method,
                    path,
                    status,
                )
    # FastAPI's own validation-error shape is never sent, so it is not documented either.
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_problem_schema_describes_what_the_api_sends(spec: dict[str, Any], api: Api) -> None:
    schemas = spec["components"]["schemas"]
    problem = schemas["Problem"]
    assert {"type", "title", "status", "detail", "code"} <= set(problem["required"])
    assert problem["properties"]["errors"]["items"] == {"$ref": "#/components/schemas/FieldError"}
    assert set(schemas["FieldError"]["required"]) == {"field", "message"}

    r = api.post("/api/v1/orders", {"colour": "blue"})
    assert r.status_code == 422
    assert r.headers["content-type"] == PROBLEM
    sent = r.json()
    assert set(sent) <= set(problem["properties"])
    assert all(set(e) == {"field", "message"} for e in sent["errors"])


def test_healthz_names_the_database(client: TestClient, db: Database) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok"
    assert body["database"] == db.dialect
    assert body["database"] in {"sqlite", "postgresql"}
    assert body["version"]


def test_metrics_are_prometheus_text(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert "# TYPE returnguard_http_requests_total counter" in r.text
    assert 'returnguard_http_requests_total{method="GET",route="/healthz",status="200"}' in r.text
    assert "returnguard_outbox_pending" in r.text


def test_unexpected_error_is_a_problem_document_that_reveals_nothing(
    api: Api, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from returnguard.orders import service

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("connection string postgresql://secret@db")

    monkeypatch.setattr(service, "get_order", broken)
    quiet = TestClient(client.app, raise_server_exceptions=False)
    r = quiet.get(f"/api/v1/orders/{uuid.uuid4()}", headers=api.tenant.headers)
    assert r.status_code == 500
    assert r.headers["content-type"] == PROBLEM
    problem = r.json()
    assert problem["code"] == "internal_error"
    assert problem["status"] == 500
    assert "secret" not in r.text and "RuntimeError" not in r.text


def test_metrics_label_routes_by_template_not_by_id(api: Api, client: TestClient) -> None:
    rid = uuid.uuid4()
    assert api.get(f"{RETURNS}/{rid}").status_code == 404
    text = client.get("/metrics").text
    assert 'route="/api/v1/returns/{return_id}",status="404"' in text
    assert str(rid) not in text


# --- listing returns -------------------------------------------------------------------


@pytest.fixture
def five_returns(api: Api) -> list[dict[str, Any]]:
    api.channel()
    order = api.order(quantity=5, price="9.99")
    returns = [api.open_return(order) for _ in range(5)]
    for ret in returns[:2]:
        r = api.post(f"{RETURNS}/{ret['id']}/approve", {"note": "checked by hand"})
        assert r.status_code == 200, r.text
    return returns


def walk(api: Api, **params: Any) -> list[list[str]]:
    """Every page of GET /returns with ``params``, following `next_cursor` to the end."""
    pages: list[list[str]] = []
    cursor = None
    while True:
        query = params | ({"cursor": cursor} if cursor else {})
        r = api.get(RETURNS, params=query)
        assert r.status_code == 200, r.text
        page = r.json()
        pages.append([item["id"] for item in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) <= 10, "pagination does not end"


def test_paging_through_all_returns(api: Api, five_returns: list[dict[str, Any]]) -> None:
    pages = walk(api, limit=2)
    assert [len(p) for p in pages] == [2, 2, 1]
    seen = [rid for page in pages for rid in page]
    assert len(seen) == len(set(seen)) == 5
    assert set(seen) == {r["id"] for r in five_returns}
    # Newest first, the same order as one big page.
    everything = api.get(RETURNS, params={"limit": 50}).json()
    assert [item["id"] for item in everything["items"]] == seen
    assert everything["next_cursor"] is None


def test_filter_by_status(api: Api, five_returns: list[dict[str, Any]]) -> None:
    approved = {r["id"] for r in five_returns[:2]}
    requested = {r["id"] for r in five_returns[2:]}

    page = api.get(RETURNS, params={"status": "approved"}).json()
    assert {item["id"] for item in page["items"]} == approved
    assert {item["status"] for item in page["items"]} == {"approved"}

    pages = walk(api, status="requested", limit=2)
    assert [len(p) for p in pages] == [2, 1]
    assert {rid for page in pages for rid in page} == requested

    both = api.get(RETURNS, params=[("status", "approved"), ("status", "requested")]).json()
    assert {item["id"] for item in both["items"]} == approved | requested
    assert api.get(RETURNS, params={"status": "closed"}).json() == {
        "items": [],
        "next_cursor": None,
    }


def test_filter_by_order_and_channel(api: Api, five_returns: list[dict[str, Any]]) -> None:
    order_id = five_returns[0]["order_id"]
    by_order = api.get(RETURNS, params={"order_id": order_id}).json()["items"]
    assert len(by_order) == 5
    by_channel = api.get(RETURNS, params={"channel": "amazon-de"}).json()["items"]
    assert len(by_channel) == 5
    other_order = api.get(RETURNS, params={"order_id": str(uuid.uuid4())}).json()
    assert other_order["items"] == []


def test_unknown_channel_filter_is_422(api: Api, five_returns: list[dict[str, Any]]) -> None:
    r = api.get(RETURNS, params={"channel": "ebay-fr"})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["code"] == "unknown_channel"
    assert [e["field"] for e in r.json()["errors"]] == ["channel"]


def test_filter_by_request_time(api: Api, five_returns: list[dict[str, Any]]) -> None:
    newest = max(r["requested_at"] for r in five_returns)
    later = api.get(RETURNS, params={"requested_from": "2999-01-01T00:00:00+00:00"}).json()
    assert later["items"] == []
    earlier = api.get(RETURNS, params={"requested_to": "2000-01-01T00:00:00+00:00"}).json()
    assert earlier["items"] == []
    around = api.get(RETURNS, params={"requested_from": newest}).json()["items"]
    assert [item["requested_at"] for item in around] == [newest]


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        _cursor("garbage"),
        _cursor("2026-10-01T10:00:00+00:00|00000000-0000-4000-8000-000000000001|x"),
        _cursor("2026-10-01T10:00:00+00:00|not-a-uuid"),
        # Well-formed but forged: a timestamp without an offset, or out of range in UTC.
        _cursor("2026-10-01T10:00:00|00000000-0000-4000-8000-000000000002"),
        _cursor("0001-01-01T00:00:00+14:00|00000000-0000-4000-8000-000000000003"),
        base64.urlsafe_b64encode(b"\xff\xfe|\x00").decode(),
    ],
)
def test_invalid_cursor_is_422_naming_cursor(api: Api, cursor: str) -> None:
    api.channel()
    r = api.get(RETURNS, params={"cursor": cursor})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    problem = r.json()
    assert problem["code"] == "validation_error"
    assert [e["field"] for e in problem["errors"]] == ["cursor"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"status": "lost-in-space"}, "status.0"),
        ({"order_id": "123"}, "order_id"),
        ({"requested_from": "2026-10-01T10:00:00"}, "requested_from"),
        ({"requested_to": "yesterday"}, "requested_to"),
        ({"channel": "amazon\u0000de"}, "channel"),
        ({"channel": "x" * 65}, "channel"),
    ],
)
def test_invalid_list_filters_are_422(api: Api, params: dict[str, Any], field: str) -> None:
    r = api.get(RETURNS, params=params)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    assert [e["field"] for e in r.json()["errors"]] == [field]
