"""`returnguard report net-profit`, driven as a user would."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from openpyxl import load_workbook
from typer.testing import CliRunner

from returnguard.cli import app
from returnguard.kit.db import Database
from tests.conftest import Api

runner = CliRunner()


def run(db: Database, *args: str) -> Any:
    result = runner.invoke(app, [*args, "--database-url", db.url])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_net_profit_by_sku_on_the_command_line(
    api: Api, db: Database, hand_example: dict[str, Any], tmp_path: Path
) -> None:
    csv_file, xlsx_file = tmp_path / "net.csv", tmp_path / "net.xlsx"
    today = datetime.now(UTC).date().isoformat()
    result = run(
        db,
        "report",
        "net-profit",
        "--org",
        str(api.tenant.organization_id),
        "--by",
        "sku",
        "--from",
        "2026-10-01",
        "--to",
        today,
        "--csv",
        str(csv_file),
        "--xlsx",
        str(xlsx_file),
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "sku",
        "label",
        "revenue",
        "cost_of_goods",
        "refunds",
        "return_costs",
        "recoveries",
        "net",
        "currency",
    ]
    assert lines[1].split() == [
        "MUG-BLUE",
        "Blue",
        "mug",
        "105.00",
        "40.00",
        "50.00",
        "9.50",
        "25.00",
        "30.50",
        "EUR",
    ]
    assert lines[2].split()[0] == "TOTAL" and lines[2].split()[-2] == "30.50"
    rows = list(csv.reader(csv_file.open(encoding="utf-8")))
    assert rows[1][-2] == "30.50"
    sheet = load_workbook(xlsx_file).active
    assert Decimal(str(sheet.cell(row=2, column=8).value)) == Decimal("30.50")


def test_bad_arguments_exit_2(api: Api, db: Database) -> None:
    org = str(api.tenant.organization_id)
    base = ["report", "net-profit", "--org", org, "--from", "2026-10-01", "--to", "2026-10-31"]
    result = run(db, *base, "--by", "customer")
    assert result.exit_code == 2
    assert "--by" in result.output
    result = run(
        db, "report", "net-profit", "--org", org, "--from", "2026-11-01", "--to", "2026-10-01"
    )
    assert result.exit_code == 2
    assert "after" in result.output
    result = run(
        db, "report", "net-profit", "--org", "nope", "--from", "2026-10-01", "--to", "2026-10-02"
    )
    assert result.exit_code == 2
