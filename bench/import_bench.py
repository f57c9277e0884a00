"""CSV order import benchmark: `import orders` beside PostgreSQL COPY of the same file.

    python bench/import_bench.py                      # 100,000 rows
    python bench/import_bench.py --rows 1000000       # a million rows
    python bench/import_bench.py --rows 5000          # a smoke run, seconds
    python bench/import_bench.py --reimport           # also the same file again
    python bench/import_bench.py --sqlite             # the import into SQLite instead

It writes a CSV of N order lines in the importer's format to a temporary folder, creates
a fresh PostgreSQL database next to the one in ``--admin-url`` (127.0.0.1 only), migrates
it, and times:

1. the import through the project's own path (``import_orders_csv``, what ``returnguard
   import orders`` runs), committed: rows/s, and the peak resident memory of the process
   while it ran (VmHWM from /proc/self/status, reset just before);
2. with ``--reimport``, the same file again (every order unchanged, no new events);
3. PostgreSQL ``COPY … FROM STDIN (FORMAT csv)`` of the same file into a plain table of
   text columns, committed: the floor any import of this file can approach.

The ratio of the two is printed. The database is dropped at the end (``--keep-db`` keeps
it). The file is generated deterministically (``--seed``) from integers: three channels
(EUR, USD, JPY), 1 to 5 lines per order (1.6 on average), repeat buyers and a catalogue of
20,000 SKUs; about 1 % of multi-line orders have a row further down the file.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from returnguard.audit import service as audit_service
from returnguard.audit.models import Event
from returnguard.auth import service as auth
from returnguard.auth.actor import Actor
from returnguard.kit.db import Database
from returnguard.kit.migrate import upgrade
from returnguard.orders import bulk, importer
from returnguard.orders.importer import COLUMNS, ImportReport, import_orders_csv
from returnguard.orders.models import Order
from returnguard.orders.schemas import ChannelIn, Marketplace
from returnguard.orders.service import create_channel

GOAL_ROWS_PER_SECOND = 20_000
GOAL_PEAK_MIB = 300
# code, country, currency, share of orders (percent), minor units
CHANNELS = (
    ("amazon-de", "DE", "EUR", 70, 2),
    ("shop-us", "US", "USD", 20, 2),
    ("amazon-jp", "JP", "JPY", 10, 0),
)
SKUS = 20_000
START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Generated:
    rows: int
    orders: int
    size: int


def _amount(minor: int, digits: int) -> str:
    if digits == 0:
        return str(minor)
    whole, frac = divmod(minor, 10**digits)
    return f"{whole}.{frac:0{digits}d}"


def _orders(n_rows: int, seed: int) -> Iterator[list[dict[str, str]]]:
    """Orders (lists of rows) holding exactly ``n_rows`` rows in all."""
    rng = random.Random(seed)
    buyers = max(n_rows // 3, 1)
    written = number = 0
    weights = [share for *_, share, _ in CHANNELS]
    while written < n_rows:
        number += 1
        code, country, currency, _, digits = rng.choices(CHANNELS, weights)[0]
        roll = rng.randrange(100)
        n_lines = 1 if roll < 55 else 2 if roll < 85 else 3 if roll < 95 else rng.randint(4, 5)
        n_lines = min(n_lines, n_rows - written)
        ordered = START + timedelta(minutes=number * 7 + rng.randrange(7))
        shipping = rng.choice((0, 0, 399, 499)) * (10 if digits == 0 else 1)
        buyer = rng.randrange(buyers)
        lines: list[tuple[str, int, int, int, int]] = []
        for _ in range(n_lines):
            sku_number = rng.randrange(SKUS)
            quantity = 1 if rng.randrange(10) else rng.randint(2, 4)
            # A SKU sells at its list price, in three price books (one per currency).
            price = (299 + sku_number * 7919 % 19_700) * (10 if digits == 0 else 1)
            tax = price * quantity * 7 // 100 if code == "shop-us" else 0
            discount = rng.choice((0, 0, 0, 100)) * (10 if digits == 0 else 1)
            discount = min(discount, price * quantity)
            lines.append((f"SKU-{sku_number:05d}", quantity, price, tax, discount))
        captured = shipping + sum(q * p + t - d for _, q, p, t, d in lines)
        order = {
            "channel": code,
            "order_id": f"{code[:2].upper()}-{number:09d}",
            "ordered_at": ordered.isoformat(),
            "delivered_at": (ordered + timedelta(days=rng.randint(1, 6))).date().isoformat(),
            "currency": currency,
            "captured": _amount(captured, digits),
            "shipping": _amount(shipping, digits) if shipping else "",
            "buyer_id": f"B-{code}-{buyer:08d}",
            "buyer_email": f"buyer{buyer}@example.com",
            "buyer_name": f"Buyer {buyer}",
            "buyer_country": country,
            "ship_to_country": country,
            "payment_reference": f"pi_{number:012d}" if code == "shop-us" else "",
        }
        rows = []
        for i, (sku, quantity, price, tax, discount) in enumerate(lines, start=1):
            rows.append(
                order
                | {
                    "line_id": f"{i}",
                    "sku": sku,
                    "title": f"Product {sku}",
                    "quantity": str(quantity),
                    "unit_price": _amount(price, digits),
                    "tax": _amount(tax, digits) if tax else "",
                    "discount": _amount(discount, digits) if discount else "",
                    "asin": "",
                    "category": ("kitchen", "toys", "apparel", "electronics")[int(sku[-1]) % 4],
                }
            )
        written += len(rows)
        yield rows


def write_file(path: Path, n_rows: int, seed: int) -> Generated:
    """Stream the file to disk; ~1 % of multi-line orders get their last row written
    a few hundred rows later (orders need not be contiguous in the format)."""
    rng = random.Random(seed + 1)
    orders = rows = 0
    held: list[tuple[int, dict[str, str]]] = []
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for order in _orders(n_rows, seed):
            orders += 1
            if len(order) > 1 and rng.randrange(100) == 0:
                held.append((rows + rng.randint(100, 800), order.pop()))
            writer.writerows(order)
            rows += len(order)
            while held and held[0][0] <= rows:
                writer.writerow(held.pop(0)[1])
                rows += 1
        for _, row in held:
            writer.writerow(row)
            rows += 1
    return Generated(rows, orders, path.stat().st_size)


def _status(name: str) -> int:
    """A VmXXX figure of this process in bytes (0 where /proc is not there)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class Breakdown:
    """Wall-clock seconds spent in named functions, by patching them for the run.

    ``events`` is the event log's own work at commit (chaining, hashing, inserting the
    events): measured to tell the import's cost from the audit trail's. Functions that do
    not exist (an older or newer layout of the code) are simply not measured. Reading
    and checking run in the main thread, writing in the importer's writer thread at the
    same time, so the steps' wall-clock seconds add up to more than the import's.
    """

    TARGETS = (
        ("first pass (scan)", importer, "_scan"),
        ("checking rows", importer, "_build_order"),
        ("bulk upsert", importer, "upsert_orders"),
        ("  of which new orders", bulk._Batch, "_insert_orders"),
        ("  of which buyers", bulk._Batch, "_write_buyers"),
        ("  of which products", bulk._Batch, "_insert_products"),
        ("  of which COPY/INSERTs", bulk, "_insert_tuples"),
        ("  of which insert_missing", bulk, "insert_missing"),
        ("  of which record_created", audit_service, "record_created"),
        ("events at commit", audit_service, "_write_pending"),
        ("  of which chain heads", audit_service, "current_heads"),
        ("  of which subject locks", audit_service, "_lock_subjects"),
        ("event.record calls", audit_service, "record"),
    )

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}  # this process's CPU time: the share of the cores
        self._saved: list[tuple[Any, str, Any]] = []

    def __enter__(self) -> Breakdown:
        for label, owner, name in self.TARGETS:
            original = getattr(owner, name, None)
            if original is None:
                continue
            self._saved.append((owner, name, original))
            setattr(owner, name, self._timed(label, original))
        return self

    def __exit__(self, *_: object) -> None:
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)

    def _timed(self, label: str, function: Any) -> Any:
        seconds, cpu = self.seconds, self.cpu

        def timed(*args: Any, **kwargs: Any) -> Any:
            # The calling thread's CPU: the importer writes in a thread of its own while
            # the main thread reads the next chunk, so process CPU would mix the two.
            started, cpu_started = time.perf_counter(), time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                seconds[label] = seconds.get(label, 0.0) + time.perf_counter() - started
                cpu[label] = cpu.get(label, 0.0) + time.thread_time() - cpu_started

        return timed


