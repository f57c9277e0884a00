"""Scale benchmark: ReturnGuard on PostgreSQL with a large shop, each figure beside its reference.

    python bench/scale_bench.py                       # 100,000 returns (375,000 orders)
    python bench/scale_bench.py --returns 1000000     # 1M returns (3.75M orders)
    python bench/scale_bench.py --quick               # small sizes, about a minute
    python bench/scale_bench.py --only writers,rate   # some sections only

It creates a fresh PostgreSQL database on 127.0.0.1 (``--admin-url``), migrates it and
loads the shop of ``report_bench.build`` (N returns in every state with their orders,
refunds and ledger entries, by COPY), then measures, with ``returnguard serve --workers
2`` on a free 127.0.0.1 port where HTTP is involved (all load goes to 127.0.0.1, bounded
in count and time):

- **reports**: net profit by SKU, the reserve and money at risk through the service (each
  run in a fresh process: time and peak RSS growth), beside the same aggregation in plain
  SQL and in DuckDB over the same rows as Parquet (``report_bench``), at N/10 and N
  returns, and how each grows;
- **list**: the first page of filtered return lists over HTTP, beside the bare SQL of the
  same three queries (returns, their lines, their order lines) run with psycopg;
- **rate**: return creation at a fixed 50 requests/s (open loop: sends on a clock, latency
  from the scheduled send), beside ``/healthz`` at the same rate;
- **writers**: 1, 4 and 16 clients each creating an order (shared new SKUs and buyers),
  a return, approving, receiving, inspecting and refunding it, in one organization:
  throughput, p50/p99, 5xx, deadlocks (server log lines and ``pg_stat_database``), writes
  lost; ratios to one client;
- **workers**: 1 and 2 ``returnguard worker`` processes draining the same backlog of
  webhook deliveries to a sink on 127.0.0.1: messages/s, each event delivered once,
  beside the sink's own speed from one client;
- **import**: the orders CSV import (``import_bench``) at N/10 and N rows beside COPY of
  the same file, each in a fresh process (peak RSS).

The databases are dropped at the end (``--keep`` keeps the main one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import import_bench
import psycopg
import report_bench
from sqlalchemy.engine import make_url

RETURNGUARD = str(Path(sys.executable).parent / "returnguard")
SECTIONS = ("reports", "list", "rate", "writers", "workers", "import")
GOAL_LIST_MS = 50.0
GOAL_RATE_P99_MS = 50.0
GOAL_REPORT_S = 2.0
GOAL_REPORT_DUCK_RATIO = 3.0
GOAL_REPORT_RSS_MB = 200
LOG_DIR = Path("/var/log/postgresql")


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of ``values``; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def pg_info(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def create_database(admin_url: str, prefix: str) -> tuple[str, str]:
    """A new database next to ``admin_url``: (its name, its SQLAlchemy URL)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_info(admin_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(pg_info(admin_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def build_shop(url: str, returns: int, seed: int) -> report_bench.Shop:
    """Migrate and load report_bench's shop of ``returns`` returns; VACUUM ANALYZE it."""
    from returnguard.kit.migrate import upgrade

    upgrade(url)
    started = time.perf_counter()
    print(f"loading {returns:,} returns …", flush=True)
    with psycopg.connect(pg_info(url)) as conn:
        shop = report_bench.build(conn, returns, seed)
    with psycopg.connect(pg_info(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    print(f"loaded {shop.orders:,} orders in {time.perf_counter() - started:.0f} s", flush=True)
    return shop


# --- deadlocks: the server log and pg_stat_database ---------------------------------------


class DeadlockWatch:
    """Counts deadlocks of one database: "deadlock detected" lines appended to the
    PostgreSQL log since ``start()``, and the growth of ``pg_stat_database.deadlocks``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.database = make_url(url).database or ""
        logs = sorted(LOG_DIR.glob("postgresql-*.log"), key=lambda p: p.stat().st_mtime)
        self.log = logs[-1] if logs else None
        self.offset = 0
        self.stat = 0

    def _stat(self) -> int:
        with psycopg.connect(pg_info(self.url), autocommit=True) as conn:
            row = conn.execute(
                "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
            ).fetchone()
        return int(row[0]) if row else 0

    def start(self) -> None:
        self.offset = self.log.stat().st_size if self.log else 0
        self.stat = self._stat()

    def log_lines(self) -> int | None:
        """Deadlocks of this database logged since start() (None: no readable log)."""
        if self.log is None:
            return None
        try:
            with self.log.open("rb") as f:
                f.seek(self.offset)
                text = f.read().decode(errors="replace")
        except OSError:
            return None
        return sum(
            1
            for line in text.splitlines()
            if "deadlock detected" in line and f"@{self.database} " in line
        )

    def stat_growth(self, settle: float = 11.0) -> int:
        # Backends send their counters to the statistics at most every 10 s when idle
        # (PGSTAT_IDLE_INTERVAL): wait that long so a deadlock of the last second counts.
        time.sleep(settle)
        return self._stat() - self.stat


# --- the server under test ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _environment(url: str, folder: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETURNGUARD_")}
    # The webhook sink listens on loopback, which production refuses (kit/egress.py).
    local = {"RETURNGUARD_OUTBOUND_ALLOWED_NETWORKS": "127.0.0.0/8,::1"}
    return (
        env
        | {"RETURNGUARD_DATABASE_URL": url, "RETURNGUARD_STORAGE_DIR": str(folder)}
        | local
        | extra
    )


def _stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM to the process group we started, then SIGKILL to what is left of it."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout)


@dataclass
class Server:
    base_url: str
    log_file: Path
    pid: int  # of the process group: the serve command and its worker processes

    @property
    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def first_traceback(self) -> str | None:
        log = self.log
        at = log.find("Traceback (most recent call last)")
        return log[at : at + 4000] if at >= 0 else None


@contextmanager
def serving(url: str, workers: int, folder: Path) -> Iterator[Server]:
    """``returnguard serve --workers N`` on a free port, up once every process started."""
    port = free_port()
    log_file = folder / f"serve-{port}.log"
    with log_file.open("wb") as out:
        process = subprocess.Popen(
            [
                RETURNGUARD,
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--no-migrate",
            ],
            cwd=folder,
            env=_environment(url, folder / "files"),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(f"http://127.0.0.1:{port}", log_file, process.pid)
    try:
        deadline = time.monotonic() + 120
        while server.log.count("Application startup complete.") < workers:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve did not start: {server.log[-3000:]}")
            time.sleep(0.2)
        while httpx.get(server.base_url + "/healthz", timeout=10).status_code != 200:
            time.sleep(0.2)
        yield server
    finally:
        _stop(process)


def _cpu_seconds(wanted: Callable[[int, int], bool]) -> dict[int, float]:
    """User + system CPU seconds of the processes for which ``wanted(pid, pgid)``."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if wanted(int(entry.name), int(fields[2])):
            found[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    return found


class CpuMeter:
    """CPU time spent by the server's processes and by the PostgreSQL backends of the
    bench database between start() and stop(): the cost of a request, which the load of
    the shared machine inflates much less than its latency."""

    def __init__(self, server: Server, url: str) -> None:
        self.server, self.url = server, url
        self.before: tuple[dict[int, float], dict[int, float]] = ({}, {})

    def _sample(self) -> tuple[dict[int, float], dict[int, float]]:
        with psycopg.connect(pg_info(self.url), autocommit=True) as conn:
            backends = {
                int(r[0])
                for r in conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()"
                )
            }
        group = self.server.pid
        return (
            _cpu_seconds(lambda pid, pgid: pgid == group),
            _cpu_seconds(lambda pid, pgid: pid in backends),
        )

    def start(self) -> None:
        self.before = self._sample()

    def stop(self) -> tuple[float, float]:
        """(server, PostgreSQL) CPU seconds since start()."""
        (server, postgres), (server_before, postgres_before) = self._sample(), self.before
        return (
            sum(cpu - server_before.get(pid, 0.0) for pid, cpu in server.items()),
            sum(cpu - postgres_before.get(pid, 0.0) for pid, cpu in postgres.items()),
        )


def api_key(url: str, organization_id: uuid.UUID) -> str:
    from returnguard.auth import service as auth
    from returnguard.kit.db import Database

    db = Database(url)
    try:
        with db.session() as session:
            _, plain = auth.create_api_key(
                session, organization_id, name="scale bench", role="admin"
            )
    finally:
        db.dispose()
    return plain


def client(base_url: str, key: str, connections: int = 4) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )


# --- HTTP load ------------------------------------------------------------------------------


@dataclass
class Stats:
    """What one load run saw: latencies per kind of request, statuses, failures, and the
    ids of everything the server said it wrote."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    ids: dict[str, list[str]] = field(
        default_factory=lambda: {"orders": [], "returns": [], "refunds": []}
    )

    def all(self) -> list[float]:
        return [x for values in self.latencies.values() for x in values]

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def succeeded(self) -> int:
        return sum(n for code, n in self.statuses.items() if 200 <= code < 300)

    @property
    def server_errors(self) -> int:
        return sum(n for code, n in self.statuses.items() if code >= 500)

    async def call(
        self,
        http: httpx.AsyncClient,
        kind: str,
        path: str,
        body: Any,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """POST ``body`` and return the JSON answer, or None (recorded) if it was not 2xx."""
        started = time.perf_counter()
        try:
            r = await http.post(path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            self.statuses[0] += 1
            self.failures.append(f"{kind}: {type(exc).__name__}: {exc}")
            return None
        self.latencies.setdefault(kind, []).append(time.perf_counter() - started)
        self.statuses[r.status_code] += 1
        if not 200 <= r.status_code < 300:
            self.failures.append(f"{kind} POST {path} -> {r.status_code}: {r.text[:400]}")
            return None
        return r.json()


def order_body(tag: str, writer: int, n: int) -> dict[str, Any]:
    """An order whose buyer and new SKU the other writers use at the same moment (the
    same ``n``), its lines listed in the opposite order by every other writer."""
    now = datetime.now(UTC)
    skus = [f"SKU-{n * 7 % 100:05d}", f"NEW-{tag}-{n // 3}"]
    if writer % 2:
        skus.reverse()
    buyer = n % 7
    return {
        "channel": "amazon-de",
        "external_id": f"SCALE-{tag}-{writer}-{n}",
        "currency": "EUR",
        "ordered_at": (now - timedelta(days=3)).isoformat(),
        "delivered_at": (now - timedelta(days=1)).isoformat(),
        "buyer": {
            "external_id": f"scale-{tag}-{buyer}",
            "email": f"scale.{tag}.{buyer}@example.com",
            "country": "DE",
        },
        "captured": {"amount": "49.98", "currency": "EUR"},
        "lines": [
            {
                "external_id": f"item-{i}",
                "sku": sku,
                "title": sku,
                "quantity": 1,
                "unit_price": {"amount": "24.99", "currency": "EUR"},
            }
            for i, sku in enumerate(skus)
        ],
    }


async def write_cycle(http: httpx.AsyncClient, stats: Stats, tag: str, writer: int, n: int) -> None:
    """Order, return, approve, receive, inspect, refund: six writes, stopping at a failure."""
    order = await stats.call(http, "order", "/api/v1/orders", order_body(tag, writer, n))
    if order is None:
        return
    stats.ids["orders"].append(order["id"])
    body = {
        "order_id": order["id"],
        "decide": False,
        "lines": [
            {
                "order_line_id": order["lines"][0]["id"],
                "quantity": 1,
                "reason_code": "changed_mind",
            }
        ],
    }
    ret = await stats.call(http, "return", "/api/v1/returns", body)
    if ret is None:
        return
    stats.ids["returns"].append(ret["id"])
    rid, line = ret["id"], ret["lines"][0]["id"]
    steps: list[tuple[str, str, Any]] = [
        ("approve", f"/api/v1/returns/{rid}/approve", {"note": "scale bench"}),
        (
            "receive",
            f"/api/v1/returns/{rid}/receive",
            {"lines": [{"return_line_id": line, "quantity": 1}]},
        ),
        (
            "inspect",
            f"/api/v1/returns/{rid}/inspections",
            {"lines": [{"return_line_id": line, "passed": 1, "failed": 0}]},
        ),
    ]
    for kind, path, step in steps:
        if await stats.call(http, kind, path, step) is None:
            return
    refund = await stats.call(
        http,
        "refund",
        f"/api/v1/returns/{rid}/refunds",
        {"lines": [{"return_line_id": line, "quantity": 1}]},
        headers={"Idempotency-Key": f"scale-{tag}-{writer}-{n}"},
    )
    if refund is not None:
        stats.ids["refunds"].append(refund["id"])


async def writers_run(base_url: str, key: str, clients: int, seconds: float) -> tuple[Stats, float]:
    """``clients`` writers, each running cycles back to back until ``seconds`` are up (a
    cycle under way is finished); returns the stats and the wall time."""
    stats, tag = Stats(), uuid.uuid4().hex[:6]
    deadline = time.perf_counter() + seconds

    async def one(writer: int) -> None:
        async with client(base_url, key, connections=1) as http:
            n = 0
            while time.perf_counter() < deadline:
                await write_cycle(http, stats, tag, writer, n)
                n += 1

    started = time.perf_counter()
    await asyncio.gather(*(one(w) for w in range(clients)))
    return stats, time.perf_counter() - started


def lost_writes(url: str, stats: Stats) -> dict[str, int]:
    """Of the ids the server answered 2xx for, how many are not in the database."""
    lost = {}
    with psycopg.connect(pg_info(url)) as conn:
        for table, ids in stats.ids.items():
            row = conn.execute(
                f"SELECT count(*) FROM {table} WHERE id = ANY(%s::uuid[])", (ids,)
            ).fetchone()
            lost[table] = len(set(ids)) - (int(row[0]) if row else 0)
    return lost


async def fixed_rate(
    send: Callable[[httpx.AsyncClient, int], Awaitable[int]],
    base_url: str,
    key: str,
    rate: float,
    seconds: float,
) -> tuple[list[float], Counter[int], float]:
    """Open loop: request i is sent at start + i / rate whatever the earlier ones are
    doing; latency counts from that scheduled moment. Returns latencies, statuses and how
    late the sends were at worst."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    late = 0.0
    async with client(base_url, key, connections=64) as http:
        # Warm the connections, so the first sends do not pay for TCP set-up.
        await asyncio.gather(*(http.get("/healthz") for _ in range(8)))

        async def timed(i: int, at: float) -> None:
            try:
                status = await send(http, i)
            except httpx.HTTPError:
                status = 0
            latencies.append(time.perf_counter() - at)
            statuses[status] += 1

        tasks = []
        start = time.perf_counter() + 0.1
        for i in range(int(rate * seconds)):
            at = start + i / rate
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            late = max(late, time.perf_counter() - at)
            tasks.append(asyncio.create_task(timed(i, at)))
        await asyncio.gather(*tasks)
    return latencies, statuses, late


def unreturned_orders(shop: report_bench.Shop, count: int) -> list[tuple[str, str]]:
    """(order id, first line id) of orders the loaded shop has no return for."""
    stride = 1_000_003  # report_bench.load_returns maps return r to order r * stride % orders
    returned = {r * stride % shop.orders for r in range(shop.returns)}
    found = []
    for o in range(shop.orders):
        if o not in returned:
            found.append(
                (report_bench.ident(4, o), report_bench.ident(5, shop.order_first_line[o]))
            )
            if len(found) == count:
                break
    return found


# --- sections -------------------------------------------------------------------------------


@dataclass
class Context:
    args: argparse.Namespace
    url: str
    shop: report_bench.Shop
    folder: Path
    summary: list[str] = field(default_factory=list)

    def say(self, line: str) -> None:
        print(line, flush=True)
        self.summary.append(line)


def section_reports(ctx: Context) -> None:
    from returnguard.ledger.repository import REPORT_WORK_MEM

    args = ctx.args
    sizes = [max(args.returns // 10, 100), args.returns]
    figures: dict[int, dict[str, dict[str, Any]]] = {}
    for size in sizes:
        url, name = ctx.url, None
        if size != args.returns:
            name, url = create_database(args.admin_url, "rg_scale_reports")
        try:
            if name is not None:
                build_shop(url, size, args.seed)
            months, rollup_seconds = report_bench.roll_up(url, pg_info(url))
            ctx.say(
                f"  {size:,} returns: {months} months rolled up in {rollup_seconds:.0f} s "
                "(the workers' first pass); net profit then reads the last day raw"
            )
            folder = Path(tempfile.mkdtemp(prefix="rg-scale-parquet-", dir=ctx.folder))
            report_bench.export_parquet(pg_info(url), folder)
            duck = report_bench.duckdb_connection(folder)
            figures[size] = {}
            with psycopg.connect(pg_info(url), autocommit=True) as conn:
                conn.execute("SET jit = off")  # what the service sets for its reports
                conn.execute(f"SET work_mem = '{REPORT_WORK_MEM}'")
                for which in ("net_profit", "reserve", "money_at_risk"):
                    runs = [
                        report_bench.service_in_child(url, which, heap=False)
                        for _ in range(args.repeat)
                    ]
                    best = min(runs, key=lambda r: float(r["seconds"]))
                    pg_sql = report_bench.reference_sql("postgresql", which)
                    duck_sql = report_bench.reference_sql("duckdb", which)

                    def plain(statements: list[str] = pg_sql) -> int:
                        return sum(len(conn.execute(s).fetchall()) for s in statements)

                    def in_duck(statements: list[str] = duck_sql, duck: Any = duck) -> int:
                        return sum(len(duck.execute(s).fetchall()) for s in statements)

                    sql_seconds, _ = report_bench.time_best(plain, args.repeat)
                    duck_seconds, _ = report_bench.time_best(in_duck, args.repeat)
                    figures[size][which] = {
                        "seconds": best["seconds"],
                        "rss": max(int(r["rss_growth"]) for r in runs),
                        "rows": best["rows"],
                        "sql": sql_seconds,
                        "duck": duck_seconds,
                    }
            duck.close()
            shutil.rmtree(folder)
        finally:
            if name is not None:
                drop_database(args.admin_url, name)
    small, large = sizes
    ctx.say(f"reports (best of {args.repeat}; service in a fresh process each run):")
    for which in ("net_profit", "reserve", "money_at_risk"):
        for size in sizes:
            f = figures[size][which]
            ctx.say(
                f"  {which:<14} {size:>9,} returns: service {f['seconds']:6.2f} s | plain SQL "
                f"{f['sql']:6.2f} s ({f['seconds'] / f['sql']:4.1f}x) | DuckDB {f['duck']:6.2f} s "
                f"({f['seconds'] / f['duck']:4.1f}x) | RSS +{f['rss'] / 2**20:5.0f} MB | "
                f"{f['rows']:,} rows"
            )
        a, b = figures[small][which], figures[large][which]
        ok = (
            b["seconds"] < GOAL_REPORT_S
            and b["seconds"] / b["duck"] <= GOAL_REPORT_DUCK_RATIO
            and b["rss"] < GOAL_REPORT_RSS_MB * 2**20
        )
        ctx.say(
            f"  {which:<14} {large / small:.0f}x the returns: service "
            f"{b['seconds'] / a['seconds']:.1f}x the time, plain SQL {b['sql'] / a['sql']:.1f}x, "
            f"DuckDB {b['duck'] / a['duck']:.1f}x; "
            f"goal < {GOAL_REPORT_S:.0f} s, <= {GOAL_REPORT_DUCK_RATIO:.0f}x DuckDB, "
            f"RSS < {GOAL_REPORT_RSS_MB} MB at {large:,}: {'PASS' if ok else 'FAIL'}"
        )


LIST_FILTERS: tuple[tuple[str, list[str], str | None, str | None], ...] = (
    ("status=received&channel=amazon-de", ["received"], "amazon-de", None),
    ("status=requested", ["requested"], None, None),
    ("channel=shop-us&requested_from=2026-06-01T00:00:00Z", [], "shop-us", "2026-06-01"),
)


def _bare_list(
    conn: psycopg.Connection[Any], statuses: list[str], channel: str | None, since: str | None
) -> int:
    """The three queries the list endpoint runs, written by hand."""
    where, params = ["organization_id = %s"], list[Any]([report_bench.ORG_ID])
    if statuses:
        where.append("status = ANY(%s)")
        params.append(statuses)
    if channel:
        where.append(
            "channel_id = (SELECT id FROM channels WHERE organization_id = %s AND code = %s)"
        )
        params += [report_bench.ORG_ID, channel]
    if since:
        where.append("requested_at >= %s::timestamptz")
        params.append(since)
    rows = conn.execute(
        f"SELECT * FROM returns WHERE {' AND '.join(where)} "
        "ORDER BY requested_at DESC, id DESC LIMIT 51",
        params,
    ).fetchall()
    ids = [r[0] for r in rows[:50]]
    lines = conn.execute("SELECT * FROM return_lines WHERE return_id = ANY(%s)", (ids,)).fetchall()
    line_ids = list({ln[3] for ln in lines})
    conn.execute("SELECT * FROM order_lines WHERE id = ANY(%s)", (line_ids,)).fetchall()
    return len(rows)


async def section_list(ctx: Context, server: Server, key: str) -> None:
    n = ctx.args.list_repeat
    ctx.say(f"first filtered list page, {n} sequential requests each (p50 / p99):")
    async with client(server.base_url, key, connections=1) as http:
        for query, statuses, channel, since in LIST_FILTERS:
            for _ in range(3):
                await http.get(f"/api/v1/returns?{query}&limit=50")
            took, items = [], 0
            for _ in range(n):
                started = time.perf_counter()
                r = await http.get(f"/api/v1/returns?{query}&limit=50")
                took.append(time.perf_counter() - started)
                assert r.status_code == 200, r.text
                items = len(r.json()["items"])
            bare = []
            with psycopg.connect(pg_info(ctx.url)) as conn:
                for _ in range(3):
                    _bare_list(conn, statuses, channel, since)
                for _ in range(n):
                    started = time.perf_counter()
                    _bare_list(conn, statuses, channel, since)
                    bare.append(time.perf_counter() - started)
            p50 = pct(took, 0.5)
            ctx.say(
                f"  ?{query:<52} HTTP {ms(p50)} / {ms(pct(took, 0.99))} | bare SQL "
                f"{ms(pct(bare, 0.5))} / {ms(pct(bare, 0.99))} ({p50 / pct(bare, 0.5):.1f}x) | "
                f"{items} items; goal p50 < {GOAL_LIST_MS:.0f} ms: "
                f"{'PASS' if p50 * 1000 < GOAL_LIST_MS else 'FAIL'}"
            )


async def section_rate(ctx: Context, server: Server, key: str) -> None:
    rate, seconds = 50.0, ctx.args.rate_seconds
    orders = unreturned_orders(ctx.shop, int(rate * seconds))

    async def health(http: httpx.AsyncClient, i: int) -> int:
        return (await http.get("/healthz")).status_code

    async def create(http: httpx.AsyncClient, i: int) -> int:
        order_id, line_id = orders[i]
        body = {
            "order_id": order_id,
            "decide": False,
            "lines": [{"order_line_id": line_id, "quantity": 1, "reason_code": "changed_mind"}],
        }
        return (await http.post("/api/v1/returns", json=body)).status_code

    meter = CpuMeter(server, ctx.url)
    meter.start()
    ref, ref_status, ref_late = await fixed_rate(health, server.base_url, key, rate, seconds)
    ref_cpu = meter.stop()
    meter.start()
    got, status, late = await fixed_rate(create, server.base_url, key, rate, seconds)
    cpu = meter.stop()
    p99 = pct(got, 0.99)
    ctx.say(
        f"fixed rate {rate:.0f} req/s for {seconds:.0f} s "
        "(open loop, latency from the scheduled send):"
    )
    ctx.say(
        f"  /healthz         p50 {ms(pct(ref, 0.5))} p99 {ms(pct(ref, 0.99))} "
        f"statuses {dict(ref_status)} (sends at most {ms(ref_late)} late); "
        f"CPU per request: server {ms(ref_cpu[0] / len(ref))}, "
        f"PostgreSQL {ms(ref_cpu[1] / len(ref))}"
    )
    ctx.say(
        f"  POST /returns    p50 {ms(pct(got, 0.5))} p99 {ms(p99)} "
        f"statuses {dict(status)} (sends at most {ms(late)} late); CPU per request: server "
        f"{ms(cpu[0] / len(got))}, PostgreSQL {ms(cpu[1] / len(got))}; "
        f"p99 {p99 / pct(ref, 0.99):.1f}x /healthz's; goal p99 < {GOAL_RATE_P99_MS:.0f} ms: "
        f"{'PASS' if p99 * 1000 < GOAL_RATE_P99_MS else 'FAIL'}"
    )


async def section_writers(ctx: Context, server: Server, key: str) -> None:
    seconds = ctx.args.writer_seconds
    watch = DeadlockWatch(ctx.url)
    watch.start()
    results = []
    meter = CpuMeter(server, ctx.url)
    for clients in (1, 4, 16):
        logged_before = watch.log_lines() or 0
        meter.start()
        stats, wall = await writers_run(server.base_url, key, clients, seconds)
        cpu = meter.stop()
        logged = (watch.log_lines() or 0) - logged_before
        results.append((clients, stats, wall, logged, lost_writes(ctx.url, stats), cpu))
    stat = watch.stat_growth()
    ctx.say(
        f"concurrent writers, {seconds:.0f} s each: order, return, approve, receive, inspect, "
        "refund (shared new SKUs and buyers), one organization:"
    )
    base = results[0][1].requests / results[0][2]
    for clients, stats, wall, logged, lost, cpu in results:
        everything = stats.all()
        rps = stats.requests / wall
        ctx.say(
            f"  {clients:>2} client(s): {rps:6.1f} writes/s ({rps / base:.2f}x one client), "
            f"{len(stats.ids['refunds']) / wall:5.1f} refunds/s, p50 {ms(pct(everything, 0.5))} "
            f"p99 {ms(pct(everything, 0.99))}, {stats.requests} writes, 5xx {stats.server_errors}, "
            f"other non-2xx {stats.requests - stats.server_errors - stats.succeeded}, "
            f"deadlocks in the log {logged}, lost writes {sum(lost.values())}"
        )
        kinds = ", ".join(f"{k} {ms(pct(v, 0.5))}" for k, v in stats.latencies.items())
        ctx.say(
            f"      p50 by request: {kinds}; CPU per write: server "
            f"{ms(cpu[0] / stats.requests)}, PostgreSQL {ms(cpu[1] / stats.requests)}"
        )
        for failure in stats.failures[:3]:
            ctx.say(f"      {failure}")
    logged_all = watch.log_lines()
    ok = stat == 0 and not logged_all and not any(r[1].server_errors for r in results)
    ctx.say(
        f"  deadlocks: pg_stat_database +{stat}, server log "
        f"{'(unreadable)' if logged_all is None else logged_all}; goal 0 and no 5xx: "
        f"{'PASS' if ok else 'FAIL'}"
    )
    trace = server.first_traceback()
    if trace:
        print("first traceback in the server log:\n" + trace)


class Sink:
    """A webhook receiver on 127.0.0.1 that counts every event id it is sent."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as two writes: without TCP_NODELAY each answer waits
            # for the client's delayed ACK (40 ms), and the sink, not the worker, is measured.
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with sink.lock:
                    sink.counts[self.headers.get("ReturnGuard-Event-Id", "")] += 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _outbox_state(url: str, organization_id: uuid.UUID) -> tuple[int, int, int]:
    """(pending, done, dead) outbox messages of the organization."""
    with psycopg.connect(pg_info(url)) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'pending'), "
            "count(*) FILTER (WHERE status = 'done'), count(*) FILTER (WHERE status = 'dead') "
            "FROM outbox WHERE organization_id = %s",
            (organization_id,),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def commit_rate(url: str, count: int = 300) -> float:
    """Single-row INSERT + COMMIT transactions per second from one client: what the
    disk's flush lets one connection do (a delivery commits several times)."""
    with psycopg.connect(pg_info(url)) as conn:
        conn.execute("CREATE TABLE scale_bench_commits (n integer)")
        conn.commit()
        started = time.perf_counter()
        for i in range(count):
            conn.execute("INSERT INTO scale_bench_commits VALUES (%s)", (i,))
            conn.commit()
        seconds = time.perf_counter() - started
        conn.execute("DROP TABLE scale_bench_commits")
        conn.commit()
    return count / seconds


def section_workers(ctx: Context) -> None:
    from returnguard.auth import service as auth
    from returnguard.auth.actor import Actor
    from returnguard.kit.db import Database
    from returnguard.kit.egress import Egress, parse_networks
    from returnguard.outbox import service as outbox

    n = ctx.args.messages
    sink = Sink()
    db = Database(ctx.url)
    try:
        with db.session() as session:
            org = auth.create_organization(session, f"Workers bench {uuid.uuid4().hex[:6]}", "EUR")
            org_id = org.id
            outbox.create_endpoint(
                session,
                Actor.system(org_id, "bench"),
                url=sink.url,
                event_types=["*"],
                egress=Egress(parse_networks(["127.0.0.0/8"])),
            )
        # The reference: the sink's own speed from one client, one request after another.
        body = json.dumps({"id": "evt_x", "type": "return.created", "data": {"n": 0}}).encode()
        with httpx.Client() as http:
            started = time.perf_counter()
            for i in range(min(n, 2000)):
                http.post(sink.url, content=body, headers={"ReturnGuard-Event-Id": f"ref-{i}"})
            sink_rate = min(n, 2000) / (time.perf_counter() - started)
        ctx.say(f"outbox workers draining {n:,} webhook deliveries to a sink on 127.0.0.1:")
        commits = commit_rate(ctx.url)
        ctx.say(
            f"  references: the sink alone from one client {sink_rate:,.0f} requests/s; "
            f"one client's INSERT+COMMIT {commits:,.0f}/s"
        )
        rates = {}
        for count in (1, 2):
            with sink.lock:
                sink.counts.clear()
            env = _environment(
                ctx.url,
                ctx.folder / "files",
                RETURNGUARD_WORKER_POLL_SECONDS="0.05",
                RETURNGUARD_CHECKPOINT_INTERVAL_SECONDS="0",
            )
            logs = [ctx.folder / f"worker-{count}-{i}.log" for i in range(count)]
            processes = []
            for log in logs:
                with log.open("wb") as out:
                    processes.append(
                        subprocess.Popen(
                            [RETURNGUARD, "worker"],
                            cwd=ctx.folder,
                            env=env,
                            stdout=out,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )
                    )
            try:
                deadline = time.monotonic() + 120
                while not all("running" in log.read_text(errors="replace") for log in logs):
                    if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                        raise RuntimeError("worker did not start: " + logs[0].read_text())
                    time.sleep(0.1)
                with db.session() as session:
                    for i in range(n):
                        outbox.publish_webhook_event(
                            session, org_id, "return.created", {"run": count, "n": i}
                        )
                started = time.perf_counter()  # the backlog is visible from its commit on
                deadline = time.monotonic() + 600
                while _outbox_state(ctx.url, org_id)[0] and time.monotonic() < deadline:
                    time.sleep(0.05)
                seconds = time.perf_counter() - started
            finally:
                for p in processes:
                    _stop(p)
            pending, _, dead = _outbox_state(ctx.url, org_id)
            with sink.lock:
                received, twice = len(sink.counts), sum(c - 1 for c in sink.counts.values())
            shares = [
                line.rsplit("after ", 1)[-1].split(" ")[0]
                for log in logs
                for line in log.read_text(errors="replace").splitlines()
                if "stopped after" in line
            ]
            rates[count] = n / seconds
            ctx.say(
                f"  {count} worker(s): {n / seconds:7,.0f} messages/s "
                f"({rates[count] / rates[1]:.2f}x one worker, {rates[count] / sink_rate:.2f}x the "
                f"sink alone, {rates[count] / commits:.2f}x commits) in {seconds:.1f} s; "
                f"events received {received:,} of {n:,}, "
                f"delivered twice {twice}, left pending {pending}, dead {dead}; "
                f"attempts per worker {'/'.join(shares)}"
            )
    finally:
        db.dispose()
        sink.close()


def import_child(admin_url: str, rows: int, seed: int) -> dict[str, Any]:
    """In a fresh process: import_bench's file of ``rows`` rows, imported into a fresh
    database and COPYed; times and the import's peak RSS."""
    from returnguard.auth import service as auth
    from returnguard.auth.actor import Actor
    from returnguard.kit.db import Database
    from returnguard.kit.migrate import upgrade
    from returnguard.orders.schemas import ChannelIn, Marketplace
    from returnguard.orders.service import create_channel

    name, url = create_database(admin_url, "rg_scale_import")
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "orders.csv"
            generated = import_bench.write_file(path, rows, seed)
            upgrade(url)
            db = Database(url)
            try:
                with db.session() as session:
                    org = auth.create_organization(session, "Import bench", "EUR")
                    actor = Actor.system(org.id, "bench")
                    for code, country, currency, *_ in import_bench.CHANNELS:
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
                timed = import_bench.timed_import(db, org.id, path, None)
            finally:
                db.dispose()
            copy_seconds = import_bench.copy_file(url, path)
    finally:
        drop_database(admin_url, name)
    return {
        "rows": generated.rows,
        "imported": timed.report.rows_imported,
        "seconds": timed.seconds,
        "peak": timed.peak,
        "copy": copy_seconds,
    }


def section_import(ctx: Context) -> None:
    args = ctx.args
    ctx.say("orders CSV import (import_bench's file, fresh database and process each):")
    for rows in (max(args.returns // 10, 1000), args.returns):
        out = subprocess.run(
            [sys.executable, __file__, "--child-import", str(rows), "--admin-url", args.admin_url],
            capture_output=True,
            text=True,
        )
        if out.returncode:
            ctx.say(f"  {rows:,} rows: the import failed:\n{out.stderr[-3000:]}")
            continue
        f = json.loads(out.stdout.strip().splitlines()[-1])
        rate = f["rows"] / f["seconds"]
        ok = (
            rate >= import_bench.GOAL_ROWS_PER_SECOND
            and f["peak"] < import_bench.GOAL_PEAK_MIB * 2**20
        )
        ctx.say(
            f"  {f['rows']:>9,} rows: import {f['seconds']:6.1f} s {rate:8,.0f} rows/s | COPY "
            f"{f['copy']:5.1f} s {f['rows'] / f['copy']:9,.0f} rows/s "
            f"({f['seconds'] / f['copy']:.1f}x) "
            f"| peak RSS {f['peak'] / 2**20:4.0f} MB | imported {f['imported']:,}; goal >= "
            f"{import_bench.GOAL_ROWS_PER_SECOND:,} rows/s, < {import_bench.GOAL_PEAK_MIB} MB: "
            f"{'PASS' if ok else 'FAIL'}"
        )


# --- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--returns", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="small sizes, about a minute")
    parser.add_argument("--only", help=f"comma-separated sections of: {','.join(SECTIONS)}")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--server-workers", type=int, default=2, help="`serve --workers N`")
    parser.add_argument(
        "--admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--keep", action="store_true", help="keep the main database")
    parser.add_argument("--child-import", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if make_url(args.admin_url).host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the benchmark creates databases and sends load: local servers only")
    if args.child_import:
        print(json.dumps(import_child(args.admin_url, args.child_import, args.seed)))
        return 0
    wanted = set((args.only or ",".join(SECTIONS)).split(","))
    if wanted - set(SECTIONS):
        parser.error(f"unknown section(s) {sorted(wanted - set(SECTIONS))}; known: {SECTIONS}")
    if args.quick:
        args.returns = min(args.returns, 3000)
    args.repeat = 1 if args.quick else 3
    args.list_repeat = 10 if args.quick else 50
    args.rate_seconds = 4.0 if args.quick else 20.0
    args.writer_seconds = 4.0 if args.quick else 15.0
    args.messages = 300 if args.quick else 3000

    started = time.perf_counter()
    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} cores, load average "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.returns:,} returns",
        flush=True,
    )
    name, url = create_database(args.admin_url, "rg_scale_bench")
    folder = Path(tempfile.mkdtemp(prefix="rg-scale-bench-"))
    try:
        ctx = Context(args, url, build_shop(url, args.returns, args.seed), folder)
        if "reports" in wanted:
            section_reports(ctx)
        if wanted & {"list", "rate", "writers"}:
            key = api_key(url, uuid.UUID(report_bench.ORG_ID))
            with serving(url, args.server_workers, folder) as server:
                if "list" in wanted:
                    asyncio.run(section_list(ctx, server, key))
                if "rate" in wanted:
                    asyncio.run(section_rate(ctx, server, key))
                if "writers" in wanted:
                    asyncio.run(section_writers(ctx, server, key))
        if "workers" in wanted:
            section_workers(ctx)
        if "import" in wanted:
            section_import(ctx)
    finally:
        if not args.keep:
            drop_database(args.admin_url, name)
        shutil.rmtree(folder, ignore_errors=True)
    print()
    print(
        f"== summary: {args.returns:,} returns, {args.server_workers} server processes, "
        f"load average {os.getloadavg()[0]:.1f}, {time.perf_counter() - started:.0f} s in all"
    )
    for line in ctx.summary:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
