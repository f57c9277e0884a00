"""Administration from the command line: organizations, API keys, users and channels,
driven as an operator would, checked over HTTP (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from returnguard.audit.models import Event
from returnguard.cli import app
from returnguard.kit.db import Database
from tests.conftest import Api, Tenant, make_tenant

runner = CliRunner()
ROLES = ("admin", "agent", "inspector", "finance", "viewer")
NOBODY = "00000000-0000-0000-0000-0000000000aa"


@dataclass
class Run:
    exit_code: int
    stdout: str
    output: str  # stdout and stderr together, as a terminal shows them


def cli(db: Database, *args: str) -> Run:
    result = runner.invoke(app, [*args, "--database-url", db.url])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Run(result.exit_code, result.stdout, result.output)


def me(client: TestClient, key: str) -> Any:
    return client.get("/api/v1/me", headers={"Authorization": f"Bearer {key}"})


def events(db: Database, organization_id: uuid.UUID, action: str) -> list[Event]:
    with db.session() as session:
        stmt = select(Event).where(Event.organization_id == organization_id, Event.action == action)
        found = list(session.scalars(stmt))
        session.expunge_all()
        return found


def test_org_list_shows_every_organization_with_its_counts(db: Database) -> None:
    created = [
        json.loads(cli(db, "org", "create", name, "--base-currency", cur, "--json").stdout)
        for name, cur in (("Nordlicht Handel GmbH", "EUR"), ("Kyoto Goods KK", "JPY"))
    ]
    first = created[0]["organization_id"]
    assert cli(db, "api-keys", "create", "--org", first, "--role", "viewer").exit_code == 0
    assert (
        cli(db, "users", "create", "--org", first, "--email", "a@b.de", "--role", "agent").exit_code
        == 0
    )

    run = cli(db, "org", "list", "--json")
    assert run.exit_code == 0, run.output
    listed = {o["id"]: o for o in json.loads(run.stdout)}
    assert set(listed) == {c["organization_id"] for c in created}
    nord = listed[first]
    assert (nord["name"], nord["base_currency"]) == ("Nordlicht Handel GmbH", "EUR")
    # The CLI's admin key, the viewer key and the user's personal key; one user.
    assert (nord["users"], nord["active_api_keys"], nord["channels"]) == (1, 3, 0)
    assert listed[created[1]["organization_id"]]["base_currency"] == "JPY"

    run = cli(db, "org", "list")
    assert run.exit_code == 0, run.output
    lines = run.stdout.splitlines()
    assert lines[0].split() == [
        "id",
        "name",
        "currency",
        "created",
        "users",
        "api_keys",
        "channels",
    ]
    row = next(line for line in lines if line.startswith(first))
    assert "Nordlicht Handel GmbH" in row and row.split()[-3:] == ["1", "3", "0"]


def test_org_list_on_an_empty_database_says_so(db: Database) -> None:
    run = cli(db, "org", "list")
    assert run.exit_code == 0
    assert "no organizations yet" in run.output
    assert json.loads(cli(db, "org", "list", "--json").stdout) == []


def test_an_api_key_created_on_the_command_line_works_once_shown(
    db: Database, client: TestClient, tenant: Tenant
) -> None:
    org = str(tenant.organization_id)
    run = cli(db, "api-keys", "create", "--org", org, "--role", "finance", "--name", "books")
    assert run.exit_code == 0, run.output
    key = re.search(r"^api_key: (rg_\S+)$", run.stdout, re.M)
    assert key and "shown only once" in run.stdout
    r = me(client, key[1])
    assert r.status_code == 200, r.text
    assert (r.json()["role"], r.json()["label"]) == ("finance", "books")

    created = json.loads(
        cli(db, "api-keys", "create", "--org", org, "--role", "viewer", "--json").stdout
    )
    assert created["role"] == "viewer" and created["name"] == "viewer (created by CLI)"
    assert me(client, created["api_key"]).json()["role"] == "viewer"
    [event] = [
        e
        for e in events(db, tenant.organization_id, "api_key.created")
        if e.subject_id == created["id"]
    ]
    assert (event.actor_type, event.actor_label) == ("system", "cli")


def test_api_keys_list_never_shows_a_key_or_its_hash(
    db: Database, client: TestClient, tenant: Tenant
) -> None:
    org = str(tenant.organization_id)
    Api(client, tenant).channel()  # a write: records when the fixture's key was last used
    created = json.loads(
        cli(
            db, "api-keys", "create", "--org", org, "--role", "agent", "--name", "ops", "--json"
        ).stdout
    )
    digest = hashlib.sha256(created["api_key"].encode()).hexdigest()
    for args in ([], ["--json"]):
        run = cli(db, "api-keys", "list", "--org", org, *args)
        assert run.exit_code == 0, run.output
        for secret in (created["api_key"], digest, tenant.api_key):
            assert secret not in run.output
        assert created["id"] in run.stdout
    listed = json.loads(cli(db, "api-keys", "list", "--org", org, "--json").stdout)
    assert [k["name"] for k in listed] == ["test", "ops"]  # oldest first
    ops = listed[1]
    assert set(ops) == {
        "id",
        "prefix",
        "name",
        "role",
        "user_id",
        "created_at",
        "last_used_at",
        "revoked_at",
    }
    assert created["api_key"].startswith(f"rg_{ops['prefix']}_")
    assert (ops["role"], ops["last_used_at"], ops["revoked_at"]) == ("agent", None, None)
    assert listed[0]["last_used_at"] is not None
    text = cli(db, "api-keys", "list", "--org", org).stdout.splitlines()
    assert text[0].split() == ["id", "prefix", "role", "name", "created", "last_used", "revoked"]
    line = next(line.split() for line in text if line.startswith(created["id"]))
    assert line[1:4] == [f"rg_{ops['prefix']}", "agent", "ops"] and line[-2:] == ["-", "no"]


def test_a_revoked_key_is_refused_by_the_api_and_revoking_again_changes_nothing(
    db: Database, client: TestClient, tenant: Tenant
) -> None:
    org = str(tenant.organization_id)
    created = json.loads(
        cli(db, "api-keys", "create", "--org", org, "--role", "agent", "--json").stdout
    )
    assert me(client, created["api_key"]).status_code == 200

    run = cli(db, "api-keys", "revoke", created["id"], "--org", org)
    assert run.exit_code == 0, run.output
    assert run.stdout.startswith(f"revoked API key {created['id']} (rg_{created['prefix']}")
    r = me(client, created["api_key"])
    assert r.status_code == 401
    assert r.json()["detail"] == "this API key has been revoked"
    assert me(client, tenant.api_key).status_code == 200  # the other keys still work

    again = cli(db, "api-keys", "revoke", created["id"], "--org", org)
    assert again.exit_code == 0, again.output
    assert "was already revoked" in again.stdout and "nothing changed" in again.stdout
    revoked = [
        e
        for e in events(db, tenant.organization_id, "api_key.revoked")
        if e.subject_id == created["id"]
    ]
    assert len(revoked) == 1 and revoked[0].actor_label == "cli"
    listed = json.loads(cli(db, "api-keys", "list", "--org", org, "--json").stdout)
    assert next(k for k in listed if k["id"] == created["id"])["revoked_at"] is not None


def test_revoking_a_key_of_another_organization_or_none_is_refused(
    db: Database, client: TestClient, tenant: Tenant
) -> None:
    other = make_tenant(db, "Other GmbH")
    theirs = json.loads(
        cli(db, "api-keys", "list", "--org", str(other.organization_id), "--json").stdout
    )[0]
    org = str(tenant.organization_id)
    run = cli(db, "api-keys", "revoke", theirs["id"], "--org", org)
    assert run.exit_code == 2
    assert f"API key {theirs['id']} not found" in run.output
    assert me(client, other.api_key).status_code == 200
    run = cli(db, "api-keys", "revoke", "not-a-key", "--org", org)
    assert run.exit_code == 2 and "KEY_ID: 'not-a-key' is not an API key id" in run.output


def test_users_create_adds_a_person_whose_key_acts_under_their_email(
    db: Database, client: TestClient, api: Api
) -> None:
    org = str(api.tenant.organization_id)
    run = cli(
        db,
        "users",
        "create",
        "--org",
        org,
        "--email",
        " Anna@Example.DE ",
        "--role",
        "inspector",
        "--name",
        "Anna Berg",
        "--json",
    )
    assert run.exit_code == 0, run.output
    created = json.loads(run.stdout)
    assert (created["email"], created["role"], created["name"]) == (
        "anna@example.de",
        "inspector",
        "Anna Berg",
    )
    who = me(client, created["api_key"]).json()
    assert (who["actor_type"], who["label"], who["role"]) == (
        "user",
        "anna@example.de",
        "inspector",
    )
    users = api.get("/api/v1/users").json()
    assert [(u["id"], u["email"]) for u in users] == [(created["id"], "anna@example.de")]
    [event] = events(db, api.tenant.organization_id, "user.created")
    assert event.subject_id == created["id"] and event.actor_label == "cli"

    run = cli(db, "users", "create", "--org", org, "--email", "ANNA@example.de", "--role", "agent")
    assert run.exit_code == 2
    assert "a user with email anna@example.de already exists" in run.output
    assert len(api.get("/api/v1/users").json()) == 1

    run = cli(db, "users", "create", "--org", org, "--email", "B@Example.de", "--role", "viewer")
    assert run.exit_code == 0, run.output
    assert re.search(r"^api_key: rg_\S+$", run.stdout, re.M) and "shown only once" in run.stdout


def test_users_create_names_a_bad_email(db: Database, tenant: Tenant) -> None:
    org = str(tenant.organization_id)
    run = cli(db, "users", "create", "--org", org, "--email", "anna", "--role", "agent")
    assert run.exit_code == 2
    assert "error: --email:" in run.output


@pytest.mark.parametrize(
    "command", [["api-keys", "create"], ["users", "create", "--email", "x@y.de"]]
)
def test_an_unknown_role_lists_the_roles_there_are(
    db: Database, tenant: Tenant, command: list[str]
) -> None:
    run = cli(db, *command, "--org", str(tenant.organization_id), "--role", "boss")
    assert run.exit_code == 2
    assert "error: --role:" in run.output
    for role in ROLES:
        assert f"'{role}'" in run.output
    assert events(db, tenant.organization_id, "user.created") == []


@pytest.mark.parametrize(
    "command",
    [
        ["api-keys", "list"],
        ["api-keys", "create", "--role", "viewer"],
        ["api-keys", "revoke", NOBODY],
        ["users", "create", "--email", "x@y.de", "--role", "agent"],
        ["channels", "list"],
    ],
)
def test_an_unknown_organization_is_named_and_exits_2(db: Database, command: list[str]) -> None:
    run = cli(db, *command, "--org", NOBODY)
    assert run.exit_code == 2
    assert f"error: organization {NOBODY} not found" in run.output
    run = cli(db, *command, "--org", "acme")
    assert run.exit_code == 2
    assert "--org: 'acme' is not an organization id" in run.output


def test_channels_list_is_the_api_s(db: Database, api: Api) -> None:
    org = str(api.tenant.organization_id)
    assert cli(db, "channels", "list", "--org", org, "--json").stdout.strip() == "[]"
    api.channel("shopify-us", currency="USD", country="US")
    api.channel("amazon-de")
    run = cli(db, "channels", "list", "--org", org, "--json")
    assert run.exit_code == 0, run.output
    assert json.loads(run.stdout) == api.get("/api/v1/channels").json()
    text = cli(db, "channels", "list", "--org", org).stdout.splitlines()
    assert text[0].split()[:3] == ["code", "name", "marketplace"]
    assert [line.split()[0] for line in text[1:]] == ["amazon-de", "shopify-us"]
    assert text[2].split()[3:6] == ["US", "USD", "en"]
