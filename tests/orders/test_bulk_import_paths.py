"""The fast paths of the bulk import: events written in bulk, the quick row check, the
staged catalogue insert and the writer thread. Each gives what the plain path gives."""

from __future__ import annotations

import threading
import tracemalloc
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from returnguard.audit import service as audit
from returnguard.audit.chain import GENESIS
from returnguard.audit.models import Event, UnsealedHead
from returnguard.audit.verify import verify_chain
from returnguard.auth.service import Actor
from returnguard.cli import app
from returnguard.kit.db import Database
from returnguard.orders import bulk, importer
from returnguard.orders import repository as repo
from returnguard.orders import service as orders
from returnguard.orders.importer import _build_order, _Problems, _Row, _Validated
from returnguard.orders.models import Order, OrderLine, Product
from returnguard.orders.schemas import ChannelIn, Marketplace, OrderIn
from tests.conftest import make_tenant
from tests.orders.test_bulk_import import counts
from tests.orders.test_import import Row, jpy_row, order_row, write_csv


@pytest.fixture
def org(db: Database) -> uuid.UUID:
    """A tenant with channels amazon-de (EUR) and amazon-jp (JPY)."""
    org_id = make_tenant(db).organization_id
    actor = Actor.system(org_id, "test")
    with db.session() as session:
        for code, country, currency in [("amazon-de", "DE", "EUR"), ("amazon-jp", "JP", "JPY")]:
            orders.create_channel(
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


def _verify(db: Database, org_id: uuid.UUID) -> None:
    with db.session(read_only=True) as session:
        report = verify_chain(session, org_id)
    assert report.ok, report.reason
    result = CliRunner().invoke(
        app,
        ["events", "verify", "--org", str(org_id), "--database-url", db.url],
        env={"RETURNGUARD_AUDIT_KEY": ""},
    )
    assert result.exit_code == 0, result.output


def test_events_of_bulk_created_orders_chain_from_genesis_and_verify(
    db: Database, org: uuid.UUID, tmp_path: Path
) -> None:
    # 300 orders in chunks of 120: every chunk has enough events to go in by COPY.
    rows = [order_row(f"A-{i}", buyer_id=f"b{i % 7}") for i in range(300)]
    report = importer.import_orders_csv(
        db, org, write_csv(tmp_path / "orders.csv", rows), chunk_size=120
    )
    assert counts(report) == (300, 300, 0, 300, 0, 0)

    with db.session() as session:
        links = session.execute(
            select(Event.subject_seq, Event.prev_hash, Event.after).where(
                Event.organization_id == org, Event.subject_type == "order"
            )
        ).all()
        heads = session.scalar(
            select(func.count())
            .select_from(UnsealedHead)
            .where(UnsealedHead.organization_id == org, UnsealedHead.subject_type == "order")
        )
    assert len(links) == 300 and heads == 300
    assert {(seq, prev) for seq, prev, _ in links} == {(1, GENESIS)}
    assert all(after["lines"][0]["unit_price_minor"] == 1999 for _, _, after in links)
    _verify(db, org)


def test_an_order_created_and_updated_in_one_bulk_write_keeps_one_chain(
    db: Database, org: uuid.UUID
) -> None:
    def order(captured: str) -> OrderIn:
        return OrderIn.model_validate(
            {
                "channel": "amazon-de",
                "external_id": "A-1",
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

    with db.session() as session:
        channels = {c.code: c for c in repo.channels(session, org)}
        bulk.upsert_orders(session, Actor.system(org), channels, [order("10.00"), order("12.00")])

    with db.session() as session:
        chain = session.execute(
            select(Event.action, Event.subject_seq)
            .where(Event.organization_id == org, Event.subject_type == "order")
            .order_by(Event.subject_seq)
        ).all()
    assert [tuple(link) for link in chain] == [("order.created", 1), ("order.updated", 2)]
    _verify(db, org)


def test_an_event_wrongly_said_to_be_of_a_new_subject_is_chained_on_its_real_head(
    db: Database, org: uuid.UUID
) -> None:
    actor = Actor.system(org)
    for _ in range(2):
        with db.session() as session:
            audit.record(
                session,
                actor,
                subject_type="return",
                subject_id="r-1",
                action="return.touched",
                new_subject=True,
            )

    with db.session() as session:
        seqs = session.scalars(
            select(Event.subject_seq).where(Event.subject_id == "r-1").order_by(Event.seq)
        ).all()
    assert list(seqs) == [1, 2]
    _verify(db, org)


def test_importing_the_same_file_again_adds_no_rows_anywhere(
    db: Database, org: uuid.UUID, tmp_path: Path
) -> None:
    rows = [order_row(f"A-{i}", sku=f"NEW-{i % 60}", buyer_id=f"b{i % 70}") for i in range(150)]
    rows += [jpy_row(f"J-{i}", sku=f"NEW-{i}") for i in range(60)]
    path = write_csv(tmp_path / "orders.csv", rows)

    def tally() -> tuple[int, ...]:
        with db.session() as session:
            return tuple(
                int(session.scalar(select(func.count()).select_from(model)) or 0)
                for model in (Order, OrderLine, Product, Event, UnsealedHead)
            )

    importer.import_orders_csv(db, org, path, chunk_size=70)
    first = tally()
    again = importer.import_orders_csv(db, org, path, chunk_size=70)

    assert counts(again) == (210, 210, 0, 0, 0, 210)
    assert tally() == first
    assert first[:3] == (210, 210, 60)  # NEW-0 … NEW-59, once each
    _verify(db, org)


def test_memory_of_an_import_does_not_grow_with_the_file(
    db: Database, org: uuid.UUID, tmp_path: Path
) -> None:
    def peak(n: int) -> int:
        rows = [order_row(f"{n}-{i}", buyer_id="same") for i in range(n)]
        path = write_csv(tmp_path / f"{n}.csv", rows)
        tracemalloc.start()
        try:
            importer.import_orders_csv(db, org, path, chunk_size=50)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak(100)  # warm up: caches, compiled statements
    small, large = peak(300), peak(1_200)

    assert large < small * 1.5 + 512 * 1024, (small, large)


def test_an_import_and_an_api_write_of_the_same_new_sku_both_succeed(
    db: Database, org: uuid.UUID, tmp_path: Path
) -> None:
    rows = [order_row(f"A-{i}", sku=f"RACE-{i % 3}", buyer_id="race") for i in range(240)]
    path = write_csv(tmp_path / "orders.csv", rows)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def api_write() -> None:
        barrier.wait(timeout=30)
        with db.session() as session:
            orders.upsert_order(
                session,
                Actor.system(org),
                OrderIn.model_validate(
                    {
                        "channel": "amazon-de",
                        "external_id": "API-1",
                        "currency": "EUR",
                        "ordered_at": datetime(2026, 11, 1, tzinfo=UTC),
                        "buyer": {"external_id": "race"},
                        "captured": {"currency": "EUR", "amount": "30.00"},
                        "lines": [
                            {
                                "external_id": sku,
                                "sku": sku,
                                "quantity": 1,
                                "unit_price": {"currency": "EUR", "amount": "10.00"},
                            }
                            for sku in ("RACE-2", "RACE-1", "RACE-0")
                        ],
                    }
                ),
            )

    def import_file() -> None:
        barrier.wait(timeout=30)
        report = importer.import_orders_csv(db, org, path, chunk_size=40)
        assert counts(report) == (240, 240, 0, 240, 0, 0)

    def run(target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:  # every failure is reported, none is swallowed
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in (api_write, import_file)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a writer hung"
    assert errors == []
    with db.session() as session:
        skus = session.scalars(
            select(Product.sku).where(Product.organization_id == org, Product.sku.like("RACE-%"))
        ).all()
        orders_count = session.scalar(
            select(func.count()).select_from(Order).where(Order.organization_id == org)
        )
    assert sorted(skus) == ["RACE-0", "RACE-1", "RACE-2"]
    assert orders_count == 241
    _verify(db, org)


def test_a_bad_order_read_after_the_chunk_where_the_database_went_away_is_not_counted(
    db: Database, org: uuid.UUID, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The next chunk is read while one is written: what it found must not count when
    # the import stops at the chunk before it.
    real = bulk.upsert_orders

    def failing(session: Any, actor: Any, channels: Any, batch: list[OrderIn]) -> Any:
        if any(order.external_id == "DOWN" for order in batch):
            from sqlalchemy.exc import OperationalError

            raise OperationalError("COPY …", {}, Exception("server closed the connection"))
        return real(session, actor, channels, batch)

    monkeypatch.setattr(importer, "upsert_orders", failing)
    rows = [order_row("A-1"), order_row("A-2"), order_row("DOWN"), order_row("A-3")]
    rows += [order_row("B-1", quantity="x"), order_row("A-4")]

    with pytest.raises(importer.ImportInterrupted) as caught:
        importer.import_orders_csv(db, org, write_csv(tmp_path / "o.csv", rows), chunk_size=2)

    assert counts(caught.value.report) == (2, 2, 0, 2, 0, 0)
    assert caught.value.report.problems == []


# --- the quick row check: the same OrderIn as pydantic, or no answer ---------------------

CHANNELS = {"amazon-de", "amazon-jp", "Bad Code"}

VARIANTS: list[dict[str, str]] = [
    {},
    {"unit_price": "19,99", "captured": "19,99"},
    {"unit_price": "19.9", "captured": "19.9"},
    {"unit_price": "019.99"},
    {"unit_price": "19.990"},
    {"unit_price": "19.999"},
    {"unit_price": "1e3"},
    {"unit_price": "-1"},
    {"unit_price": "-0"},
    {"unit_price": "١٩"},
    {"unit_price": "1,000.00"},
    {"unit_price": "999999999999999.99"},
    {"unit_price": "10000000000000.00"},
    {"unit_price": "10000000000000.01"},
    {"tax": "0.50", "discount": "0,01", "shipping": "4.99"},
    {"shipping": "abc"},
    {"quantity": "0"},
    {"quantity": "01"},
    {"quantity": "100000"},
    {"quantity": "100001"},
    {"quantity": "1.0"},
    {"quantity": "-3"},
    {"currency": "eur"},
    {"currency": "XXX"},
    {"currency": "EURO"},
    {"currency": ""},
    {"buyer_country": "de", "ship_to_country": "de"},
    {"buyer_country": "XX"},
    {"ship_to_country": "D"},
    {"ordered_at": "2026-10-01"},
    {"ordered_at": "2026-10-01 10:00"},
    {"ordered_at": "2026-13-01"},
    {"ordered_at": "0001-01-01T00:00:00+01:00"},
    {"ordered_at": ""},
    {"delivered_at": "2026-09-01"},
    {"delivered_at": ""},
    {"title": "nul\x00byte"},
    {"title": "x" * 1000},
    {"title": "x" * 1001},
    {"title": ""},
    {"asin": "B000000000"},
    {"asin": "b000000000"},
    {"asin": "B00"},
    {"category": "c" * 129},
    {"line_id": "l" * 128},
    {"line_id": "l" * 129},
    {"sku": "s" * 129},
    {"sku": ""},
    {"order_id": "o" * 129},
    {"channel": "ebay-fr"},
    {"channel": "Bad Code"},
    {"payment_reference": "p" * 200},
    {"payment_reference": "p" * 201},
    {"buyer_id": "", "buyer_email": "", "buyer_name": "", "buyer_country": ""},
    {"buyer_id": ""},
    {"buyer_email": "e" * 321},
    {"buyer_name": "n" * 201},
    {"buyer_email": ""},
]


def _rows(*cells: Row) -> list[_Row]:
    return [_Row(line, dict(row), []) for line, row in enumerate(cells, start=2)]


def _both(rows: list[_Row]) -> tuple[OrderIn | None, OrderIn | None]:
    quick = _Validated().quick(rows, CHANNELS)
    problems = _Problems()
    full = _build_order(rows, CHANNELS, problems, None)
    assert (full is None) == bool(problems.cells)
    return quick, full


@pytest.mark.parametrize("cells", VARIANTS, ids=range(len(VARIANTS)))
def test_the_quick_check_builds_the_order_pydantic_builds_or_leaves_it_to_pydantic(
    cells: dict[str, str],
) -> None:
    for rows in (
        _rows(order_row("A-1") | cells),
        _rows(order_row("A-1", "l1") | cells, order_row("A-1", "l2") | cells),
        _rows(jpy_row("J-1") | cells),
    ):
        quick, full = _both(rows)
        if quick is not None:
            assert full is not None, cells
            assert quick == full, cells
            assert quick.model_dump() == full.model_dump()
            assert quick.model_fields_set == full.model_fields_set
            assert quick.lines[0].model_fields_set == full.lines[0].model_fields_set


def test_the_quick_check_answers_for_plain_orders_and_never_for_inconsistent_ones() -> None:
    plain = [
        _rows(order_row("A-1")),
        _rows(order_row("A-1", shipping="4.99", tax="1.00", discount="0.50", asin="B000000000")),
        _rows(order_row("A-1", "l1"), order_row("A-1", "l2", sku="MUG-RED")),
        _rows(jpy_row("J-1", currency="jpy", ship_to_country="jp")),
    ]
    for rows in plain:
        quick, full = _both(rows)
        assert quick is not None and quick == full

    refused = [
        _rows(order_row("A-1", "l1"), order_row("A-1", "l1")),  # duplicate line id
        _rows(order_row("A-1", "l1"), order_row("A-1", "l2", captured="20.00")),
        _rows(order_row("A-1", delivered_at="2026-09-30")),  # before ordered_at
        _rows(order_row("A-1", "l1"), order_row("A-1", "l2", captured="19,99")),
    ]
    for rows in refused:
        assert _Validated().quick(rows, CHANNELS) is None
