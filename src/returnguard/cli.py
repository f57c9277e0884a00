"""The `returnguard` command line: serve, worker, demo, migrate, org, import, events, fx."""

from __future__ import annotations

import io
import json
import signal
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated

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
    settings = Settings(database_url=database_url) if database_url else Settings()
    if settings.database_url.startswith("sqlite:///"):
        path = Path(settings.database_url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
    return settings


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
                writer = csv.writer(csv_out, lineterminator="\n") if csv_file else None
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


@app.command()
def demo(
    # Deliberately not read from RETURNGUARD_DATABASE_URL: the demo must never load its
    # data into the database a real deployment points at.
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="Where to put the demo database")
    ] = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    no_serve: bool = typer.Option(False, help="Load the demo data and exit"),
) -> None:
    """Create a demo database with realistic data and serve it."""
    from returnguard.demo import load_demo

    settings = _settings(database_url or "sqlite:///returnguard-demo/returnguard.sqlite3")
    upgrade(settings.database_url)
    db = Database(settings.database_url)
    try:
        info = load_demo(db)
    finally:
        db.dispose()
    typer.echo(f"demo organization: {info.organization_id}")
    typer.echo(f"API key (admin):   {info.api_key}")
    typer.echo(f"loaded {info.orders} orders and {info.returns} returns")
    if no_serve:
        return
    typer.echo(f"serving at http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    typer.echo(
        f"try: curl -H 'Authorization: Bearer {info.api_key}' http://{host}:{port}/api/v1/returns"
    )
    import uvicorn

    from returnguard.app import create_app

    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


def main() -> None:
    app()
