"""The `returnguard` command line: serve, worker, demo, migrate, org, import, events, fx."""

from __future__ import annotations

import io
import json
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.console import Console

from returnguard.config import Settings
from returnguard.kit.db import Database, one_snapshot
from returnguard.kit.migrate import upgrade

app = typer.Typer(
    help="ReturnGuard returns service.", no_args_is_help=True, pretty_exceptions_enable=False
)
org_app = typer.Typer(help="Organizations and their API keys.", no_args_is_help=True)
import_app = typer.Typer(help="Import data from files.", no_args_is_help=True)
events_app = typer.Typer(help="The tamper-evident event log.", no_args_is_help=True)
policies_app = typer.Typer(help="Return policies: check and backtest.", no_args_is_help=True)
fx_app = typer.Typer(help="Exchange rates.", no_args_is_help=True)
refunds_app = typer.Typer(help="Refunds and their payment providers.", no_args_is_help=True)
app.add_typer(policies_app, name="policies")
app.add_typer(org_app, name="org")
app.add_typer(import_app, name="import")
app.add_typer(events_app, name="events")
report_app = typer.Typer(help="Money reports from the cost ledger.", no_args_is_help=True)
app.add_typer(report_app, name="report")
app.add_typer(fx_app, name="fx")
app.add_typer(refunds_app, name="refunds")
webhooks_app = typer.Typer(
    help="Webhook endpoints: list, disable, enable, delete.", no_args_is_help=True
)
app.add_typer(webhooks_app, name="webhooks")

console = Console(stderr=True)
DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="RETURNGUARD_DATABASE_URL",
        help="sqlite:///path or postgresql://… (default: ./returnguard-data)",
    ),
]


