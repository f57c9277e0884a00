"""`returnguard demo` as a newcomer meets it: a shop with six months of history, the
database named with the commands that act on it, no webhook into the void, and a busy
port refused before anything is loaded. On SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import re
import shlex
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner, Result

from returnguard.app import create_app
from returnguard.audit.models import Event
from returnguard.cli import app
from returnguard.config import Settings
from returnguard.kit.db import Database
from returnguard.ledger.models import LedgerEntry
from returnguard.outbox.models import OutboxMessage, WebhookEndpoint
from returnguard.refunds.models import Refund
from tests.conftest import BACKENDS, _wipe

runner = CliRunner()


@dataclass
class Demo:
    url: str
    db: Database
    http: TestClient
    stdout: str
    stderr: str
    organization_id: uuid.UUID
    api_key: str

    def get(self, path: str, **params: Any) -> Any:
        r = self.http.get(path, params=params, headers=self.auth)
        assert r.status_code == 200, r.text
        return r.json()

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def invoke(*args: str) -> Result:
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.fixture(scope="module", params=BACKENDS)
def demo(request: pytest.FixtureRequest) -> Iterator[Demo]:
    """One demo load per backend for this module (a load takes seconds)."""
    url = str(request.getfixturevalue(f"{request.param.replace('postgresql', 'postgres')}_url"))
    db = Database(url)
    _wipe(db)
    run = invoke("demo", "--no-serve", "--database-url", url)
    assert run.exit_code == 0, run.output
    org = re.search(r"^demo organization: (\S+)$", run.stdout, re.M)
    key = re.search(r"^API key \(admin\):\s+(\S+)$", run.stdout, re.M)
    assert org and key, run.stdout
    settings = Settings(database_url=url, in_process_worker=False)
    with TestClient(create_app(settings, db=db)) as http:
        yield Demo(url, db, http, run.stdout, run.stderr, uuid.UUID(org[1]), key[1])
    _wipe(db)
    db.dispose()


def test_demo_history_spreads_over_the_past_six_months(demo: Demo) -> None:
    now = datetime.now(UTC)
    with demo.db.session(read_only=True) as session:
        first, last = session.execute(
            select(func.min(Event.occurred_at), func.max(Event.occurred_at))
        ).one()
        refunded = [d for d in session.scalars(select(Refund.settled_at)) if d is not None]
        booked = set(session.scalars(select(LedgerEntry.occurred_on)))
    assert now - timedelta(days=220) < first < now - timedelta(days=150)
    assert last <= now
    assert max(refunded) - min(refunded) > timedelta(days=90)
    assert len({d.strftime("%Y-%m") for d in booked}) >= 4

    # The chains were written with those times: they still verify.
    verify = invoke("events", "verify", "--database-url", demo.url)
    assert verify.exit_code == 0, verify.output
    assert re.search(rf"^{demo.organization_id}: OK \(\d+ events\)$", verify.stdout, re.M)


def test_monthly_net_profit_of_the_demo_has_refunds_in_several_months(
    demo: Demo, tmp_path: Path
) -> None:
    today = datetime.now(UTC).date()
    out = tmp_path / "months.csv"
    run = invoke(
        "report", "net-profit", "--org", str(demo.organization_id), "--by", "month",
        "--from", (today - timedelta(days=200)).isoformat(), "--to", today.isoformat(),
        "--csv", str(out), "--database-url", demo.url,
    )  # fmt: skip

    assert run.exit_code == 0, run.output
    rows = [r for r in csv.DictReader(out.open(encoding="utf-8")) if r["month"] != "TOTAL"]
    assert len(rows) >= 6
    with_refunds = [r["month"] for r in rows if Decimal(r["refunds"] or 0) > 0]
    with_costs = [r["month"] for r in rows if Decimal(r["return_costs"] or 0) > 0]
    assert len(with_refunds) >= 3, rows
    assert len(with_costs) >= 3, rows


def test_money_at_risk_on_the_demo_falls_in_more_than_one_age(demo: Demo) -> None:
    report = demo.get("/api/v1/reports/money-at-risk")

    ages = [b["age"] for b in report["buckets"] if b["refunds"] > 0]
    assert len(ages) >= 2, report["buckets"]


def test_backtest_on_the_demo_prices_return_shipping_with_the_channels_costs(demo: Demo) -> None:
    channels = {c["code"]: c for c in demo.get("/api/v1/channels")}
    assert channels["amazon-de"]["return_label_cost"] == {"amount": "4.95", "currency": "EUR"}
    assert channels["amazon-de"]["handling_cost"] == {"amount": "3.50", "currency": "EUR"}
    assert channels["shopify-us"]["return_label_cost"] == {"amount": "8.40", "currency": "USD"}
    policies = {p["name"]: p["id"] for p in demo.get("/api/v1/policies")}
    policy = policies["Default policy (EUR)"]
    today = datetime.now(UTC).date()
    r = demo.http.post(
        f"/api/v1/policies/{policy}/backtest",
        json={"from": (today - timedelta(days=200)).isoformat(), "to": today.isoformat()},
        headers=demo.auth,
    )

    assert r.status_code == 200, r.text
    money = r.json()["money"]
    for currency in ("EUR", "USD"):
        assert money[currency]["returns_without_label_cost"] == 0
        assert Decimal(money[currency]["shipping_paid_by_seller"]["actual"]["value"]) > 0


def test_demo_queues_nothing_for_an_unreachable_host(demo: Demo) -> None:
    assert demo.get("/api/v1/webhooks/endpoints") == []
    with demo.db.session(read_only=True) as session:
        assert session.scalar(select(func.count()).select_from(WebhookEndpoint)) == 0
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
    metrics = demo.http.get("/metrics").text
    assert re.search(r"^returnguard_outbox_pending 0(\.0)?$", metrics, re.M)
    # It says how to subscribe a real receiver instead (when it serves; see test_readme_try).
    assert "demo database:" in demo.stdout


def test_demo_prints_its_database_and_commands_that_act_on_it(demo: Demo) -> None:
    shown = re.search(r"^demo database: (\S+)$", demo.stdout, re.M)
    assert shown, demo.stdout
    assert f"database: {shown[1]}" in demo.stderr
    commands = re.findall(r"^  returnguard (.+)$", demo.stdout, re.M)
    assert {c.split()[0] for c in commands} >= {"org", "report", "policies", "events"}

    created: dict[str, str] = {}
    for command in commands:
        args = shlex.split(command)
        run = invoke(*args)
        assert run.exit_code == 0, f"{command}: {run.output}"
        assert f"database: {shown[1]}" in run.stderr
        if args[:2] == ["org", "create"]:
            created = dict(re.findall(r'"(\w+)": "([^"]+)"', run.stdout))
    # The organization the printed command made lives in the demo's database: its key
    # works against the demo's API (it used to land in ./returnguard-data: 401).
    me = demo.http.get("/api/v1/me", headers={"Authorization": f"Bearer {created['api_key']}"})
    assert me.status_code == 200, me.text
    assert me.json()["organization_id"] == created["organization_id"]


def test_demo_on_a_busy_port_refuses_before_loading_or_printing_a_key(tmp_path: Path) -> None:
    database = tmp_path / "demo.sqlite3"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = invoke(
            "demo", "--port", str(port), "--database-url", f"sqlite:///{database}"
        )  # fmt: skip

    assert run.exit_code == 2
    assert f"cannot serve the demo on 127.0.0.1:{port}" in run.stderr
    assert "--port" in run.stderr
    assert "API key" not in run.output and "rg_" not in run.output
    assert not database.exists()


def test_every_database_command_names_its_database_and_hides_a_password(tmp_path: Path) -> None:
    url = "postgresql://returns:s3cret-pw@127.0.0.1:1/returnguard"
    run = runner.invoke(app, ["migrate", "--database-url", url])

    assert run.exit_code != 0  # nothing listens on port 1
    assert "database: postgresql+psycopg://returns:***@127.0.0.1:1/returnguard" in run.stderr
    assert "s3cret-pw" not in run.output

    sqlite = tmp_path / "x" / "rg.sqlite3"
    made = invoke("org", "create", "Nordlicht", "--json", "--database-url", f"sqlite:///{sqlite}")
    assert made.exit_code == 0, made.output
    # stdout is the JSON alone; the database line is on stderr, by its absolute path.
    assert made.stdout.strip().startswith("{") and made.stdout.count("\n") == 1
    assert f"database: sqlite:///{sqlite.resolve()}" in made.stderr


def test_reports_start_on_the_day_of_the_oldest_order(demo: Demo) -> None:
    first = re.search(r"--from (\d{4}-\d{2}-\d{2}) --to (\d{4}-\d{2}-\d{2})", demo.stdout)
    assert first, demo.stdout
    start, end = date.fromisoformat(first[1]), date.fromisoformat(first[2])
    assert end == datetime.now(UTC).date()
    assert timedelta(days=170) < end - start < timedelta(days=200)
