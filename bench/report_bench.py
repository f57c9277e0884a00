"""Reports benchmark: net profit by SKU, the reserve and money at risk over N returns.

    python bench/report_bench.py                      # 100,000 returns (375,000 orders)
    python bench/report_bench.py --returns 1000000    # 1M returns (3.75M orders)
    python bench/report_bench.py --returns 5000       # smoke run, seconds

It creates a fresh PostgreSQL database on 127.0.0.1 (``--admin-url``, default the local
server's ``postgres`` database), migrates it, and loads a generated shop with ``COPY``
(not through the API): orders with 1-3 lines in EUR, USD and GBP channels, daily ECB-like
EUR->USD and EUR->GBP rates (so USD and GBP amounts convert through the inverse), N
returns in every state, the refunds paid for them (JSON lines, some before the goods came
back) and their ledger entries (refund paid, fee kept, label, handling, residual value).
The data is deterministic (``--seed``); ids are sequential UUIDs so the load stays fast.

Then, for each report, best of ``--repeat`` runs:

1. **service**: the report through ``returnguard.ledger.reports`` (as the API runs it, every
   row consumed), each run in a fresh process: wall time and that process's peak RSS
   growth over its state before the report (and the Python heap peak, tracemalloc);
2. **plain SQL**: the same aggregation written by hand for PostgreSQL (shares rounded one
   by one, no largest remainder, rates as numeric without Python's 28-digit rounding: a
   floor for what the database has to do);
3. **DuckDB**: the same SQL over the same rows exported to Parquet (export not timed).

and prints the ratios. The database is dropped at the end (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

END = date(2026, 11, 30)
DAYS = 730
CHANNELS = [  # code, currency, share of orders, value of 1 EUR in it (x100)
    ("amazon-de", "EUR", 45, 100),
    ("shop-fr", "EUR", 15, 100),
    ("shop-us", "USD", 25, 108),
    ("amazon-uk", "GBP", 15, 85),
]
STATUSES = [  # status, share (per mille), goods received, inspected, refund paid
    ("closed", 380, True, True, True),
    ("refunded", 150, True, True, True),
    ("refunded_early", 60, False, False, True),  # paid at first scan: money at risk
    ("received", 80, True, False, False),
    ("in_transit", 70, False, False, False),
    ("approved", 60, False, False, False),
    ("resolved", 40, False, False, True),  # returnless refund
    ("cancelled", 60, False, False, False),
    ("rejected", 40, False, False, False),
    ("requested", 60, False, False, False),
]
ORG_ID = "00000000-0000-4000-8000-000000000001"
NULL = "\\N"  # in COPY's text format


def ident(table: int, i: int) -> str:
    return f"{table:08x}-0000-4000-8000-{i:012x}"


def iso(day: date) -> str:
    return day.isoformat()


def stamp(day: date, hour: int = 10) -> str:
    return f"{day.isoformat()} {hour:02d}:00:00+00"


# --- generating and loading the shop ------------------------------------------------------


@dataclass
class Shop:
    returns: int
    orders: int
    skus: int
    prices: array[int]  # per SKU, EUR minor units
    costs: array[int]  # per SKU, -1 when unknown
    order_channel: array[int]
    order_day: array[int]  # days before END
    order_first_line: array[int]
    order_lines: array[int]
    line_sku: array[int]
    line_qty: array[int]


def unit_price(shop: Shop, line: int, channel: int) -> int:
    return shop.prices[shop.line_sku[line]] * CHANNELS[channel][3] // 100


def line_amounts(shop: Shop, line: int, channel: int) -> tuple[int, int, int]:
    """(item, tax, discount) of an order line: 19 % tax in EUR shops, every tenth line 10 %
    off."""
    item = unit_price(shop, line, channel) * shop.line_qty[line]
    tax = item * 19 // 100 if CHANNELS[channel][1] == "EUR" else 0
    discount = item // 10 if line % 10 == 0 else 0
    return item, tax, discount


class Copier:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.counts: dict[str, int] = {}

    def __call__(self, table: str, columns: str, rows: Iterable[str]) -> None:
        started, count = time.perf_counter(), 0
        with self.conn.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            chunk: list[str] = []
            for row in rows:
                chunk.append(row)
                count += 1
                if len(chunk) >= 20_000:
                    copy.write("".join(chunk))
                    chunk = []
            if chunk:
                copy.write("".join(chunk))
        self.counts[table] = count
        print(f"  {table:<15} {count:>10,} rows in {time.perf_counter() - started:6.1f} s")


def build(conn: psycopg.Connection[Any], n_returns: int, seed: int) -> Shop:
    rng = random.Random(seed)
    n_orders = n_returns * 15 // 4
    n_skus = max(100, min(5000, n_returns // 20))
    copy = Copier(conn)
    created = stamp(END)
    with conn.cursor() as cur:
        cur.execute("SET session_replication_role = replica")  # no FK triggers while loading
        cur.execute(
            "INSERT INTO organizations (id, name, base_currency, created_at, "
            "four_eyes_on_override) VALUES (%s, 'Bench GmbH', 'EUR', now(), false)",
            (ORG_ID,),
        )

    copy(
        "channels",
        "id, organization_id, code, name, marketplace, country, currency, language, created_at",
        (
            f"{ident(1, i)}\t{ORG_ID}\t{code}\t{code}\tshopify\tDE\t{cur}\ten\t{created}\n"
            for i, (code, cur, _, _) in enumerate(CHANNELS)
        ),
    )

    def rates() -> Iterator[str]:
        i = 0
        for quote, start in (("USD", 10856), ("GBP", 8543)):
            value = start
            for d in range(DAYS + 60, -1, -1):
                day = END - timedelta(days=d)
                value = max(value + rng.randint(-40, 40), start // 2)
                if day.weekday() < 5:  # the ECB publishes on working days only
                    i += 1
                    rate = f"{value // 10000}.{value % 10000:04d}"
                    yield (
                        f"{ident(2, i)}\t{ORG_ID}\t{iso(day)}\tEUR\t{quote}\t{rate}\t"
                        f"ecb\t{created}\n"
                    )

    copy("fx_rates", "id, organization_id, day, base, quote, rate, source, created_at", rates())

    prices, costs = array("q"), array("q")
    for _ in range(n_skus):
        price = int(500 * (1.0 + rng.paretovariate(1.6)))  # 5 EUR up, long tail
        prices.append(min(price, 90_000))
        costs.append(-1 if rng.random() < 0.03 else prices[-1] * 40 // 100)
    copy(
        "products",
        "id, organization_id, sku, title, unit_cost_minor, cost_currency, created_at, updated_at",
        (
            f"{ident(3, i)}\t{ORG_ID}\tSKU-{i:05d}\tProduct {i}\t"
            + (f"{costs[i]}\tEUR" if costs[i] >= 0 else f"{NULL}\t{NULL}")
            + f"\t{created}\t{created}\n"
            for i in range(n_skus)
        ),
    )

    shop = Shop(
        n_returns,
        n_orders,
        n_skus,
        prices,
        costs,
        array("b"),
        array("h"),
        array("q"),
        array("b"),
        array("q"),
        array("b"),
    )
    weights = [share for _, _, share, _ in CHANNELS]
    for _ in range(n_orders):
        shop.order_channel.append(rng.choices(range(len(CHANNELS)), weights)[0])
        shop.order_day.append(rng.randrange(DAYS))
        shop.order_first_line.append(len(shop.line_sku))
        count = rng.choices((1, 2, 3), (75, 18, 7))[0]
        shop.order_lines.append(count)
        for _ in range(count):
            # Popular SKUs sell more: the square of a uniform number favours low indexes.
            shop.line_sku.append(int(n_skus * rng.random() ** 2))
            shop.line_qty.append(rng.choices((1, 2, 3), (80, 15, 5))[0])

    # Each table is written in time order, as a live shop appends its rows: a day's orders,
    # lines and entries sit together on disk instead of spread over the whole table. (The
    # rows are the same whatever the order.)
    by_day = sorted(range(n_orders), key=lambda o: -shop.order_day[o])

    def orders() -> Iterator[str]:
        for o in by_day:
            channel, day = shop.order_channel[o], END - timedelta(days=shop.order_day[o])
            first, count = shop.order_first_line[o], shop.order_lines[o]
            shipping = 0 if o % 3 else 499
            captured = shipping + sum(
                item + tax - discount
                for item, tax, discount in (
                    line_amounts(shop, ln, channel) for ln in range(first, first + count)
                )
            )
            at = stamp(day, o % 24)
            yield (
                f"{ident(4, o)}\t{ORG_ID}\t{ident(1, channel)}\tO-{o}\t{CHANNELS[channel][1]}\t"
                f"{at}\t{shipping}\t0\t{captured}\t{at}\t{at}\n"
            )

    copy(
        "orders",
        "id, organization_id, channel_id, external_id, currency, ordered_at, shipping_minor, "
        "shipping_tax_minor, captured_minor, created_at, updated_at",
        orders(),
    )

    def lines() -> Iterator[str]:
        for o in by_day:
            channel, first = shop.order_channel[o], shop.order_first_line[o]
            for position in range(shop.order_lines[o]):
                ln = first + position
                sku = shop.line_sku[ln]
                _, tax, discount = line_amounts(shop, ln, channel)
                yield (
                    f"{ident(5, ln)}\t{ORG_ID}\t{ident(4, o)}\t{position}\tl{position}\t"
                    f"{ident(3, sku)}\tSKU-{sku:05d}\tProduct {sku}\t{shop.line_qty[ln]}\t"
                    f"{unit_price(shop, ln, channel)}\t{tax}\t{discount}\n"
                )

    copy(
        "order_lines",
        "id, organization_id, order_id, position, external_id, product_id, sku, title, "
        "quantity, unit_price_minor, tax_minor, discount_minor",
        lines(),
    )
    load_returns(shop, copy, rng)
    with conn.cursor() as cur:
        cur.execute("SET session_replication_role = origin")
    conn.commit()
    return shop


def in_order(rows: list[tuple[str, str]]) -> Iterator[str]:
    """The rows by their day (stable: in the order they were made within a day)."""
    rows.sort(key=lambda row: row[0])
    return (row for _, row in rows)


def load_returns(shop: Shop, copy: Copier, rng: random.Random) -> None:
    """Returns, their lines, the refunds paid and the ledger entries, in one pass: the rows
    of each table are kept as text (one table after the other would need the draws
    again)."""
    # (day, row): written in time order (see build)
    returns: list[tuple[str, str]] = []
    return_lines: list[tuple[str, str]] = []
    refunds: list[tuple[str, str]] = []
    entries: list[tuple[str, str]] = []
    stride = 1_000_003  # a prime: r * stride mod orders visits each order at most once
    assert shop.orders < stride or shop.orders % stride
    shares = [share for _, share, _, _, _ in STATUSES]
    n_line = n_entry = 0

    def entry(
        kind: str,
        amount: int,
        currency: str,
        day: date,
        order: int,
        ret: int,
        channel: int,
        line: int | None = None,
        refund: int | None = None,
    ) -> None:
        nonlocal n_entry
        n_entry += 1
        line_id = ident(5, line) if line is not None else NULL
        sku = f"SKU-{shop.line_sku[line]:05d}" if line is not None else NULL
        refund_id = ident(8, refund) if refund is not None else NULL
        entries.append(
            (
                iso(day),
                f"{ident(9, n_entry)}\t{ORG_ID}\t{kind}\t{amount}\t{currency}\t{iso(day)}\t"
                f"{ident(4, order)}\t{ident(6, ret)}\t{line_id}\t{sku}\t{ident(1, channel)}\t"
                f"{refund_id}\t\tbench\t{stamp(day, 12)}\n",
            )
        )

    for r in range(shop.returns):
        o = r * stride % shop.orders
        channel, currency = shop.order_channel[o], CHANNELS[shop.order_channel[o]][1]
        ordered = END - timedelta(days=shop.order_day[o])
        status, _, received, inspected, paid = rng.choices(STATUSES, shares)[0]
        requested = min(ordered + timedelta(days=rng.randrange(2, 25)), END)
        shipped = min(requested + timedelta(days=rng.randrange(1, 4)), END)
        arrived = min(shipped + timedelta(days=rng.randrange(2, 10)), END)
        settled = min(
            (arrived if received else requested) + timedelta(days=rng.randrange(0, 4)), END
        )
        shown = "refunded" if status == "refunded_early" else status
        returns.append(
            (
                iso(requested),
                f"{ident(6, r)}\t{ORG_ID}\tR-{r}\t{ident(4, o)}\t{ident(1, channel)}\t{shown}\t1\t"
                f"{currency}\t\t{stamp(requested)}\t{stamp(settled)}\n",
            )
        )
        first, count = shop.order_first_line[o], shop.order_lines[o]
        chosen = [first] if count == 1 or r % 10 else list(range(first, first + count))
        parts = []
        fee_share = 10 if r % 3 == 0 else 0  # a restocking fee on changes of mind
        for position, ln in enumerate(chosen):
            n_line += 1
            qty = shop.line_qty[ln]
            approved = 0 if status in ("requested", "cancelled", "rejected") else qty
            got = approved if received else 0
            checked = got if inspected else 0
            return_lines.append(
                (
                    iso(requested),
                    f"{ident(7, n_line)}\t{ORG_ID}\t{ident(6, r)}\t{ident(5, ln)}\t{position}\t"
                    f"changed_mind\t\t{qty}\t{approved}\t{got}\t{checked}\t{checked}\t"
                    f"{approved if paid else 0}\n",
                )
            )
            if paid:
                item, tax, discount = line_amounts(shop, ln, channel)
                fee = item * fee_share // 100
                parts.append((n_line, ln, qty, item, tax - discount, fee))
            if checked and shop.costs[shop.line_sku[ln]] >= 0:
                value = shop.costs[shop.line_sku[ln]] * checked * CHANNELS[channel][3] // 100
                entry("residual_value", value, currency, arrived, o, r, channel, ln)
        if (received or status == "in_transit") and r % 10 < 7:
            entry("return_label", -499, currency, shipped, o, r, channel)
        if received:
            entry("handling_fee", -300, currency, arrived, o, r, channel)
        if parts:
            refund_lines = [
                {
                    "return_line_id": ident(7, rl),
                    "order_line_id": ident(5, ln),
                    "quantity": qty,
                    "item": item,
                    "tax": tax,
                    "discount": 0,
                    "shipping": 0,
                    "shipping_tax": 0,
                    "restocking_fee": fee,
                    "total": item + tax - fee,
                }
                for rl, ln, qty, item, tax, fee in parts
            ]
            amount = sum(item + tax - fee for _, _, _, item, tax, fee in parts)
            refunds.append(
                (
                    iso(settled),
                    f"{ident(8, r)}\t{ORG_ID}\t{ident(6, r)}\t{ident(4, o)}\tbench-{r}\t"
                    f"{'0' * 64}\t"
                    f"succeeded\t{amount}\t{currency}\t{json.dumps(refund_lines)}\t0\t\tmanual\t\t"
                    f"f\t0\tbench\t{stamp(settled, 9)}\t{stamp(settled, 9)}\t{stamp(settled, 9)}\n",
                )
            )
            for _, ln, _, item, tax, fee in parts:
                entry("refund_paid", -(item + tax), currency, settled, o, r, channel, ln, r)
                if fee:
                    entry("restocking_fee_kept", fee, currency, settled, o, r, channel, ln, r)
    copy(
        "returns",
        "id, organization_id, number, order_id, channel_id, status, version, currency, "
        "buyer_comment, requested_at, updated_at",
        in_order(returns),
    )
    del returns
    copy(
        "return_lines",
        "id, organization_id, return_id, order_line_id, position, reason_code, comment, "
        "requested, approved, received, inspected, passed, refunded",
        in_order(return_lines),
    )
    del return_lines
    copy(
        "refunds",
        "id, organization_id, return_id, order_id, idempotency_key, request_hash, status, "
        "amount_minor, currency, lines, return_shipping_deduction_minor, reason, provider, "
        "granted_by_id, four_eyes, unsent_minor, created_by, created_at, updated_at, settled_at",
        in_order(refunds),
    )
    del refunds
    copy(
        "ledger_entries",
        "id, organization_id, kind, amount_minor, currency, occurred_on, order_id, return_id, "
        "order_line_id, sku, channel_id, refund_id, memo, created_by, created_at",
        in_order(entries),
    )


# --- the reports through the service (each run in a fresh process) ------------------------


def _status(field: str) -> int:
    """A memory figure of this process from /proc (bytes)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise LookupError(field)


