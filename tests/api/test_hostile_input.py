"""Hostile input is a 4xx problem document naming the field, never a 500.

Each case comes from probing the service from outside (issue 16): amounts, integers and
decimal text beyond what the columns hold, days at the calendar's edges, NUL characters
in every place text arrives, numbers posing as dates, unknown query parameters and bodies
without or with the wrong media type. Every test runs on SQLite and on PostgreSQL, where
most of these used to fail.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from returnguard.domain.policy.defaults import default_policy_data
from returnguard.kit.db import Database
from tests.api.test_bad_input import check_problem, row_counts
from tests.conftest import Api, order_body

ORDERS = "/api/v1/orders"
LEDGER = "/api/v1/ledger"


def _fields(r: Any) -> list[str]:
    return [e["field"] for e in r.json()["errors"]]


# --- amounts, integers and decimal text beyond the columns -----------------------------


@pytest.mark.parametrize(
    "amount", ["1" + "0" * 30, "1" + "0" * 28, "1" + "0" * 40 + ".5", "99999999999999999999999999"]
)
def test_huge_amount_is_422_naming_the_amount(api: Api, db: Database, amount: str) -> None:
    api.channel()
    body = order_body()
    body["lines"][0]["unit_price"]["amount"] = amount
    before = row_counts(db)
    r = api.post(ORDERS, body)
    check_problem(r, 422, "validation_error", "lines.0.unit_price.amount")
    assert row_counts(db) == before


@pytest.mark.parametrize("version", [2**31, 2**63, 10**30, -(2**31) - 1])
def test_policy_version_beyond_32_bits_is_4xx(api: Api, version: int) -> None:
    r = api.post("/api/v1/policies", {"name": "EU", "document": default_policy_data("EUR")})
    assert r.status_code == 201, r.text
    policy_id = r.json()["id"]
    r = api.get(f"/api/v1/policies/{policy_id}/versions/{version}")
    check_problem(r, 422, "validation_error", "version")
    r = api.post(f"/api/v1/policies/{policy_id}/publish", {"version": version})
    check_problem(r, 422, "validation_error", "version")


@pytest.mark.parametrize("quantity", [2**31, 2**63, 10**30])
def test_quantity_beyond_32_bits_is_422(api: Api, quantity: int) -> None:
    api.channel()
    body = order_body()
    body["lines"][0]["quantity"] = quantity
    check_problem(api.post(ORDERS, body), 422, "validation_error", "lines.0.quantity")


@pytest.mark.parametrize("limit", [2**31, 2**63, 10**30])
def test_integer_query_parameter_beyond_range_is_422(api: Api, limit: int) -> None:
    check_problem(api.get(f"{LEDGER}?limit={limit}"), 422, "validation_error", "limit")
    check_problem(
        api.get(f"/api/v1/reports/reserve?lookback_days={limit}"),
        422,
        "validation_error",
        "lookback_days",
    )


@pytest.mark.parametrize("digits", [28, 41, 60])
def test_long_fx_rate_is_422_naming_rate(api: Api, digits: int) -> None:
    body = {"day": "2026-10-01", "base": "EUR", "quote": "USD", "rate": "1." + "1" * digits}
    check_problem(api.post("/api/v1/fx-rates", body), 422, "validation_error", "rate")


def test_fx_rate_at_the_limit_is_stored(api: Api) -> None:
    rate = "1." + "1" * 27
    body = {"day": "2026-10-01", "base": "EUR", "quote": "USD", "rate": rate}
    r = api.post("/api/v1/fx-rates", body)
    assert r.status_code == 201, r.text
    assert r.json()["rate"] == rate


# --- days and timestamps -----------------------------------------------------------------


@pytest.mark.parametrize("day", ["0001-01-01", "1899-12-31", "3000-01-01", "9999-12-31"])
@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/reports/reserve?as_of={day}", "as_of"),
        ("/api/v1/reports/money-at-risk?as_of={day}", "as_of"),
        ("/api/v1/reports/net-profit?from={day}&to=2026-10-31", "from"),
        ("/api/v1/reports/net-profit?from=2026-10-01&to={day}", "to"),
        ("/api/v1/ledger?from={day}", "from"),
    ],
)
def test_days_at_the_calendar_edges_are_422(api: Api, path: str, field: str, day: str) -> None:
    check_problem(api.get(path.format(day=day)), 422, "validation_error", field)


@pytest.mark.parametrize("day", ["1900-01-01", "2999-12-31"])
def test_days_at_the_range_edges_are_answered(api: Api, day: str) -> None:
    api.channel()
    for path in (
        f"/api/v1/reports/reserve?as_of={day}",
        f"/api/v1/reports/money-at-risk?as_of={day}",
        f"/api/v1/reports/net-profit?from={day}&to={day}",
    ):
        r = api.get(path)
        assert r.status_code == 200, (path, r.text)


@pytest.mark.parametrize("value", ["0", "1700000000", "-1", "20261001", "1.5"])
@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/reports/reserve?as_of={v}", "as_of"),
        ("/api/v1/reports/net-profit?from=2026-10-01&to={v}", "to"),
        ("/api/v1/ledger?to={v}", "to"),
        ("/api/v1/returns?requested_from={v}", "requested_from"),
    ],
)
def test_numbers_are_not_dates(api: Api, path: str, field: str, value: str) -> None:
    check_problem(api.get(path.format(v=value)), 422, "validation_error", field)


def test_number_is_not_a_day_in_a_body(api: Api) -> None:
    body = {"day": 0, "base": "EUR", "quote": "USD", "rate": "1.1"}
    check_problem(api.post("/api/v1/fx-rates", body), 422, "validation_error", "day")
    order = order_body()
    order["ordered_at"] = 0
    api.channel()
    check_problem(api.post(ORDERS, order), 422, "validation_error", "ordered_at")


# --- NUL characters ----------------------------------------------------------------------


def test_nul_in_json_body_is_422(api: Api, db: Database) -> None:
    api.channel()
    body = order_body()
    body["lines"][0]["title"] = "Blue\x00mug"
    before = row_counts(db)
    check_problem(api.post(ORDERS, body), 422, "validation_error", "lines.0.title")
    assert row_counts(db) == before


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/returns?channel=a%00b", "channel"),
        ("/api/v1/buyers?email=a%00b@example.de", "email"),
        ("/api/v1/ledger?cursor=%00", "cursor"),
        ("/api/v1/channels/amazon-de/policy-page?language=de%00", "language"),
        ("/api/v1/returns?sta%00tus=received", "sta\\x00tus"),
    ],
)
def test_nul_in_query_is_422_naming_the_parameter(api: Api, path: str, field: str) -> None:
    api.channel()
    check_problem(api.get(path), 422, "validation_error", field)


def test_nul_in_path_is_422_naming_the_parameter(api: Api) -> None:
    api.channel()
    r = api.get("/api/v1/channels/amazon%00de/policy-page")
    check_problem(r, 422, "validation_error", "code")
    r = api.client.get(f"/policies/{api.tenant.organization_id}/amazon%00de")
    check_problem(r, 422, "validation_error", "channel_code")


def test_nul_in_a_header_used_as_data_is_400(api: Api) -> None:
    api.channel()
    order = api.order()
    ret = api.open_return(order)
    headers = api.tenant.headers | {"Idempotency-Key": "key\x00one"}
    r = api.client.post(
        f"/api/v1/returns/{ret['id']}/refunds", json={"method": "original"}, headers=headers
    )
    check_problem(r, 400, "invalid_header", "idempotency-key")


def test_nul_in_a_multipart_text_field_is_422(api: Api, db: Database) -> None:
    api.channel()
    ret = api.open_return(api.order())
    before = row_counts(db)
    r = api.post(f"/api/v1/returns/{ret['id']}/evidence", data={"text": "broken\x00lid"})
    check_problem(r, 422, "validation_error", "text")
    assert row_counts(db) == before


def test_nul_in_a_multipart_file_name_is_422(api: Api, db: Database) -> None:
    api.channel()
    ret = api.open_return(api.order())
    # Raw bytes: the test client would percent-encode the NUL in a file name.
    body = (
        b"--b\r\n"
        b'Content-Disposition: form-data; name="files"; filename="photo\x00.pdf"\r\n'
        b"Content-Type: application/pdf\r\n\r\n"
        b"%PDF-1.4\n%%EOF\n\r\n"
        b"--b--\r\n"
    )
    headers = api.tenant.headers | {"Content-Type": "multipart/form-data; boundary=b"}
    before = row_counts(db)
    r = api.client.post(f"/api/v1/returns/{ret['id']}/evidence", content=body, headers=headers)
    check_problem(r, 422, "validation_error", "files.0")
    assert row_counts(db) == before


# --- unknown query parameters --------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/returns?stauts=received", "stauts"),
        ("/api/v1/ledger?form=2026-10-01", "form"),
        ("/api/v1/me?debug=1", "debug"),
        ("/api/v1/reports/reserve?asof=2026-10-01", "asof"),
        ("/api/v1/channels?limit=1", "limit"),
        ("/healthz?verbose=1", "verbose"),
    ],
)
def test_unknown_query_parameter_is_422_naming_it(api: Api, path: str, field: str) -> None:
    r = api.get(path)
    problem = check_problem(r, 422, "validation_error", field)
    assert "unknown query parameter" in problem["errors"][0]["message"]


def test_unknown_query_parameter_on_a_write_writes_nothing(api: Api, db: Database) -> None:
    api.channel()
    before = row_counts(db)
    r = api.post(f"{ORDERS}?dry_run=true", order_body())
    check_problem(r, 422, "validation_error", "dry_run")
    assert row_counts(db) == before


def test_known_query_parameters_still_work(api: Api) -> None:
    r = api.get("/api/v1/returns?status=received&limit=5")
    assert r.status_code == 200, r.text


# --- media types ---------------------------------------------------------------------------


def test_body_without_content_type_is_415(api: Api, db: Database) -> None:
    api.channel()
    before = row_counts(db)
    r = api.client.post(ORDERS, content=b'{"channel": "amazon-de"}', headers=api.tenant.headers)
    problem = check_problem(r, 415, "unsupported_media_type", "content-type")
    assert "application/json" in problem["detail"]
    assert row_counts(db) == before


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "multipart/form-data"])
def test_json_body_with_another_content_type_is_415(api: Api, content_type: str) -> None:
    headers = api.tenant.headers | {"Content-Type": content_type}
    r = api.client.post(ORDERS, content=b"{}", headers=headers)
    check_problem(r, 415, "unsupported_media_type", "content-type")


def test_json_to_a_multipart_operation_is_415(api: Api) -> None:
    r = api.post(f"/api/v1/returns/{uuid.uuid4()}/evidence", {"text": "hello"})
    check_problem(r, 415, "unsupported_media_type", "content-type")


def test_json_with_charset_is_accepted(api: Api) -> None:
    api.channel()
    headers = api.tenant.headers | {"Content-Type": "application/json; charset=utf-8"}
    r = api.client.post(ORDERS, json=order_body(), headers=headers)
    assert r.status_code == 201, r.text


# --- 405 ---------------------------------------------------------------------------------


def test_405_names_the_allowed_methods(client: TestClient, api: Api) -> None:
    r = api.client.put(ORDERS, headers=api.tenant.headers)
    check_problem(r, 405, "method_not_allowed")
    assert r.headers["Allow"] == "GET, POST"
    r = api.client.post(f"/api/v1/webhooks/endpoints/{uuid.uuid4()}", headers=api.tenant.headers)
    check_problem(r, 405, "method_not_allowed")
    assert set(r.headers["Allow"].split(", ")) == {"DELETE", "GET", "PATCH"}


# --- the OpenAPI document declares what the checks answer ----------------------------------


def test_openapi_declares_every_central_answer(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            where = f"{method.upper()} {path}"
            assert "400" in responses, where
            assert "422" in responses, where
            if "requestBody" in operation:
                assert "415" in responses, where
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    assert list(response["content"]) == ["application/problem+json"], where
