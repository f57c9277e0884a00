"""Migration 0009 re-chains an existing per-organization log into subject chains, on
SQLite and PostgreSQL, and refuses to launder a log that was already tampered with."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from returnguard.audit import service as audit
from returnguard.audit.checkpoints import write_checkpoints
from returnguard.audit.models import Event
from returnguard.auth.service import Actor
from returnguard.kit.db import Database, UTCDateTime
from returnguard.kit.migrate import alembic_config, upgrade
from tests.conftest import PG_ADMIN_URL

KEY = b"a key of at least thirty-two characters"
GENESIS = "0" * 64
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)

organizations = sa.table(
    "organizations",
    sa.column("id", sa.Uuid()),
    sa.column("name", sa.String()),
    sa.column("base_currency", sa.String()),
    sa.column("created_at", UTCDateTime()),
    sa.column("event_seq", sa.Integer()),
    sa.column("event_head", sa.String()),
)
legacy_events = sa.table(
    "events",
    sa.column("id", sa.Uuid()),
    sa.column("organization_id", sa.Uuid()),
    sa.column("seq", sa.BigInteger()),
    sa.column("subject_type", sa.String()),
    sa.column("subject_id", sa.String()),
    sa.column("return_id", sa.Uuid()),
    sa.column("action", sa.String()),
    sa.column("actor_type", sa.String()),
    sa.column("actor_id", sa.String()),
    sa.column("actor_label", sa.String()),
    sa.column("before", sa.JSON()),
    sa.column("after", sa.JSON()),
    sa.column("data", sa.JSON()),
    sa.column("occurred_at", UTCDateTime()),
    sa.column("prev_hash", sa.String()),
    sa.column("hash", sa.String()),
)


def legacy_hash(prev: str, row: dict[str, Any]) -> str:
    """How 0001 to 0008 hashed an event: chained per organization, numbered by ``seq``."""
    body = {
        "seq": row["seq"],
        "organization_id": str(row["organization_id"]),
        "subject_type": row["subject_type"],
        "subject_id": row["subject_id"],
        "return_id": str(row["return_id"]) if row["return_id"] else None,
        "action": row["action"],
        "actor_type": row["actor_type"],
        "actor_id": row["actor_id"],
        "actor_label": row["actor_label"],
        "before": row["before"],
        "after": row["after"],
        "data": row["data"],
        "occurred_at": row["occurred_at"].isoformat(),
    }
    text_ = prev + json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text_.encode()).hexdigest()


def legacy_ok(conn: sa.Connection, org_id: uuid.UUID) -> bool:
    """The old `events verify`: one chain per organization, head on the organization."""
    rows = conn.execute(
        select(legacy_events).where(legacy_events.c.organization_id == org_id).order_by("seq")
    ).all()
    prev = GENESIS
    for n, row in enumerate(rows, start=1):
        values = dict(row._mapping)
        if values["seq"] != n or values["prev_hash"] != prev:
            return False
        if legacy_hash(prev, values) != values["hash"]:
            return False
        prev = values["hash"]
    head = conn.execute(
        select(organizations.c.event_seq, organizations.c.event_head).where(
            organizations.c.id == org_id
        )
    ).one()
    return tuple(head) == (len(rows), prev)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own, without any schema yet."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.sqlite3'}"
        return
    request.getfixturevalue("postgres_url")  # skips (or fails on CI) without PostgreSQL
    name = f"rg_mig_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


# (organization, subject type, subject id, action): in the order they were written.
HISTORY = [
    ("A", "organization", "A", "organization.created"),
    ("A", "return", "r1", "return.created"),
    ("B", "organization", "B", "organization.created"),
    ("A", "buyer", "b1", "buyer.created"),
    ("A", "return", "r1", "return.approved"),
    ("B", "return", "r1", "return.created"),
    ("A", "buyer", "b1", "buyer.watchlisted"),
    ("A", "return", "r1", "return.received"),
]


def _old_log(url: str) -> dict[str, uuid.UUID]:
    """Two organizations with an event log the way 0008 wrote it."""
    upgrade(url, "0008")
    orgs = {"A": uuid.uuid4(), "B": uuid.uuid4()}
    heads = {name: (0, GENESIS) for name in orgs}
    rows = []
    for i, (org, subject_type, subject_id, action) in enumerate(HISTORY):
        seq, prev = heads[org]
        row: dict[str, Any] = {
            "id": uuid.uuid4(),
            "organization_id": orgs[org],
            "seq": seq + 1,
            "subject_type": subject_type,
            "subject_id": subject_id,
            "return_id": None,
            "action": action,
            "actor_type": "system",
            "actor_id": None,
            "actor_label": "system",
            "before": None,
            "after": {"step": i, "amount": "12.30"},
            "data": None,
            "occurred_at": T0 + timedelta(minutes=i),
            "prev_hash": prev,
        }
        row["hash"] = legacy_hash(prev, row)
        heads[org] = (seq + 1, row["hash"])
        rows.append(row)
    db = Database(url)
    try:
        with db.engine.begin() as conn:
            for name, org_id in orgs.items():
                conn.execute(
                    organizations.insert().values(
                        id=org_id,
                        name=f"Shop {name}",
                        base_currency="EUR",
                        created_at=T0,
                        event_seq=heads[name][0],
                        event_head=heads[name][1],
                    )
                )
            conn.execute(legacy_events.insert(), rows)
            assert all(legacy_ok(conn, org_id) for org_id in orgs.values())
    finally:
        db.dispose()
    return orgs


def _revision(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_an_old_log_is_rechained_per_subject_and_verifies(empty_url: str) -> None:
    orgs = _old_log(empty_url)
    upgrade(empty_url)
    db = Database(empty_url)
    try:
        with db.session() as session:
            a = list(
                session.execute(
                    select(Event.seq, Event.subject_type, Event.subject_id, Event.subject_seq)
                    .where(Event.organization_id == orgs["A"])
                    .order_by(Event.seq)
                )
            )
            # Numbers stay; each subject's events are numbered in their old order.
            assert [tuple(r) for r in a] == [
                (1, "organization", "A", 1),
                (2, "return", "r1", 1),
                (3, "buyer", "b1", 1),
                (4, "return", "r1", 2),
                (5, "buyer", "b1", 2),
                (6, "return", "r1", 3),
            ]
            for org_id, events, chains in ((orgs["A"], 6, 3), (orgs["B"], 2, 2)):
                report = audit.verify_chain(session, org_id, key=KEY)
                assert report.ok, report
                assert (report.checked, report.chains, report.unsealed_events) == (
                    events,
                    chains,
                    events,
                )
        # Every existing chain waits for the first checkpoint, which seals them all.
        run = write_checkpoints(db, KEY)
        assert sorted((w.organization_id, w.subjects) for w in run.written) == sorted(
            [(orgs["A"], 3), (orgs["B"], 2)]
        )
        # New events continue their subject's chain, after the old numbers.
        with db.session() as session:
            audit.record(
                session,
                Actor.system(orgs["A"]),
                subject_type="return",
                subject_id="r1",
                action="return.closed",
            )
        with db.session() as session:
            latest = session.scalars(select(Event).where(Event.action == "return.closed")).one()
            assert latest.subject_seq == 4 and latest.seq > 6
            report = audit.verify_chain(session, orgs["A"], key=KEY)
            assert report.ok and (report.sealed_events, report.unsealed_events) == (6, 1)
    finally:
        db.dispose()


def test_downgrading_restores_the_per_organization_chain(empty_url: str) -> None:
    orgs = _old_log(empty_url)
    upgrade(empty_url)
    db = Database(empty_url)
    try:
        with db.session() as session:
            audit.record(
                session,
                Actor.system(orgs["B"]),
                subject_type="return",
                subject_id="r1",
                action="return.approved",
            )
        write_checkpoints(db, KEY)
        command.downgrade(alembic_config(empty_url), "0008")
        assert _revision(db) == "0008"
        with db.engine.connect() as conn:
            assert legacy_ok(conn, orgs["A"]) and legacy_ok(conn, orgs["B"])
            count = conn.scalar(
                select(sa.func.count())
                .select_from(legacy_events)
                .where(legacy_events.c.organization_id == orgs["B"])
            )
        assert count == 3
    finally:
        db.dispose()


def test_an_old_log_that_does_not_verify_is_not_rechained(
    empty_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    orgs = _old_log(empty_url)
    db = Database(empty_url)
    try:
        with db.engine.begin() as conn:
            conn.execute(
                legacy_events.update()
                .where(legacy_events.c.organization_id == orgs["A"], legacy_events.c.seq == 4)
                .values(action="return.rejected")
            )
        with pytest.raises(RuntimeError, match="event log does not verify") as refused:
            upgrade(empty_url)
        assert f"organization {orgs['A']}: event #4 was altered" in str(refused.value)
        assert _revision(db) == "0008"

        # Knowingly accepted: the log is re-chained as it stands.
        monkeypatch.setenv("RETURNGUARD_ACCEPT_BROKEN_EVENT_LOG", "1")
        upgrade(empty_url)
        with db.session() as session:
            assert audit.verify_chain(session, orgs["A"]).ok
    finally:
        db.dispose()
