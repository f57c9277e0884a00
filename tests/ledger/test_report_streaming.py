"""Reports at volume: streamed out of the database, a fixed number of parameters whatever
the data, and exports that carry exactly what the JSON says."""

from __future__ import annotations

import csv
import io
import random
import uuid
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from openpyxl import load_workbook

from returnguard.kit.db import Database
from returnguard.ledger import reports
from returnguard.ledger.repository import ReportQueries
from returnguard.ledger.schemas import MoneyAtRiskOut, NetProfitOut, ReserveOut
from tests.conftest import Api
from tests.ledger.conftest import ok
from tests.ledger.test_reports_oracle import FIRST_DAY, build_shop

NET = "/api/v1/reports/net-profit"


def _statements(q: ReportQueries, as_of: date) -> list[Any]:
    first, last = as_of - timedelta(days=90), as_of
    found: list[Any] = [q.net_profit(g.value, first, last) for g in reports.GroupBy]
    found += [*q.net_profit_missing_rates(first, last), q.net_profit_missing_costs(first, last)]
    start, end = reports._start(first), reports._start(last)
    found += [q.reserve(start, end, end, as_of), q.money_at_risk(as_of)]
    return [*found, q.money_at_risk_missing(as_of)]


def test_no_report_statement_grows_with_the_data(db: Database) -> None:
    """What made the reserve fail with 100,000 returns ("number of parameters must be
    between 0 and 65535"): ids sent back to the database. Now every statement has the same
    few parameters (constants: days, statuses, currency digits) for a shop of 10 orders and
    one of 200."""
    counts = []
    for orders in (10, 200):
        with db.session() as session:
            org = build_shop(session, random.Random(orders), "GBP", orders=orders)
            q = ReportQueries(session, org, "GBP")
            dialect = session.get_bind().dialect
            statements = _statements(q, date(2026, 11, 1))
            counts.append([len(s.compile(dialect=dialect).params) for s in statements])
    assert counts[0] == counts[1]
    assert max(counts[0]) < 500


@pytest.fixture
def shop(db: Database, api: Api) -> uuid.UUID:
    """A random shop of 150 orders in the API's organization."""
    with db.session() as session:
        org = api.tenant.organization_id
        build_shop(session, random.Random(21), "EUR", orders=150, organization=org)
    return org


def test_exports_stream_the_rows_of_the_json(api: Api, shop: uuid.UUID) -> None:
    params = {"group_by": "order", "from": FIRST_DAY.isoformat(), "to": "2026-11-30"}
    body = ok(api.get(NET, params=params))
    NetProfitOut.model_validate(body)  # the streamed JSON is the documented shape
    assert len(body["rows"]) > 100
    keys = [(r["label"], r["key"]) for r in body["rows"]]
    assert keys == sorted(keys)  # by the order's external id, in code-point order
    total = {
        name: sum(Decimal(r[name]["amount"]) for r in body["rows"])
        for name in reports.FIGURE_COLUMNS
    }
    assert {n: Decimal(body["total"][n]["amount"]) for n in total} == total

    r = api.get(NET, params=params | {"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(r.text)))
    assert [line[0] for line in lines[1:-1]] == [row["key"] for row in body["rows"]]
    assert lines[-1][2:8] == [body["total"][n]["amount"] for n in reports.FIGURE_COLUMNS]

    r = api.get(NET, params=params | {"format": "xlsx"})
    assert r.status_code == 200
    book = load_workbook(io.BytesIO(r.content))
    values = list(book["Net profit"].iter_rows(values_only=True))
    assert len(values) == len(lines)
    assert [Decimal(str(v)) for v in values[-1][2:8]] == [Decimal(x) for x in lines[-1][2:8]]
    # The shop has amounts in SEK and CHF without a rate: listed on their own sheet.
    assert body["missing_rates"]
    missing = list(book["Missing rates"].iter_rows(values_only=True))
    assert len(missing) == 1 + len(body["missing_rates"])


def test_reserve_and_money_at_risk_answer_in_their_documented_shape(
    api: Api, shop: uuid.UUID
) -> None:
    as_of = {"as_of": (FIRST_DAY + timedelta(days=45)).isoformat()}
    reserve = ok(api.get("/api/v1/reports/reserve", params=as_of))
    ReserveOut.model_validate(reserve)
    assert reserve["rows"]
    risk = ok(api.get("/api/v1/reports/money-at-risk", params=as_of))
    MoneyAtRiskOut.model_validate(risk)
    assert risk["items"] and [b["age"] for b in risk["buckets"]] == [
        "0-7",
        "8-14",
        "15-30",
        "31-60",
        ">60",
    ]
    ages = [i["age_days"] for i in risk["items"]]
    assert ages == sorted(ages, reverse=True)  # oldest money first


def test_a_sku_that_looks_like_a_formula_stays_text_in_the_workbook(api: Api, db: Database) -> None:
    api.channel()
    body: dict[str, Any] = {
        "lines": [
            {
                "external_id": "item-1",
                "sku": '=HYPERLINK("http://example.test")',
                "title": "=1+1",
                "quantity": 1,
                "unit_price": {"amount": "10.00", "currency": "EUR"},
            }
        ]
    }
    api.order("F-1", quantity=1, price="10.00", **body)
    r = api.get(
        NET,
        params={"group_by": "sku", "from": "2026-10-01", "to": "2026-10-31", "format": "xlsx"},
    )
    assert r.status_code == 200, r.text
    sheet = load_workbook(io.BytesIO(r.content))["Net profit"]
    key, label = sheet.cell(row=2, column=1), sheet.cell(row=2, column=2)
    assert (key.value, key.data_type) == ('=HYPERLINK("http://example.test")', "s")
    assert (label.value, label.data_type) == ("=1+1", "s")
    assert sheet.cell(row=2, column=3).value == 10  # the figures are still numbers