def _reset_peak() -> None:
    # Linux: writing 5 resets the high-water mark (VmHWM) to the current RSS, so the peak
    # read afterwards is the report's own, not that of the imports before it.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def measure_service(url: str, which: str, heap: bool) -> dict[str, Any]:
    """Run one report as the API does, consuming every row; report time and memory."""
    from returnguard.kit.db import Database
    from returnguard.ledger import reports

    org = uuid.UUID(ORG_ID)
    first, last = END - timedelta(days=DAYS), END
    db = Database(url)
    with db.engine.connect() as conn:  # the pool's connection is made before measuring
        conn.exec_driver_sql("SELECT 1")
    if heap:
        tracemalloc.start()
    _reset_peak()
    before = _status("VmRSS")
    started = time.perf_counter()
    rows = 0
    with reports.reading(db) as session:
        if which == "net_profit":
            report = reports.net_profit(session, org, reports.GroupBy.SKU, first, last)
            total = 0
            for row in report.rows():
                rows += 1
                total += row.figures.net
            missing = len(report.missing_rates()) + len(report.missing_costs())
            summary = {"rows": rows, "net": total, "missing": missing}
        elif which == "reserve":
            reserve = reports.reserve(session, org, as_of=END, lookback_days=180, hold_days=30)
            summary = {"rows": len(reserve.rows), "reserve": reserve.total_reserve}
        else:
            risk = reports.money_at_risk(session, org, as_of=END)
            rows = sum(1 for _ in risk.items())
            risk.missing_rates()
            summary = {
                "rows": rows,
                "not_received": risk.total_not_received,
                "not_inspected": risk.total_not_inspected,
            }
    seconds = time.perf_counter() - started
    peak_heap = tracemalloc.get_traced_memory()[1] if heap else 0
    peak = _status("VmHWM")
    after = _status("VmRSS")
    db.dispose()
    return {
        "seconds": seconds,
        "rss_growth": max(peak - before, 0),
        "rss_kept": max(after - before, 0),
        "heap_peak": peak_heap,
        **summary,
    }