def _settings(database_url: str | None) -> Settings:
    """The settings of a command that uses a database; says on stderr which database
    (stdout stays for the command's output, e.g. its --json)."""
    settings = Settings(database_url=database_url) if database_url else Settings()
    if settings.database_url.startswith("sqlite:///"):
        path = Path(settings.database_url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
    console.print(
        f"database: {_shown_url(settings.database_url)}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return settings


def _shown_url(database_url: str) -> str:
    """The database URL as a person should read it: a SQLite file by its absolute path
    (it works from any directory), a server's password hidden."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        name = url.database or ""
        if name and name != ":memory:" and not name.startswith("file:"):
            url = url.set(database=str(Path(name).resolve()))
    return url.render_as_string(hide_password=True)


@app.command()
def migrate(database_url: DatabaseOpt = None) -> None:
    """Create or upgrade the database schema (Alembic migrations)."""
    settings = _settings(database_url)
    upgrade(settings.database_url)
    console.print("[green]database schema is up to date[/green]")


@app.command()
def serve(
    database_url: DatabaseOpt = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int | None = typer.Option(
        None,
        "--workers",
        min=1,
        help="HTTP worker processes (default: one per CPU core on PostgreSQL, 1 on SQLite)",
    ),
    proxy_headers: bool = typer.Option(
        True,
        "--proxy-headers/--no-proxy-headers",
        help="Take the client address and scheme from the X-Forwarded-For and "
        "X-Forwarded-Proto headers of the proxies in --forwarded-allow-ips",
    ),
    forwarded_allow_ips: str | None = typer.Option(
        None,
        "--forwarded-allow-ips",
        help="Comma-separated proxy addresses or networks (or '*') whose X-Forwarded-* "
        "headers are trusted (default: $FORWARDED_ALLOW_IPS, else 127.0.0.1,::1)",
    ),
    no_migrate: bool = typer.Option(False, help="Do not upgrade the schema at start"),
) -> None:
    """Serve the HTTP API with one or more processes (on SQLite: one, running the outbox
    worker too)."""
    import os
    from importlib.util import find_spec

    import uvicorn

    settings = _settings(database_url)
    sqlite = settings.database_url.startswith("sqlite")
    processes = workers or (1 if sqlite else _cpu_count())
    if sqlite and processes > 1:
        console.print(
            f"error: --workers {processes} needs PostgreSQL: SQLite takes one writer at a "
            "time and is served by a single process, which also runs the outbox worker. "
            "Set RETURNGUARD_DATABASE_URL=postgresql://... to serve with several processes.",
            markup=False,
        )
        raise typer.Exit(2)
    if not no_migrate:
        upgrade(settings.database_url)
    # What uvicorn's "auto" would pick, named here so the start-up line tells the truth.
    loop = "uvloop" if find_spec("uvloop") else "asyncio"
    http = "httptools" if find_spec("httptools") else "h11"
    if not settings.run_worker_in_process:
        outbox = "outbox: run `returnguard worker`"
    else:
        outbox = "outbox worker in " + ("this process" if processes == 1 else "each process")
    plural = "es" if processes != 1 else ""
    console.print(
        f"serving http://{host}:{port} with {processes} worker process{plural} "
        f"({loop} event loop, {http} HTTP parser); {outbox}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    # Each process builds its own app with `create_app()`, whose settings come from the
    # environment: the database chosen here must reach them that way.
    os.environ["RETURNGUARD_DATABASE_URL"] = settings.database_url
    uvicorn.run(
        "returnguard.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=processes,
        loop=loop,
        http=http,
        proxy_headers=proxy_headers,
        forwarded_allow_ips=forwarded_allow_ips,
        log_level="info",
    )


def _cpu_count() -> int:
    """The cores this process may run on (a container's CPU set, not the host's)."""
    import os

    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


@app.command()
def worker(database_url: DatabaseOpt = None, once: bool = False) -> None:
    """Deliver outbox messages (webhooks, provider refunds) until stopped; many may run on
    PostgreSQL."""
    from returnguard.composition import default_handlers
    from returnguard.outbox.worker import Worker

    settings = _settings(database_url)
    db = Database(settings.database_url)
    handlers = default_handlers()
    w = Worker(db, settings, handlers=handlers)
    try:
        if once:
            console.print(f"delivered {w.run_once()} message(s)")
            return
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        console.print(
            f"outbox worker {w.worker_id} running ({', '.join(handlers.topics)}); Ctrl-C to stop",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        w.run_forever(stop)
        console.print(
            f"outbox worker {w.worker_id} stopped after {w.processed} attempt(s)",
            markup=False,
            highlight=False,
        )
    finally:
        w.close()
        db.dispose()


@org_app.command("create")
def org_create(
    name: str,
    base_currency: str = typer.Option("EUR", help="Currency for reports (ISO 4217)"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON"),
    database_url: DatabaseOpt = None,
) -> None:
    """Create an organization and its first admin API key (shown once)."""
    from returnguard.auth import service as auth
    from returnguard.errors import ReturnGuardError

    settings = _settings(database_url)
    upgrade(settings.database_url)
    db = Database(settings.database_url)
    try:
        with db.session() as session:
            org = auth.create_organization(session, name, base_currency)
            _, plain = auth.create_api_key(
                session,
                org.id,
                name="admin (created by CLI)",
                role="admin",
                actor=auth.Actor.system(org.id, "cli"),
            )
            org_id = org.id
    except ReturnGuardError as exc:
        console.print(f"error: {exc.detail}", markup=False)
        raise typer.Exit(2) from None
    finally:
        db.dispose()
    if as_json:
        typer.echo(json.dumps({"organization_id": str(org_id), "api_key": plain}))
    else:
        typer.echo(f"organization_id: {org_id}\napi_key: {plain}\n(the key is shown only once)")


@import_app.command("orders")
def import_orders(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True),
    organization: str = typer.Option(..., "--org", help="Organization id"),
    errors_csv: Path | None = typer.Option(None, "--errors", help="Write rejected rows here"),
    chunk_size: int = typer.Option(
        2_000, "--chunk-size", min=1, help="Orders written per transaction"
    ),
    database_url: DatabaseOpt = None,
) -> None:
    """Import orders from a CSV file (one row per order line); bad rows are reported."""
    from rich.text import Text

    from returnguard.errors import ReturnGuardError
    from returnguard.orders.importer import ImportInterrupted, import_orders_csv

    def error(message: str) -> None:
        # Text, not markup: the message can quote the file's own header cells.
        console.print(Text.assemble(("error:", "red"), " ", message), soft_wrap=True)

    organization_id = _parse_id(organization)
    settings = _settings(database_url)
    db = Database(settings.database_url)
    interrupted: ImportInterrupted | None = None
    try:
        report = import_orders_csv(
            db, organization_id, file, console=console, chunk_size=chunk_size
        )
    except ImportInterrupted as exc:
        # What was imported before the database failed stays imported: say what it was.
        interrupted, report = exc, exc.report
    except ReturnGuardError as exc:
        error(exc.detail)
        raise typer.Exit(2) from None
    finally:
        db.dispose()
    for problem in report.problems:
        # The text comes from the file: no markup, and no wrapping, so one problem is one line.
        console.print(
            f"line {problem.line}: {problem.field}: {problem.message}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    if errors_csv is not None:
        report.write_errors_csv(errors_csv)
    typer.echo(report.summary())
    if interrupted is not None:
        error(interrupted.detail)
        raise typer.Exit(3)
    if report.rows_rejected:
        raise typer.Exit(1)


@refunds_app.command("reconcile")
def refunds_reconcile(
    organization: str | None = typer.Option(None, "--org", help="Only this organization"),
    since_days: int = typer.Option(30, "--since-days", min=1, help="Refunds sent since"),
    apply: bool = typer.Option(
        False,
        "--apply",
        help="Pending refunds take the provider's final answer; ones it never got are "
        "sent again with the same key",
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per mismatch"),
    database_url: DatabaseOpt = None,
) -> None:
    """List every provider refund whose state here differs from the provider's.

    Exits 1 when a mismatch is left that a person must look at."""
    from returnguard.kit.egress import Egress, guarded_client
    from returnguard.refunds.sender import reconcile

    wanted = _parse_id(organization) if organization else None
    settings = _settings(database_url)
    db = Database(settings.database_url)
    try:
        egress = Egress.from_settings(settings)
        with guarded_client(egress, timeout=settings.webhook_timeout_seconds) as http:
            checked, mismatches = reconcile(
                db,
                http,
                organization_id=wanted,
                since=timedelta(days=since_days),
                apply=apply,
            )
    finally:
        db.dispose()
    for m in mismatches:
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "refund_id": str(m.refund_id),
                        "organization_id": str(m.organization_id),
                        "provider": m.provider,
                        "returnguard": m.ours,
                        "provider_state": m.theirs,
                        "reference": m.reference,
                        "note": m.note,
                        "fixed": m.fixed,
                    }
                )
            )
        else:
            fixed = " [fixed]" if m.fixed else ""
            typer.echo(
                f"{m.refund_id} {m.provider}: ReturnGuard {m.ours}, provider {m.theirs} "
                f"({m.reference or 'no reference'}) - {m.note}{fixed}"
            )
    open_ = sum(1 for m in mismatches if not m.fixed)
    console.print(
        f"{checked} refunds checked, {len(mismatches)} mismatches, {open_} left to look at",
        markup=False,
    )
    if open_:
        raise typer.Exit(1)


@events_app.command("verify")
def events_verify(
    organization: str | None = typer.Option(None, "--org", help="Only this organization"),
    require_key: bool = typer.Option(
        False, "--require-key", help="Exit 2 when RETURNGUARD_AUDIT_KEY is not set (for cron)"
    ),
    database_url: DatabaseOpt = None,
) -> None:
    """Verify every subject chain and every signed checkpoint; name the first broken link.

    Exits 1 when an event was altered, removed or reordered, or a checkpoint does not
    match (with RETURNGUARD_AUDIT_KEY set, also a chain rewritten with fresh hashes)."""
    from sqlalchemy import select

    from returnguard.audit.verify import verify_chain
    from returnguard.auth.models import Organization

    wanted = _parse_id(organization) if organization else None
    settings = _settings(database_url)
    key = settings.audit_key_bytes
    if key is None:
        if require_key:
            console.print("error: RETURNGUARD_AUDIT_KEY is not set", markup=False)
            raise typer.Exit(2)
        console.print(
            "warning: RETURNGUARD_AUDIT_KEY is not set: checkpoint signatures are not "
            "checked, so a chain rewritten with recomputed hashes by someone with database "
            "access would pass",
            markup=False,
            soft_wrap=True,
        )
    db = Database(settings.database_url)
    broken = False
    try:
        with db.session(read_only=True) as session:
            if wanted is not None and session.get(Organization, wanted) is None:
                console.print(f"error: organization {wanted} not found", markup=False)
                raise typer.Exit(2)
            org_ids = (
                [wanted] if wanted is not None else list(session.scalars(select(Organization.id)))
            )
        for org_id in org_ids:
            # One snapshot per organization, so writes going on meanwhile cannot look
            # like gaps; read-only, so SQLite writers do not wait for it.
            with db.session(read_only=True) as session:
                one_snapshot(session)
                report = verify_chain(session, org_id, key=key)
            broken = broken or not report.ok
            typer.echo(report.summary())
    finally:
        db.dispose()
    if broken:
        raise typer.Exit(1)


@events_app.command("checkpoint")
def events_checkpoint(
    organization: str | None = typer.Option(None, "--org", help="Only this organization"),
    database_url: DatabaseOpt = None,
) -> None:
    """Seal the head of every event chain changed since the last checkpoint, signed with
    RETURNGUARD_AUDIT_KEY (from cron, e.g. every 5 minutes; workers do it too).

    Exits 1 when a chain did not verify and was left unsealed."""
    from returnguard.audit.checkpoints import write_checkpoints

    wanted = _parse_id(organization) if organization else None
    settings = _settings(database_url)
    key = settings.audit_key_bytes
    if key is None:
        console.print(
            "warning: RETURNGUARD_AUDIT_KEY is not set: checkpoints are written unsigned "
            "and prove nothing against someone with database access",
            markup=False,
            soft_wrap=True,
        )
    db = Database(settings.database_url)
    try:
        _require_organization(db, wanted)
        run = write_checkpoints(db, key, wanted)
    finally:
        db.dispose()
    for w in run.written:
        # Keep these lines somewhere the database's users cannot edit (a log host): they
        # show which checkpoints existed, should someone delete the latest ones.
        typer.echo(
            f"{w.organization_id}: checkpoint #{w.number}: {w.subjects} chain head(s) "
            f"sealed; digest {w.digest}; signature {w.signature or 'none (unsigned)'}"
        )
    for org_id in run.busy:
        typer.echo(f"{org_id}: being sealed by another process right now; skipped")
    for r in run.refused:
        typer.echo(
            f"{r.organization_id}: NOT SEALED {r.subject_type} {r.subject_id}: {r.reason} "
            "(see `returnguard events verify`)"
        )
    if not (run.written or run.busy or run.refused):
        typer.echo("nothing to seal: no events since the last checkpoints")
    if run.refused:
        raise typer.Exit(1)


@events_app.command("keygen")
def events_keygen() -> None:
    """Print a new random key for RETURNGUARD_AUDIT_KEY (256 bits, URL-safe text)."""
    import secrets

    typer.echo(secrets.token_urlsafe(32))


# --- secrets at rest: keys and rotation (kit/secrets.py; docs/operations.md) ---------------
secrets_app = typer.Typer(
    help="Keys that encrypt webhook secrets and provider credentials at rest.",
    no_args_is_help=True,
)
app.add_typer(secrets_app, name="secrets")


@secrets_app.command("keygen")
def secrets_keygen() -> None:
    """Print a new key for RETURNGUARD_SECRET_KEYS (32 random bytes, base64url)."""
    from returnguard.kit.secrets import generate_key

    typer.echo(generate_key())


@secrets_app.command("rotate")
def secrets_rotate(
    database_url: DatabaseOpt = None,
    batch_size: int = typer.Option(200, "--batch-size", min=1, max=10_000),
) -> None:
    """Re-encrypt every stored secret under the first key of RETURNGUARD_SECRET_KEYS.

    Secrets still in plain text (stored before migration 0013) are encrypted too, a batch
    of rows per transaction; safe to run again. Exits 1 naming each secret that opens
    with none of the configured keys, 2 when no key is configured."""
    from returnguard.kit.secrets import SETTING, SecretKeyMissing, keyring_for, rotate
    from returnguard.outbox.service import STORED_SECRETS
    from returnguard.refunds.accounts import STORED_CREDENTIALS

    settings = _settings(database_url)
    keyring = keyring_for(settings)
    db = Database(settings.database_url)
    try:
        counts = rotate(db, keyring, [STORED_SECRETS, STORED_CREDENTIALS], batch_size=batch_size)
    except SecretKeyMissing as exc:
        console.print(f"error: {exc.detail}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    finally:
        db.dispose()
    source = f"key file {keyring.key_file}" if keyring.key_file else SETTING
    if keyring.ids:
        typer.echo(f"keys ({source}): {', '.join(keyring.ids)}; encrypting with {keyring.ids[0]}")
    else:
        typer.echo(f"no key ({source} not set or not made yet)")
    failed = False
    for c in counts:
        in_use = ", ".join(f"{kid} ({n})" for kid, n in sorted(c.key_ids.items())) or "none"
        typer.echo(
            f"{c.kind}: {c.found} found; {c.from_plain} encrypted from plain text, "
            f"{c.resealed} re-encrypted, {c.current} already under the current key, "
            f"{c.changed_meanwhile} changed meanwhile, {len(c.unreadable)} unreadable; "
            f"keys in use before: {in_use}"
        )
        for problem in c.unreadable:
            failed = True
            typer.echo(f"UNREADABLE {problem}")
    if failed:
        raise typer.Exit(1)


@fx_app.command("import")
def fx_import(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True),
    organization: str = typer.Option(..., "--org", help="Organization id"),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON"),
    database_url: DatabaseOpt = None,
) -> None:
    """Import ECB euro reference rates (eurofxref-hist.csv or eurofxref.csv): all or none."""
    from returnguard.auth.models import Organization
    from returnguard.auth.service import Actor
    from returnguard.errors import InvalidInput, ReturnGuardError
    from returnguard.fx.service import import_ecb

    organization_id = _parse_id(organization)
    try:
        text = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        console.print(f"error: {file} is not UTF-8 text (byte {exc.start})", markup=False)
        raise typer.Exit(2) from None
    settings = _settings(database_url)
    db = Database(settings.database_url)
    try:
        with db.session() as session:
            if session.get(Organization, organization_id) is None:
                console.print(f"error: organization {organization_id} not found", markup=False)
                raise typer.Exit(2)
            summary = import_ecb(session, Actor.system(organization_id, "cli"), text)
    except InvalidInput as exc:
        # The messages quote the file: no markup, and one problem is one line.
        for error in exc.errors:
            console.print(error["message"], markup=False, highlight=False, soft_wrap=True)
        console.print("the file has problems; nothing was imported", markup=False)
        raise typer.Exit(1) from None
    except ReturnGuardError as exc:
        console.print(f"error: {exc.detail}", markup=False)
        raise typer.Exit(2) from None
    finally:
        db.dispose()
    if as_json:
        typer.echo(json.dumps(summary.as_event() | {"import_id": str(summary.import_id)}))
        return
    days = f"{summary.days} day" + ("s" if summary.days != 1 else "")
    typer.echo(
        f"imported {summary.rates} rates for {days} ({summary.first_day} to "
        f"{summary.last_day}), {summary.base} to {', '.join(summary.currencies)}"
    )
    typer.echo(
        f"{summary.created} created, {summary.updated} updated, {summary.unchanged} unchanged"
    )
    if summary.skipped_currencies:
        typer.echo(f"skipped retired currencies: {', '.join(summary.skipped_currencies)}")


OrgOpt = Annotated[str, typer.Option("--org", help="Organization id")]


@webhooks_app.command("list")
def webhooks_list(org: OrgOpt, database_url: DatabaseOpt = None) -> None:
    """Every webhook endpoint of the organization: id, state, URL, event types."""
    from returnguard.outbox import service as outbox

    organization_id = _parse_id(org)
    db = Database(_settings(database_url).database_url)
    try:
        with db.session(read_only=True) as session:
            for e in outbox.list_endpoints(session, organization_id):
                state = "active" if e.active else "disabled"
                typer.echo(f"{e.id}  {state:8}  {e.url}  {','.join(e.event_types)}")
    finally:
        db.dispose()


def _change_endpoint(org: str, endpoint: str, database_url: str | None, change: str) -> None:
    from returnguard.auth.actor import Actor
    from returnguard.errors import ReturnGuardError
    from returnguard.kit.egress import Egress
    from returnguard.outbox import service as outbox

    organization_id = _parse_id(org)
    endpoint_id = _parse_id(endpoint, "ENDPOINT", "an endpoint id")
    settings = _settings(database_url)
    db = Database(settings.database_url)
    actor = Actor.system(organization_id, "cli")
    try:
        with db.session() as session:
            if change == "delete":
                dropped = outbox.delete_endpoint(session, actor, endpoint_id)
            else:
                _, dropped = outbox.update_endpoint(
                    session,
                    actor,
                    endpoint_id,
                    egress=Egress.from_settings(settings),
                    active=change == "enable",
                )
    except ReturnGuardError as exc:
        console.print(f"error: {exc}", markup=False)
        raise typer.Exit(1) from None
    finally:
        db.dispose()
    done = {"delete": "deleted", "enable": "enabled", "disable": "disabled"}[change]
    typer.echo(f"webhook endpoint {endpoint_id} {done}; {dropped} queued message(s) not delivered")


@webhooks_app.command("disable")
def webhooks_disable(endpoint: str, org: OrgOpt, database_url: DatabaseOpt = None) -> None:
    """Stop delivering to an endpoint, including what is already queued for it."""
    _change_endpoint(org, endpoint, database_url, "disable")


@webhooks_app.command("enable")
def webhooks_enable(endpoint: str, org: OrgOpt, database_url: DatabaseOpt = None) -> None:
    """Deliver to a disabled endpoint again (events from now on)."""
    _change_endpoint(org, endpoint, database_url, "enable")


@webhooks_app.command("delete")
def webhooks_delete(endpoint: str, org: OrgOpt, database_url: DatabaseOpt = None) -> None:
    """Remove an endpoint and its delivery log; nothing queued for it is delivered."""
    _change_endpoint(org, endpoint, database_url, "delete")


def _require_organization(db: Database, organization_id: uuid.UUID | None) -> None:
    """Exit 2 when ``--org`` names no organization (None: every one, nothing to check)."""
    from returnguard.auth.models import Organization

    if organization_id is None:
        return
    with db.session(read_only=True) as session:
        if session.get(Organization, organization_id) is None:
            console.print(f"error: organization {organization_id} not found", markup=False)
            raise typer.Exit(2)


def _parse_id(value: str, what: str = "--org", kind: str = "an organization id") -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        console.print(f"error: {what}: {value!r} is not {kind} (a UUID)", markup=False)
        raise typer.Exit(2) from None


def _load_document(file: Path) -> object:
    import json

    import yaml

    text = file.read_text(encoding="utf-8-sig")
    try:
        return json.loads(text) if file.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        console.print(
            f"error: {file} is not valid {file.suffix.lstrip('.') or 'YAML'}: {exc}", markup=False
        )
        raise typer.Exit(2) from None


@policies_app.command("validate")
def policies_validate(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True),
) -> None:
    """Check a policy file (YAML or JSON): every problem, with the path of its field."""
    from returnguard.domain.policy.validate import parse_policy

    _, problems = parse_policy(_load_document(file))
    for problem in problems:
        typer.echo(f"{problem['field']}: {problem['message']}")
    if problems:
        typer.echo(f"{len(problems)} problem(s)")
        raise typer.Exit(1)
    typer.echo("policy is valid")


@policies_app.command("backtest")
def policies_backtest(
    policy: str = typer.Argument(..., help="Policy id"),
    organization: str = typer.Option(..., "--org", help="Organization id"),
    start: datetime = typer.Option(..., "--from", formats=["%Y-%m-%d"], help="First day"),
    end: datetime = typer.Option(..., "--to", formats=["%Y-%m-%d"], help="Last day, inclusive"),
    version: int | None = typer.Option(None, help="Version to try (default: the latest)"),
    channel: str | None = typer.Option(None, help="Only this channel's returns"),
    csv_file: Path | None = typer.Option(None, "--csv", help="Write the differing returns here"),
    database_url: DatabaseOpt = None,
) -> None:
    """Run a policy version over past returns and show what would have changed, in money."""
    from returnguard.errors import ReturnGuardError
    from returnguard.orders.service import get_channel
    from returnguard.policies import service
    from returnguard.policies.backtest import backtest

    org_id = _parse_id(organization)
    policy_id = _parse_id(policy, "POLICY", "a policy id")
    settings = _settings(database_url)
    db = Database(settings.database_url)
    try:
        with db.session() as session:
            found = service.get_policy(session, org_id, policy_id)
            chosen = service.get_version(session, found, version)
            channel_id = get_channel(session, org_id, channel).id if channel else None
            report = backtest(
                session,
                org_id,
                chosen,
                start=start.replace(tzinfo=UTC),
                end=end.replace(tzinfo=UTC) + timedelta(days=1),
                channel_id=channel_id,
            )
    except ReturnGuardError as exc:
        console.print(f"error: {exc.detail}", markup=False)
        raise typer.Exit(2) from None
    finally:
        db.dispose()
    typer.echo(report.to_table())
    if csv_file is not None:
        csv_file.write_text(report.to_csv(), encoding="utf-8")
        typer.echo(f"wrote {len(report.differing)} differing return(s) to {csv_file}")


@report_app.command("rollup")
def report_rollup(
    organization: str | None = typer.Option(None, "--org", help="Only this organization"),
    database_url: DatabaseOpt = None,
) -> None:
    """Rebuild the net-profit rollups of every month that changed or has none yet (the
    workers do it every RETURNGUARD_ROLLUP_INTERVAL_SECONDS; this is for cron when that
    is 0, and after a large import). Reports are exact either way: they read days not
    rolled up from the raw rows, which is slower."""
    from returnguard.ledger import rollups

    wanted = _parse_id(organization) if organization else None
    settings = _settings(database_url)
    db = Database(settings.database_url)
    try:
        _require_organization(db, wanted)

        def built(org: uuid.UUID, month: date, seconds: float) -> None:
            typer.echo(f"{org}: {month:%Y-%m} rebuilt in {seconds:.2f} s")

        run = rollups.compact(db, wanted, on_month=built)
    finally:
        db.dispose()
    if run.failed:
        typer.echo(f"{run.failed} month(s) were being rebuilt by another process: skipped")
    if not run.built and not run.failed:
        typer.echo("nothing to rebuild: every month's rollups are current")


@report_app.command("net-profit")
def report_net_profit(
    organization: str = typer.Option(..., "--org", help="Organization id"),
    by: str = typer.Option("order", "--by", help="Group by order, sku, channel or month"),
    start: datetime = typer.Option(..., "--from", formats=["%Y-%m-%d"], help="First day"),
    end: datetime = typer.Option(..., "--to", formats=["%Y-%m-%d"], help="Last day, inclusive"),
    csv_file: Path | None = typer.Option(None, "--csv", help="Also write the report as CSV"),
    xlsx_file: Path | None = typer.Option(None, "--xlsx", help="Also write it as XLSX"),
    database_url: DatabaseOpt = None,
) -> None:
    """True net profit in the organization's base currency: revenue - cost of goods -
    refunds - return costs + recoveries, per order, SKU, channel or month."""
    import csv

    from returnguard.ledger import reports

    org_id = _parse_id(organization)
    try:
        group_by = reports.GroupBy(by)
    except ValueError:
        choices = ", ".join(g.value for g in reports.GroupBy)
        console.print(f"error: --by: {by!r} is not one of {choices}", markup=False)
        raise typer.Exit(2) from None
    if start > end:
        console.print("error: --from is after --to", markup=False)
        raise typer.Exit(2)
    settings = _settings(database_url)
    db = Database(settings.database_url)
    try:
        with reports.reading(db) as session:
            try:
                report = reports.net_profit(session, org_id, group_by, start.date(), end.date())
            except LookupError:
                console.print(f"error: organization {org_id} not found", markup=False)
                raise typer.Exit(2) from None
            # One pass over the rows feeds the terminal and both files as they arrive.
            with (
                csv_file.open("w", encoding="utf-8", newline="")
                if csv_file is not None
                else _nowhere()
            ) as csv_out:
                writer = csv.writer(csv_out, lineterminator="\r\n") if csv_file else None
                book = reports.NetProfitXlsx(report.currency) if xlsx_file else None
                table = _TerminalTable()
                for line in reports.net_profit_table(report):
                    if writer is not None:
                        writer.writerow(reports.csv_cells(line))
                    if book is not None:
                        book.append(line)
                    table.add([v if isinstance(v, str) else format(v, ",f") for v in line])
                table.close()
            missing = report.missing_rates()
            for m in missing:
                console.print(
                    f"left out, no {m.currency}->{report.currency} rate on {m.day}: "
                    f"{m.what} {m.id}",
                    markup=False,
                )
            if book is not None and xlsx_file is not None:
                with xlsx_file.open("wb") as xlsx_out:
                    book.save(xlsx_out, missing)
    finally:
        db.dispose()
    if csv_file is not None:
        typer.echo(f"wrote {csv_file}")
    if xlsx_file is not None:
        typer.echo(f"wrote {xlsx_file}")


@contextmanager
def _nowhere() -> Iterator[io.StringIO]:
    yield io.StringIO()


class _TerminalTable:
    """Aligned columns for a table that arrives line by line. The first lines (up to
    ``lookahead``) set the widths; a table no longer than that is aligned throughout,
    a longer one keeps those widths (a wider cell only pushes its line)."""

    def __init__(self, lookahead: int = 1000) -> None:
        self._pending: list[list[str]] = []
        self._widths: list[int] | None = None
        self._lookahead = lookahead

    def add(self, cells: list[str]) -> None:
        if self._widths is not None:
            self._print(cells)
            return
        self._pending.append(cells)
        if len(self._pending) >= self._lookahead:
            self._flush()

    def close(self) -> None:
        if self._widths is None:
            self._flush()

    def _flush(self) -> None:
        lines, self._pending = self._pending, []
        if not lines:
            return
        self._widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
        for line in lines:
            self._print(line)

    def _print(self, line: list[str]) -> None:
        assert self._widths is not None
        last = len(line) - 1
        cells = [
            cell.ljust(w) if i < 2 or i == last else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, self._widths, strict=True))
        ]
        typer.echo("  ".join(cells).rstrip())


DEMO_DATABASE_URL = "sqlite:///returnguard-demo/returnguard.sqlite3"


@app.command()
def demo(
    # Deliberately not read from RETURNGUARD_DATABASE_URL: the demo must never load its
    # data into the database a real deployment points at.
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="Where to put the demo database (default: ./returnguard-demo/returnguard.sqlite3)",
        ),
    ] = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    no_serve: bool = typer.Option(False, help="Load the demo data and exit"),
) -> None:
    """Create a demo database with realistic data and serve it."""
    import shlex

    from sqlalchemy.engine import make_url

    from returnguard.demo import load_demo

    # Before any data or key: a demo that cannot serve must not hand out a key first.
    listener = None if no_serve else _claim_port(host, port)
    settings = _settings(database_url or DEMO_DATABASE_URL)
    try:
        upgrade(settings.database_url)
        db = Database(settings.database_url)
        try:
            info = load_demo(db)
        finally:
            db.dispose()
    except BaseException:
        if listener is not None:
            listener.close()
        raise
    shown = _shown_url(settings.database_url)
    url = shlex.quote(shown)
    org = info.organization_id
    today = datetime.now(UTC).date()
    first = info.first_day or today
    typer.echo(f"demo organization: {org}")
    typer.echo(f"API key (admin):   {info.api_key}")
    typer.echo(f"loaded {info.orders} orders and {info.returns} returns")
    typer.echo(f"demo database: {shown}")
    hidden = " (put the password where *** stands)" if make_url(shown).password else ""
    typer.echo(
        f"commands on this database{hidden}; or run `export RETURNGUARD_DATABASE_URL={url}` "
        "once and leave --database-url out:"
    )
    commands = [f'org create "My second shop" --json --database-url {url}']
    span = f"--org {org} --from {first} --to {today}"
    commands.append(f"report net-profit {span} --by month --database-url {url}")
    policy = info.policies.get("amazon-de")
    if policy is not None:
        commands.append(
            f"policies backtest {policy} {span} --channel amazon-de --database-url {url}"
        )
    commands.append(f"events verify --database-url {url}")
    for command in commands:
        typer.echo(f"  returnguard {command}")
    if listener is None:
        return
    base = f"http://{host}:{port}"
    auth = f"-H 'Authorization: Bearer {info.api_key}'"
    typer.echo(f"serving at {base}  (API docs: {base}/docs)")
    typer.echo(f"try: curl {auth} '{base}/api/v1/returns?status=received'")
    typer.echo(
        "the demo sends no webhooks (it subscribes no receiver); to see signed events, "
        "subscribe yours:"
    )
    typer.echo(
        f"  curl -X POST {auth} -H 'Content-Type: application/json' "
        f"""-d '{{"url": "https://your-receiver.example/hook", "event_types": ["*"]}}' """
        f"{base}/api/v1/webhooks/endpoints"
    )
    import uvicorn

    from returnguard.app import create_app

    config = uvicorn.Config(create_app(settings), log_level="warning")
    uvicorn.Server(config).run(sockets=[listener])


def _claim_port(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, for the server to listen on; exit 2 when the port is
    taken (another demo, another server) or the address is not this machine's."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    # As uvicorn binds: a port whose last connections are still closing is free.
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        console.print(
            f"error: cannot serve the demo on {host}:{port}: {exc.strerror or exc}. Is another "
            "demo or server running there? Stop it, or choose another port with --port; "
            "nothing was loaded.",
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(2) from None
    return listener


# --- administration and the reserve and money-at-risk reports -----------------------------
#
# `org list`, `api-keys`, `users`, `channels`, `report reserve`, `report money-at-risk`.
# Each command calls the service functions the API calls (same rules, same events); the
# CLI acts as the organization's system actor "cli".

api_keys_app = typer.Typer(
    help="API keys of an organization: create, list, revoke.", no_args_is_help=True
)
users_app = typer.Typer(help="Staff members of an organization.", no_args_is_help=True)
channels_app = typer.Typer(help="Sales channels of an organization.", no_args_is_help=True)
app.add_typer(api_keys_app, name="api-keys")
app.add_typer(users_app, name="users")
app.add_typer(channels_app, name="channels")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON")]


def _refused(exc: Exception, options: dict[str, str] | None = None) -> typer.Exit:
    """Print a service error or a rejected input, naming the option; the exit (2) to
    raise."""
    from pydantic import ValidationError

    from returnguard.errors import ReturnGuardError

    options = options or {}
    lines: list[str] = []
    if isinstance(exc, ValidationError):
        for e in exc.errors():
            field = str(e["loc"][0]) if e["loc"] else ""
            lines.append(f"{options.get(field, field)}: {e['msg']}")
    elif isinstance(exc, ReturnGuardError) and exc.errors:
        for error in exc.errors:
            field = str(error.get("field", ""))
            lines.append(f"{options.get(field, field)}: {error.get('message', '')}")
    else:
        lines.append(exc.detail if isinstance(exc, ReturnGuardError) else str(exc))
    for line in lines:
        console.print(f"error: {line}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(2)


@contextmanager
def _organization_db(org: str, database_url: str | None) -> Iterator[tuple[Database, uuid.UUID]]:
    """The database and the organization ``--org`` names; exit 2 when it names none."""
    organization_id = _parse_id(org)
    db = Database(_settings(database_url).database_url)
    try:
        _require_organization(db, organization_id)
        yield db, organization_id
    finally:
        db.dispose()


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value is not None else "-"


@org_app.command("list")
def org_list(as_json: JsonOpt = False, database_url: DatabaseOpt = None) -> None:
    """Every organization, oldest first: id, name, base currency, created, and how many
    users, active API keys and channels it has."""
    from sqlalchemy import func, select

    from returnguard.auth.models import ApiKey, Organization, User
    from returnguard.orders.models import Channel

    db = Database(_settings(database_url).database_url)
    try:
        with db.session(read_only=True) as session:

            def counts(column: Any, *where: Any) -> dict[uuid.UUID, int]:
                stmt = select(column, func.count()).where(*where).group_by(column)
                return {org_id: n for org_id, n in session.execute(stmt)}

            # Small tables, one grouped count each: cheap however many orders there are.
            users = counts(User.organization_id)
            keys = counts(ApiKey.organization_id, ApiKey.revoked_at.is_(None))
            channels = counts(Channel.organization_id)
            stmt = select(Organization).order_by(Organization.created_at, Organization.id)
            orgs = [(o.id, o.name, o.base_currency, o.created_at) for o in session.scalars(stmt)]
    finally:
        db.dispose()
    if as_json:
        rows = [
            {
                "id": str(org_id),
                "name": name,
                "base_currency": currency,
                "created_at": created.isoformat(),
                "users": users.get(org_id, 0),
                "active_api_keys": keys.get(org_id, 0),
                "channels": channels.get(org_id, 0),
            }
            for org_id, name, currency, created in orgs
        ]
        typer.echo(json.dumps(rows, ensure_ascii=False))
        return
    if not orgs:
        console.print("no organizations yet: create one with `returnguard org create`")
        return
    table = _Table(left={0, 1, 2, 3})
    table.add(["id", "name", "currency", "created", "users", "api_keys", "channels"])
    for org_id, name, currency, created in orgs:
        counted = [users.get(org_id, 0), keys.get(org_id, 0), channels.get(org_id, 0)]
        table.add([str(org_id), name, currency, _when(created), *map(str, counted)])
    table.close()


def _key_json(key: Any) -> dict[str, Any]:
    # Never the key nor its hash: the prefix is the public part that names it.
    return {
        "id": str(key.id),
        "prefix": key.prefix,
        "name": key.name,
        "role": key.role,
        "user_id": str(key.user_id) if key.user_id else None,
        "created_at": key.created_at.isoformat(),
        "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None,
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


@api_keys_app.command("create")
def api_keys_create(
    org: OrgOpt,
    role: str = typer.Option(..., "--role", help="admin, agent, inspector, finance or viewer"),
    name: str | None = typer.Option(None, "--name", help="What the key is for"),
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Create an API key with a role; the key is shown once and stored only as a hash."""
    from pydantic import ValidationError

    from returnguard.auth import service as auth
    from returnguard.auth.endpoints import ApiKeyIn
    from returnguard.errors import ReturnGuardError

    options = {"role": "--role", "name": "--name"}
    try:
        body = ApiKeyIn(name=f"{role} (created by CLI)" if name is None else name, role=role)
    except ValidationError as exc:
        raise _refused(exc, options) from None
    with _organization_db(org, database_url) as (db, organization_id):
        try:
            with db.session() as session:
                key, plain = auth.create_api_key(
                    session,
                    organization_id,
                    name=body.name,
                    role=body.role.value,
                    actor=auth.Actor.system(organization_id, "cli"),
                )
                created = _key_json(key)
        except ReturnGuardError as exc:
            raise _refused(exc, options) from None
    if as_json:
        typer.echo(json.dumps(created | {"api_key": plain}, ensure_ascii=False))
        return
    typer.echo(f"api_key_id: {created['id']}\nrole: {created['role']}\napi_key: {plain}")
    typer.echo("(the key is shown only once)")


@api_keys_app.command("list")
def api_keys_list(org: OrgOpt, as_json: JsonOpt = False, database_url: DatabaseOpt = None) -> None:
    """The organization's API keys, oldest first: id, prefix, role, name, created, last
    used, revoked. Never the keys themselves."""
    from returnguard.auth import service as auth

    with (
        _organization_db(org, database_url) as (db, organization_id),
        db.session(read_only=True) as session,
    ):
        found = auth.list_api_keys(session, organization_id)
        keys = [_key_json(k) for k in found]
        times = [(k.created_at, k.last_used_at, k.revoked_at) for k in found]
    if as_json:
        typer.echo(json.dumps(keys, ensure_ascii=False))
        return
    table = _Table(left={0, 1, 2, 3, 4, 5, 6})
    table.add(["id", "prefix", "role", "name", "created", "last_used", "revoked"])
    for k, (created, used, revoked) in zip(keys, times, strict=True):
        prefix = f"{auth.KEY_PREFIX}_{k['prefix']}"
        revoked_at = _when(revoked) if revoked else "no"
        table.add([k["id"], prefix, k["role"], k["name"], _when(created), _when(used), revoked_at])
    table.close()


@api_keys_app.command("revoke")
def api_keys_revoke(
    key: Annotated[
        str, typer.Argument(metavar="KEY_ID", help="The key's id (see `api-keys list`)")
    ],
    org: OrgOpt,
    database_url: DatabaseOpt = None,
) -> None:
    """Revoke an API key: the API answers 401 to it from now on. Revoking a revoked key
    changes nothing."""
    from returnguard.auth import service as auth
    from returnguard.auth.models import ApiKey
    from returnguard.errors import ReturnGuardError

    key_id = _parse_id(key, "KEY_ID", "an API key id")
    with _organization_db(org, database_url) as (db, organization_id):
        try:
            with db.session() as session:
                before = session.get(ApiKey, key_id)
                was_revoked = before.revoked_at if before is not None else None
                revoked = auth.revoke_api_key(
                    session, auth.Actor.system(organization_id, "cli"), key_id
                )
                prefix, revoked_at = revoked.prefix, revoked.revoked_at
        except ReturnGuardError as exc:
            raise _refused(exc) from None
    label = f"API key {key_id} ({auth.KEY_PREFIX}_{prefix}…)"
    if was_revoked is not None:
        typer.echo(f"{label} was already revoked at {_when(was_revoked)}; nothing changed")
    else:
        typer.echo(f"revoked {label} at {_when(revoked_at)}")


@users_app.command("create")
def users_create(
    org: OrgOpt,
    email: str = typer.Option(..., "--email", help="The person's email (unique per organization)"),
    role: str = typer.Option(..., "--role", help="admin, agent, inspector, finance or viewer"),
    name: str = typer.Option("", "--name", help="The person's name"),
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Add a staff member with a role and issue their personal API key (shown once), as
    `POST /api/v1/users` does: changes made with it are recorded under their email."""
    from pydantic import ValidationError

    from returnguard.auth import service as auth
    from returnguard.auth.endpoints import UserIn
    from returnguard.errors import ReturnGuardError

    options = {"email": "--email", "role": "--role", "name": "--name"}
    try:
        body = UserIn(email=email, role=role, name=name)
    except ValidationError as exc:
        raise _refused(exc, options) from None
    with _organization_db(org, database_url) as (db, organization_id):
        actor = auth.Actor.system(organization_id, "cli")
        try:
            with db.session() as session:
                user = auth.create_user(
                    session,
                    organization_id,
                    email=body.email,
                    role=body.role.value,
                    name=body.name,
                    actor=actor,
                )
                _, plain = auth.create_api_key(
                    session,
                    organization_id,
                    name=f"personal key of {user.email}",
                    role=user.role,
                    user_id=user.id,
                    actor=actor,
                )
                created = {
                    "id": str(user.id),
                    "email": user.email,
                    "name": user.name,
                    "role": user.role,
                    "created_at": user.created_at.isoformat(),
                }
        except ReturnGuardError as exc:
            raise _refused(exc, options) from None
    if as_json:
        typer.echo(json.dumps(created | {"api_key": plain}, ensure_ascii=False))
        return
    typer.echo(
        f"user_id: {created['id']}\nemail: {created['email']}\nrole: {created['role']}\n"
        f"api_key: {plain}\n(the key is shown only once)"
    )


@channels_app.command("list")
def channels_list(org: OrgOpt, as_json: JsonOpt = False, database_url: DatabaseOpt = None) -> None:
    """The organization's sales channels, by code (JSON: as `GET /api/v1/channels`)."""
    from returnguard.orders import repository as orders
    from returnguard.orders.endpoints import channel_out

    with (
        _organization_db(org, database_url) as (db, organization_id),
        db.session(read_only=True) as session,
    ):
        channels = [channel_out(c) for c in orders.channels(session, organization_id)]
    if as_json:
        typer.echo(json.dumps([c.model_dump(mode="json") for c in channels], ensure_ascii=False))
        return
    table = _Table(left={0, 1, 2, 3, 4, 5})
    table.add(["code", "name", "marketplace", "country", "currency", "language", "label_cost"])
    for c in channels:
        cost = c.return_label_cost
        label = f"{cost.amount} {cost.currency}" if cost else "-"
        table.add([c.code, c.name, c.marketplace, c.country, c.currency, c.language, label])
    table.close()


def _terminal_cell(value: object) -> str:
    from returnguard.kit.money import Money

    if value is None:
        return ""
    if isinstance(value, Money):
        return format(value.amount, ",f")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _export_files(
    csv_file: Path | None,
    xlsx_file: Path | None,
    lines: Callable[[], Iterable[list[Any]]],
    write_xlsx: Callable[[IO[bytes]], None],
    to_stderr: bool,
) -> None:
    """Write the CSV (from ``lines()``) and the XLSX (``write_xlsx(out)``) asked for."""
    from returnguard.ledger import exports

    written: list[Path] = []
    if csv_file is not None:
        with csv_file.open("w", encoding="utf-8", newline="") as out:
            exports.write_csv(lines(), out)
        written.append(csv_file)
    if xlsx_file is not None:
        with xlsx_file.open("wb") as binary:
            write_xlsx(binary)
        written.append(xlsx_file)
    for path in written:
        # With --json, stdout carries the document alone.
        if to_stderr:
            console.print(f"wrote {path}", markup=False, highlight=False)
        else:
            typer.echo(f"wrote {path}")


def _left_out(missing: list[Any], currency: str) -> None:
    for m in missing:
        console.print(
            f"left out, no {m.currency}->{currency} rate on {m.day}: {m.what} {m.id}",
            markup=False,
        )


AsOfOpt = Annotated[
    datetime | None,
    typer.Option("--as-of", formats=["%Y-%m-%d"], help="The day to report on (default today)"),
]
CsvOpt = Annotated[Path | None, typer.Option("--csv", help="Also write the report as CSV")]
XlsxOpt = Annotated[Path | None, typer.Option("--xlsx", help="Also write it as XLSX")]


@report_app.command("reserve")
def report_reserve(
    org: OrgOpt,
    as_of: AsOfOpt = None,
    lookback_days: int = typer.Option(
        180, "--lookback-days", min=1, max=3650, help="Sales and returns of these days"
    ),
    hold_days: int = typer.Option(
        30, "--hold-days", min=1, max=3650, help="Reserve for the units sold in these days"
    ),
    csv_file: CsvOpt = None,
    xlsx_file: XlsxOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as GET /reports/reserve does")
    ] = False,
    database_url: DatabaseOpt = None,
) -> None:
    """The return-risk reserve per SKU in the base currency: the Wilson 95% upper bound of
    the return rate x the loss per return, for the units sold in the last --hold-days."""
    from returnguard.ledger import exports, reports
    from returnguard.ledger import service as ledger

    if hold_days > lookback_days:
        console.print("error: --hold-days: must not be longer than --lookback-days", markup=False)
        raise typer.Exit(2)
    day = as_of.date() if as_of is not None else ledger.today()
    with (
        _organization_db(org, database_url) as (db, organization_id),
        reports.reading(db) as session,
    ):
        report = reports.reserve(
            session, organization_id, as_of=day, lookback_days=lookback_days, hold_days=hold_days
        )
    if as_json:
        typer.echo(exports.reserve_out(report).model_dump_json())
    else:
        table = _Table(left={0, len(exports.RESERVE_COLUMNS) - 1})
        for line in exports.reserve_table(report):
            table.add([_terminal_cell(v) for v in line])
        table.close()
    _left_out(report.missing_rates, report.currency)
    _export_files(
        csv_file,
        xlsx_file,
        lambda: exports.reserve_table(report),
        lambda out: exports.write_reserve_xlsx(report, out),
        as_json,
    )


@report_app.command("money-at-risk")
def report_money_at_risk(
    org: OrgOpt,
    as_of: AsOfOpt = None,
    items: bool = typer.Option(False, "--items", help="Also list each refund line at risk"),
    csv_file: CsvOpt = None,
    xlsx_file: XlsxOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as GET /reports/money-at-risk does")
    ] = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Refunds already paid whose goods are not received (or received but not inspected),
    by days since payment, in the base currency."""
    from returnguard.ledger import exports, reports
    from returnguard.ledger import service as ledger

    day = as_of.date() if as_of is not None else ledger.today()
    # One snapshot for every output; each reads the refund lines once, as they arrive, so
    # each takes a report of its own.
    with (
        _organization_db(org, database_url) as (db, organization_id),
        reports.reading(db) as session,
    ):

        def fresh() -> reports.MoneyAtRiskReport:
            return reports.money_at_risk(session, organization_id, as_of=day)

        report = fresh()
        if as_json:
            for part in exports.money_at_risk_json(report):
                typer.echo(part, nl=False)
            typer.echo("")
        else:
            table = _Table(left={0, len(exports.BUCKET_COLUMNS) - 1})
            table.add(list(exports.BUCKET_COLUMNS))
            for line in exports.money_at_risk_buckets(report):
                table.add([_terminal_cell(v) for v in line])
            table.close()
            if items:
                typer.echo("")
                lines = _Table(left={0, 5, 6, 8, 9, 10, 11})
                lines.add(list(exports.REFUND_LINE_COLUMNS))
                for line in exports.money_at_risk_refund_lines(report):
                    lines.add([_terminal_cell(v) for v in line])
                lines.close()
            _left_out(report.missing_rates(), report.currency)
        _export_files(
            csv_file,
            xlsx_file,
            lambda: exports.money_at_risk_table(fresh()),
            lambda out: exports.write_money_at_risk_xlsx(fresh(), out),
            as_json,
        )


class _Table(_TerminalTable):
    """A :class:`_TerminalTable` whose columns in ``left`` are left-aligned, the others
    (numbers) right-aligned."""

    def __init__(self, left: set[int], lookahead: int = 1000) -> None:
        super().__init__(lookahead)
        self._left = left

    def _print(self, line: list[str]) -> None:
        assert self._widths is not None
        cells = [
            cell.ljust(w) if i in self._left else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, self._widths, strict=True))
        ]
        typer.echo("  ".join(cells).rstrip())


# --- evidence storage (kit/storage.py, returns/evidence.py) ---------------------------

evidence_app = typer.Typer(help="Stored evidence files.", no_args_is_help=True)
app.add_typer(evidence_app, name="evidence")


@evidence_app.command("sweep")
def evidence_sweep(
    older_than: int | None = typer.Option(
        None,
        "--older-than",
        min=0,
        help="Seconds a file no evidence names must be old before it goes "
        "(default: RETURNGUARD_EVIDENCE_ORPHAN_GRACE_SECONDS, one hour)",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only count; delete nothing"),
    database_url: DatabaseOpt = None,
) -> None:
    """Delete stored files no evidence row names (left by uploads whose transaction rolled
    back, or by deleted returns); from cron, e.g. hourly."""
    from returnguard.kit import storage
    from returnguard.returns.evidence import orphans, sweep_orphans

    settings = _settings(database_url)
    grace = timedelta(
        seconds=settings.evidence_orphan_grace_seconds if older_than is None else older_than
    )
    store = storage.from_settings(settings)
    db = Database(settings.database_url)
    try:
        with db.session() as session:
            if dry_run:
                found = orphans(session, store, older_than=grace)
                typer.echo(f"{len(found)} orphaned file(s) older than {grace} (not deleted)")
            else:
                removed = sweep_orphans(session, store, older_than=grace)
                typer.echo(f"removed {len(removed)} orphaned file(s) older than {grace}")
    finally:
        db.dispose()


def main() -> None:
    app()
