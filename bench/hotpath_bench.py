"""Hot paths benchmark: server CPU of creating a return, listing returns and refunding.

    python bench/hotpath_bench.py                      # 100,000 returns (375,000 orders)
    python bench/hotpath_bench.py --returns 1000000    # 1M returns
    python bench/hotpath_bench.py --returns 5000       # smoke run
    python bench/hotpath_bench.py --profile /tmp/prof  # also write a cProfile per path

It creates a fresh PostgreSQL database beside ``postgres`` on 127.0.0.1, migrates it and
loads the generated shop of ``report_bench.py`` with ``COPY`` (orders, returns in every
state, their refunds and ledger entries). Then it drives the ASGI app in this process
(Starlette's TestClient, the outbox worker off) and measures, per request:

* **CPU**: this process's CPU time (``time.process_time``: the app, and the test
  client's small share, but not PostgreSQL's) over a batch, the median of ``--rounds``
  batches, each batch of a path followed by one of ``/healthz`` (the reference: the
  whole request cycle, one query) so both see the same machine;
* **wall**: the median wall time of one request (noisy on a shared machine);
* **SQL**: the number of statements the request sent.

Paths: ``POST /api/v1/returns`` (the policy decides, and with ``decide: false`` as the
scale benchmark's fixed-rate section sends it), the first page of
``GET /api/v1/returns``, a status page and its second page, a status + channel + date
page, and ``POST /api/v1/returns/{id}/refunds`` (returns made refundable through the
API beforehand, not measured). Last, ``EXPLAIN ANALYZE`` of the exact SQL of the first
filtered page (the bare SQL the list's wall time is compared with) and its plan's top.
The database is dropped at the end (``--keep`` keeps it).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import os
import pstats
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import event
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report_bench as rb

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PAGE = 50


class Statements:
    """Counts and keeps the statements an engine sends."""

    def __init__(self) -> None:
        self.count = 0
        self.keep = False
        self.last: list[tuple[str, Any]] = []

    def __call__(self, conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        self.count += 1
        if self.keep:
            self.last.append((statement, params))


def fresh_orders(shop: rb.Shop) -> Iterator[int]:
    """Orders no loaded return refers to, newest first (inside every return window)."""
    stride = 1_000_003
    used = {r * stride % shop.orders for r in range(shop.returns)}
    by_age = sorted(range(shop.orders), key=lambda o: shop.order_day[o])
    return (o for o in by_age if o not in used)


def profile_path(folder: Path, label: str, run: Callable[[], Any]) -> None:
    """cProfile of ``run`` where the app does its work: the worker threads FastAPI runs
    sync endpoints and dependencies in (a profiler sees only its own thread)."""
    import anyio.to_thread

    profiles: list[cProfile.Profile] = []
    original = anyio.to_thread.run_sync

    async def profiled(func: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        def work(*inner: Any) -> Any:
            profile = cProfile.Profile(time.thread_time)  # CPU, not waits for the database
            profiles.append(profile)
            profile.enable()
            try:
                return func(*inner)
            finally:
                profile.disable()

        return await original(work, *args, **kw)

    anyio.to_thread.run_sync = profiled  # type: ignore[assignment]
    try:
        run()
    finally:
        anyio.to_thread.run_sync = original
    folder.mkdir(parents=True, exist_ok=True)
    slug = "".join(c if c.isalnum() else "_" for c in label).strip("_")
    pstats.Stats(*profiles).dump_stats(folder / f"{slug}.prof")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--returns", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=7, help="batches per path")
    parser.add_argument("--batch", type=int, default=10, help="requests per batch")
    parser.add_argument("--admin-url", default=ADMIN_URL)
    parser.add_argument("--profile", type=Path, help="write <path>.prof files here")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end")
    args = parser.parse_args(argv)

    admin = make_url(args.admin_url)
    if admin.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the benchmark creates and drops a database: local servers only")
    name = f"rg_hotpath_bench_{uuid.uuid4().hex[:8]}"
    admin_info = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    url = admin.set(database=name).render_as_string(hide_password=False)
    conninfo = admin.set(drivername="postgresql", database=name).render_as_string(
        hide_password=False
    )
    with psycopg.connect(admin_info, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    print(f"database {name}; load average {os.getloadavg()[0]:.1f}")
    try:
        return run(args, url, conninfo)
    finally:
        if not args.keep:
            with psycopg.connect(admin_info, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            print(f"dropped {name}")


def run(args: argparse.Namespace, url: str, conninfo: str) -> int:
    from fastapi.testclient import TestClient

    from returnguard.app import create_app
    from returnguard.auth import service as auth
    from returnguard.config import Settings
    from returnguard.kit.db import Database
    from returnguard.kit.migrate import upgrade

    upgrade(url)
    started = time.perf_counter()
    print(f"loading {args.returns:,} returns …")
    with psycopg.connect(conninfo) as conn:
        shop = rb.build(conn, args.returns, args.seed)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    print(f"loaded {shop.orders:,} orders in {time.perf_counter() - started:.0f} s")

    db = Database(url)
    org = uuid.UUID(rb.ORG_ID)
    with db.session() as session:
        _, key = auth.create_api_key(session, org, name="bench", role="admin")
    headers = {"Authorization": f"Bearer {key}"}
    statements = Statements()
    event.listen(db.engine, "before_cursor_execute", statements)
    settings = Settings(database_url=url, in_process_worker=False)
    orders = fresh_orders(shop)

    def return_body(decide: bool = True) -> dict[str, Any]:
        o = next(orders)
        line = shop.order_first_line[o]
        return {
            "order_id": rb.ident(4, o),
            "decide": decide,
            "lines": [
                {"order_line_id": rb.ident(5, line), "quantity": 1, "reason_code": "defective"}
            ],
        }

    results: list[tuple[str, float, float, float, int]] = []
    with TestClient(create_app(settings, db=db)) as client:

        def call(
            method: str,
            path: str,
            body: Any = None,
            params: dict[str, Any] | None = None,
            extra: dict[str, str] | None = None,
        ) -> Any:
            r = client.request(
                method, path, json=body, params=params, headers=headers | (extra or {})
            )
            assert r.status_code < 300, (path, r.status_code, r.text)
            return r.json()

        refundable: list[tuple[str, str]] = []

        def make_refundable() -> None:
            ret = call("POST", "/api/v1/returns", return_body())
            base = f"/api/v1/returns/{ret['id']}"
            if ret["status"] != "approved":
                ret = call("POST", f"{base}/approve", {"note": "bench"})
            line = ret["lines"][0]["id"]
            call("POST", f"{base}/shipments", {"carrier": "dhl", "tracking_number": "T1"})
            call("POST", f"{base}/receive", {"lines": [{"return_line_id": line, "quantity": 1}]})
            call(
                "POST",
                f"{base}/inspections",
                {"lines": [{"return_line_id": line, "passed": 1, "failed": 0}]},
            )
            refundable.append((ret["id"], line))

        def refund() -> Any:
            return_id, line = refundable.pop()
            return call(
                "POST",
                f"/api/v1/returns/{return_id}/refunds",
                {"lines": [{"return_line_id": line, "quantity": 1}]},
                extra={"Idempotency-Key": uuid.uuid4().hex},
            )

        first = call("GET", "/api/v1/returns", params={"limit": PAGE})
        newest = first["items"][0]["requested_at"]
        since = (rb.END - timedelta(days=180)).isoformat() + "T00:00:00Z"
        until = (rb.END - timedelta(days=30)).isoformat() + "T00:00:00Z"
        filtered = {
            "status": "in_transit",
            "channel": "shop-fr",
            "requested_from": since,
            "requested_to": until,
            "limit": PAGE,
        }
        second = call("GET", "/api/v1/returns", params={"status": "received", "limit": PAGE})
        cursor = second["next_cursor"]
        print(f"newest return {newest}; filtered page: {filtered}")

        paths: list[tuple[str, Callable[[], Any]]] = [
            ("POST /returns", lambda: call("POST", "/api/v1/returns", return_body())),
            # What scale_bench's fixed-rate section sends: the request, no decision.
            (
                "POST /returns decide=false",
                lambda: call("POST", "/api/v1/returns", return_body(decide=False)),
            ),
            ("GET /returns", lambda: call("GET", "/api/v1/returns", params={"limit": PAGE})),
            (
                "GET /returns?status",
                lambda: call("GET", "/api/v1/returns", params={"status": "received"}),
            ),
            (
                "GET /returns?status 2nd page",
                lambda: call(
                    "GET", "/api/v1/returns", params={"status": "received", "cursor": cursor}
                ),
            ),
            (
                "GET /returns?status&channel&dates",
                lambda: call("GET", "/api/v1/returns", params=filtered),
            ),
            ("POST /refunds", refund),
        ]
        needed = (args.rounds + 2) * args.batch + 2
        print(f"making {needed} returns refundable …")
        for _ in range(needed):
            make_refundable()

        def healthz() -> Any:
            return client.get("/healthz").json()

        def batch(fn: Callable[[], Any]) -> tuple[float, float, int]:
            walls = []
            cpu = time.process_time()
            before = statements.count
            for _ in range(args.batch):
                t = time.perf_counter()
                fn()
                walls.append(time.perf_counter() - t)
            cpu = (time.process_time() - cpu) / args.batch
            return cpu, statistics.median(walls), (statements.count - before) // args.batch

        for label, fn in paths:
            batch(fn)  # warm-up: caches, the default policy, prepared plans
            batch(healthz)
            cpus, ref_cpus, walls, count = [], [], [], 0
            for _ in range(args.rounds):
                cpu, wall, count = batch(fn)
                ref, _, _ = batch(healthz)
                cpus.append(cpu)
                ref_cpus.append(ref)
                walls.append(wall)
            cpu, ref = statistics.median(cpus), statistics.median(ref_cpus)
            results.append((label, cpu, ref, statistics.median(walls), count))
            print(f"  {label}: {cpu * 1000:.2f} ms CPU, {count} statements")
        if args.profile:
            # After the measurements: profiling slows everything down.
            for label, fn in paths:
                profile_path(args.profile, label, functools.partial(batch, fn))

        # The exact SQL of the first filtered page, as the endpoint sent it.
        statements.keep = True
        call("GET", "/api/v1/returns", params=filtered)
        page_sql, page_params = next(
            (s, p) for s, p in statements.last if "FROM returns" in s and "LIMIT" in s
        )
    with db.engine.connect() as sa_conn:
        analyze = "EXPLAIN (ANALYZE, BUFFERS) " + page_sql
        explain = [row[0] for row in sa_conn.exec_driver_sql(analyze, page_params)]
    db.dispose()
    execution = next(float(x.split()[2]) for x in explain if x.startswith("Execution Time"))
    filtered_wall = next(w for label, _, _, w, _ in results if "channel" in label)

    print()
    print(
        f"{args.returns:,} returns, {shop.orders:,} orders; median of {args.rounds} batches of "
        f"{args.batch}; load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'path':<36} {'CPU ms':>8} {'/healthz':>9} {'x healthz':>10} {'wall ms':>8} {'SQL':>4}")
    for label, cpu, ref, wall, count in results:
        print(
            f"{label:<36} {cpu * 1000:8.2f} {ref * 1000:9.2f} {cpu / ref:9.1f}x "
            f"{wall * 1000:8.2f} {count:4d}"
        )
    print()
    print(
        f"first filtered page: EXPLAIN ANALYZE {execution:.2f} ms; the endpoint's wall "
        f"{filtered_wall * 1000:.2f} ms = {filtered_wall * 1000 / execution:.1f}x the bare SQL"
    )
    print("plan:")
    for line in explain[:8]:
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
