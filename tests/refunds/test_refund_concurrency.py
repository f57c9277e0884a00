"""50 concurrent refund requests, from threads and from several processes: one ledger.

Every request asks for one unit of a return whose two units passed inspection. Whatever
the interleaving, exactly two refunds exist afterwards, their sum never exceeds what
was captured, and requests sharing a key all get the same single refund.
"""

from __future__ import annotations

import multiprocessing
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from returnguard.app import create_app
from returnguard.auth.actor import Actor
from returnguard.config import Settings
from returnguard.errors import ReturnGuardError
from returnguard.kit.db import Database
from returnguard.refunds import service
from returnguard.refunds.models import Refund
from returnguard.refunds.schemas import RefundIn
from tests.conftest import Api, make_tenant
from tests.refunds.test_refunds_api import _received

REQUESTS = 50


def _attempt(url: str, org: str, return_id: str, line_id: str, key: str) -> str:
    """One request in its own session: 'created', 'replayed' or the refusal's code.

    On SQLite the fifty writers take turns; the server's 5 s wait for the write lock (then
    503) is a capacity limit, not what this test is about, and a loaded CI machine can
    queue them longer: each waits up to a minute here."""
    db = Database(url, busy_timeout_ms=60_000)
    try:
        actor = Actor(uuid.UUID(org), "admin", "api_key", None, "race")
        body = RefundIn.model_validate(
            {"lines": [{"return_line_id": line_id, "quantity": 1}], "reason": "race"}
        )
        try:
            with db.session() as session:
                _, created = service.create_refund(session, actor, uuid.UUID(return_id), key, body)
            return "created" if created else "replayed"
        except ReturnGuardError as exc:
            return exc.code
    finally:
        db.dispose()


def _process(url: str, org: str, return_id: str, line_id: str, keys: list[str]) -> list[str]:
    with ThreadPoolExecutor(max_workers=len(keys)) as pool:
        return list(pool.map(lambda k: _attempt(url, org, return_id, line_id, k), keys))


def _setup(db: Database) -> Iterator[tuple[str, str, str]]:
    tenant = make_tenant(db)
    settings = Settings(database_url=db.url, in_process_worker=False)
    with TestClient(create_app(settings, db=db)) as client:
        ret = _received(Api(client, tenant))
        yield str(tenant.organization_id), ret["id"], ret["lines"][0]["id"]


def _ledger(db: Database) -> tuple[int, int]:
    with db.session() as session:
        count = session.scalar(select(func.count()).select_from(Refund)) or 0
        total = session.scalar(select(func.coalesce(func.sum(Refund.amount_minor), 0))) or 0
    return int(count), int(total)


def test_fifty_threads_refund_each_unit_once(db: Database) -> None:
    for org, return_id, line_id in _setup(db):
        keys = [f"t-{i}" for i in range(REQUESTS)]
        results = Counter(_process(db.url, org, return_id, line_id, keys))
        assert results == {"created": 2, "exceeds_refundable_quantity": REQUESTS - 2}
        assert _ledger(db) == (2, 3998)  # 2 x 19.99 EUR, never more than captured


def test_fifty_requests_from_several_processes_make_one_ledger(pg_db: Database) -> None:
    for org, return_id, line_id in _setup(pg_db):
        # Half the requests share one key: they must all see the same refund.
        groups = [[f"p{p}-{i}" if i % 2 else "shared" for i in range(10)] for p in range(5)]
        context = multiprocessing.get_context("spawn")
        with context.Pool(5) as pool:
            results: list[Any] = pool.starmap(
                _process, [(pg_db.url, org, return_id, line_id, keys) for keys in groups]
            )
        outcome = Counter(r for batch in results for r in batch)
        assert sum(outcome.values()) == REQUESTS
        assert outcome["created"] == 2
        assert (
            outcome["created"] + outcome["replayed"] + outcome["exceeds_refundable_quantity"]
            == REQUESTS
        )
        count, total = _ledger(pg_db)
        assert (count, total) == (2, 3998)
        with pg_db.session() as session:
            shared = session.scalars(select(Refund).where(Refund.idempotency_key == "shared"))
            assert len(shared.all()) <= 1


def test_a_replayed_key_never_makes_a_second_refund(db: Database) -> None:
    for org, return_id, line_id in _setup(db):
        keys = ["same"] * 20
        results = Counter(_process(db.url, org, return_id, line_id, keys))
        assert results == {"created": 1, "replayed": 19}
        assert _ledger(db) == (1, 1999)
