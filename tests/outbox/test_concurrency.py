"""Many workers, one queue: leases and FOR UPDATE SKIP LOCKED."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

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


def wait_until(done: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what()}")
        time.sleep(0.1)


def test_two_worker_commands_on_postgresql_deliver_each_message_once(
    pg_db: Database, receiver: Receiver, tmp_path: Path
) -> None:
    """Two `returnguard worker` processes, as an operator scales them out."""
    tenant = make_tenant(pg_db)
    settings = Settings(database_url=pg_db.url, in_process_worker=False)
    with TestClient(create_app(settings, db=pg_db)) as client:
        register(Api(client, tenant), receiver.url("/hook"))
    receiver.delay = 0.05  # a batch of 20 takes a second: both processes get work
    env = os.environ | {
        "RETURNGUARD_DATABASE_URL": pg_db.url,
        "RETURNGUARD_WORKER_POLL_SECONDS": "0.1",
        "RETURNGUARD_WEBHOOK_TIMEOUT_SECONDS": "5",
    }
    command = [str(Path(sys.executable).parent / "returnguard"), "worker"]
    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]

    def output() -> str:
        return " | ".join(log.read_text() for log in logs)

    processes: list[subprocess.Popen[bytes]] = []
    try:
        for log in logs:
            with log.open("wb") as out:
                processes.append(
                    subprocess.Popen(
                        command, env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT
                    )
                )
        wait_until(lambda: all("running" in log.read_text() for log in logs), 30, output)
        publish(pg_db, tenant, 40)
        receiver.wait_for(40, timeout=30)
        wait_until(lambda: {m.status for m in messages(pg_db)} == {"done"}, 10, output)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    assert [p.returncode for p in processes] == [0, 0], output()

    per_event = Counter(r.event_id for r in receiver.requests)
    assert len(per_event) == 40
    assert set(per_event.values()) == {1}, [e for e, n in per_event.items() if n > 1]
    assert {(m.status, m.attempts) for m in messages(pg_db)} == {("done", 1)}
    stopped = [re.search(r"stopped after (\d+) attempt", log.read_text()) for log in logs]
    attempts = [int(found[1]) if found else -1 for found in stopped]
    assert sum(attempts) == 40, output()
    assert min(attempts) > 0, output()  # both processes really shared the queue


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
