"""Many workers, one queue: leases and FOR UPDATE SKIP LOCKED."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update

from returnguard.app import create_app
from returnguard.config import Settings
from returnguard.kit.db import Database, utcnow
from returnguard.outbox.models import OutboxMessage
from returnguard.outbox.service import publish_webhook_event
from tests.conftest import Api, Tenant, make_tenant
from tests.outbox.conftest import (
    Receiver,
    Slow,
    WorkerFactory,
    deliveries,
    messages,
    register,
)


def publish(db: Database, tenant: Tenant, count: int) -> None:
    with db.session() as session:
        for n in range(count):
            publish_webhook_event(session, tenant.organization_id, "return.created", {"n": n})


def expire_leases(db: Database) -> None:
    """What the clock does when a worker stalls or dies: its leases run out."""
    with db.session() as session:
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.locked_until.is_not(None))
            .values(locked_until=utcnow() - timedelta(seconds=1))
        )


def test_two_workers_on_postgresql_never_deliver_a_message_twice(
    pg_db: Database, receiver: Receiver, make_worker: WorkerFactory
) -> None:
    tenant = make_tenant(pg_db)
    settings = Settings(database_url=pg_db.url, in_process_worker=False)
    with TestClient(create_app(settings, db=pg_db)) as client:
        register(Api(client, tenant), receiver.url("/hook"))
    publish(pg_db, tenant, 40)
    receiver.delay = 0.01  # keep both workers busy at the same time

    workers = [make_worker(pg_db, batch_size=5), make_worker(pg_db, batch_size=5)]
    claimed = [0, 0]
    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def drain(index: int) -> None:
        try:
            start.wait(5)
            while n := workers[index].run_once():
                claimed[index] += n
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=drain, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not failures, failures

    requests = receiver.wait_for(40)
    per_event = Counter(r.event_id for r in requests)
    assert len(per_event) == 40
    assert set(per_event.values()) == {1}, [e for e, n in per_event.items() if n > 1]
    assert sum(claimed) == 40
    assert min(claimed) > 0, claimed  # both workers really shared the queue
    assert {(m.status, m.attempts) for m in messages(pg_db)} == {("done", 1)}
    assert sorted(d.webhook_event_id for d in deliveries(pg_db)) == sorted(per_event)


def test_a_leased_message_waits_for_its_lease_then_another_worker_takes_it(
    api: Api, db: Database, tenant: Tenant, receiver: Receiver, make_worker: WorkerFactory
) -> None:
    register(api, receiver.url("/hook"))
    publish(db, tenant, 1)
    crashed, survivor = make_worker(db), make_worker(db)

    assert len(crashed.claim()) == 1  # ... and then the process dies
    assert survivor.run_once() == 0
    assert receiver.requests == []

    expire_leases(db)
    assert survivor.run_once() == 1
    [request] = receiver.wait_for(1)
    [message] = messages(db)
    assert (message.status, message.attempts) == ("done", 2)
    [row] = deliveries(db)
    assert (row.attempt, row.ok, row.webhook_event_id) == (2, True, request.event_id)


def test_a_worker_that_lost_its_lease_neither_redelivers_nor_overwrites(
    api: Api, db: Database, tenant: Tenant, receiver: Receiver, make_worker: WorkerFactory
) -> None:
    """Worker A claims a batch of two and stalls on the first; its leases run out.

    Worker B takes both over and delivers them. A must not send the second message
    again from its stale batch, and A's late failure on the first must not turn B's
    success into a dead message.
    """
    register(api, receiver.url("/hook"))
    publish(db, tenant, 2)
    first_id, second_id = (m.payload["event"]["id"] for m in messages(db))
    receiver.plan("/hook", Slow(1.0, 400))  # A's first request: slow, then rejected
    stalled = make_worker(db, batch_size=2, webhook_timeout_seconds=5)
    takeover = make_worker(db)

    thread = threading.Thread(target=stalled.run_once)
    thread.start()
    receiver.wait_for(1)  # A is stuck in its first request
    expire_leases(db)
    assert takeover.run_once() == 2
    thread.join(10)
    assert not thread.is_alive()

    per_event = Counter(r.event_id for r in receiver.requests)
    assert per_event[first_id] == 2  # A's stalled attempt, then B's: at least once
    assert per_event[second_id] == 1  # never sent again from A's stale batch
    statuses = {m.payload["event"]["id"]: (m.status, m.attempts) for m in messages(db)}
    assert statuses == {first_id: ("done", 2), second_id: ("done", 2)}
    recorded = sorted((d.webhook_event_id == first_id, d.attempt, d.ok) for d in deliveries(db))
    assert recorded == [(False, 2, True), (True, 1, False), (True, 2, True)]