def service_in_child(url: str, which: str, heap: bool) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", which, "--database-url", url]
        + (["--heap"] if heap else []),
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# --- the references: plain SQL on PostgreSQL, the same SQL in DuckDB over Parquet ---------


def reference_sql(dialect: str, which: str) -> list[str]:
    """The report's aggregation written plainly (template filled per dialect)."""
    first, last = END - timedelta(days=DAYS), END
    pg = dialect == "postgresql"
    num = "NUMERIC" if pg else "DECIMAL(38, 12)"
    # PostgreSQL looks rates up by its unique index (organization, day, base, quote).
    org = f"f.organization_id = '{ORG_ID}' AND" if pg else ""

    def day(column: str) -> str:
        return f"CAST(timezone('UTC', {column}) AS DATE)" if pg else f"CAST({column} AS DATE)"

    def idiv(a: str, b: str) -> str:
        return f"div({a}, {b})" if pg else f"(({a}) // ({b}))"

    rates = f"""
    cal AS (SELECT CAST(g AS DATE) AS day FROM generate_series(
        TIMESTAMP '{first - timedelta(days=400)}', TIMESTAMP '{last}', INTERVAL '1 day') AS t(g)),
    cur AS (SELECT DISTINCT quote AS currency FROM fx_rates WHERE base = 'EUR'),
    rates AS (
        SELECT cur.currency, cal.day, (
            SELECT CAST(f.rate AS {num}) FROM fx_rates f
            WHERE {org} f.base = 'EUR' AND f.quote = cur.currency AND f.day <= cal.day
            ORDER BY f.day DESC LIMIT 1) AS rate
        FROM cur, cal)"""

    def eur(amount: str, currency: str, on: str, alias: str) -> tuple[str, str]:
        value = (
            f"CASE WHEN {currency} = 'EUR' THEN {amount} ELSE round({amount} / {alias}.rate) END"
        )
        join = f"LEFT JOIN rates {alias} ON {alias}.currency = {currency} AND {alias}.day = {on}"
        return value, join

    kinds = """
        CASE WHEN kind = 'refund_paid' THEN -amount ELSE 0 END AS refunds,
        CASE WHEN kind IN ('return_label', 'handling_fee', 'outbound_shipping_unrecovered',
            'duties_unrecovered', 'other_cost') THEN -amount ELSE 0 END AS return_costs,
        CASE WHEN kind IN ('restocking_fee_kept', 'return_label_recovered', 'residual_value',
            'claim_reimbursed', 'other_recovery') THEN amount ELSE 0 END AS recoveries"""

    def entry_skus(entries: str) -> str:
        return f"""
    direct AS (SELECT sku, kind, amount FROM {entries} WHERE sku IS NOT NULL),
    by_return AS (
        SELECT l.sku, e.kind, e.amount, e.id,
               l.unit_price_minor * CASE WHEN rl.approved <> 0 THEN rl.approved
                                         ELSE rl.requested END AS w
        FROM {entries} e JOIN return_lines rl ON rl.return_id = e.return_id
        JOIN order_lines l ON l.id = rl.order_line_id
        WHERE e.sku IS NULL AND e.return_id IS NOT NULL),
    by_order AS (
        SELECT l.sku, e.kind, e.amount, e.id,
               GREATEST(l.unit_price_minor * l.quantity + l.tax_minor - l.discount_minor, 0) AS w
        FROM {entries} e JOIN order_lines l ON l.order_id = e.order_id
        WHERE e.sku IS NULL AND e.return_id IS NULL),
    split AS (
        SELECT sku, kind, round(amount * w / NULLIF(sum(w) OVER (PARTITION BY id), 0)) AS amount
        FROM (SELECT * FROM by_return UNION ALL SELECT * FROM by_order) s),
    entry_parts AS (SELECT * FROM direct UNION ALL SELECT * FROM split)"""

    if which == "net_profit":
        revenue, rjoin = eur("o.captured_minor", "o.currency", day("o.ordered_at"), "r")
        amount, ejoin = eur("e.amount_minor", "e.currency", "e.occurred_on", "r")
        return [
            f"""
    WITH {rates},
    orders_eur AS (
        SELECT o.id, {revenue} AS revenue FROM orders o {rjoin}
        WHERE o.ordered_at >= TIMESTAMP '{first}' AND o.ordered_at < TIMESTAMP
            '{last + timedelta(days=1)}'),
    sales AS (
        SELECT l.sku,
               round(o.revenue * GREATEST(l.unit_price_minor * l.quantity + l.tax_minor
                   - l.discount_minor, 0) / NULLIF(sum(GREATEST(l.unit_price_minor * l.quantity
                   + l.tax_minor - l.discount_minor, 0)) OVER (PARTITION BY l.order_id), 0))
                   AS revenue,
               COALESCE(p.unit_cost_minor * l.quantity, 0) AS cost
        FROM order_lines l JOIN orders_eur o ON o.id = l.order_id
        LEFT JOIN products p ON p.id = l.product_id),
    entries_eur AS (
        SELECT e.id, e.kind, e.sku, e.order_id, e.return_id, {amount} AS amount
        FROM ledger_entries e {ejoin}
        WHERE e.occurred_on BETWEEN DATE '{first}' AND DATE '{last}'),
    {entry_skus("entries_eur")},
    parts AS (
        SELECT sku, revenue, cost, 0 AS refunds, 0 AS return_costs, 0 AS recoveries
        FROM sales
        UNION ALL SELECT sku, 0, 0, refunds, return_costs, recoveries
        FROM (SELECT sku, {kinds} FROM entry_parts) k)
    SELECT sku, sum(revenue), sum(cost), sum(refunds), sum(return_costs), sum(recoveries),
           sum(revenue) - sum(cost) - sum(refunds) - sum(return_costs) + sum(recoveries)
    FROM parts GROUP BY sku ORDER BY sku"""
        ]
    if which == "reserve":
        start, hold = END - timedelta(days=179), END - timedelta(days=29)
        amount, ejoin = eur("e.amount_minor", "e.currency", "e.occurred_on", "r")
        return [
            f"""
    WITH {rates},
    sold AS (
        SELECT l.id, l.sku, l.quantity, o.ordered_at >= TIMESTAMP '{hold}' AS hold
        FROM order_lines l JOIN orders o ON o.id = l.order_id
        WHERE o.ordered_at >= TIMESTAMP '{start}'
          AND o.ordered_at < TIMESTAMP '{END + timedelta(days=1)}'),
    returned AS (
        SELECT rl.return_id, s.sku, rl.approved FROM return_lines rl
        JOIN sold s ON s.id = rl.order_line_id JOIN returns r ON r.id = rl.return_id
        WHERE r.status NOT IN ('cancelled', 'expired', 'rejected') AND rl.approved > 0),
    entries_eur AS (
        SELECT e.id, e.kind, e.sku, e.order_id, e.return_id, {amount} AS amount
        FROM ledger_entries e {ejoin}
        WHERE e.return_id IN (SELECT return_id FROM returned) AND e.occurred_on <= DATE '{END}'),
    {entry_skus("entries_eur")},
    ledger AS (SELECT sku, sum(amount) AS amount FROM entry_parts GROUP BY sku),
    units AS (SELECT sku, sum(approved) AS units FROM returned GROUP BY sku),
    sales AS (SELECT sku, sum(quantity) AS sold,
                     sum(CASE WHEN hold THEN quantity ELSE 0 END) AS hold FROM sold GROUP BY sku)
    SELECT s.sku, s.sold, s.hold, COALESCE(u.units, 0), COALESCE(g.amount, 0)
    FROM sales s LEFT JOIN units u ON u.sku = s.sku LEFT JOIN ledger g ON g.sku = s.sku"""
        ]
    if pg:
        elements = "CROSS JOIN LATERAL json_array_elements(f.lines) AS x(v)"
    else:
        elements = "CROSS JOIN LATERAL (SELECT unnest(from_json(f.lines, '[\"JSON\"]')) AS v) x"
    exposures = f"""
    WITH parts AS (
        SELECT f.id, f.currency, {day("COALESCE(f.settled_at, f.updated_at)")} AS day,
               x.v->>'return_line_id' AS rlid, CAST(x.v->>'quantity' AS INTEGER) AS q,
               CAST(x.v->>'total' AS BIGINT) AS total
        FROM refunds f {elements}
        WHERE f.status = 'succeeded'),
    paid AS (
        SELECT p.*, rl.received, rl.inspected, ol.sku,
               COALESCE(sum(p.q) OVER (PARTITION BY p.rlid ORDER BY p.day, p.id
                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS start
        FROM parts p JOIN return_lines rl ON CAST(rl.id AS VARCHAR) = p.rlid
        JOIN returns r ON r.id = rl.return_id JOIN order_lines ol ON ol.id = rl.order_line_id
        WHERE r.status <> 'resolved' AND p.day <= DATE '{END}'),
    covered AS (
        SELECT *, LEAST(GREATEST(received - start, 0), q) AS cov,
                  LEAST(GREATEST(inspected - start, 0), q) AS chk FROM paid),
    exposures AS (
        SELECT id, rlid, sku, currency, day, q - cov AS nr_units,
               total - {idiv("total * cov", "q")} AS nr, cov - chk AS ni_units,
               {idiv("total * cov", "q")} - {idiv("total * chk", "q")} AS ni
        FROM covered WHERE q > cov OR cov > chk)"""
    nr, join = eur("x.nr", "x.currency", "x.day", "r")
    ni, _ = eur("x.ni", "x.currency", "x.day", "r")
    bucket = (
        f"CASE WHEN x.day >= DATE '{END - timedelta(days=7)}' THEN '0-7' "
        f"WHEN x.day >= DATE '{END - timedelta(days=14)}' THEN '8-14' "
        f"WHEN x.day >= DATE '{END - timedelta(days=30)}' THEN '15-30' "
        f"WHEN x.day >= DATE '{END - timedelta(days=60)}' THEN '31-60' ELSE '>60' END"
    )
    return [
        f"""{exposures}, {rates}
    SELECT {bucket} AS age, count(DISTINCT x.id), sum(x.nr_units), sum({nr}), sum(x.ni_units),
           sum({ni})
    FROM exposures x {join} GROUP BY 1""",
        f"""{exposures}
    SELECT id, rlid, sku, currency, day, nr_units, nr, ni_units, ni
    FROM exposures ORDER BY day, id, rlid""",
    ]


