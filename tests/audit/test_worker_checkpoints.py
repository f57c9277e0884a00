"""The outbox worker seals the event log as docs/audit.md says: at start, then every
``checkpoint_interval_seconds``; 0 leaves it to ``returnguard events checkpoint``."""

from __future__ import annotations

import threading
import time

from sqlalchemy import func, select

from returnguard.audit import service as audit
from returnguard.audit.models import EventCheckpoint
from returnguard.auth.actor import Actor
from returnguard.config import Settings
from returnguard.kit.db import Database
from returnguard.outbox.handlers import Handlers
from returnguard.outbox.worker import Worker
from tests.conftest import make_tenant

KEY = "w" * 16 + "the worker's audit key"


def _touch(db: Database, actor: Actor, subject: str) -> None:
    with db.session() as session:
        audit.record(
            session,
            actor,
            subject_type="return",
            subject_id=subject,
            action="return.touched",
            after={"note": subject},
        )


def _checkpoints(db: Database) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(EventCheckpoint)) or 0)


def _run_loop(worker: Worker, seconds: float) -> None:
    stop = threading.Event()
    loop = threading.Thread(target=worker.run_forever, args=(stop,))
    loop.start()
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        loop.join(10)
        worker.close()
    assert not loop.is_alive()


def test_the_worker_loop_seals_new_heads_with_the_key_and_verify_checks_them(
    db: Database,
) -> None:
    t = make_tenant(db)
    _touch(db, Actor.system(t.organization_id), "r-1")
    _touch(db, Actor.system(t.organization_id), "r-2")
    settings = Settings(database_url=db.url, audit_key=KEY, worker_poll_seconds=0.05)
    worker = Worker(db, settings, handlers=Handlers())
    deadline = time.monotonic() + 10
    stop = threading.Event()
    loop = threading.Thread(target=worker.run_forever, args=(stop,))
    loop.start()
    try:
        while time.monotonic() < deadline and _checkpoints(db) == 0:
            time.sleep(0.05)
    finally:
        stop.set()
        loop.join(10)
        worker.close()
    assert _checkpoints(db) == 1
    with db.session() as session:
        report = audit.verify_chain(session, t.organization_id, key=KEY.encode())
        unsigned = audit.verify_chain(session, t.organization_id, key=b"x" * 40)
    assert report.ok, report
    assert report.checkpoints == 1
    assert not unsigned.ok  # the checkpoint was signed with the worker's key


def test_the_worker_seals_again_only_after_the_interval(db: Database) -> None:
    t = make_tenant(db)
    _touch(db, Actor.system(t.organization_id), "r-1")
    settings = Settings(
        database_url=db.url,
        audit_key=KEY,
        worker_poll_seconds=0.05,
        checkpoint_interval_seconds=3600,
    )
    worker = Worker(db, settings, handlers=Handlers())
    assert worker.checkpoints is not None
    assert worker.checkpoints.tick() is not None  # at start: sealed
    _touch(db, Actor.system(t.organization_id), "r-2")
    assert worker.checkpoints.tick() is None  # not time yet
    worker.close()
    assert _checkpoints(db) == 1


def test_an_interval_of_zero_leaves_sealing_to_cron(db: Database) -> None:
    t = make_tenant(db)
    _touch(db, Actor.system(t.organization_id), "r-1")
    settings = Settings(
        database_url=db.url, worker_poll_seconds=0.05, checkpoint_interval_seconds=0
    )
    worker = Worker(db, settings, handlers=Handlers())
    assert worker.checkpoints is None
    _run_loop(worker, 0.5)
    assert _checkpoints(db) == 0
