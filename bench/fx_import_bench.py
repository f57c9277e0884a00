"""ECB import benchmark: a generated history file imported into a fresh database.

    python bench/fx_import_bench.py                  # 7,000 days x 30 currencies, SQLite
    python bench/fx_import_bench.py --days 500       # CI smoke run, a second or two
    python bench/fx_import_bench.py --database-url postgresql+psycopg://…/empty_db

The file looks like the ECB's ``eurofxref-hist.csv``: newest day first, weekdays only, a
trailing comma on every line, about 2 % ``N/A`` cells and three columns of retired
currencies (skipped by the import). It is generated deterministically (``--seed``) from
integers, never floats. Three things are timed:

1. parsing the file alone (``fx.ecb.parse``);
2. the first import into an empty organization (every rate is created), committed;
3. the same file again (every rate is unchanged), committed;
4. the file with every rate corrected by 0.0001 (every rate is updated), committed.

Without ``--database-url`` the database is a temporary SQLite file, removed at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

from returnguard.auth import service as auth
from returnguard.auth.actor import Actor
from returnguard.fx import ecb
from returnguard.fx.service import ImportSummary, import_ecb
from returnguard.kit.db import Database
from returnguard.kit.migrate import upgrade

# Units per EUR, as integers scaled by 10**4 (1.0856 USD -> 10856): where each walk starts.
START_RATES: dict[str, int] = {
    "USD": 10_856,
    "JPY": 1_625_000,
    "CZK": 251_230,
    "DKK": 74_590,
    "GBP": 8_520,
    "HUF": 3_950_000,
    "PLN": 43_100,
    "RON": 49_750,
    "SEK": 114_800,
    "CHF": 9_420,
    "ISK": 1_498_000,
    "NOK": 117_300,
    "TRY": 358_000,
    "AUD": 16_450,
    "BRL": 59_800,
    "CAD": 14_700,
    "CNY": 77_900,
    "HKD": 84_700,
    "IDR": 169_000_000,
    "ILS": 40_100,
    "INR": 903_000,
    "KRW": 14_350_000,
    "MXN": 186_000,
    "MYR": 50_900,
    "NZD": 17_900,
    "PHP": 614_000,
    "SGD": 14_500,
    "THB": 383_000,
    "ZAR": 198_000,
    "RUB": 1_010_000,
}
RETIRED = ("BGN", "CYP", "HRK")
LAST_DAY = date(2026, 11, 27)


def weekdays(n: int) -> list[date]:
    days: list[date] = []
    day = LAST_DAY
    while len(days) < n:
        if day.weekday() < 5:
            days.append(day)
        day -= timedelta(days=1)
    return days


def history(n_days: int, seed: int, bump: int = 0) -> tuple[str, int]:
    """The file's text and the number of rates in it; ``bump`` raises every rate a little."""
    rng = random.Random(seed)
    current = dict(START_RATES)
    lines = ["Date," + ",".join([*START_RATES, *RETIRED]) + ","]
    rates = 0
    for day in weekdays(n_days):
        cells = [day.isoformat()]
        for code, scaled in current.items():
            # A random walk of at most +-0.5 % a day, in whole units of 10**-4.
            step = scaled * (rng.getrandbits(10) - 512) // 102_400
            current[code] = max(scaled + step, 1)
            if rng.getrandbits(6) == 0:
                cells.append("N/A")  # ~1.6 %: a currency the ECB did not fix that day
                continue
            whole, frac = divmod(current[code] + bump, 10_000)
            cells.append(f"{whole}.{frac:04d}")
            rates += 1
        cells.extend("N/A" for _ in RETIRED)
        lines.append(",".join(cells) + ",")
    return "\n".join(lines) + "\n", rates


def timed_import(db: Database, actor: Actor, text: str) -> tuple[ImportSummary, float]:
    started = time.perf_counter()
    with db.session() as session:
        summary = import_ecb(session, actor, text)
    return summary, time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--days", type=int, default=7000, help="weekdays in the file")
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument(
        "--database-url", help="an empty, migrated-or-new database (default: temporary SQLite)"
    )
    args = parser.parse_args(argv)

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    text, n_rates = history(max(args.days, 1), args.seed)
    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} cores, load average {load}; "
        f"{args.days:,} days x {len(START_RATES)} currencies = {n_rates:,} rates "
        f"({len(text.encode()) / 2**20:.1f} MiB)"
    )

    started = time.perf_counter()
    found = ecb.parse(text)
    parse_seconds = time.perf_counter() - started
    assert found.ok and len(found.rates) == n_rates, found.problems[:3]
    print(f"parse:          {parse_seconds:6.2f} s  {n_rates / parse_seconds:>10,.0f} rates/s")

    with tempfile.TemporaryDirectory() as folder:
        url = args.database_url or f"sqlite:///{Path(folder) / 'bench.sqlite3'}"
        upgrade(url)
        db = Database(url)
        try:
            with db.session() as session:
                org = auth.create_organization(session, f"FX bench {time.time_ns()}", "EUR")
            actor = Actor.system(org.id, "bench")
            first, first_seconds = timed_import(db, actor, text)
            assert first.created == n_rates, first
            print(
                f"first import:   {first_seconds:6.2f} s  {n_rates / first_seconds:>10,.0f} "
                f"rates/s  ({first.created:,} created; {db.dialect})"
            )
            again, again_seconds = timed_import(db, actor, text)
            assert again.unchanged == n_rates, again
            print(
                f"same file again:{again_seconds:6.2f} s  {n_rates / again_seconds:>10,.0f} "
                f"rates/s  ({again.unchanged:,} unchanged)"
            )
            corrected, _ = history(max(args.days, 1), args.seed, bump=1)
            fixed, fixed_seconds = timed_import(db, actor, corrected)
            assert fixed.updated == n_rates, fixed
            print(
                f"corrected file: {fixed_seconds:6.2f} s  {n_rates / fixed_seconds:>10,.0f} "
                f"rates/s  ({fixed.updated:,} updated)"
            )
        finally:
            db.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
