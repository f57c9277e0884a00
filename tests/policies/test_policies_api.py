"""The default policy, versioning, evidence and the policy page, end to end over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from returnguard.domain.policy.defaults import default_policy_data
from returnguard.kit.db import Database
from returnguard.orders.models import Buyer
from returnguard.policies.models import Policy
from tests.conftest import Api
from tests.media import jpeg_bytes

PRICES = {"CHEAP": "5.00", "MUG": "40.00", "TENT": "300.00"}


def _setup(api: Api) -> None:
    r = api.post(
        "/api/v1/channels",
        {
            "code": "amazon-de",
            "name": "Amazon DE",
            "marketplace": "amazon",
            "country": "DE",
            "currency": "EUR",
            "language": "de",
            "return_label_cost": {"amount": "6.00", "currency": "EUR"},
            "handling_cost": {"amount": "2.00", "currency": "EUR"},
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["return_label_cost"] == {"amount": "6.00", "currency": "EUR"}


def _order(
    api: Api, ext: str, *, delivered_days_ago: int | None = 3, buyer: str = "b-1"
) -> dict[str, Any]:
    now = datetime.now(UTC)
    lines = [
        {
            "external_id": sku,
            "sku": sku,
            "quantity": 1,
            "unit_price": {"amount": price, "currency": "EUR"},
        }
        for sku, price in PRICES.items()
    ]
    body = {
        "channel": "amazon-de",
        "external_id": ext,
        "currency": "EUR",
        "ordered_at": (now - timedelta(days=60)).isoformat(),
        "delivered_at": None
        if delivered_days_ago is None
        else (now - timedelta(days=delivered_days_ago)).isoformat(),
        "buyer": {"external_id": buyer, "country": "DE"},
        "captured": {"amount": str(sum(Decimal(p) for p in PRICES.values())), "currency": "EUR"},
        "lines": lines,
    }
    r = api.post("/api/v1/orders", body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _return(api: Api, order: dict[str, Any], sku: str, reason: str) -> dict[str, Any]:
    line = next(ln for ln in order["lines"] if ln["sku"] == sku)
    r = api.post(
        "/api/v1/returns",
        {
            "order_id": order["id"],
            "lines": [{"order_line_id": line["id"], "quantity": 1, "reason_code": reason}],
        },
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def _decision(api: Api, ret: dict[str, Any]) -> dict[str, Any]:
    r = api.get(f"/api/v1/returns/{ret['id']}/decision")
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_default_policy_reproduces_the_seed_behaviours(api: Api, db: Database) -> None:
    _setup(api)
    order = _order(api, "o-1")

    # Buyer's choice: approved, the buyer pays shipping and a fee applies if opened.
    ret = _return(api, order, "MUG", "changed_mind")
    assert ret["status"] == "approved"
    decision = _decision(api, ret)
    assert decision["outcome"] == "auto_approve"
    assert (decision["policy_name"], decision["policy_version"]) == ("Default policy (EUR)", 1)
    line = decision["lines"][0]
    assert line["settings"]["return_shipping_paid_by"] == "buyer"
    assert line["settings"]["restocking_fee"]["applies_to"] == "opened"
    assert line["sources"]["return_shipping_paid_by"] == "no-fault-buyer-pays"
    # A German buyer withdrawing within 14 days gets the outbound delivery back by law.
    assert line["settings"]["refund_outbound_shipping"] is True
    assert any("2011/83/EU" in entry["law"] for entry in line["legal"])
    traced = {t["rule"]: t["matched"] for t in line["trace"]}
    assert traced["no-fault-buyer-pays"] is True and traced["seller-fault-evidence"] is False

    # Seller fault: photos first, then the uploaded evidence re-decides the return.
    ret = _return(api, order, "TENT", "defective")
    assert ret["status"] == "awaiting_evidence"
    assert "2 more photo(s)" in _decision(api, ret)["reasons"][0]
    files = [
        ("files", (f"p{i}.jpg", jpeg_bytes(color=(i * 90, 40, 40)), "image/jpeg")) for i in range(2)
    ]
    r = api.client.post(
        f"/api/v1/returns/{ret['id']}/evidence",
        files=files,
        data={"text": "The pole snapped on first use."},
        headers=api.tenant.headers,
    )
    assert r.status_code == 201, r.text
    assert [e["kind"] for e in r.json()] == ["photo", "photo", "text"]
    after = api.get(f"/api/v1/returns/{ret['id']}").json()
    # 300 EUR is above the high-value threshold: approved, but inspected before refund.
    assert after["status"] == "approved"
    decision = _decision(api, ret)
    assert decision["outcome"] == "auto_approve"
    assert decision["lines"][0]["settings"]["inspection_before_refund"] is True
    assert decision["lines"][0]["settings"]["shipping"] == {"tracked": True, "signature": True}
    assert decision["lines"][0]["settings"]["return_shipping_paid_by"] == "seller"

    # Worth less than bringing it back (6.00 label + 2.00 handling): refunded without goods.
    ret = _return(api, order, "CHEAP", "changed_mind")
    assert ret["status"] == "resolved"
    assert _decision(api, ret)["outcome"] == "returnless_refund"

    events = api.get(f"/api/v1/returns/{ret['id']}/events").json()
    assert [e["action"] for e in events] == [
        "return.created",
        "return.decided",
        "return.resolve_returnless",
    ]
    assert events[-1]["actor_type"] == "system" and "policy" in events[-1]["actor_label"]


def test_outside_window_watchlist_and_missing_facts(api: Api, db: Database) -> None:
    _setup(api)
    late = _order(api, "o-late", delivered_days_ago=40)
    ret = _return(api, late, "MUG", "changed_mind")
    assert ret["status"] == "rejected"
    assert "outside the 30-day return window" in ret["status_reason"]

    undelivered = _order(api, "o-nodate", delivered_days_ago=None, buyer="b-2")
    ret = _return(api, undelivered, "MUG", "changed_mind")
    assert ret["status"] == "pending_review"
    decision = _decision(api, ret)
    assert decision["outcome"] == "needs_review"
    assert "days_since_delivery" in decision["missing_facts"]

    watched = _order(api, "o-watch", buyer="b-3")
    with db.session() as session:
        buyer = session.scalar(select(Buyer).where(Buyer.external_id == "b-3"))
        assert buyer is not None
        buyer.watchlisted = True
    ret = _return(api, watched, "CHEAP", "changed_mind")
    # Never a returnless refund for a watchlisted buyer: a human looks first.
    assert ret["status"] == "pending_review"
    line = _decision(api, ret)["lines"][0]
    assert line["settings"]["returnless_refund"] is False
    assert line["settings"]["inspection_before_refund"] is True


def test_publishing_a_new_version_never_changes_past_decisions(api: Api) -> None:
    _setup(api)
    data = default_policy_data("EUR")
    r = api.post("/api/v1/policies", {"name": "Strict", "document": data})
    assert r.status_code == 201, r.text
    policy = r.json()
    assert (policy["latest_version"], policy["published_version"]) == (1, None)
    # Unpublished policies cannot be assigned.
    r = api.post("/api/v1/channels/amazon-de/policy", {"policy_id": policy["id"]})
    assert r.status_code == 409 and r.json()["code"] == "policy_not_published"
    assert api.post(f"/api/v1/policies/{policy['id']}/publish", {"version": 1}).status_code == 200
    r = api.post("/api/v1/channels/amazon-de/policy", {"policy_id": policy["id"]})
    assert r.status_code == 200 and r.json()["policy_id"] == policy["id"]

    order = _order(api, "o-v")
    first = _return(api, order, "MUG", "changed_mind")
    assert first["status"] == "approved"

    stricter = default_policy_data("EUR")
    stricter["rules"].insert(
        0,
        {
            "id": "review-everything",
            "when": {"buyer_countries": ["DE"]},
            "then": {"human_review": True},
        },
    )
    r = api.post(f"/api/v1/policies/{policy['id']}/versions", {"document": stricter})
    assert r.status_code == 201 and r.json()["latest_version"] == 2
    # A draft decides nothing yet.
    second = _return(api, order, "TENT", "changed_mind")
    assert _decision(api, second)["policy_version"] == 1
    api.post(f"/api/v1/policies/{policy['id']}/publish", {"version": 2})
    third = _return(api, order, "CHEAP", "size_fit")
    assert third["status"] == "pending_review"
    assert _decision(api, third)["policy_version"] == 2
    assert _decision(api, first)["policy_version"] == 1
    v1 = api.get(f"/api/v1/policies/{policy['id']}/versions/1").json()
    assert v1["published"] is False and v1["document"]["rules"][0]["id"] == "watchlist-review"


def test_an_invalid_policy_lists_every_problem_and_saves_nothing(api: Api, db: Database) -> None:
    bad = default_policy_data("EUR")
    bad["rules"][0]["when"]["colour"] = "red"
    bad["rules"][1]["then"]["restocking_fee"] = {"percent": "150"}
    bad["defaults"]["return_window_days"] = 7
    r = api.post("/api/v1/policies", {"name": "Bad", "document": bad})
    assert r.status_code == 422
    problem = r.json()
    assert problem["code"] == "invalid_policy"
    fields = {e["field"] for e in problem["errors"]}
    assert "document.rules.0.when.colour" in fields
    assert "document.rules.1.then.restocking_fee.percent" in fields

    below_floor = default_policy_data("EUR")
    below_floor["defaults"]["return_window_days"] = 7
    r = api.post("/api/v1/policies", {"name": "Short", "document": below_floor})
    assert r.status_code == 422
    messages = [e["message"] for e in r.json()["errors"]]
    assert any("2011/83/EU" in m for m in messages)  # EU buyers
    assert any("Consumer Contracts Regulations 2013" in m for m in messages)  # UK buyers
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Policy)) == 0

    r = api.post("/api/v1/policies/validate", {"document": below_floor})
    assert r.status_code == 200 and r.json()["valid"] is False


def test_policies_can_be_written_in_yaml(api: Api) -> None:
    text = """
