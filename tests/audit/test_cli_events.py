"""`returnguard events checkpoint | verify | keygen`, run as an operator (or cron) would."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from typer.testing import CliRunner

from returnguard.audit import service as audit
from returnguard.auth.service import Actor
from returnguard.cli import app
from returnguard.config import Settings
from returnguard.kit.db import Database
from tests.audit.attacker import reforge
from tests.conftest import make_tenant

KEY = "cron-and-the-worker-share-this-32+-character-key"
runner = CliRunner()


@dataclass
class Run:
    exit_code: int
    stdout: str
    output: str


def cli(db: Database, *args: str, key: str = "") -> Run:
    result = runner.invoke(
        app, [*args, "--database-url", db.url], env={"RETURNGUARD_AUDIT_KEY": key}
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Run(result.exit_code, result.stdout, result.output)


def _returns(db: Database, org: uuid.UUID, *subjects: str) -> None:
    with db.session() as session:
        for subject in subjects:
            audit.record(
                session,
                Actor.system(org),
                subject_type="return",
                subject_id=subject,
                action="return.touched",
            )


def test_keygen_makes_keys_the_settings_accept() -> None:
    keys = {runner.invoke(app, ["events", "keygen"]).stdout.strip() for _ in range(2)}
    assert len(keys) == 2
    for key in keys:
        assert Settings(audit_key=key).audit_key_bytes == key.encode()


def test_checkpoint_then_verify_with_the_key(db: Database) -> None:
    t = make_tenant(db)
    org = t.organization_id
    _returns(db, org, "r1", "r1", "r2")

    run = cli(db, "events", "checkpoint", key=KEY)
    assert run.exit_code == 0, run.output
    line = re.search(
        rf"^{org}: checkpoint #1: 4 chain head\(s\) sealed; digest [0-9a-f]{{64}}; "
        r"signature [0-9a-f]{64}$",
        run.stdout,
        re.M,
    )
    assert line, run.stdout
    assert "warning" not in run.output

    again = cli(db, "events", "checkpoint", key=KEY)
    assert again.exit_code == 0 and "nothing to seal" in again.stdout

    _returns(db, org, "r2")
    run = cli(db, "events", "verify", "--require-key", key=KEY)
    assert run.exit_code == 0, run.output
    headline, detail = run.stdout.splitlines()
    assert headline == f"{org}: OK (6 events)"
    assert detail.startswith("    4 subject chains; 5 sealed by 1 checkpoint(s), latest #1 at ")
    assert detail.endswith("(signatures checked); 1 written since, hash-checked only")


def test_verify_catches_a_reforged_chain_only_with_the_key(db: Database) -> None:
    t = make_tenant(db)
    org = t.organization_id
    _returns(db, org, "r1", "r1", "r1")
    assert cli(db, "events", "checkpoint", key=KEY).exit_code == 0
    reforge(db, org, "return", "r1", 1, action="return.refunded_in_cash")

    without = cli(db, "events", "verify")
    assert without.exit_code == 0
    assert "RETURNGUARD_AUDIT_KEY is not set: checkpoint signatures are not checked" in (
        without.output
    )
    assert "signatures NOT checked: no key" in without.stdout

    keyed = cli(db, "events", "verify", "--org", str(org), key=KEY)
    assert keyed.exit_code == 1
    assert re.search(
        rf"^{org}: BROKEN at event #\d+ \(return r1 seq 3, event id ", keyed.stdout, re.M
    )
    assert "rewritten" in keyed.stdout


def test_verify_for_cron_insists_on_the_key(db: Database) -> None:
    make_tenant(db)
    run = cli(db, "events", "verify", "--require-key")
    assert run.exit_code == 2
    assert "RETURNGUARD_AUDIT_KEY is not set" in run.output


def test_checkpoint_without_a_key_warns_and_writes_unsigned(db: Database) -> None:
    t = make_tenant(db)
    run = cli(db, "events", "checkpoint")
    assert run.exit_code == 0
    assert "checkpoints are written unsigned" in run.output
    assert f"{t.organization_id}: checkpoint #1: 2 chain head(s) sealed" in run.stdout
    assert "signature none (unsigned)" in run.stdout
    verify = cli(db, "events", "verify")
    assert verify.exit_code == 0 and "(unsigned)" in verify.stdout


def test_an_unknown_organization_is_an_error(db: Database) -> None:
    missing = uuid.uuid4()
    for command in ("verify", "checkpoint"):
        run = cli(db, "events", command, "--org", str(missing), key=KEY)
        assert run.exit_code == 2
        assert f"organization {missing} not found" in run.output
