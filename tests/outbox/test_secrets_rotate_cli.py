"""`returnguard secrets keygen | rotate`: a new key first and the old one second, a
rotation, then the old key removed, and every webhook and refund still works."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import respx
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from typer.testing import CliRunner, Result

from returnguard.app import create_app
from returnguard.cli import app as cli
from returnguard.config import Settings
from returnguard.kit.db import Database
from returnguard.kit.secrets import key_id, key_id_of, parse_keys
from returnguard.outbox.models import WebhookEndpoint
from returnguard.outbox.signing import SIGNATURE_HEADER, verify
from returnguard.refunds.models import RefundProvider
from tests.conftest import Api, make_tenant
from tests.outbox.conftest import Receiver, WorkerFactory, register
from tests.outbox.test_secrets_at_rest import _plain_endpoint
from tests.refunds.test_credentials_at_rest import STRIPE, Stripe, connect_stripe, refund_one

runner = CliRunner()


@pytest.fixture
def stripe() -> Iterator[Stripe]:
    fake = Stripe()
    with respx.mock(assert_all_called=False) as mock:
        mock.post(f"{STRIPE}/v1/refunds").mock(side_effect=fake.create)
        mock.route(host="127.0.0.1").pass_through()  # the webhook receiver
        yield fake


def keygen() -> str:
    result = runner.invoke(cli, ["secrets", "keygen"])
    assert result.exit_code == 0, result.output
    return result.output.strip()


def rotate(db: Database, keys: str, *more: str) -> Result:
    return runner.invoke(
        cli,
        ["secrets", "rotate", "--database-url", db.url, *more],
        env={"RETURNGUARD_SECRET_KEYS": keys},
    )


def kid(key: str) -> str:
    return key_id(parse_keys(key)[0])


def stored(db: Database) -> list[str]:
    with db.session() as session:
        secrets = list(session.scalars(select(WebhookEndpoint.secret)))
        return secrets + list(session.scalars(select(RefundProvider.credentials)))


@pytest.fixture
def api_with_key(db: Database, tmp_path: Path) -> Iterator[tuple[Api, str]]:
    """The API of a server whose RETURNGUARD_SECRET_KEYS is one fresh key (the "old" one)."""
    old = keygen()
    settings = Settings(
        database_url=db.url,
        in_process_worker=False,
        storage_dir=str(tmp_path / "files"),
        secret_keys=old,
    )
    with TestClient(create_app(settings, db=db)) as client:
        yield Api(client, make_tenant(db)), old


def test_keygen_prints_a_new_valid_key_each_time() -> None:
    first, second = keygen(), keygen()
    assert first != second
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", first)
    assert Settings(secret_keys=first).secret_key_list == parse_keys(first)


def test_rotating_to_a_new_key_then_dropping_the_old_one_keeps_everything_working(
    api_with_key: tuple[Api, str],
    db: Database,
    receiver: Receiver,
    make_worker: WorkerFactory,
    stripe: Stripe,
) -> None:
    api, old = api_with_key
    new = keygen()
    endpoint = register(api, receiver.url("/hook"))
    legacy_secret = "whsec_legacy_" + uuid.uuid4().hex
    _plain_endpoint(db, api.tenant, receiver.url("/legacy"), legacy_secret)
    api.channel()
    api_key = "sk_test_rotated_" + uuid.uuid4().hex
    connect_stripe(api, api_key)

    result = rotate(db, f"{new},{old}", "--batch-size", "1")
    assert result.exit_code == 0, result.output
    assert f"encrypting with {kid(new)}" in result.output
    assert (
        "webhook endpoint secrets: 2 found; 1 encrypted from plain text, 1 re-encrypted, "
        "0 already under the current key" in result.output
    )
    assert f"keys in use before: {kid(old)} (1), plain (1)" in result.output
    assert (
        "refund provider credentials: 1 found; 0 encrypted from plain text, 1 re-encrypted"
        in result.output
    )
    assert new not in result.output and old not in result.output
    assert {key_id_of(v) for v in stored(db)} == {kid(new)}
    assert legacy_secret not in str(stored(db)) and api_key not in str(stored(db))

    again = rotate(db, f"{new},{old}")
    assert again.exit_code == 0, again.output
    assert "webhook endpoint secrets: 2 found; 0 encrypted from plain text, 0 re-encrypted, " in (
        again.output
    )
    assert "2 already under the current key" in again.output

    # The old key is gone: webhooks are signed with the secrets the receivers know, and
    # the refund authenticates with the key the seller gave.
    refund = refund_one(api)
    handled = make_worker(db, secret_keys=new).run_once()  # the refund, and its webhooks
    received = receiver.wait_for(handled - 1)
    assert {r.path for r in received} == {"/hook", "/legacy"}
    for request in received:
        secret = endpoint["secret"] if request.path == "/hook" else legacy_secret
        verify(secret, request.body, request.headers[SIGNATURE_HEADER.lower()])
    assert stripe.keys == [f"Bearer {api_key}"]
    assert api.get(f"/api/v1/refunds/{refund['id']}").json()["status"] == "succeeded"


def test_a_secret_no_key_opens_is_named_and_the_others_are_rotated(
    api_with_key: tuple[Api, str], db: Database, receiver: Receiver
) -> None:
    api, old = api_with_key
    good = register(api, receiver.url("/good"))
    bad = register(api, receiver.url("/bad"))
    with db.session() as session:
        sealed = session.get(WebhookEndpoint, uuid.UUID(good["id"]))
        assert sealed is not None
        moved = sealed.secret
        session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == uuid.UUID(bad["id"]))
            .values(secret=moved)
        )
    new = keygen()
    result = rotate(db, f"{new},{old}")
    assert result.exit_code == 1, result.output
    assert f"UNREADABLE webhook_endpoints.secret of row {bad['id']}: does not open" in (
        result.output
    )
    assert "1 re-encrypted" in result.output and "1 unreadable" in result.output
    assert good["id"] not in result.output

    without_old = rotate(db, new)
    assert without_old.exit_code == 1
    assert f"sealed with key {kid(old)}, which is not configured" in without_old.output


@pytest.mark.postgresql_only
def test_rotating_without_a_key_on_postgresql_says_which_setting(
    db: Database, tenant: Any, receiver: Receiver
) -> None:
    _plain_endpoint(db, tenant, receiver.url("/legacy"), "whsec_legacy")
    result = rotate(db, "")
    assert result.exit_code == 2, result.output
    assert "RETURNGUARD_SECRET_KEYS" in result.output
    assert "whsec_legacy" not in result.output
    assert stored(db) == ["plain:whsec_legacy"]
