"""Exchange rates: recorded per day, looked up exactly, used by policy value bands."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from returnguard.auth.actor import Actor
from returnguard.fx import service as fx
from returnguard.kit.db import Database
from tests.conftest import Api, make_tenant


def test_rates_are_found_directly_inverted_crossed_and_from_earlier_days(db: Database) -> None:
    t = make_tenant(db)
    actor = Actor.system(t.organization_id)
    with db.session() as session:
        fx.set_rate(
            session, actor, day=date(2026, 11, 2), base="EUR", quote="USD", rate=Decimal("1.0856")
        )
        fx.set_rate(
            session, actor, day=date(2026, 11, 2), base="EUR", quote="JPY", rate=Decimal("162.5")
        )
    with db.session() as session:
        org = t.organization_id
        assert fx.rate(session, org, "EUR", "USD", date(2026, 11, 2)) == Decimal("1.0856")
        # A weekend uses Friday's rate; nothing before the first rate.
        assert fx.rate(session, org, "EUR", "USD", date(2026, 11, 8)) == Decimal("1.0856")
        assert fx.rate(session, org, "EUR", "USD", date(2026, 11, 1)) is None
        assert fx.rate(session, org, "USD", "EUR", date(2026, 11, 2)) == 1 / Decimal("1.0856")
        crossed = fx.rate(session, org, "USD", "JPY", date(2026, 11, 3))
        assert crossed is not None
        exact = Decimal("162.5") / Decimal("1.0856")
        assert crossed.quantize(Decimal("1e-20")) == exact.quantize(Decimal("1e-20"))
        assert fx.rate(session, org, "GBP", "USD", date(2026, 11, 3)) is None


def test_rates_over_the_api_with_clear_errors(api: Api) -> None:
    body: dict[str, object] = {"day": "2026-11-02", "base": "EUR", "quote": "USD", "rate": "1.0856"}
    r = api.post("/api/v1/fx-rates", body)
    assert r.status_code == 201, r.text
    assert r.json()["rate"] == "1.0856"
    # The same day again corrects it; it is not a second rate.
    r = api.post("/api/v1/fx-rates", body | {"rate": "1.0900"})
    assert r.status_code == 201
    listed = api.get("/api/v1/fx-rates?base=EUR").json()
    assert [x["rate"] for x in listed] == ["1.09"]
    cases: list[tuple[dict[str, object], str]] = [
        ({"rate": 1.08}, "rate"),
        ({"rate": "-1"}, "rate"),
        ({"rate": "0"}, "rate"),
        ({"quote": "EUR"}, "quote"),
        ({"base": "XXX"}, "base"),
    ]
    for bad, field in cases:
        r = api.post("/api/v1/fx-rates", body | bad)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["errors"][0]["field"] == field


def test_a_value_band_in_euros_judges_a_dollar_return_with_the_days_rate(api: Api) -> None:
    api.channel("shop-us", currency="USD", country="US")
    policy = {
        "name": "EU-priced thresholds",
        "defaults": {"return_window_days": 60},
        "rules": [
            {
                "id": "valuable",
                "when": {"item_value": {"currency": "EUR", "min": "100"}},
                "then": {"human_review": True},
            }
        ],
    }
    created = api.post("/api/v1/policies", {"name": "EUR bands", "document": policy}).json()
    api.post(f"/api/v1/policies/{created['id']}/publish", {"version": 1})
    api.post("/api/v1/channels/shop-us/policy", {"policy_id": created["id"]})
    now = datetime.now(UTC)
    order = api.order(
        "us-1",
        channel="shop-us",
        currency="USD",
        quantity=1,
        price="105.00",
        ordered_at=(now - timedelta(days=5)).isoformat(),
        delivered_at=(now - timedelta(days=2)).isoformat(),
    )
    line = order["lines"][0]["id"]

    def ask() -> tuple[str, list[str]]:
        r = api.post(
            "/api/v1/returns",
            {
                "order_id": order["id"],
                "lines": [{"order_line_id": line, "quantity": 1, "reason_code": "changed_mind"}],
            },
        )
        assert r.status_code == 201, r.text
        decision = api.get(f"/api/v1/returns/{r.json()['id']}/decision").json()
        api.post(f"/api/v1/returns/{r.json()['id']}/cancel", {})
        return str(decision["outcome"]), list(decision["missing_facts"])

    # Without a rate the band cannot be judged: a person looks.
    assert ask() == ("needs_review", ["item_value"])
    # 105 USD at 1.10 USD per EUR is 95.45 EUR: under the band.
    today = now.date().isoformat()
    api.post("/api/v1/fx-rates", {"day": today, "base": "EUR", "quote": "USD", "rate": "1.10"})
    assert ask() == ("auto_approve", [])
    # At 1.02 it is 102.94 EUR: inside the band.
    api.post("/api/v1/fx-rates", {"day": today, "base": "EUR", "quote": "USD", "rate": "1.02"})
    assert ask() == ("needs_review", [])