def time_best(run: Callable[[], int], repeat: int) -> tuple[float, int]:
    best, rows = float("inf"), 0
    for _ in range(repeat):
        started = time.perf_counter()
        rows = run()
        best = min(best, time.perf_counter() - started)
    return best, rows


def export_parquet(conninfo: str, folder: Path) -> None:
    tables = {
        "orders": "id, currency, timezone('UTC', ordered_at) AS ordered_at, captured_minor",
        "order_lines": "id, order_id, product_id, sku, quantity, unit_price_minor, tax_minor, "
        "discount_minor",
        "products": "id, sku, unit_cost_minor, cost_currency",
        "fx_rates": "day, base, quote, rate",
        "returns": "id, status",
        "return_lines": "id, return_id, order_line_id, requested, approved, received, inspected",
        "refunds": "id, currency, status, lines, timezone('UTC', settled_at) AS settled_at, "
        "timezone('UTC', updated_at) AS updated_at",
        "ledger_entries": "id, kind, amount_minor, currency, occurred_on, order_id, return_id, sku",
    }
    import duckdb

    duck = duckdb.connect()
    with psycopg.connect(conninfo) as conn:
        for table, columns in tables.items():
            csv_path = folder / f"{table}.csv"
            with (
                conn.cursor() as cur,
                cur.copy(
                    f"COPY (SELECT {columns} FROM {table}) TO STDOUT (FORMAT csv, HEADER)"
                ) as copy,
                csv_path.open("wb") as out,
            ):
                for data in copy:
                    out.write(data)
            duck.execute(
                f"COPY (SELECT * FROM read_csv('{csv_path}', header = true, "
                f"all_varchar = {str(table == 'refunds').lower()})) "
                f"TO '{folder / table}.parquet' (FORMAT parquet)"
            )
            csv_path.unlink()
    duck.close()


