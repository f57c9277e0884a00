"""The `returnguard` command line: serve, worker, demo, migrate, org, import, events, fx."""

from __future__ import annotations

import json
import signal
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from returnguard.config import Settings
from returnguard.kit.db import Database
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
    no_migrate: bool = typer.Option(False, help="Do not upgrade the schema at start"),
) -> None:
    """Serve the HTTP API (and, on SQLite, the outbox worker in-process)."""
    import uvicorn

    from returnguard.app import create_app

    settings = _settings(database_url)
    if not no_migrate:
        upgrade(settings.database_url)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")


@app.command()
def worker(database_url: DatabaseOpt = None, once: bool = False) -> None:
    """Deliver outbox messages (webhooks) until stopped; many may run on PostgreSQL."""
    from returnguard.outbox.worker import Worker

    settings = _settings(database_url)
    db = Database(settings.database_url)
    w = Worker(db, settings)
    if once:
        console.print(f"delivered {w.run_once()} message(s)")
        return
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    console.print(f"outbox worker {w.worker_id} running; Ctrl-C to stop")
    w.run_forever(stop)


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
    database_url: DatabaseOpt = None,
) -> None:
    """Import orders from a CSV file (one row per order line); bad rows are reported."""
    from rich.text import Text

    from returnguard.errors import ReturnGuardError
    from returnguard.orders.importer import import_orders_csv

    def fail(message: str) -> typer.Exit:
        # Text, not markup: the message can quote the file's own header cells.
        console.print(Text.assemble(("error:", "red"), " ", message), soft_wrap=True)
        return typer.Exit(2)

    organization_id = _parse_id(organization)
    settings = _settings(database_url)
    db = Database(settings.database_url)
    try:
        report = import_orders_csv(db, organization_id, file, console=console)
    except ReturnGuardError as exc:
        raise fail(exc.detail) from None
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
    import httpx

    from returnguard.refunds.sender import reconcile

    wanted = _parse_id(organization) if organization else None
    settings = _settings(database_url)
    db = Database(settings.database_url)
    try:
        with httpx.Client(timeout=settings.webhook_timeout_seconds) as http:
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
    database_url: DatabaseOpt = None,
) -> None:
    """Verify every organization's hash chain and name the first broken link."""
    from sqlalchemy import select

    from returnguard.audit.service import verify_chain
    from returnguard.auth.models import Organization

    wanted = _parse_id(organization) if organization else None
    settings = _settings(database_url)
    db = Database(settings.database_url)
    broken = False
    try:
        with db.session() as session:
            if wanted is not None and session.get(Organization, wanted) is None:
                console.print(f"error: organization {wanted} not found", markup=False)
                raise typer.Exit(2)
            org_ids = (
                [wanted] if wanted is not None else list(session.scalars(select(Organization.id)))
            )
            for org_id in org_ids:
                report = verify_chain(session, org_id)
                if report.ok:
                    typer.echo(f"{org_id}: OK ({report.checked} events)")
                else:
                    broken = True
                    typer.echo(f"{org_id}: BROKEN at event #{report.broken_seq}: {report.reason}")
    finally:
        db.dispose()
    if broken:
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
        with db.session() as session:
            try:
                report = reports.net_profit(session, org_id, group_by, start.date(), end.date())
            except LookupError:
                console.print(f"error: organization {org_id} not found", markup=False)
                raise typer.Exit(2) from None
    finally:
        db.dispose()
    table = [
        [format(v, ",f") if not isinstance(v, str) else v for v in line]
        for line in reports.net_profit_table(report)
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        cells = [
            cell.ljust(w) if i < 2 or i == len(line) - 1 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ]
        typer.echo("  ".join(cells).rstrip())
    for missing in report.missing_rates:
        console.print(
            f"left out, no {missing.currency}->{report.currency} rate on {missing.day}: "
            f"{missing.what} {missing.id}",
            markup=False,
        )
    if csv_file is not None:
        csv_file.write_text(reports.net_profit_csv(report), encoding="utf-8")
        typer.echo(f"wrote {csv_file}")
    if xlsx_file is not None:
        xlsx_file.write_bytes(reports.net_profit_xlsx(report))
        typer.echo(f"wrote {xlsx_file}")


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
