"""The README's "Try" section works as written on the demo: `returnguard demo` run in an
empty folder (on a free port instead of 8000), then every line of that section run by
bash in the same folder, with the organization id and key read from what the demo
printed, as a newcomer would copy them."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.cli.test_serve import free_port, wait_until

README = Path(__file__).resolve().parents[2] / "README.md"
BIN = Path(sys.executable).parent
START_TIMEOUT = 180.0  # loading the demo, then the server's start, on a busy machine


def try_section() -> list[str]:
    """The commands of the README's first code block after the word "Try"."""
    found = re.search(r"\bTry\b.*?```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert found, "README has no Try section with a bash block"
    return [line for line in found[1].splitlines() if line.strip()]


@dataclass
class Demo:
    folder: Path
    port: int
    log: Path

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def printed(self, pattern: str) -> str:
        found = re.search(pattern, self.output, re.M)
        assert found, self.output
        return found[1]


def _environment() -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RETURNGUARD_")}
    environment["PATH"] = f"{BIN}{os.pathsep}{environment.get('PATH', '')}"
    return environment


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    """`returnguard demo`, as the README's first command runs it, serving on a free port."""
    port = free_port()
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / "returnguard"), "demo", "--port", str(port)],
            cwd=tmp_path,
            env=_environment(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = Demo(tmp_path, port, log)

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"demo exited with {process.returncode}: {running.output}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(up, START_TIMEOUT, lambda: running.output)
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(30)


@pytest.mark.skipif(shutil.which("curl") is None, reason="the README's Try section uses curl")
def test_readme_try_section_works_as_written_on_the_demo(demo: Demo) -> None:
    org = demo.printed(r"^demo organization: (\S+)$")
    key = demo.printed(r"^API key \(admin\):\s+(\S+)$")
    # The demo's own instructions name its database and where it serves.
    assert demo.printed(r"^demo database: (\S+)$") == (
        f"sqlite:///{demo.folder.resolve()}/returnguard-demo/returnguard.sqlite3"
    )
    assert f"serving at http://127.0.0.1:{demo.port}" in demo.output
    assert "/api/v1/webhooks/endpoints" in demo.output  # how to subscribe a receiver
    today = datetime.now(UTC).date()
    filled = {
        "<key>": key,
        "<organization id>": org,
        "<6 months ago>": (today - timedelta(days=183)).isoformat(),
        "<today>": today.isoformat(),
        "127.0.0.1:8000": f"127.0.0.1:{demo.port}",
    }
    results: list[tuple[str, str]] = []
    for line in try_section():
        command = line
        for placeholder, value in filled.items():
            command = command.replace(placeholder, value)
        assert "<" not in command, f"a placeholder the demo does not print: {line}"
        run = subprocess.run(
            ["bash", "-c", command],
            cwd=demo.folder,
            env=_environment(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, f"{line}\n{run.stdout}\n{run.stderr}"
        results.append((line, run.stdout))

    checked = set()
    for line, stdout in results:
        if "/api/v1/returns?status=received" in line:
            items = json.loads(stdout)["items"]
            assert items and {r["status"] for r in items} == {"received"}, stdout
            checked.add("returns")
        elif "/reports/money-at-risk" in line:
            buckets = json.loads(stdout)["buckets"]
            assert len([b for b in buckets if b["refunds"]]) >= 2, stdout
            checked.add("money at risk")
        elif "report net-profit" in line:
            months = re.findall(r"^\d{4}-\d{2}\s", stdout, re.M)
            assert len(months) >= 6, stdout
            checked.add("net profit")
        elif "events verify" in line:
            assert re.search(rf"^{org}: OK \(\d+ events\)$", stdout, re.M), stdout
            checked.add("verify")
        elif "format=csv" in line:
            rows = list(csv.reader((demo.folder / "net-profit.csv").open(newline="")))
            assert rows[0][0] == "sku" and rows[-1][0] == "TOTAL" and len(rows) > 3, rows[:3]
            checked.add("csv")
        elif "/webhooks/endpoints" in line:
            endpoint = json.loads(stdout)
            assert endpoint["secret"] and endpoint["event_types"] == ["return.created"], stdout
            checked.add("webhook")
        elif "org create" in line:
            second = json.loads(stdout)
            me = httpx.get(
                f"http://127.0.0.1:{demo.port}/api/v1/me",
                headers={"Authorization": f"Bearer {second['api_key']}"},
                timeout=10,
            )
            assert me.status_code == 200, me.text
            checked.add("org create")
    assert checked == {
        "returns",
        "money at risk",
        "net profit",
        "verify",
        "csv",
        "webhook",
        "org create",
    }

    # The buyers' policy page the README points at, and the API docs, without a key.
    base = f"http://127.0.0.1:{demo.port}"
    page = httpx.get(f"{base}/policies/{org}/amazon-de?language=de", timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    docs = httpx.get(f"{base}/docs", timeout=10)
    assert docs.status_code == 200 and "/docs/assets/swagger-ui-bundle.js" in docs.text