name: Simple
defaults:
  return_window_days: 45
rules:
  - id: faulty-free
    when: {reason_classes: [seller_fault]}
    then: {return_shipping_paid_by: seller}
"""
    r = api.post("/api/v1/policies", {"name": "Simple", "document_yaml": text})
    assert r.status_code == 201, r.text
    r = api.post("/api/v1/policies", {"name": "Broken", "document_yaml": "rules: [unclosed"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "document_yaml"
    schema = api.get("/api/v1/policies/schema").json()
    assert "rules" in schema["properties"]


def test_policy_page_in_the_channels_language(api: Api) -> None:
    _setup(api)
    r = api.get("/api/v1/channels/amazon-de/policy-page")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["content-language"] == "de"
    assert '<html lang="de"' in r.text and "30" in r.text
    r = api.get("/api/v1/channels/amazon-de/policy-page?format=text&language=fr")
    assert r.headers["content-type"].startswith("text/plain")
    assert r.headers["content-language"] == "fr"


def test_evidence_is_checked_before_anything_is_kept(api: Api) -> None:
    _setup(api)
    order = _order(api, "o-e")
    ret = _return(api, order, "TENT", "defective")
    r = api.client.post(
        f"/api/v1/returns/{ret['id']}/evidence",
        files=[("files", ("notes.exe", b"MZ...", "application/x-msdownload"))],
        headers=api.tenant.headers,
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "files.0"
    assert api.get(f"/api/v1/returns/{ret['id']}/evidence").json() == []
    rejected = _return(api, _order(api, "o-e2", delivered_days_ago=45), "MUG", "changed_mind")
    assert rejected["status"] == "rejected"
    r = api.client.post(
        f"/api/v1/returns/{rejected['id']}/evidence",
        data={"text": "please"},
        headers=api.tenant.headers,
    )
    assert r.status_code == 409 and r.json()["code"] == "evidence_closed"


def test_the_built_in_default_names_are_reserved(api: Api) -> None:
    r = api.post(
        "/api/v1/policies", {"name": "Default policy (EUR)", "document": default_policy_data("EUR")}
    )
    assert r.status_code == 409 and "built-in" in r.json()["detail"]
