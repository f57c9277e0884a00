"""Concurrent first orders of the same new buyer and SKUs: every one succeeds, each
product and buyer exists once, and nobody deadlocks (the catalogue is insert-or-fetch)."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

from sqlalchemy import func, select

from returnguard.auth import service as auth
from returnguard.auth.service import Actor
from returnguard.kit.db import Database
from returnguard.orders import service as orders
from returnguard.orders.models import Buyer, Product
from returnguard.orders.schemas import ChannelIn, Marketplace, OrderIn

WRITERS = 8
SKUS = ["SKU-A", "SKU-B", "SKU-C"]


def _order(n: int) -> OrderIn:
    # Each writer lists the same new SKUs in another order: a naive insert would lock
    # them in opposite orders and deadlock.
    skus = SKUS if n % 2 else list(reversed(SKUS))
    return OrderIn.model_validate(
        {
            "channel": "shop",
            "external_id": f"first-{n}",
            "currency": "EUR",
            "ordered_at": datetime(2026, 11, 1, 10, tzinfo=UTC),
            "buyer": {"external_id": "same-buyer", "email": "b@example.de", "country": "DE"},
            "captured": {"currency": "EUR", "amount": "30.00"},
            "lines": [
                {
                    "external_id": f"line-{sku}",
                    "sku": sku,
                    "title": sku,
                    "quantity": 1,
                    "unit_price": {"currency": "EUR", "amount": "10.00"},
                }
                for sku in skus
            ],
        }
    )


def test_concurrent_first_orders_share_one_new_catalogue(db: Database) -> None:
    with db.session() as session:
        org = auth.create_organization(session, f"Shop {uuid.uuid4().hex[:8]}", "EUR")
        actor = Actor.system(org.id)
        orders.create_channel(
            session,
            actor,
            ChannelIn(
                code="shop",
                name="Shop",
                marketplace=Marketplace.OWN_STORE,
                country="DE",
                currency="EUR",
            ),
        )
    barrier = threading.Barrier(WRITERS)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            with db.session() as session:
                orders.upsert_order(session, actor, _order(n))
        except BaseException as exc:  # every failure is reported, none is swallowed
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a writer hung"
    assert errors == []
    with db.session() as session:
        products = session.scalar(
            select(func.count()).select_from(Product).where(Product.organization_id == org.id)
        )
        buyers = session.scalar(
            select(func.count()).select_from(Buyer).where(Buyer.organization_id == org.id)
        )
    assert (products, buyers) == (len(SKUS), 1)
