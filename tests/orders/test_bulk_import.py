"""Bulk CSV import: chunks of orders written set-based, with the single-order path's rules.

Small chunk sizes put creates, updates and rejections on both sides of chunk boundaries;
every test runs on SQLite and on PostgreSQL (where new orders go in by COPY).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from returnguard.audit.models import Event
from returnguard.audit.service import jsonable
from returnguard.auth.service import Actor
from returnguard.cli import app
from returnguard.kit.db import Database
from returnguard.orders import bulk, importer
from returnguard.orders import repository as repo
from returnguard.orders.importer import ImportInterrupted, ImportReport, import_orders_csv
from returnguard.orders.models import Buyer, Order, Product
from returnguard.orders.schemas import ChannelIn, Marketplace, OrderIn
from returnguard.orders.service import _order_state, create_channel
from tests.conftest import Api, Tenant, make_tenant
from tests.orders.test_import import Row, jpy_row, order_row, stored_order, write_csv


@pytest.fixture
def org(db: Database) -> uuid.UUID:
    """A tenant with channels amazon-de (EUR) and amazon-jp (JPY)."""
    org_id = make_tenant(db).organization_id
    actor = Actor.system(org_id, "test")
    with db.session() as session:
        for code, country, currency in [("amazon-de", "DE", "EUR"), ("amazon-jp", "JP", "JPY")]:
            create_channel(
                session,
                actor,
                ChannelIn(
                    code=code,
                    name=code,
                    marketplace=Marketplace.AMAZON,
                    country=country,
                    currency=currency,
                ),
            )
    return org_id


def order_events(db: Database, org_id: uuid.UUID) -> Counter[tuple[str, str]]:
    """(action, order's external id) of every order event of the organization."""
    with db.session() as session:
        orders = dict(
            session.execute(
                select(Order.id, Order.external_id).where(Order.organization_id == org_id)
            ).all()
        )
        rows = session.execute(
            select(Event.action, Event.subject_id).where(
                Event.organization_id == org_id, Event.subject_type == "order"
            )
        ).all()
    return Counter((action, orders[uuid.UUID(subject)]) for action, subject in rows)


def event_count(db: Database, org_id: uuid.UUID) -> int:
    with db.session() as session:
        count = session.scalar(
            select(func.count()).select_from(Event).where(Event.organization_id == org_id)
        )
        return int(count or 0)


def stamps(db: Database, org_id: uuid.UUID) -> dict[str, datetime]:
    with db.session() as session:
        rows = session.execute(
            select(Order.external_id, Order.updated_at).where(Order.organization_id == org_id)
        )
        return {external: updated for external, updated in rows}


def counts(report: ImportReport) -> tuple[int, ...]:
    return (
        report.rows_read,
        report.rows_imported,
        report.rows_rejected,
        report.orders_created,
        report.orders_updated,
        report.orders_unchanged,
    )


def line_ids(db: Database, org_id: uuid.UUID, channel: str, order_id: str) -> list[str]:
    order = stored_order(db, org_id, channel, order_id)
    assert order is not None, order_id
    return [ln.external_id for ln in order.lines]


def test_multi_chunk_import_creates_updates_and_rejects_across_chunk_boundaries(
    db: Database, org: uuid.UUID, tmp_path: Path
) -> None:
    first = [
        order_row("A-1"),
        order_row("A-2", sku="MUG-RED"),
        order_row("A-3"),
        order_row("A-4"),
        jpy_row("J-1"),
    ]
    report = import_orders_csv(db, org, write_csv(tmp_path / "first.csv", first), chunk_size=2)
    assert counts(report) == (5, 5, 0, 5, 0, 0)

    rows = [
        order_row("A-1"),  # line 2: unchanged
        order_row("A-2", captured="9.99", unit_price="9.99", sku="MUG-RED"),  # 3: updated
        order_row("B-1", quantity="x"),  # 4: rejected
        order_row("A-3", "a3-1"),  # 5: updated (its line is replaced)
        order_row("N-1", "n1", captured="39.98"),  # 6: new, two adjacent rows
        order_row("N-1", "n2", captured="39.98", sku="MUG-GREEN"),  # 7
        order_row("N-2"),  # 8: new
        order_row("A-4", unit_price="1.999"),  # 9: rejected, A-4 stays as it was
        order_row("N-3", "n3-1", captured="39.98"),  # 10: new, its rows apart
        jpy_row("J-1"),  # 11: unchanged
        order_row("N-3", "n3-2", captured="39.98", sku="MUG-RED"),  # 12
    ]
    report = import_orders_csv(db, org, write_csv(tmp_path / "second.csv", rows), chunk_size=2)

    assert report.summary() == "read 11 rows: imported 9, rejected 2 (orders created 3, updated 2)"
    assert counts(report) == (11, 9, 2, 3, 2, 2)
    assert [(p.line, p.field) for p in report.problems] == [(4, "quantity"), (9, "unit_price")]
    assert order_events(db, org) == Counter(
        {("order.created", ext): 1 for ext in ["A-1", "A-2", "A-3", "A-4", "J-1"]}
        | {("order.created", ext): 1 for ext in ["N-1", "N-2", "N-3"]}
        | {("order.updated", "A-2"): 1, ("order.updated", "A-3"): 1}
    )
    updated = stored_order(db, org, "amazon-de", "A-2")
    assert updated is not None and updated.captured.amount == "9.99"
    assert line_ids(db, org, "amazon-de", "A-3") == ["a3-1"]
    assert line_ids(db, org, "amazon-de", "N-1") == ["n1", "n2"]
    assert line_ids(db, org, "amazon-de", "N-3") == ["n3-1", "n3-2"]
    kept = stored_order(db, org, "amazon-de", "A-4")
    assert kept is not None and kept.lines[0].unit_price.amount == "19.99"
    assert stored_order(db, org, "amazon-de", "B-1") is None


def test_a_new_order_looks_exactly_as_the_single_order_path_would_store_it(
    db: Database, org: uuid.UUID, tmp_path: Path
) -> None:
    rows = [
        order_row("A-1", "a1", captured="45.97", shipping="4.99", tax="3.19", ship_to_country=""),
        order_row(
            "A-1",
            "a2",
            captured="45.97",
            shipping="4.99",
            ship_to_country="",
            sku="MUG-RED",
            title="",
            quantity="2",
            unit_price="10.50",
            discount="0.01",
            payment_reference="pi_123",
        ),
    ]
    # payment_reference is an order column: it must be on both rows.
    rows[0]["payment_reference"] = "pi_123"

    report = import_orders_csv(db, org, write_csv(tmp_path / "orders.csv", rows))

    assert report.problems == []
    order = stored_order(db, org, "amazon-de", "A-1")
    assert order is not None
    assert order.ship_to_country == "DE"  # the buyer's country, as upsert_order does
    assert order.payment_reference == "pi_123"
    assert [ln.title for ln in order.lines] == ["Blue mug", ""]
    with db.session() as session:
        channel = repo.channel_by_code(session, org, "amazon-de")
        assert channel is not None
        stored = repo.order_by_external_id(session, channel.id, "A-1")
        assert stored is not None
        event = session.scalars(
            select(Event).where(Event.subject_type == "order", Event.subject_id == str(stored.id))
        ).one()
        assert event.action == "order.created"
        assert event.actor_label == "csv import"
        assert event.after == jsonable(_order_state(stored))


def test_same_sku_and_buyer_in_several_chunks_create_one_product_and_one_buyer(
    db: Database, org: uuid.UUID, tmp_path: Path
) -> None:
    rows = [
        order_row(f"A-{i}", sku="MUG-NEW", title="New mug", buyer_id="anna", buyer_email=email)
        for i, email in enumerate(["", "a1@example.de", "", "a2@example.de", "", ""])
    ]

    report = import_orders_csv(db, org, write_csv(tmp_path / "orders.csv", rows), chunk_size=2)

    assert counts(report) == (6, 6, 0, 6, 0, 0)
    with db.session() as session:
        products = session.scalars(
            select(Product).where(Product.organization_id == org, Product.sku == "MUG-NEW")
        ).all()
        buyers = session.scalars(
            select(Buyer).where(Buyer.organization_id == org, Buyer.external_id == "anna")
        ).all()
        buyer_ids = set(session.scalars(select(Order.buyer_id).where(Order.organization_id == org)))
    assert [p.title for p in products] == ["New mug"]
    assert len(buyers) == 1
    assert buyer_ids == {buyers[0].id}
    # A value given replaces the stored one and an empty cell keeps it, order after order.
    assert buyers[0].email == "a2@example.de"


def test_reimporting_the_same_file_changes_nothing_and_records_no_events(
    db: Database, org: uuid.UUID, tmp_path: Path
) -> None:
    rows: list[Row] = []
    for i in range(7):
        rows.append(order_row(f"A-{i}", "x1", captured="39.98", buyer_id=f"b{i % 3}"))
        rows.append(jpy_row(f"J-{i}", buyer_id=f"jb{i % 2}", ship_to_country=""))
        rows.append(order_row(f"A-{i}", "x2", captured="39.98", buyer_id=f"b{i % 3}"))
    path = write_csv(tmp_path / "orders.csv", rows)
    first = import_orders_csv(db, org, path, chunk_size=3)
    assert counts(first) == (21, 21, 0, 14, 0, 0)
    events, before = event_count(db, org), stamps(db, org)

    again = import_orders_csv(db, org, path, chunk_size=3)

    assert counts(again) == (21, 21, 0, 0, 0, 14)
    assert again.summary() == "read 21 rows: imported 21, rejected 0 (orders created 0, updated 0)"
    assert event_count(db, org) == events
    assert stamps(db, org) == before


def test_an_update_the_service_refuses_rejects_that_order_alone(
    db: Database, api: Api, tenant: Tenant, tmp_path: Path
) -> None:
    api.channel()
    order = api.order(quantity=3)
    api.open_return(order, quantity=2)
    rows = [
        order_row("N-1"),
        # 302-…: quantity 3 with 2 units being returned cannot drop to 1.
        order_row(
            "302-0000001-0000001", "item-1", quantity="1", captured="19.99", buyer_id="buyer-1"
        ),
        order_row("N-2"),
        order_row("N-3"),
    ]

    report = import_orders_csv(
        db, tenant.organization_id, write_csv(tmp_path / "orders.csv", rows), chunk_size=2
    )

    assert counts(report) == (4, 3, 1, 3, 0, 0)
    assert [(p.line, p.field, p.message) for p in report.problems] == [
        (3, "quantity", "2 unit(s) are already being returned; quantity cannot drop to 1")
    ]
    assert order_events(db, tenant.organization_id)[("order.updated", order["external_id"])] == 0
    kept = stored_order(db, tenant.organization_id, "amazon-de", order["external_id"])
    assert kept is not None and kept.lines[0].quantity == 3


@pytest.fixture
def refused_order(db: Database) -> Iterator[str]:
    """The database refuses to store an order with the external id REFUSED (a trigger)."""
    with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            conn.execute(
                text(
                    "CREATE FUNCTION rg_refuse() RETURNS trigger AS $$ BEGIN "
                    "IF NEW.external_id = 'REFUSED' THEN RAISE EXCEPTION "
                    "'order REFUSED is refused' USING ERRCODE = 'check_violation'; END IF; "
                    "RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER rg_refuse BEFORE INSERT ON orders "
                    "FOR EACH ROW EXECUTE FUNCTION rg_refuse()"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE TRIGGER rg_refuse BEFORE INSERT ON orders "
                    "WHEN NEW.external_id = 'REFUSED' "
                    "BEGIN SELECT RAISE(ABORT, 'order REFUSED is refused'); END"
                )
            )
    try:
        yield "REFUSED"
    finally:
        with db.engine.begin() as conn:
            if db.dialect == "postgresql":
                conn.execute(text("DROP TRIGGER rg_refuse ON orders"))
                conn.execute(text("DROP FUNCTION rg_refuse()"))
            else:
                conn.execute(text("DROP TRIGGER rg_refuse"))


def test_a_chunk_the_database_refuses_is_written_order_by_order_and_only_the_bad_one_rejected(
    db: Database, org: uuid.UUID, tmp_path: Path, refused_order: str
) -> None:
    rows = [
        order_row("A-1"),
        order_row(refused_order, "r1", captured="39.98"),
        order_row(refused_order, "r2", captured="39.98"),
        order_row("A-2"),
        order_row("A-3"),
    ]

    report = import_orders_csv(db, org, write_csv(tmp_path / "orders.csv", rows), chunk_size=3)

    assert counts(report) == (5, 3, 2, 3, 0, 0)
    assert [(p.line, p.field) for p in report.problems] == [(3, "order_id"), (4, "order_id")]
    message = report.problems[0].message
    assert message.startswith("the database refused the order: ")
    assert "order REFUSED is refused" in message
    assert order_events(db, org) == Counter(
        {("order.created", ext): 1 for ext in ["A-1", "A-2", "A-3"]}
    )


def _failing_on(external_id: str) -> Any:
    """upsert_orders, except that the database goes away at the order ``external_id``."""
    real = bulk.upsert_orders

    def upsert_orders(session: Any, actor: Any, channels: Any, orders: list[OrderIn]) -> Any:
        if any(order.external_id == external_id for order in orders):
            raise OperationalError("INSERT …", {}, Exception("server closed the connection"))
        return real(session, actor, channels, orders)

    return upsert_orders


def test_when_the_database_goes_away_the_import_stops_and_keeps_the_earlier_chunks(
    db: Database, org: uuid.UUID, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "upsert_orders", _failing_on("DOWN"))
    rows = [order_row("A-1"), order_row("B-1", quantity="x"), order_row("A-2")]
    rows += [order_row("A-3"), order_row("DOWN"), order_row("A-4")]
    path = write_csv(tmp_path / "orders.csv", rows)

    with pytest.raises(ImportInterrupted) as caught:
        import_orders_csv(db, org, path, chunk_size=2)

    report = caught.value.report
    # A-1, A-2 (first chunk) and A-3 (written alone before DOWN) are in; B-1 was rejected.
    assert counts(report) == (4, 3, 1, 3, 0, 0)
    assert caught.value.detail.startswith("line 6: the database failed (server closed")
    assert "Import the file again to finish" in caught.value.detail
    assert order_events(db, org) == Counter(
        {("order.created", ext): 1 for ext in ["A-1", "A-2", "A-3"]}
    )

    args = ["import", "orders", str(path), "--org", str(org), "--database-url", db.url]
    result = CliRunner().invoke(app, [*args, "--chunk-size", "2"])

    assert result.exit_code == 3
    assert "read 4 rows: imported 3, rejected 1 (orders created 0, updated 0)" in result.stdout
    assert "line 3: quantity: must be a whole number of units, got 'x'" in result.stderr
    assert "error: line 6: the database failed" in result.stderr

    monkeypatch.undo()
    finished = import_orders_csv(db, org, path, chunk_size=2)
    assert counts(finished) == (6, 5, 1, 2, 0, 3)


def test_rows_of_one_order_far_apart_are_imported_together_even_with_a_full_first_pass_filter(
    db: Database, org: uuid.UUID, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 8 bits: nearly every order looks seen before, so nearly every order is held for a
    # while. The outcome must be the same, only later.
    monkeypatch.setattr(importer, "_SEEN_BITS", 8)
    rows = [order_row(f"A-{i}", "x1", captured="39.98") for i in range(30)]
    rows += [order_row(f"A-{i}", "x2", captured="39.98", sku="MUG-RED") for i in range(30)]
    rows += [order_row(f"S-{i}") for i in range(10)]

    report = import_orders_csv(db, org, write_csv(tmp_path / "orders.csv", rows), chunk_size=4)

    assert counts(report) == (70, 70, 0, 40, 0, 0)
    assert all(line_ids(db, org, "amazon-de", f"A-{i}") == ["x1", "x2"] for i in range(30))


def test_the_same_bad_amount_is_reported_on_every_order_that_has_it(
    db: Database, org: uuid.UUID, tmp_path: Path
) -> None:
    # Amounts are validated once per distinct value: a bad one must not slip through later.
    rows = [order_row("A-1"), order_row("B-1", unit_price="1.999"), order_row("A-2")]
    rows += [order_row("B-2", unit_price="1.999"), order_row("A-3", unit_price="19.99")]

    report = import_orders_csv(db, org, write_csv(tmp_path / "orders.csv", rows), chunk_size=2)

    assert [(p.line, p.field) for p in report.problems] == [(3, "unit_price"), (5, "unit_price")]
    assert counts(report) == (5, 3, 2, 3, 0, 0)


def test_upsert_orders_applies_a_repeated_order_after_the_first_and_rejects_alone(
    db: Database, org: uuid.UUID
) -> None:
    def order(external_id: str, captured: str, channel: str = "amazon-de") -> OrderIn:
        return OrderIn.model_validate(
            {
                "channel": channel,
                "external_id": external_id,
                "currency": "EUR",
                "ordered_at": "2026-10-01T10:00:00+02:00",
                "captured": {"amount": captured, "currency": "EUR"},
                "lines": [
                    {
                        "external_id": "1",
                        "sku": "MUG-BLUE",
                        "quantity": 1,
                        "unit_price": {"amount": captured, "currency": "EUR"},
                    }
                ],
            }
        )

    actor = Actor.system(org, "marketplace import")
    with db.session() as session:
        channels = {c.code: c for c in repo.channels(session, org)}
        result = bulk.upsert_orders(
            session,
            actor,
            channels,
            [order("A-1", "10.00"), order("X-1", "1.00", "ebay-fr"), order("A-1", "12.00")],
        )

    assert [o.outcome for o in result.outcomes] == [
        bulk.Outcome.CREATED,
        bulk.Outcome.REJECTED,
        bulk.Outcome.UPDATED,
    ]
    assert result.outcomes[0].order_id == result.outcomes[2].order_id
    error = result.outcomes[1].error
    assert error is not None and error.detail == "channel: no channel with code 'ebay-fr'"
    assert (result.created, result.updated, result.unchanged, result.rejected) == (1, 1, 0, 1)
    stored = stored_order(db, org, "amazon-de", "A-1")
    assert stored is not None and stored.captured.amount == "12.00"
    assert order_events(db, org) == Counter(
        {("order.created", "A-1"): 1, ("order.updated", "A-1"): 1}
    )