def duckdb_connection(folder: Path) -> Any:
    import duckdb

    duck = duckdb.connect()
    for table in (
        "orders",
        "order_lines",
        "products",
        "fx_rates",
        "returns",
        "return_lines",
        "refunds",
        "ledger_entries",
    ):
        duck.execute(f"CREATE VIEW {table} AS SELECT * FROM '{folder / table}.parquet'")
    duck.execute("SET threads = 2")
    return duck


# --- main ---------------------------------------------------------------------------------


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--returns", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database at the end")
    parser.add_argument(
        "--reuse",
        metavar="NAME",
        help="run on a database an earlier --keep run loaded (migrated to head, rollups "
        "brought up to date; kept at the end)",
    )
    parser.add_argument("--no-duckdb", action="store_true")
    parser.add_argument("--no-sql", action="store_true", help="skip the plain SQL reference")
    parser.add_argument("--only", help="comma-separated reports (net_profit,reserve,money_at_risk)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--heap", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure_service(args.database_url, args.child, args.heap)))
        return 0

    admin = make_url(args.admin_url)
    if admin.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the benchmark creates and drops a database: local servers only")
    name = args.reuse or f"rg_report_bench_{uuid.uuid4().hex[:8]}"
    admin_info = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    url = admin.set(database=name).render_as_string(hide_password=False)
    conninfo = admin.set(drivername="postgresql", database=name).render_as_string(
        hide_password=False
    )
    if not args.reuse:
        with psycopg.connect(admin_info, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    print(f"database {name}; load average {os.getloadavg()[0]:.1f}")
    try:
        return run(args, url, conninfo)
    finally:
        if not args.keep and not args.reuse:
            with psycopg.connect(admin_info, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            print(f"dropped {name}")


def roll_up(url: str, conninfo: str) -> tuple[int, float]:
    """Build the report rollups (net profit, reserve) as the workers do after a load, then
    mark the last day changed: a live shop's today is always read raw. (months, seconds)"""
    from returnguard.kit.db import Database
    from returnguard.ledger import rollups
    from returnguard.ledger.rollup_models import ReportDirty

    db = Database(url)
    try:
        started = time.perf_counter()
        done = rollups.compact(db)
        seconds = time.perf_counter() - started
        with db.session() as session:
            session.add(ReportDirty(organization_id=uuid.UUID(ORG_ID), first_day=END, last_day=END))
    finally:
        db.dispose()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE report_rollups")
        conn.execute("VACUUM ANALYZE reserve_rollups")
    return len(done.built), seconds


def run(args: argparse.Namespace, url: str, conninfo: str) -> int:
    from returnguard.kit.migrate import upgrade
    from returnguard.ledger.repository import REPORT_WORK_MEM

    upgrade(url)
    started = time.perf_counter()
    if args.reuse:
        with psycopg.connect(conninfo) as conn:
            orders = conn.execute("SELECT count(*) FROM orders").fetchone()
        shop_orders = int(orders[0]) if orders else 0
        print(f"reusing {shop_orders:,} orders")
    else:
        print(f"loading {args.returns:,} returns …")
        with psycopg.connect(conninfo) as conn:
            shop_orders = build(conn, args.returns, args.seed).orders
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        print(f"loaded {shop_orders:,} orders in {time.perf_counter() - started:.0f} s")
    rolled = roll_up(url, conninfo)
    print(f"rolled up {rolled[0]} months in {rolled[1]:.0f} s (the workers' first pass)")

    # The service first (the figures that matter arrive early), then the references.
    results: list[list[Any]] = []
    chosen = args.only.split(",") if args.only else ["net_profit", "reserve", "money_at_risk"]
    with psycopg.connect(conninfo, autocommit=True) as conn:
        # The settings the service uses for its reports' transactions, for a fair match.
        conn.execute("SET jit = off")
        conn.execute(f"SET work_mem = '{REPORT_WORK_MEM}'")
        for which in chosen:
            runs = [service_in_child(url, which, heap=False) for _ in range(args.repeat)]
            best = min(runs, key=lambda r: r["seconds"])
            heap = service_in_child(url, which, heap=True)
            statements = reference_sql("postgresql", which)

            def plain(statements: list[str] = statements) -> int:
                return sum(len(conn.execute(s).fetchall()) for s in statements)

            sql_seconds = None if args.no_sql else time_best(plain, args.repeat)[0]
            rss = max(r["rss_growth"] for r in runs), max(r["rss_kept"] for r in runs)
            results.append([which, best, rss, heap, sql_seconds, None])
            print(
                f"  {which}: {json.dumps(best)}; plain SQL {sql_seconds};"
                f" load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    if not args.no_duckdb:
        folder = Path(tempfile.mkdtemp(prefix="rg-report-bench-"))
        started = time.perf_counter()
        export_parquet(conninfo, folder)
        duck = duckdb_connection(folder)
        print(f"exported to Parquet in {time.perf_counter() - started:.0f} s", flush=True)
        for result in results:
            duck_statements = reference_sql("duckdb", str(result[0]))

            def in_duck(statements: list[str] = duck_statements) -> int:
                return sum(len(duck.execute(s).fetchall()) for s in statements)

            result[5] = time_best(in_duck, args.repeat)[0]
            print(
                f"  {result[0]}: DuckDB {result[5]:.2f} s; load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
        duck.close()
        for path in folder.glob("*"):
            path.unlink()
        folder.rmdir()

    print()
    print(
        f"{args.returns:,} returns, {shop_orders:,} orders; best of {args.repeat}; "
        f"load average {os.getloadavg()[0]:.1f}; net profit from rollups ({rolled[0]} months "
        f"built in {rolled[1]:.0f} s) and the last day raw"
    )
    print(
        f"{'report':<14} {'service':>9} {'plain SQL':>10} {'DuckDB':>9} {'x SQL':>7} "
        f"{'x DuckDB':>9} {'RSS peak+':>10} {'RSS kept':>9} {'heap peak':>10}  rows"
    )
    for which, best, (rss, kept), heap, sql_seconds, duck_seconds in results:
        duck_text = f"{duck_seconds:8.2f}s" if duck_seconds else f"{'-':>9}"
        ratio = f"{best['seconds'] / duck_seconds:8.1f}x" if duck_seconds else f"{'-':>9}"
        sql_text = f"{sql_seconds:9.2f}s" if sql_seconds else f"{'-':>10}"
        sql_ratio = f"{best['seconds'] / sql_seconds:6.1f}x" if sql_seconds else f"{'-':>7}"
        print(
            f"{which:<14} {best['seconds']:8.2f}s {sql_text} {duck_text} "
            f"{sql_ratio} {ratio} {_mb(rss):>10} {_mb(kept):>9} "
            f"{_mb(heap['heap_peak']):>10}  {best['rows']:,}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
