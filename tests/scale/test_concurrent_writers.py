"""Eight clients writing at once over real HTTP to `returnguard serve --workers 2` on
PostgreSQL, in one organization: no 5xx, no deadlock, no write lost, the event log intact.

A bounded version of the writers run of bench/scale_bench.py. Every round, all clients
create an order at the same moment with the same new SKUs (listed in opposite orders) and
the same new buyer, to race on the catalogue, then take their own return through approve,
receive, inspect and refund: 8 clients x 4 rounds x 6 writes = 192 requests.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from returnguard.audit.verify import verify_chain
from returnguard.kit.db import Database
from returnguard.orders.models import Order
from returnguard.refunds.models import Refund
from returnguard.returns.models import Return
from tests.cli.test_serve import serving
from tests.conftest import Tenant, make_tenant

pytestmark = pytest.mark.postgresql_only

CLIENTS = 8
ROUNDS = 4
NEW_SKUS = ("A", "B", "C")


@dataclass
class Seen:
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    ids: dict[str, list[str]] = field(
        default_factory=lambda: {"orders": [], "returns": [], "refunds": []}
    )

    async def post(
        self, http: httpx.AsyncClient, path: str, body: Any, headers: dict[str, str] | None = None
    ) -> Any:
        r = await http.post(path, json=body, headers=headers)
        self.statuses[r.status_code] += 1
        if not 200 <= r.status_code < 300:
            self.failures.append(f"POST {path} {body} -> {r.status_code}: {r.text[:500]}")
            return None
        return r.json()


def _order(tag: str, client: int, round_: int) -> dict[str, Any]:
    skus = [f"NEW-{tag}-{round_}-{s}" for s in NEW_SKUS]
    if client % 2:
        skus.reverse()  # opposite lock orders for a naive insert-or-fetch
    now = datetime.now(UTC)
    return {
        "channel": "shop",
        "external_id": f"{tag}-{client}-{round_}",
        "currency": "EUR",
        "ordered_at": (now - timedelta(days=3)).isoformat(),
        "delivered_at": (now - timedelta(days=1)).isoformat(),
        "buyer": {
            "external_id": f"buyer-{tag}-{round_}",
            "email": f"buyer.{tag}.{round_}@example.com",
            "country": "DE",
        },
        "captured": {"amount": "30.00", "currency": "EUR"},
        "lines": [
            {
                "external_id": f"line-{sku}",
                "sku": sku,
                "title": sku,
                "quantity": 1,
                "unit_price": {"amount": "10.00", "currency": "EUR"},
            }
            for sku in skus
        ],
    }


async def _cycle(http: httpx.AsyncClient, seen: Seen, tag: str, client: int, round_: int) -> None:
    order = await seen.post(http, "/api/v1/orders", _order(tag, client, round_))
    if order is None:
        return
    seen.ids["orders"].append(order["id"])
    line = {"order_line_id": order["lines"][0]["id"], "quantity": 1, "reason_code": "defective"}
    ret = await seen.post(
        http, "/api/v1/returns", {"order_id": order["id"], "decide": False, "lines": [line]}
    )
    if ret is None:
        return
    seen.ids["returns"].append(ret["id"])
    rid, rline = ret["id"], ret["lines"][0]["id"]
    for path, body in (
        (f"/api/v1/returns/{rid}/approve", {"note": "concurrency test"}),
        (f"/api/v1/returns/{rid}/receive", {"lines": [{"return_line_id": rline, "quantity": 1}]}),
        (
            f"/api/v1/returns/{rid}/inspections",
            {"lines": [{"return_line_id": rline, "passed": 1, "failed": 0}]},
        ),
    ):
        if await seen.post(http, path, body) is None:
            return
    refund = await seen.post(
        http,
        f"/api/v1/returns/{rid}/refunds",
        {"lines": [{"return_line_id": rline, "quantity": 1}]},
        headers={"Idempotency-Key": f"{tag}-{client}-{round_}"},
    )
    if refund is not None:
        seen.ids["refunds"].append(refund["id"])


async def _load(base_url: str, tenant: Tenant) -> Seen:
    seen, tag = Seen(), uuid.uuid4().hex[:6]
    clients = [
        httpx.AsyncClient(base_url=base_url, headers=tenant.headers, timeout=30)
        for _ in range(CLIENTS)
    ]
    try:
        for round_ in range(ROUNDS):
            await asyncio.gather(*(_cycle(c, seen, tag, n, round_) for n, c in enumerate(clients)))
    finally:
        for c in clients:
            await c.aclose()
    return seen


def _deadlocks(conninfo: str, wait_for_others: bool = False) -> int:
    """pg_stat_database.deadlocks of this database, once every other backend of it has
    gone (a backend sends its counters at exit, or up to 10 s after going idle)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        deadline = time.monotonic() + 15
        while wait_for_others and time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
            if row is not None and row[0] == 0:
                break
            time.sleep(0.1)
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        return int(row[0]) if row else 0


def test_concurrent_writers_get_no_5xx_no_deadlock_and_lose_no_write(
    pg_db: Database, tmp_path: Path
) -> None:
    tenant = make_tenant(pg_db)
    conninfo = (
        make_url(pg_db.url).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    deadlocks_before = _deadlocks(conninfo)
    started = time.monotonic()
    with serving(tmp_path, "--workers", "2", "--database-url", pg_db.url) as server:
        r = server.post(
            "/api/v1/channels",
            {
                "code": "shop",
                "name": "Shop",
                "marketplace": "own_store",
                "country": "DE",
                "currency": "EUR",
            },
            headers=tenant.headers,
        )
        assert r.status_code == 201, r.text
        seen = asyncio.run(_load(server.base_url, tenant))
        log = server.log
    pg_db.engine.dispose()  # only the server's backends are waited for below, not ours
    deadlocks = _deadlocks(conninfo, wait_for_others=True) - deadlocks_before

    assert time.monotonic() - started < 120, "the bounded run took too long"
    server_errors = {code: n for code, n in seen.statuses.items() if code >= 500}
    assert not server_errors, f"5xx answers {server_errors}: {seen.failures[:5]}\n{log[-6000:]}"
    assert deadlocks == 0, f"{deadlocks} deadlock(s) on PostgreSQL"
    # The flow is valid for every client: any other refusal is a concurrency bug too.
    assert not seen.failures, seen.failures[:5]
    assert sum(seen.statuses.values()) == CLIENTS * ROUNDS * 6, seen.statuses
    assert "Traceback" not in log, log[-6000:]

    with pg_db.session(read_only=True) as session:
        for model, key in ((Order, "orders"), (Return, "returns"), (Refund, "refunds")):
            ids = [uuid.UUID(i) for i in seen.ids[key]]
            assert len(ids) == CLIENTS * ROUNDS, (key, len(ids))
            stored = session.scalar(
                select(func.count()).select_from(model).where(model.id.in_(ids))
            )
            assert stored == len(set(ids)) == len(ids), f"{key}: {stored} of {len(ids)} stored"
        report = verify_chain(session, tenant.organization_id)
        assert report.ok, report.summary()