def server_cpu(database: str) -> float:
    """CPU seconds (user + system) used so far by the PostgreSQL backends serving
    ``database`` (the server runs on this machine; 0 where /proc is not there, and for
    SQLite, which runs in this process). On a
    shared machine wall-clock time says little; the two processes' CPU says where the
    work is. Backends that ended (a connection closed) are not counted."""
    total = 0
    marker = f" {database} ".encode()
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return 0.0
    for pid in pids:
        try:
            if marker not in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" "):
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


@dataclass
class Timed:
    report: ImportReport
    seconds: float
    cpu: float
    peak: int
    server_cpu: float = 0.0


def timed_import(db: Database, org_id: uuid.UUID, path: Path, chunk_size: int | None) -> Timed:
    reset = _reset_peak()
    before = _status("VmHWM")
    kwargs: dict[str, Any] = {} if chunk_size is None else {"chunk_size": chunk_size}
    database = make_url(db.url).database or ""
    server = server_cpu(database)
    started, cpu = time.perf_counter(), time.process_time()
    report = import_orders_csv(db, org_id, path, **kwargs)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    server = server_cpu(database) - server
    peak = _status("VmHWM")
    return Timed(report, seconds, cpu, peak if reset else max(peak, before), server)


def copy_file(url: str, path: Path) -> float:
    """COPY the file into a plain table of text columns; seconds until committed."""
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as conn:
        columns = ", ".join(f'"{c}" text' for c in COLUMNS)
        conn.execute(f"CREATE TABLE bench_copy ({columns})")
        conn.commit()
        started = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy("COPY bench_copy FROM STDIN (FORMAT csv, HEADER true)") as copy,
            path.open("rb") as f,
        ):
            while block := f.read(1 << 20):
                copy.write(block)
        conn.commit()
        return time.perf_counter() - started


