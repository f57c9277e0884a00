"""The reads that grow with a shop are index range scans (migration 0011), on PostgreSQL.

A buyer's history (the policy's first-time-buyer fact, the buyer view's counts) and the
ledger and buyer pages once read every row of their table, or sorted every row of the
organization. Each statement is taken as the code sends it and explained with
sequential scans and sorts priced out, so that a plan can only avoid them through the
index made for it: without that index, the index's name is not in the plan.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

import pytest
from sqlalchemy import Table, event, insert, select, text
from sqlalchemy.orm import Session

from returnguard.kit.db import Base, Database, new_id
from returnguard.ledger import repository as ledger_repo
from returnguard.ledger.models import LedgerEntry
from returnguard.orders import buyers
from returnguard.orders.models import Buyer, Channel, Order
from returnguard.policies import facts
from returnguard.returns.models import Return
from tests.conftest import make_tenant

pytestmark = pytest.mark.postgresql_only

BUYERS, ORDERS_PER_BUYER = 200, 10
START = datetime(2026, 1, 1, tzinfo=UTC)


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


@pytest.fixture
def shop(pg_db: Database) -> Iterator[tuple[Database, uuid.UUID]]:
    org = make_tenant(pg_db).organization_id
    channel_id, buyer_ids = new_id(), [new_id() for _ in range(BUYERS)]
    orders: list[dict[str, Any]] = []
    returns: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    for b, buyer_id in enumerate(buyer_ids):
        for n in range(ORDERS_PER_BUYER):
            at = START + timedelta(hours=b * ORDERS_PER_BUYER + n)
            order_id = new_id()
            orders.append(
                {
                    "id": order_id,
                    "organization_id": org,
                    "channel_id": channel_id,
                    "external_id": f"o-{b}-{n}",
                    "buyer_id": buyer_id,
                    "currency": "EUR",
                    "ordered_at": at,
                    "captured_minor": 1000,
                    "created_at": at,
                    "updated_at": at,
                }
            )
            returns.append(
                {
                    "id": new_id(),
                    "organization_id": org,
                    "number": f"RMA-{b}-{n}",
                    "order_id": order_id,
                    "channel_id": channel_id,
                    "buyer_id": buyer_id,
                    "status": "requested",
                    "currency": "EUR",
                    "buyer_comment": "",
                    "requested_at": at,
                    "updated_at": at,
                }
            )
            entries.append(
                {
                    "id": new_id(),
                    "organization_id": org,
                    "kind": "return_label",
                    "amount_minor": -500,
                    "currency": "EUR",
                    "occurred_on": at.date(),
                    "order_id": order_id,
                    "channel_id": channel_id,
                    "memo": "",
                    "created_by": "test",
                    "created_at": at,
                }
            )
    with pg_db.engine.begin() as conn:
        conn.execute(
            insert(_table(Channel)).values(
                id=channel_id,
                organization_id=org,
                code="shop",
                name="Shop",
                marketplace="own",
                country="DE",
                currency="EUR",
                language="en",
                created_at=START,
            )
        )
        conn.execute(
            insert(_table(Buyer)),
            [
                {
                    "id": buyer_id,
                    "organization_id": org,
                    "channel_id": channel_id,
                    "external_id": f"b-{b}",
                    "watchlisted": b % 50 == 0,
                    "created_at": START + timedelta(minutes=b),
                }
                for b, buyer_id in enumerate(buyer_ids)
            ],
        )
        conn.execute(insert(_table(Order)), orders)
        conn.execute(insert(_table(Return)), returns)
        conn.execute(insert(_table(LedgerEntry)), entries)
    with pg_db.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(
            text("ANALYZE buyers, orders, returns, ledger_entries")
        )
    yield pg_db, org


def _plans(db: Database, run: Callable[[Session], Any]) -> list[str]:
    """The plan of every SELECT ``run`` sends, explained with its own parameters."""
    sent: list[tuple[str, Any]] = []

    def keep(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().startswith("SELECT"):
            sent.append((statement, params))

    with db.session() as session:
        event.listen(db.engine, "before_cursor_execute", keep)
        try:
            run(session)
        finally:
            event.remove(db.engine, "before_cursor_execute", keep)
        conn = session.connection()
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        conn.exec_driver_sql("SET LOCAL enable_sort = off")
        conn.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
        return [
            "\n".join(row[0] for row in conn.exec_driver_sql("EXPLAIN " + s, p)) for s, p in sent
        ]


def _uses(plans: list[str], index: str) -> bool:
    return any(index in plan for plan in plans)


def _buyer(session: Session, org: uuid.UUID, external_id: str) -> Buyer:
    found = session.scalar(
        select(Buyer).where(Buyer.organization_id == org, Buyer.external_id == external_id)
    )
    assert found is not None
    return found


def test_the_first_time_buyer_fact_reads_the_buyers_orders_by_index(
    shop: tuple[Database, uuid.UUID],
) -> None:
    db, org = shop

    def run(session: Session) -> None:
        buyer = _buyer(session, org, "b-7")
        order = session.scalars(
            select(Order).where(Order.buyer_id == buyer.id).order_by(Order.ordered_at.desc())
        ).first()
        assert order is not None
        assert facts._first_time(session, order) is False

    plans = _plans(db, run)
    assert _uses(plans[2:], "ix_orders_buyer_ordered"), plans[2:]


def test_a_buyers_history_counts_by_index(shop: tuple[Database, uuid.UUID]) -> None:
    db, org = shop
    counted: list[buyers.BuyerHistory] = []

    def run(session: Session) -> None:
        counted.append(buyers.history(session, _buyer(session, org, "b-9")))

    plans = _plans(db, run)
    assert counted == [buyers.BuyerHistory(orders=10, returns=10, refunds=0)]
    assert _uses(plans, "ix_orders_buyer_ordered"), plans
    assert _uses(plans, "ix_returns_buyer_requested"), plans


def test_the_buyer_pages_are_index_ranges_in_keyset_order(
    shop: tuple[Database, uuid.UUID],
) -> None:
    db, org = shop
    pages: list[buyers.BuyerPage] = []

    def run(session: Session) -> None:
        first = buyers.list_buyers(session, org, limit=50)
        pages.append(first)
        pages.append(buyers.list_buyers(session, org, cursor=first.next_cursor, limit=50))
        pages.append(buyers.list_buyers(session, org, watchlisted=True, limit=2))

    plans = _plans(db, run)
    first, second, watched = pages
    assert [b.external_id for b in first.items[:2]] == ["b-199", "b-198"]
    assert [b.external_id for b in second.items[:2]] == ["b-149", "b-148"]
    assert [b.external_id for b in watched.items] == ["b-150", "b-100"]
    assert _uses(plans[:2], "ix_buyers_org_created"), plans[:2]
    assert _uses(plans[2:], "ix_buyers_org_watchlisted_created"), plans[2:]


def test_the_ledger_page_is_an_index_range_in_keyset_order(
    shop: tuple[Database, uuid.UUID],
) -> None:
    db, org = shop
    pages: list[list[LedgerEntry]] = []

    def run(session: Session) -> None:
        pages.append(ledger_repo.list_entries(session, org, limit=50))
        pages.append(
            ledger_repo.list_entries(session, org, occurred_from=date(2026, 2, 1), limit=50)
        )

    plans = _plans(db, run)
    newest = START + timedelta(hours=BUYERS * ORDERS_PER_BUYER - 1)
    assert pages[0][0].created_at == newest and len(pages[0]) == 50
    assert _uses(plans, "ix_ledger_entries_org_created"), plans
