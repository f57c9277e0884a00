"""Deciding is not paying: refunds are granted, then sent; four-eyes needs a second person."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from returnguard.kit.db import Database
from tests.conftest import Api, Tenant, add_key, add_user


def _received(api: Api, quantity: int = 5, price: str = "40.00") -> dict[str, Any]:
    api.channel()
    order = api.order(quantity=quantity, price=price)
    ret = api.open_return(order, quantity=quantity)
    line = ret["lines"][0]["id"]
    assert (
        api.post(f"/api/v1/returns/{ret['id']}/approve", {"note": "checked by hand"}).status_code
        == 200
    )
    api.post(
        f"/api/v1/returns/{ret['id']}/receive",
        {"lines": [{"return_line_id": line, "quantity": quantity}]},
    )
    api.post(
        f"/api/v1/returns/{ret['id']}/inspections",
        {"lines": [{"return_line_id": line, "passed": quantity, "failed": 0}]},
    )
    return dict(ret)


def _grant(api: Api, ret: dict[str, Any], key: str, quantity: int, **extra: Any) -> Any:
    return api.client.post(
        f"/api/v1/returns/{ret['id']}/refunds",
        json={"lines": [{"return_line_id": ret["lines"][0]["id"], "quantity": quantity}]} | extra,
        headers=api.tenant.headers | {"Idempotency-Key": key},
    )


def _four_eyes(api: Api, above: str | None, on_override: bool = False) -> None:
    r = api.client.put(
        "/api/v1/settings/refunds",
        json={
            "four_eyes_above": None if above is None else {"amount": above, "currency": "EUR"},
            "four_eyes_on_override": on_override,
        },
        headers=api.tenant.headers,
    )
    assert r.status_code == 200, r.text


def test_grants_above_the_threshold_wait_for_a_second_finance_person(
    api: Api, client: TestClient, db: Database, tenant: Tenant
) -> None:
    ret = _received(api)
    _four_eyes(api, "100.00")
    assert api.get("/api/v1/settings/refunds").json()["four_eyes_above"] == {
        "amount": "100.00",
        "currency": "EUR",
    }
    anna = Api(client, add_user(db, tenant, "finance", "anna@acme.example"))
    ben = Api(client, add_user(db, tenant, "finance", "ben@acme.example"))
    ben_cli = Api(client, add_user(db, tenant, "finance", "ben.cli@acme.example"))

    small = _grant(anna, ret, "small", 2)  # 80.00 EUR: not above 100.00, sent at once
    assert small.status_code == 201 and small.json()["status"] == "pending"
    assert small.json()["four_eyes"] is False

    big = _grant(anna, ret, "big", 3)  # 120.00 EUR: waits
    assert big.status_code == 201, big.text
    grant = big.json()
    assert grant["status"] == "granted" and grant["four_eyes"] is True
    assert "above the four-eyes threshold of 100.00 EUR" in grant["four_eyes_reason"]
    assert grant["granted_by"] == "anna@acme.example" and grant["sent_by"] is None
    # The grant holds its units: nothing more can be granted on top of it.
    extra = _grant(ben, ret, "extra", 1)
    assert extra.status_code == 409 and extra.json()["code"] == "exceeds_refundable_quantity"

    send = f"/api/v1/refunds/{grant['id']}/send"
    r = anna.post(send)
    assert r.status_code == 403 and r.json()["code"] == "four_eyes_required"
    assert "someone other than anna@acme.example" in r.json()["detail"]
    admin = api.post(send)  # an admin is not the finance role
    assert admin.status_code == 403 and admin.json()["code"] == "four_eyes_required"
    machine = Api(client, add_key(db, tenant, "finance"))  # a shared key is not a person
    assert machine.post(send).status_code == 403
    agent = Api(client, add_key(db, tenant, "agent"))
    assert agent.post(send).status_code == 403

    r = ben.post(send)
    assert r.status_code == 200, r.text
    sent = r.json()
    assert sent["status"] == "pending" and sent["sent_by"] == "ben@acme.example"
    again = ben_cli.post(send)
    assert again.status_code == 409 and again.json()["code"] == "refund_state"
    events = [e["action"] for e in api.get(f"/api/v1/returns/{ret['id']}/events").json()]
    assert events.count("refund.granted") == 2 and events.count("refund.sent") == 2

    paid = ben.post(f"/api/v1/refunds/{grant['id']}/settle", {"reference": "SC-1"})
    assert paid.status_code == 200 and paid.json()["status"] == "succeeded"
    assert ben.post(send).status_code == 409


def test_overrides_need_a_second_person_when_the_organization_says_so(
    api: Api, client: TestClient, db: Database, tenant: Tenant
) -> None:
    api.channel()
    order = api.order(quantity=1, price="19.99")
    ret = api.open_return(order)
    api.post(f"/api/v1/returns/{ret['id']}/approve", {"note": "checked by hand"})
    _four_eyes(api, None, on_override=True)
    anna = Api(client, add_user(db, tenant, "finance", "anna@acme.example"))
    r = _grant(anna, ret, "early", 1, override_reason="Amazon refunded at first scan")
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "granted"
    assert r.json()["four_eyes_reason"] == "the refund overrides the policy"
    ben = Api(client, add_user(db, tenant, "finance", "ben@acme.example"))
    assert ben.post(f"/api/v1/refunds/{r.json()['id']}/send").status_code == 200


def test_a_foreign_currency_grant_without_a_rate_needs_four_eyes(
    api: Api, client: TestClient, db: Database, tenant: Tenant
) -> None:
    api.channel("shop-us", "USD", "US")
    order = api.order("US-1", channel="shop-us", currency="USD", quantity=1, price="10.00")
    ret = api.open_return(order)
    api.post(f"/api/v1/returns/{ret['id']}/approve", {"note": "checked by hand"})
    api.post(
        f"/api/v1/returns/{ret['id']}/receive",
        {"lines": [{"return_line_id": ret["lines"][0]["id"], "quantity": 1}]},
    )
    _four_eyes(api, "500.00")
    r = _grant(api, ret, "usd", 1)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "granted"
    assert "no USD->EUR exchange rate" in r.json()["four_eyes_reason"]
    # With a rate, 10.00 USD is far below 500.00 EUR: sent at once.
    api.post(
        "/api/v1/fx-rates", {"day": "2026-01-01", "base": "EUR", "quote": "USD", "rate": "1.08"}
    )
    api.post(f"/api/v1/refunds/{r.json()['id']}/cancel", {"reason": "re-grant with a rate"})
    again = _grant(api, ret, "usd-2", 1)
    assert again.status_code == 201 and again.json()["status"] == "pending", again.text


def test_a_grant_can_be_held_then_sent_or_cancelled(
    api: Api, client: TestClient, db: Database, tenant: Tenant
) -> None:
    ret = _received(api, quantity=2, price="19.99")
    agent = Api(client, add_key(db, tenant, "agent"))
    held = _grant(agent, ret, "held", 1, send=False).json()
    assert held["status"] == "granted" and held["four_eyes"] is False
    # An agent may grant but not send; finance sends.
    assert agent.post(f"/api/v1/refunds/{held['id']}/send").status_code == 403
    finance = Api(client, add_key(db, tenant, "finance"))
    assert finance.post(f"/api/v1/refunds/{held['id']}/send").json()["status"] == "pending"

    other = _grant(agent, ret, "other", 1, send=False).json()
    r = agent.post(f"/api/v1/refunds/{other['id']}/cancel", {"reason": "buyer kept it"})
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert api.get(f"/api/v1/returns/{ret['id']}").json()["lines"][0]["quantities"]["refunded"] == 1
    again = agent.post(f"/api/v1/refunds/{other['id']}/cancel", {"reason": "twice"})
    assert again.status_code == 409 and again.json()["code"] == "refund_state"
    assert agent.post(f"/api/v1/refunds/{held['id']}/cancel", {"reason": "late"}).status_code == 409
    blank = agent.post(f"/api/v1/refunds/{held['id']}/cancel", {"reason": ""})
    assert blank.status_code == 422 and blank.json()["errors"][0]["field"] == "reason"
    # The freed unit can be granted again.
    assert _grant(agent, ret, "again", 1).status_code == 201


def test_refund_settings_are_checked(
    api: Api, client: TestClient, db: Database, tenant: Tenant
) -> None:
    for body, field_name in [
        ({"four_eyes_above": {"amount": "10.00", "currency": "USD"}}, "four_eyes_above.currency"),
        ({"four_eyes_above": {"amount": "-1", "currency": "EUR"}}, "four_eyes_above.amount"),
        ({"four_eyes_above": {"amount": "1.001", "currency": "EUR"}}, "four_eyes_above.amount"),
        ({"four_eyes_above": {"amount": 10, "currency": "EUR"}}, "four_eyes_above.amount"),
    ]:
        r = client.put("/api/v1/settings/refunds", json=body, headers=tenant.headers)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == field_name
    finance = add_key(db, tenant, "finance")
    r = client.put("/api/v1/settings/refunds", json={}, headers=finance.headers)
    assert r.status_code == 403