def _mib(n: int) -> float:
    return n / 2**20


def _line(label: str, t: Timed, rows: int) -> str:
    r = t.report
    return (
        f"{label:<16}{t.seconds:8.2f} s {rows / t.seconds:>10,.0f} rows/s  cpu {t.cpu:6.2f} s  "
        f"server cpu {t.server_cpu:6.2f} s  peak RSS {_mib(t.peak):6.1f} MiB  "
        f"({r.summary()}; unchanged {r.orders_unchanged:,})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=100_000, help="order lines in the file")
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument(
        "--admin-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        help="a PostgreSQL server on 127.0.0.1 where a scratch database may be created",
    )
    parser.add_argument("--chunk-size", type=int, help="orders per chunk (the importer's own)")
    parser.add_argument("--reimport", action="store_true", help="import the same file again")
    parser.add_argument(
        "--breakdown", action="store_true", help="time the import's steps (a little slower)"
    )
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database")
    parser.add_argument(
        "--sqlite",
        action="store_true",
        help="import into a SQLite file in the temporary folder (COPY still on PostgreSQL)",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)

    admin_url = make_url(args.admin_url)
    if admin_url.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("--admin-url must point at a server on this machine (127.0.0.1)")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} cores, load average {load}")

    name = f"rg_import_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "orders.csv"
        started = time.perf_counter()
        generated = write_file(path, max(args.rows, 1), args.seed)
        print(
            f"file: {generated.rows:,} rows, {generated.orders:,} orders, "
            f"{_mib(generated.size):.1f} MiB (written in {time.perf_counter() - started:.1f} s)"
        )
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        pg_url = admin_url.set(database=name).render_as_string(hide_password=False)
        url = f"sqlite:///{Path(folder) / 'bench.sqlite3'}" if args.sqlite else pg_url
        db: Database | None = None
        try:
            upgrade(url)
            db = Database(url)
            with db.session() as session:
                org = auth.create_organization(session, "Import bench", "EUR")
                actor = Actor.system(org.id, "bench")
                for code, country, currency, *_ in CHANNELS:
                    create_channel(
                        session,
                        actor,
                        ChannelIn(
                            code=code,
                            name=code,
                            marketplace=Marketplace.OTHER,
                            country=country,
                            currency=currency,
                        ),
                    )
            with db.session() as session:
                events_before = session.scalar(select(func.count()).select_from(Event)) or 0

            if args.breakdown:
                with Breakdown() as breakdown:
                    first = timed_import(db, org.id, path, args.chunk_size)
            else:
                first = timed_import(db, org.id, path, args.chunk_size)
            print(_line("import:", first, generated.rows))
            if args.breakdown:
                for label, *_ in Breakdown.TARGETS:
                    if label in breakdown.seconds:
                        print(
                            f"  {label:<28}{breakdown.seconds[label]:8.2f} s"
                            f"  cpu {breakdown.cpu[label]:7.2f} s"
                        )
            with db.session() as session:
                orders = session.scalar(select(func.count()).select_from(Order)) or 0
                events = (session.scalar(select(func.count()).select_from(Event)) or 0) - (
                    events_before
                )
            assert first.report.rows_imported == generated.rows, first.report.summary()
            assert first.report.orders_created == generated.orders == orders, orders
            assert events == orders, f"{events} events for {orders} orders"

            if args.reimport:
                again = timed_import(db, org.id, path, args.chunk_size)
                print(_line("same file again:", again, generated.rows))
                assert again.report.orders_unchanged == generated.orders, again.report.summary()

            copy_seconds = copy_file(pg_url, path)
            copy_rate = generated.rows / copy_seconds
            print(f"{'COPY:':<16}{copy_seconds:8.2f} s {copy_rate:>10,.0f} rows/s")
        finally:
            if db is not None:
                db.dispose()
            if not args.keep_db:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

    rate = generated.rows / first.seconds
    ratio = first.seconds / copy_seconds
    rate_ok = rate >= GOAL_ROWS_PER_SECOND
    memory_ok = 0 < first.peak < GOAL_PEAK_MIB * 2**20
    print(f"import / COPY: {ratio:.1f}x slower")
    print(
        f"goal >= {GOAL_ROWS_PER_SECOND:,} rows/s: {rate:,.0f} {'PASS' if rate_ok else 'FAIL'}; "
        f"goal peak < {GOAL_PEAK_MIB} MiB: {_mib(first.peak):.1f} MiB "
        f"{'PASS' if memory_ok else 'FAIL'}"
        + ("" if args.keep_db else f"; database {name} dropped")
    )
    return 1 if args.strict and not (rate_ok and memory_ok) else 0


if __name__ == "__main__":
    raise SystemExit(main())
