"""Whoever decides a return, the policy's terms are recorded; a freed refund frees the return;
`allowed_actions` lists only what the return can do now, by route name."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient

from returnguard.kit.db import Database
from tests.conftest import Api, Tenant, add_key
from tests.policies.test_policies_api import _order, _setup

RETURNS = "/api/v1/returns"


def _open(api: Api, ext: str, sku: str, reason: str, **order: Any) -> dict[str, Any]:
    placed = _order(api, ext, **order)
    line = next(ln for ln in placed["lines"] if ln["sku"] == sku)
    r = api.post(
        RETURNS,
        {
            "order_id": placed["id"],
            "decide": False,
            "lines": [{"order_line_id": line["id"], "quantity": 1, "reason_code": reason}],
        },
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def _refund(api: Api, ret: dict[str, Any], key: str, **extra: Any) -> Any:
    body = {"lines": [{"return_line_id": ret["lines"][0]["id"], "quantity": 1}]} | extra
    return api.client.post(
        f"{RETURNS}/{ret['id']}/refunds",
        json=body,
        headers=api.tenant.headers | {"Idempotency-Key": key},
    )


def test_approving_against_the_policy_needs_a_reason_and_is_recorded_as_an_override(
    api: Api,
) -> None:
    _setup(api)
    # A defective item without photos: the policy waits for evidence.
    ret = _open(api, "hand-1", "MUG", "defective")
    r = api.post(f"{RETURNS}/{ret['id']}/approve", {})
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["code"] == "override_reason_required"
    assert problem["errors"][0]["field"] == "note"
    assert "request_evidence" in problem["detail"] and "photo" in problem["detail"]
    # Nothing moved.
    assert api.get(f"{RETURNS}/{ret['id']}").json()["status"] == "requested"

    r = api.post(f"{RETURNS}/{ret['id']}/approve", {"note": "photos came by email"})
    assert r.status_code == 200, r.text
    decision = api.get(f"{RETURNS}/{ret['id']}/decision").json()
    assert decision["path"] == "approve"
    assert decision["outcome"] == "auto_approve"
    assert decision["policy_outcome"] == "request_evidence"
    assert decision["override_reason"] == "photos came by email"
    assert decision["decided_by"] == "test"
    # The policy's settings for the return are stored with the person's decision.
    [line] = decision["lines"]
    assert line["settings"]["evidence"]["photos"] == 2
    assert line["settings"]["inspection_before_refund"] is False
    events = [e["action"] for e in api.get(f"{RETURNS}/{ret['id']}/events").json()]
    assert events == ["return.created", "return.approve", "return.decided"]


def test_approving_what_the_policy_approves_is_no_override(api: Api) -> None:
    _setup(api)
    ret = _open(api, "hand-2", "TENT", "changed_mind")
    assert api.post(f"{RETURNS}/{ret['id']}/approve", {}).status_code == 200
    decision = api.get(f"{RETURNS}/{ret['id']}/decision").json()
    assert decision["path"] == "approve" and decision["override_reason"] is None
    assert decision["policy_outcome"] == "auto_approve"
    # A 300.00 tent approved by hand is inspected before refund like one the policy approved.
    assert decision["lines"][0]["settings"]["inspection_before_refund"] is True
    rid, line = ret["id"], ret["lines"][0]["id"]
    api.post(f"{RETURNS}/{rid}/receive", {"lines": [{"return_line_id": line, "quantity": 1}]})
    r = _refund(api, ret, "tent-1")
    assert r.status_code == 409 and r.json()["code"] == "high_value_needs_inspection"
    numbers = r.json()["violations"][0]["numbers"]
    assert numbers["return_value"] == 30000 and numbers["high_value_threshold"] == 15000
    assert "300.00 EUR" in r.json()["detail"] and "150.00 EUR" in r.json()["detail"]


def test_returnless_by_hand_against_the_policy_needs_a_reason_then_a_finance_override(
    api: Api, db: Database, client: TestClient, tenant: Tenant
) -> None:
    _setup(api)
    ret = _open(api, "hand-3", "MUG", "changed_mind")
    r = api.post(f"{RETURNS}/{ret['id']}/resolve-returnless", {})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reason"
    r = api.post(f"{RETURNS}/{ret['id']}/resolve-returnless", {"reason": "goodwill"})
    assert r.status_code == 200 and r.json()["status"] == "resolved"
    # No goods, no policy allowing it: no money without a deliberate override.
    r = _refund(api, ret, "rl-1")
    assert r.status_code == 409 and r.json()["code"] == "refund_before_receipt_not_allowed"
    assert "refunds" not in api.get(f"{RETURNS}/{ret['id']}").json()["allowed_actions"]
    finance = Api(client, add_key(db, tenant, "finance"))
    r = _refund(finance, ret, "rl-2", override_reason="goodwill for a loyal buyer")
    assert r.status_code == 201, r.text
    assert r.json()["amount"] == {"amount": "40.00", "currency": "EUR"}


def test_a_failed_refund_puts_the_return_back_where_its_goods_are(api: Api) -> None:
    _setup(api)
    ret = _open(api, "freed-1", "MUG", "changed_mind")
    rid, line = ret["id"], ret["lines"][0]["id"]
    assert api.post(f"{RETURNS}/{rid}/approve", {}).status_code == 200
    api.post(f"{RETURNS}/{rid}/receive", {"lines": [{"return_line_id": line, "quantity": 1}]})
    api.post(
        f"{RETURNS}/{rid}/inspections",
        {"lines": [{"return_line_id": line, "passed": 1, "failed": 0}]},
    )
    refund = _refund(api, ret, "freed-a").json()
    shown = api.get(f"{RETURNS}/{rid}").json()
    assert shown["status"] == "refunded"
    # Fully refunded: no second refund is offered, and closing waits for the money.
    assert "refunds" not in shown["allowed_actions"] and "close" not in shown["allowed_actions"]
    r = api.post(f"{RETURNS}/{rid}/close", {})
    assert r.status_code == 409 and r.json()["code"] == "refunds_unsettled"

    r = api.post(f"/api/v1/refunds/{refund['id']}/settle", {"failure": "card expired"})
    assert r.status_code == 200, r.text
    shown = api.get(f"{RETURNS}/{rid}").json()
    assert shown["status"] == "inspected"
    assert shown["lines"][0]["quantities"]["refunded"] == 0
    assert "refunds" in shown["allowed_actions"]
    [*_, last] = api.get(f"{RETURNS}/{rid}/events").json()
    assert last["action"] == "return.refund_freed"
    assert last["before"]["status"] == "refunded" and last["after"]["status"] == "inspected"
    assert last["data"]["refund_id"] == refund["id"]

    # The buyer can be paid again, and then the return is refunded and can be closed.
    again = _refund(api, ret, "freed-b").json()
    assert api.get(f"{RETURNS}/{rid}").json()["status"] == "refunded"
    api.post(f"/api/v1/refunds/{again['id']}/settle", {"reference": "SC-9"})
    assert api.post(f"{RETURNS}/{rid}/close", {}).status_code == 200


def test_a_cancelled_grant_of_a_received_return_keeps_it_received(api: Api) -> None:
    _setup(api)
    ret = _open(api, "freed-2", "MUG", "changed_mind")
    rid, line = ret["id"], ret["lines"][0]["id"]
    assert api.post(f"{RETURNS}/{rid}/approve", {}).status_code == 200
    api.post(f"{RETURNS}/{rid}/receive", {"lines": [{"return_line_id": line, "quantity": 1}]})
    grant = _refund(api, ret, "grant-1", send=False).json()
    assert grant["status"] == "granted"
    assert api.get(f"{RETURNS}/{rid}").json()["status"] == "received"
    r = api.post(f"/api/v1/refunds/{grant['id']}/cancel", {"reason": "wrong amount"})
    assert r.status_code == 200
    shown = api.get(f"{RETURNS}/{rid}").json()
    assert shown["status"] == "received" and "refunds" in shown["allowed_actions"]


def test_allowed_actions_are_route_names_and_never_refused(api: Api) -> None:
    _setup(api)
    ret = _open(api, "acts-1", "MUG", "changed_mind")
    rid, line = ret["id"], ret["lines"][0]["id"]
    assert ret["allowed_actions"] == [
        "request-evidence",
        "review",
        "approve",
        "offer",
        "resolve-returnless",
        "reject",
        "cancel",
        "dispute",
    ]
    api.post(f"{RETURNS}/{rid}/approve", {})
    shown = api.get(f"{RETURNS}/{rid}").json()
    # Approved, not received: the policy gives no refund before receipt.
    assert shown["allowed_actions"] == ["cancel", "shipments", "receive", "expire", "dispute"]
    api.post(f"{RETURNS}/{rid}/receive", {"lines": [{"return_line_id": line, "quantity": 1}]})
    shown = api.get(f"{RETURNS}/{rid}").json()
    # Everything approved has arrived: no second receipt is offered.
    assert shown["allowed_actions"] == ["inspections", "refunds", "dispute"]
    for name in shown["allowed_actions"]:
        assert name in {"inspections", "refunds", "dispute"}
    listed = api.get(RETURNS).json()["items"]
    # Lists offer a refund only for units that passed inspection (always allowed).
    assert [r["allowed_actions"] for r in listed if r["id"] == rid] == [["inspections", "dispute"]]


def _policy_with_threshold(api: Api, threshold: dict[str, str]) -> None:
    from returnguard.domain.policy.defaults import default_policy_data

    document = default_policy_data("EUR") | {
        "name": "USD threshold",
        "high_value_threshold": threshold,
    }
    r = api.post("/api/v1/policies", {"name": "USD threshold", "document": document})
    assert r.status_code == 201, r.text
    policy = r.json()
    assert api.post(f"/api/v1/policies/{policy['id']}/publish", {"version": 1}).status_code == 200
    r = api.post("/api/v1/channels/amazon-de/policy", {"policy_id": policy["id"]})
    assert r.status_code == 200, r.text


def _received_return(api: Api, ext: str, sku: str) -> dict[str, Any]:
    ret = _open(api, ext, sku, "changed_mind")
    rid, line = ret["id"], ret["lines"][0]["id"]
    assert api.post(f"{RETURNS}/{rid}/approve", {"note": "ok"}).status_code == 200
    r = api.post(f"{RETURNS}/{rid}/receive", {"lines": [{"return_line_id": line, "quantity": 1}]})
    assert r.status_code == 200, r.text
    return ret


def test_a_threshold_in_another_currency_is_judged_in_the_base_currency_at_the_days_rate(
    api: Api,
) -> None:
    _setup(api)
    _policy_with_threshold(api, {"amount": "100.00", "currency": "USD"})
    # No USD rate yet: the value cannot be judged, so it counts as high-value.
    r = _refund(api, _received_return(api, "fx-1", "MUG"), "fx-1")
    assert r.status_code == 409 and r.json()["code"] == "high_value_needs_inspection"
    assert "no USD->EUR exchange rate" in r.json()["detail"]

    today = datetime.now(UTC).date().isoformat()
    r = api.post(
        "/api/v1/fx-rates", {"day": today, "base": "EUR", "quote": "USD", "rate": "1.2500"}
    )
    assert r.status_code in (200, 201), r.text
    # 100.00 USD is 80.00 EUR: a 40.00 EUR mug is below it, a 300.00 EUR tent above.
    assert _refund(api, _received_return(api, "fx-2", "MUG"), "fx-2").status_code == 201
    r = _refund(api, _received_return(api, "fx-3", "TENT"), "fx-3")
    assert r.status_code == 409 and r.json()["code"] == "high_value_needs_inspection"
    numbers = r.json()["violations"][0]["numbers"]
    assert (numbers["return_value"], numbers["high_value_threshold"]) == (30000, 8000)


def test_a_threshold_in_an_unknown_currency_is_refused_when_the_policy_is_saved(
    api: Api,
) -> None:
    from returnguard.domain.policy.defaults import default_policy_data

    document = default_policy_data("EUR") | {
        "name": "bad",
        "high_value_threshold": {"amount": "100", "currency": "ABC"},
    }
    r = api.post("/api/v1/policies", {"name": "bad", "document": document})
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "document.high_value_threshold.currency"
