"""Manual entries, reversals and the append-only rule."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from returnguard.kit.db import Database
from returnguard.ledger.models import AppendOnlyViolation, LedgerEntry
from tests.conftest import Api, add_key
from tests.ledger.conftest import money, ok

LEDGER = "/api/v1/ledger"


@pytest.fixture
def shop(api: Api) -> dict[str, Any]:
    api.channel()
    order = api.order(quantity=2, price="50.00")
    return {"order": order, "return": api.open_return(order)}


def entry(shop: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "kind": "handling_fee",
        "amount": money("4.20"),
        "return_id": shop["return"]["id"],
        "memo": "partner invoice 2026-117",
    } | fields


def test_a_partner_invoice_is_booked_as_a_cost(api: Api, shop: dict[str, Any]) -> None:
    booked = ok(api.post(LEDGER, entry(shop, occurred_on="2026-10-05")), 201)
    assert booked["amount"] == money("-4.20")
    assert booked["kind"] == "handling_fee"
    assert booked["order_id"] == shop["order"]["id"]
    assert booked["automatic"] is False
    assert booked["occurred_on"] == "2026-10-05"
    assert booked["created_by"] == "test"
    events = ok(api.get(f"/api/v1/returns/{shop['return']['id']}/events"))
    [event] = [e for e in events if e["action"] == "ledger.entry_booked"]
    assert event["after"]["amount"] == money("-4.20")


def test_a_claim_names_who_paid_it_and_counts_as_a_recovery(api: Api, shop: dict[str, Any]) -> None:
    line = shop["return"]["lines"][0]["order_line_id"]
    booked = ok(
        api.post(
            LEDGER,
            entry(
                shop,
                kind="claim_reimbursed",
                source="carrier",
                amount=money("49.99"),
                order_line_id=line,
            ),
        ),
        201,
    )
    assert booked["amount"] == money("49.99")
    assert booked["source"] == "carrier"
    assert booked["sku"] == "MUG-BLUE"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"amount": money("-4.20")}, "amount.amount"),
        ({"amount": money("4.201")}, "amount.amount"),
        ({"amount": money("0.00")}, "amount.amount"),
        ({"amount": {"amount": 4.2, "currency": "EUR"}}, "amount.amount"),
        ({"amount": money("4.20", "EUX")}, "amount.currency"),
        ({"amount": money("4.20", "GBP")}, "amount.currency"),  # no GBP->EUR rate stored
        ({"kind": "refund_paid"}, "kind"),
        ({"kind": "bonus"}, "kind"),
        ({"kind": "claim_reimbursed"}, "source"),
        ({"source": "marketplace"}, "source"),
        ({"paid_by": "seller"}, "paid_by"),
        ({"return_id": None}, "order_id"),
        ({"order_id": str(uuid.uuid4())}, "order_id"),
        ({"order_line_id": str(uuid.uuid4())}, "order_line_id"),
        ({"occurred_on": "2999-01-01"}, "occurred_on"),
        ({"memo": "x" * 2001}, "memo"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_entries_are_422_naming_the_field(
    api: Api, db: Database, shop: dict[str, Any], fields: dict[str, Any], field: str
) -> None:
    r = api.post(LEDGER, entry(shop, **fields))
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == field
    with db.engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM ledger_entries")) == 0


def test_a_currency_with_a_rate_is_accepted(api: Api, shop: dict[str, Any]) -> None:
    ok(
        api.post(
            "/api/v1/fx-rates", {"day": "2026-10-01", "base": "EUR", "quote": "GBP", "rate": "0.85"}
        ),
        201,
    )
    booked = ok(
        api.post(LEDGER, entry(shop, amount=money("3.00", "GBP"), occurred_on="2026-10-03")), 201
    )
    assert booked["amount"] == money("-3.00", "GBP")


def test_an_unknown_return_is_404(api: Api, shop: dict[str, Any]) -> None:
    r = api.post(LEDGER, entry(shop, return_id=str(uuid.uuid4())))
    assert r.status_code == 404, r.text


def test_only_finance_and_admins_book(api: Api, db: Database, shop: dict[str, Any]) -> None:
    for role in ("agent", "inspector", "viewer"):
        other = Api(api.client, add_key(db, api.tenant, role))
        r = other.post(LEDGER, entry(shop))
        assert r.status_code == 403, (role, r.text)
    finance = Api(api.client, add_key(db, api.tenant, "finance"))
    booked = ok(finance.post(LEDGER, entry(shop)), 201)
    r = Api(api.client, add_key(db, api.tenant, "agent")).post(
        f"{LEDGER}/{booked['id']}/reverse", {"reason": "no"}
    )
    assert r.status_code == 403


def test_an_entry_is_reversed_once_and_a_reversal_never(api: Api, shop: dict[str, Any]) -> None:
    booked = ok(api.post(LEDGER, entry(shop)), 201)
    reversal = ok(api.post(f"{LEDGER}/{booked['id']}/reverse", {"reason": "double invoice"}), 201)
    assert reversal["amount"] == money("4.20")

    again = api.post(f"{LEDGER}/{booked['id']}/reverse", {"reason": "again"})
    assert again.status_code == 409, again.text
    assert again.json()["code"] == "already_reversed"
    assert again.json()["reversal_id"] == reversal["id"]

    back = api.post(f"{LEDGER}/{reversal['id']}/reverse", {"reason": "undo the undo"})
    assert back.status_code == 409, back.text
    assert back.json()["code"] == "reversal_not_reversible"

    r = api.post(f"{LEDGER}/{booked['id']}/reverse", {"reason": ""})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "reason"
    items = ok(api.get(LEDGER, params={"return_id": shop["return"]["id"]}))["items"]
    assert sorted(e["amount"]["amount"] for e in items) == ["-4.20", "4.20"]


def test_listing_filters_and_pages(api: Api, shop: dict[str, Any]) -> None:
    for day in ("2026-10-01", "2026-10-02", "2026-10-03"):
        ok(api.post(LEDGER, entry(shop, occurred_on=day)), 201)
    ok(api.post(LEDGER, entry(shop, kind="other_recovery", occurred_on="2026-10-04")), 201)
    seen: list[str] = []
    cursor = None
    while True:
        page = ok(api.get(LEDGER, params={"limit": 3} | ({"cursor": cursor} if cursor else {})))
        seen += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 4
    window = ok(api.get(LEDGER, params={"from": "2026-10-02", "to": "2026-10-03"}))["items"]
    assert sorted(e["occurred_on"] for e in window) == ["2026-10-02", "2026-10-03"]
    kinds = ok(api.get(LEDGER, params={"kind": "other_recovery"}))["items"]
    assert [e["amount"]["amount"] for e in kinds] == ["4.20"]
    assert ok(api.get(LEDGER, params={"order_id": str(uuid.uuid4())}))["items"] == []
    r = api.get(LEDGER, params={"from": "2026-10-05", "to": "2026-10-01"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "from"
    r = api.get(LEDGER, params={"cursor": "not-a-cursor"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "cursor"


def test_entries_cannot_be_changed_or_deleted(api: Api, db: Database, shop: dict[str, Any]) -> None:
    booked = ok(api.post(LEDGER, entry(shop)), 201)
    entry_id = uuid.UUID(booked["id"])
    with pytest.raises(AppendOnlyViolation, match="cannot be changed"), db.session() as session:
        row = session.get(LedgerEntry, entry_id)
        assert row is not None
        row.amount_minor = -1
        session.flush()
    with pytest.raises(AppendOnlyViolation, match="cannot be deleted"), db.session() as session:
        row = session.get(LedgerEntry, entry_id)
        session.delete(row)
        session.flush()
    with db.session() as session:
        row = session.scalar(select(LedgerEntry).where(LedgerEntry.id == entry_id))
        assert row is not None and row.amount_minor == -420


@pytest.mark.postgresql_only  # the trigger; SQLite relies on the session guard above
def test_postgresql_itself_refuses_updates_and_deletes(
    api: Api, db: Database, shop: dict[str, Any]
) -> None:
    assert db.dialect == "postgresql"
    booked = ok(api.post(LEDGER, entry(shop)), 201)
    for statement in (
        "UPDATE ledger_entries SET amount_minor = 0 WHERE id = :id",
        "DELETE FROM ledger_entries WHERE id = :id",
    ):
        with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as conn:
            conn.execute(text(statement), {"id": uuid.UUID(booked["id"])})
    items = ok(api.get(LEDGER))["items"]
    assert [e["amount"]["amount"] for e in items] == ["-4.20"]
