"""Refunds over HTTP: computed from what was paid, guarded, idempotent, settled by finance."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from returnguard.kit.db import Database
from returnguard.orders.models import Buyer
from tests.conftest import Api, Tenant, add_key


def _received(api: Api, *, inspect: bool = True, quantity: int = 2) -> dict[str, Any]:
    """A return of `quantity` mugs at 19.99 EUR, received (and inspected as passed)."""
    api.channel()
    order = api.order(quantity=quantity, price="19.99")
    ret = api.open_return(order, quantity=quantity)
    rid, line = ret["id"], ret["lines"][0]["id"]
    assert (
        api.post(f"/api/v1/returns/{rid}/approve", {"note": "checked by hand"}).status_code == 200
    )
    r = api.post(
        f"/api/v1/returns/{rid}/receive",
        {"lines": [{"return_line_id": line, "quantity": quantity}]},
    )
    assert r.status_code == 200, r.text
    if inspect:
        r = api.post(
            f"/api/v1/returns/{rid}/inspections",
            {"lines": [{"return_line_id": line, "passed": quantity, "failed": 0}]},
        )
        assert r.status_code == 200, r.text
    return dict(ret)


def _refund(api: Api, ret: dict[str, Any], key: str, quantity: int = 1, **extra: Any) -> Any:
    body = {"lines": [{"return_line_id": ret["lines"][0]["id"], "quantity": quantity}]} | extra
    return api.client.post(
        f"/api/v1/returns/{ret['id']}/refunds",
        json=body,
        headers=api.tenant.headers | {"Idempotency-Key": key},
    )


def test_refund_is_computed_exactly_and_only_once_per_key(api: Api) -> None:
    ret = _received(api)
    r = _refund(api, ret, "k-1")
    assert r.status_code == 201, r.text
    refund = r.json()
    assert refund["amount"] == {"amount": "19.99", "currency": "EUR"}
    assert refund["status"] == "pending" and refund["provider"] == "manual"
    # One unit of two: the return is refunded once every unit is settled.
    assert api.get(f"/api/v1/returns/{ret['id']}").json()["status"] == "inspected"

    again = _refund(api, ret, "k-1")
    assert again.status_code == 200 and again.json()["id"] == refund["id"]
    other = _refund(api, ret, "k-1", reason="something else")
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"

    second = _refund(api, ret, "k-2")
    assert second.status_code == 201
    # Both units refunded: the line's quantities say so, and nothing more can go out.
    after = api.get(f"/api/v1/returns/{ret['id']}").json()
    assert after["status"] == "refunded"
    line = after["lines"][0]["quantities"]
    assert line["refunded"] == 2
    third = _refund(api, ret, "k-3")
    assert third.status_code == 409
    assert third.json()["code"] == "exceeds_refundable_quantity"
    assert third.json()["violations"][0]["numbers"]


def test_refunds_need_a_key_and_a_refundable_return(api: Api) -> None:
    ret = _received(api)
    r = api.post(
        f"/api/v1/returns/{ret['id']}/refunds",
        {"lines": [{"return_line_id": ret["lines"][0]["id"], "quantity": 1}]},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "Idempotency-Key"
    fresh = api.open_return(api.order("302-0000002-0000002"))
    r = _refund(api, fresh, "k-requested")
    assert r.status_code == 409 and r.json()["code"] == "refund_state"
    # Rejected and cancelled returns never pay out, not even with a finance override.
    rejected = api.open_return(api.order("302-0000003-0000003"))
    assert api.post(f"/api/v1/returns/{rejected['id']}/reject", {"reason": "no"}).status_code == 200
    cancelled = api.open_return(api.order("302-0000004-0000004"))
    assert api.post(f"/api/v1/returns/{cancelled['id']}/cancel", {"reason": "x"}).status_code == 200
    for ret_, status in ((rejected, "rejected"), (cancelled, "cancelled")):
        r = _refund(api, ret_, f"k-{status}", override_reason="buyer insists")
        assert r.status_code == 409 and r.json()["code"] == "refund_state", r.text
        assert r.json()["current_status"] == status
    assert api.get(f"/api/v1/returns/{rejected['id']}/refunds").json() == []


def test_no_money_before_the_goods_without_an_override(
    api: Api, db: Database, client: Any, tenant: Tenant
) -> None:
    api.channel()
    order = api.order(quantity=1, price="19.99")
    ret = api.open_return(order)
    api.post(f"/api/v1/returns/{ret['id']}/approve", {"note": "checked by hand"})
    r = _refund(api, ret, "early")
    assert r.status_code == 409 and r.json()["code"] == "refund_before_receipt_not_allowed"

    agent = Api(client, add_key(db, tenant, "agent"))
    r = _refund(agent, ret, "early-agent", override_reason="carrier scanned it")
    assert r.status_code == 422 and r.json()["code"] == "override_role_not_allowed"

    finance = Api(client, add_key(db, tenant, "finance"))
    r = _refund(finance, ret, "early-finance", override_reason="Amazon refunded at first scan")
    assert r.status_code == 201, r.text
    assert r.json()["override_reason"] == "Amazon refunded at first scan"
    events = api.get(f"/api/v1/returns/{ret['id']}/events").json()
    granted = next(e for e in events if e["action"] == "refund.granted")
    assert granted["data"]["override_reason"] == "Amazon refunded at first scan"
    assert events[-1]["action"] == "refund.sent"
    # The goods are still on their way: the return stays approved.
    assert api.get(f"/api/v1/returns/{ret['id']}").json()["status"] == "approved"


def test_watchlisted_buyers_need_a_passed_inspection(api: Api, db: Database) -> None:
    ret = _received(api, inspect=False)
    with db.session() as session:
        for buyer in session.scalars(select(Buyer)):
            buyer.watchlisted = True
    r = _refund(api, ret, "w-1")
    assert r.status_code == 409 and r.json()["code"] == "watchlisted_needs_inspection"


def test_finance_settles_and_a_failed_refund_frees_its_units(
    api: Api, db: Database, client: Any, tenant: Tenant
) -> None:
    ret = _received(api, quantity=1)
    refund = _refund(api, ret, "s-1").json()
    agent = Api(client, add_key(db, tenant, "agent"))
    r = agent.post(f"/api/v1/refunds/{refund['id']}/settle", {"failure": "card expired"})
    assert r.status_code == 403
    r = api.post(f"/api/v1/refunds/{refund['id']}/settle", {"failure": "card expired"})
    assert r.status_code == 200 and r.json()["status"] == "failed"
    assert api.get(f"/api/v1/returns/{ret['id']}").json()["lines"][0]["quantities"]["refunded"] == 0
    retry = _refund(api, ret, "s-2")
    assert retry.status_code == 201, retry.text
    r = api.post(f"/api/v1/refunds/{retry.json()['id']}/settle", {"reference": "SC-123"})
    assert r.json()["status"] == "succeeded" and r.json()["provider_reference"] == "SC-123"
    r = api.post(f"/api/v1/refunds/{retry.json()['id']}/settle", {"reference": "SC-123"})
    assert r.status_code == 409
    listed = api.get(f"/api/v1/returns/{ret['id']}/refunds").json()
    assert [x["status"] for x in listed] == ["failed", "succeeded"]


def test_the_policy_decides_what_must_happen_before_money_moves(api: Api) -> None:
    from tests.policies.test_policies_api import _order, _return, _setup

    _setup(api)
    order = _order(api, "pol-1")
    # 300 EUR is above the default policy's high-value threshold: inspect before refund.
    ret = _return(api, order, "TENT", "size_fit")
    assert ret["status"] == "approved"
    line = ret["lines"][0]["id"]
    api.post(
        f"/api/v1/returns/{ret['id']}/receive", {"lines": [{"return_line_id": line, "quantity": 1}]}
    )
    r = _refund(api, ret, "pol-early")
    assert r.status_code == 409 and r.json()["code"] == "high_value_needs_inspection"
    api.post(
        f"/api/v1/returns/{ret['id']}/inspections",
        {"lines": [{"return_line_id": line, "passed": 1, "failed": 0}]},
    )
    # A buyer's-choice return: the policy's 10 % fee (capped at 25.00) if it came back opened.
    r = api.client.post(
        f"/api/v1/returns/{ret['id']}/refunds",
        json={"lines": [{"return_line_id": line, "quantity": 1, "charge_restocking_fee": True}]},
        headers=api.tenant.headers | {"Idempotency-Key": "pol-ok"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["amount"] == {"amount": "275.00", "currency": "EUR"}
    assert r.json()["lines"][0]["restocking_fee"] == 2500

    # The returnless refund of a cheap item needs no goods back.
    cheap = _return(api, order, "CHEAP", "changed_mind")
    assert cheap["status"] == "resolved"
    r = _refund(api, cheap, "pol-cheap")
    assert r.status_code == 201, r.text
    assert r.json()["amount"] == {"amount": "5.00", "currency": "EUR"}


def test_a_second_parcel_is_received_after_the_first_units_were_refunded(api: Api) -> None:
    """Two units approved, one arrives and is refunded: the return waits for the other."""
    api.channel()
    order = api.order(quantity=2, price="19.99")
    ret = api.open_return(order, quantity=2)
    rid, line = ret["id"], ret["lines"][0]["id"]
    assert (
        api.post(f"/api/v1/returns/{rid}/approve", {"note": "checked by hand"}).status_code == 200
    )
    one = {"lines": [{"return_line_id": line, "quantity": 1}]}
    assert api.post(f"/api/v1/returns/{rid}/receive", one).status_code == 200
    assert _refund(api, ret, "first-parcel").status_code == 201
    assert api.get(f"/api/v1/returns/{rid}").json()["status"] == "received"
    r = api.post(f"/api/v1/returns/{rid}/receive", one)
    assert r.status_code == 200, r.text
    inspected = api.post(
        f"/api/v1/returns/{rid}/inspections",
        {"lines": [{"return_line_id": line, "passed": 2, "failed": 0}]},
    )
    assert inspected.status_code == 200, inspected.text
    assert _refund(api, ret, "second-parcel").status_code == 201
    after = api.get(f"/api/v1/returns/{rid}").json()
    assert after["status"] == "refunded"
    assert after["lines"][0]["quantities"]["refunded"] == 2
