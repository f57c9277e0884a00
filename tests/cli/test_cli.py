"""The `returnguard` command line, driven as a user would, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select, update
from typer.testing import CliRunner

from returnguard.app import create_app
from returnguard.audit.models import Event
from returnguard.cli import app
from returnguard.config import Settings
from returnguard.demo import COMMENTS
from returnguard.kit.db import Database
from returnguard.orders.models import Order
from tests.audit.attacker import tampering

# Every state the demo reaches.
DEMO_STATES = [
    "requested",
    "awaiting_evidence",
    "pending_review",
    "offered",
    "approved",
    "in_transit",
    "received",
    "inspected",
    "refunded",
    "closed",
    "resolved",
    "rejected",
    "cancelled",
    "expired",
    "lost",
    "disputed",
]

runner = CliRunner()


@dataclass
class Run:
    exit_code: int
    stdout: str
    output: str  # stdout and stderr together, as a terminal shows them


def cli(db: Database, *args: str) -> Run:
    result = runner.invoke(app, [*args, "--database-url", db.url])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Run(result.exit_code, result.stdout, result.output)


@dataclass
class Demo:
    organization_id: uuid.UUID
    api_key: str
    orders: int
    returns: int


def run_demo(db: Database) -> Demo:
    run = cli(db, "demo", "--no-serve")
    assert run.exit_code == 0, run.output
    org = re.search(r"^demo organization: (\S+)$", run.stdout, re.M)
    key = re.search(r"^API key \(admin\):\s+(\S+)$", run.stdout, re.M)
    loaded = re.search(r"^loaded (\d+) orders and (\d+) returns$", run.stdout, re.M)
    assert org and key and loaded, run.stdout
    assert "serving at" not in run.stdout
    return Demo(uuid.UUID(org[1]), key[1], int(loaded[1]), int(loaded[2]))


@pytest.fixture
def http(db: Database) -> Iterator[TestClient]:
    settings = Settings(database_url=db.url, in_process_worker=False)
    with TestClient(create_app(settings, db=db)) as client:
        yield client


def get(http: TestClient, key: str, path: str, **params: Any) -> Any:
    r = http.get(path, params=params, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    return r.json()


def test_demo_loads_returns_in_every_state_on_both_channels(db: Database, http: TestClient) -> None:
    demo = run_demo(db)
    assert demo.orders == 300
    assert demo.returns == 80

    me = get(http, demo.api_key, "/api/v1/me")
    assert me["organization_id"] == str(demo.organization_id)
    assert me["role"] == "admin"

    for state in DEMO_STATES:
        items = get(http, demo.api_key, "/api/v1/returns", status=state, limit=200)["items"]
        assert items, f"no demo return is {state}"
        assert {item["status"] for item in items} == {state}

    page = get(http, demo.api_key, "/api/v1/returns", limit=200)
    returns = page["items"]
    assert len(returns) == 80
    assert page["next_cursor"] is None
    assert {(r["channel"], r["currency"]) for r in returns} == {
        ("amazon-de", "EUR"),
        ("shopify-us", "USD"),
    }
    channels = get(http, demo.api_key, "/api/v1/channels")
    assert {(c["code"], c["currency"], c["country"], c["language"]) for c in channels} == {
        ("amazon-de", "EUR", "DE", "de"),
        ("shopify-us", "USD", "US", "en"),
    }

    # What an agent reads: real reasons and buyer comments, some of them in German.
    reasons = {line["reason_code"] for r in returns for line in r["lines"]}
    assert len(reasons) >= 6
    german = {text for (_, _, lang), texts in COMMENTS.items() if lang == "de" for text in texts}
    amazon_comments = {r["buyer_comment"] for r in returns if r["channel"] == "amazon-de"}
    assert amazon_comments & german

    # A return's history is the production one: every step is an event.
    listed = get(http, demo.api_key, "/api/v1/returns", status="inspected")["items"][0]
    inspected = get(http, demo.api_key, f"/api/v1/returns/{listed['id']}")
    assert inspected["shipments"][0]["tracking_number"]
    assert inspected["inspections"][0]["outcome"] in {"pass", "partial", "fail"}
    # Every demo return carries the default policy's explained decision.
    decision = get(http, demo.api_key, f"/api/v1/returns/{inspected['id']}/decision")
    assert decision["policy_name"] == f"Default policy ({inspected['currency']})"
    assert decision["lines"][0]["trace"]
    events = get(http, demo.api_key, f"/api/v1/returns/{inspected['id']}/events")
    actions = [e["action"] for e in events]
    assert actions[0] == "return.created"
    assert [a for a in actions if a.startswith("return.")][-2:] == [
        "return.receive",
        "return.inspect",
    ]

    # No webhook endpoint: nothing waits in the outbox for an unreachable host.
    metrics = http.get("/metrics").text
    pending = re.search(r"^returnguard_outbox_pending (\S+)$", metrics, re.M)
    assert pending and float(pending[1]) == 0

    verify = cli(db, "events", "verify")
    assert verify.exit_code == 0, verify.output
    assert re.search(rf"^{demo.organization_id}: OK \(\d+ events\)$", verify.stdout, re.M)


def test_demo_twice_reuses_the_demo_and_issues_a_new_key(db: Database, http: TestClient) -> None:
    first = run_demo(db)
    second = run_demo(db)

    assert second.organization_id == first.organization_id
    assert (second.orders, second.returns) == (300, 80)
    assert second.api_key != first.api_key
    for key in (first.api_key, second.api_key):
        assert get(http, key, "/api/v1/me")["organization_id"] == str(first.organization_id)
    assert len(get(http, second.api_key, "/api/v1/returns", limit=200)["items"]) == 80
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Order)) == 300


def test_org_create_json_prints_a_working_admin_key(db: Database, http: TestClient) -> None:
    run = cli(db, "org", "create", "Nordlicht Handel GmbH", "--json")

    assert run.exit_code == 0, run.output
    created = json.loads(run.stdout)
    assert set(created) == {"organization_id", "api_key"}
    me = get(http, created["api_key"], "/api/v1/me")
    assert me["organization_id"] == created["organization_id"]
    assert me["role"] == "admin"


def test_org_create_without_json_shows_the_key_once(db: Database) -> None:
    run = cli(db, "org", "create", "Nordlicht Handel GmbH")

    assert run.exit_code == 0, run.output
    assert re.search(r"^organization_id: [0-9a-f-]{36}$", run.stdout, re.M)
    assert re.search(r"^api_key: rg_\S+$", run.stdout, re.M)
    assert "shown only once" in run.stdout


def test_org_create_rejects_an_unknown_currency(db: Database) -> None:
    run = cli(db, "org", "create", "Nordlicht Handel GmbH", "--base-currency", "XYZ")

    assert run.exit_code == 2
    assert "error:" in run.output


def test_migrate_succeeds_on_an_up_to_date_database(db: Database) -> None:
    run = cli(db, "migrate")

    assert run.exit_code == 0, run.output
    assert "database schema is up to date" in run.output


def _org_with_events(db: Database, http: TestClient) -> tuple[uuid.UUID, int]:
    """An organization made by the CLI, with a channel added through the API."""
    run = cli(db, "org", "create", "Chain Test AG", "--json")
    assert run.exit_code == 0, run.output
    created = json.loads(run.stdout)
    r = http.post(
        "/api/v1/channels",
        json={
            "code": "own-shop",
            "name": "Own shop",
            "marketplace": "own_store",
            "country": "DE",
            "currency": "EUR",
        },
        headers={"Authorization": f"Bearer {created['api_key']}"},
    )
    assert r.status_code == 201, r.text
    org_id = uuid.UUID(created["organization_id"])
    with db.session() as session:
        count = session.scalar(
            select(func.count()).select_from(Event).where(Event.organization_id == org_id)
        )
    # organization.created, api_key.created, channel.created and the channel's default
    # policy: policy.created, policy.version_added, policy.published
    assert count == 6
    return org_id, count


def test_events_verify_reports_an_intact_chain(db: Database, http: TestClient) -> None:
    org_id, count = _org_with_events(db, http)

    run = cli(db, "events", "verify")

    assert run.exit_code == 0, run.output
    assert f"{org_id}: OK ({count} events)" in run.stdout


def test_events_verify_names_the_altered_event(db: Database, http: TestClient) -> None:
    org_id, _ = _org_with_events(db, http)
    # Past the append-only trigger, as someone with database access would go.
    with tampering(db) as conn:
        changed = conn.execute(
            update(Event).where(Event.organization_id == org_id, Event.seq == 2).values(action="x")
        )
        assert changed.rowcount == 1

    run = cli(db, "events", "verify")

    assert run.exit_code == 1
    assert f"{org_id}: BROKEN at event #2" in run.stdout
    assert "altered" in run.stdout


def test_events_verify_detects_a_deleted_last_event(db: Database, http: TestClient) -> None:
    org_id, count = _org_with_events(db, http)
    with tampering(db) as conn:
        conn.execute(delete(Event).where(Event.organization_id == org_id, Event.seq == count))

    run = cli(db, "events", "verify", "--org", str(org_id))

    assert run.exit_code == 1
    assert f"{org_id}: BROKEN at event #{count}" in run.stdout
    assert "deleted" in run.stdout
