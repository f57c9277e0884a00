"""Backtesting a draft over past returns, over HTTP and from the CLI."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from returnguard.cli import app
from returnguard.domain.policy.defaults import default_policy_data
from returnguard.kit.db import Database
from tests.conftest import Api
from tests.policies.test_policies_api import _order, _return, _setup


def _history(api: Api) -> None:
    """Three returns decided by the default policy: two approved, one returnless."""
    _setup(api)
    order = _order(api, "bt-1")
    assert _return(api, order, "MUG", "changed_mind")["status"] == "approved"
    assert _return(api, order, "TENT", "size_fit")["status"] == "approved"
    assert _return(api, order, "CHEAP", "changed_mind")["status"] == "resolved"


def _draft(api: Api) -> str:
    """The default policy plus: buyer's-choice returns above 100 EUR go to review."""
    data = default_policy_data("EUR")
    data["rules"].insert(
        1,
        {
            "id": "expensive-no-fault-review",
            "when": {
                "reason_classes": ["no_fault"],
                "item_value": {"currency": "EUR", "min": "100"},
            },
            "then": {"human_review": True},
        },
    )
    r = api.post("/api/v1/policies", {"name": "Draft", "document": data})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_backtest_reports_changed_decisions_and_money(api: Api) -> None:
    _history(api)
    policy_id = _draft(api)
    today = datetime.now(UTC).date()
    body = {"from": str(today - timedelta(days=7)), "to": str(today)}
    r = api.post(f"/api/v1/policies/{policy_id}/backtest", body)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["returns"] == 3
    assert report["changed"] == 1
    assert report["policy_version"] == 1
    assert {"actual": "auto_approve", "draft": "needs_review", "count": 1} in report["transitions"]
    eur = report["money"]["EUR"]
    assert eur["returns"] == 3
    assert eur["returnless_refunds"]["draft"]["count"] == 1
    [row] = report["differing"]["returns"]
    assert (row["actual"], row["draft"]) == ("auto_approve", "needs_review")

    r = api.post(f"/api/v1/policies/{policy_id}/backtest?format=csv", body)
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 1 and rows[0]["number"] == row["number"]

    # Nothing before the history: an empty, not a failing, backtest.
    old = {"from": "2020-01-01", "to": "2020-01-31"}
    empty = api.post(f"/api/v1/policies/{policy_id}/backtest", old).json()
    assert (empty["returns"], empty["changed"]) == (0, 0)


def test_backtest_input_is_checked(api: Api) -> None:
    policy_id = _draft(api)
    r = api.post(
        f"/api/v1/policies/{policy_id}/backtest", {"from": "2026-02-01", "to": "2026-01-01"}
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "to"
    r = api.post(
        f"/api/v1/policies/{policy_id}/backtest", {"from": "2024-01-01", "to": "2026-01-01"}
    )
    assert r.status_code == 422 and "at most" in r.json()["errors"][0]["message"]
    r = api.post(
        f"/api/v1/policies/{policy_id}/backtest",
        {"from": "2026-01-01", "to": "2026-01-02", "version": 9},
    )
    assert r.status_code == 404


def test_backtest_from_the_command_line(api: Api, db: Database, tmp_path: Path) -> None:
    _history(api)
    policy_id = _draft(api)
    today = datetime.now(UTC).date()
    out = tmp_path / "diff.csv"
    result = CliRunner().invoke(
        app,
        [
            "policies",
            "backtest",
            policy_id,
            "--org",
            str(api.tenant.organization_id),
            "--from",
            str(today - timedelta(days=7)),
            "--to",
            str(today),
            "--csv",
            str(out),
            "--database-url",
            db.url,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "needs_review" in result.output
    assert len(list(csv.DictReader(out.open()))) == 1


def test_policy_files_are_checked_from_the_command_line(tmp_path: Path) -> None:
    good = tmp_path / "policy.yaml"
    good.write_text("name: Mine\ndefaults: {return_window_days: 30}\nrules: []\n")
    result = CliRunner().invoke(app, ["policies", "validate", str(good)])
    assert result.exit_code == 0 and "valid" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: Mine\ndefaults: {return_window_days: 7, colour: red}\n")
    result = CliRunner().invoke(app, ["policies", "validate", str(bad)])
    assert result.exit_code == 1
    assert "defaults.colour: unknown field" in result.output


def test_backtest_shows_the_restocking_fees_actually_kept(api: Api) -> None:
    """A fee withheld from a paid refund is in the cost ledger and on the actual side."""
    _setup(api)
    order = _order(api, "bt-fee")
    ret = _return(api, order, "TENT", "size_fit")  # 300.00 EUR, buyer's choice
    line = ret["lines"][0]["id"]
    api.post(
        f"/api/v1/returns/{ret['id']}/receive", {"lines": [{"return_line_id": line, "quantity": 1}]}
    )
    api.post(
        f"/api/v1/returns/{ret['id']}/inspections",
        {"lines": [{"return_line_id": line, "passed": 1, "failed": 0}]},
    )
    r = api.client.post(
        f"/api/v1/returns/{ret['id']}/refunds",
        json={"lines": [{"return_line_id": line, "quantity": 1, "charge_restocking_fee": True}]},
        headers=api.tenant.headers | {"Idempotency-Key": "bt-fee"},
    )
    assert r.status_code == 201, r.text
    today = datetime.now(UTC).date()
    body = {"from": str(today - timedelta(days=7)), "to": str(today + timedelta(days=1))}
    policy_id = _draft(api)
    before = api.post(f"/api/v1/policies/{policy_id}/backtest", body).json()
    # Granted and sent, not yet paid: no fee has been kept.
    assert before["money"]["EUR"]["restocking_fees"]["actual"] == {"count": 0, "value": "0.00"}
    paid = api.post(f"/api/v1/refunds/{r.json()['id']}/settle", {"reference": "SC-9"})
    assert paid.status_code == 200, paid.text
    after = api.post(f"/api/v1/policies/{policy_id}/backtest", body).json()
    fees = after["money"]["EUR"]["restocking_fees"]["actual"]
    assert fees == {"count": 1, "value": "25.00"}  # 10 % of 300.00, capped at 25.00
