"""Migration 0013 on SQLite and PostgreSQL: the secrets stored before it are kept, marked
as plain text (they still work), with the delivery log intact; `rotate` encrypts them;
a downgrade is refused once anything is encrypted."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from returnguard.kit.db import Database, UTCDateTime
from returnguard.kit.migrate import alembic_config, upgrade
from returnguard.kit.secrets import Keyring, generate_key, key_id_of, parse_keys, rotate
from returnguard.outbox.models import WebhookEndpoint
from returnguard.outbox.service import STORED_SECRETS, endpoint_secret
from returnguard.refunds.accounts import STORED_CREDENTIALS, credentials_of
from returnguard.refunds.models import RefundProvider
from tests.conftest import PG_ADMIN_URL

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
ORG, ENDPOINT, PROVIDER = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

organizations = sa.table(
    "organizations",
    sa.column("id", sa.Uuid()),
    sa.column("name", sa.String()),
    sa.column("base_currency", sa.String()),
    sa.column("created_at", UTCDateTime()),
)
old_endpoints = sa.table(
    "webhook_endpoints",
    sa.column("id", sa.Uuid()),
    sa.column("organization_id", sa.Uuid()),
    sa.column("url", sa.String()),
    sa.column("secret", sa.String()),
    sa.column("event_types", sa.JSON()),
    sa.column("active", sa.Boolean()),
    sa.column("description", sa.String()),
    sa.column("created_at", UTCDateTime()),
)
deliveries = sa.table(
    "webhook_deliveries",
    sa.column("id", sa.Uuid()),
    sa.column("organization_id", sa.Uuid()),
    sa.column("endpoint_id", sa.Uuid()),
    sa.column("outbox_id", sa.Integer()),
    sa.column("webhook_event_id", sa.String()),
    sa.column("event_type", sa.String()),
    sa.column("attempt", sa.Integer()),
    sa.column("ok", sa.Boolean()),
    sa.column("duration_ms", sa.Integer()),
    sa.column("created_at", UTCDateTime()),
)
old_providers = sa.table(
    "refund_providers",
    sa.column("id", sa.Uuid()),
    sa.column("organization_id", sa.Uuid()),
    sa.column("name", sa.String()),
    sa.column("kind", sa.String()),
    sa.column("settings", sa.JSON()),
    sa.column("credentials", sa.JSON()),
    sa.column("created_at", UTCDateTime()),
)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own, without any schema yet."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.sqlite3'}"
        return
    request.getfixturevalue("postgres_url")  # skips (or fails on CI) without PostgreSQL
    name = f"rg_mig_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _as_0012_stored_them(url: str) -> None:
    upgrade(url, "0012")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(organizations).values(id=ORG, name="A", base_currency="EUR", created_at=T0)
        )
        conn.execute(
            sa.insert(old_endpoints).values(
                id=ENDPOINT,
                organization_id=ORG,
                url="https://hooks.example.com/rg",
                secret="whsec_from_0012",
                event_types=["*"],
                active=True,
                description="",
                created_at=T0,
            )
        )
        conn.execute(
            sa.insert(deliveries).values(
                id=uuid.uuid4(),
                organization_id=ORG,
                endpoint_id=ENDPOINT,
                outbox_id=1,
                webhook_event_id="evt_1",
                event_type="return.created",
                attempt=1,
                ok=True,
                duration_ms=5,
                created_at=T0,
            )
        )
        conn.execute(
            sa.insert(old_providers).values(
                id=PROVIDER,
                organization_id=ORG,
                name="stripe-eu",
                kind="stripe",
                settings={"base_url": "https://api.stripe.com"},
                credentials={"api_key": "sk_test_from_0012"},
                created_at=T0,
            )
        )
    engine.dispose()


def _opened(db: Database, keyring: Keyring) -> tuple[str, dict[str, str]]:
    with db.session() as session:
        endpoint = session.get(WebhookEndpoint, ENDPOINT)
        provider = session.get(RefundProvider, PROVIDER)
        assert endpoint is not None and provider is not None
        return endpoint_secret(keyring, endpoint), credentials_of(keyring, provider)


def _stored(url: str) -> list[str]:
    engine = create_engine(url)
    with engine.connect() as conn:
        values = [
            conn.execute(text("SELECT secret FROM webhook_endpoints")).scalar_one(),
            conn.execute(text("SELECT credentials FROM refund_providers")).scalar_one(),
        ]
    engine.dispose()
    return [str(v) for v in values]


def test_secrets_stored_before_0013_still_work_and_rotate_encrypts_them(empty_url: str) -> None:
    _as_0012_stored_them(empty_url)
    upgrade(empty_url, "0013")
    secret, credentials = _stored(empty_url)
    assert secret == "plain:whsec_from_0012"
    assert credentials.startswith("plain:") and "sk_test_from_0012" in credentials

    db = Database(empty_url)
    try:
        with db.engine.connect() as conn:  # SQLite: the columns were replaced, not the table
            assert conn.execute(text("SELECT count(*) FROM webhook_deliveries")).scalar_one() == 1
        keyring = Keyring(parse_keys(generate_key()))
        assert _opened(db, keyring) == ("whsec_from_0012", {"api_key": "sk_test_from_0012"})

        counts = rotate(db, keyring, [STORED_SECRETS, STORED_CREDENTIALS])
        assert [(c.found, c.from_plain, c.unreadable) for c in counts] == [(1, 1, [])] * 2
        assert all(key_id_of(v) == keyring.ids[0] for v in _stored(empty_url))
        assert not any("from_0012" in v for v in _stored(empty_url))
        assert _opened(db, keyring) == ("whsec_from_0012", {"api_key": "sk_test_from_0012"})
    finally:
        db.dispose()

    with pytest.raises(RuntimeError, match="encrypted: a downgrade cannot read them back"):
        command.downgrade(alembic_config(empty_url), "0012")


def test_a_downgrade_before_any_encryption_gives_the_old_values_back(empty_url: str) -> None:
    _as_0012_stored_them(empty_url)
    upgrade(empty_url, "0013")
    command.downgrade(alembic_config(empty_url), "0012")
    engine = create_engine(empty_url)
    with engine.connect() as conn:
        assert conn.execute(sa.select(old_endpoints.c.secret)).scalar_one() == "whsec_from_0012"
        assert conn.execute(sa.select(old_providers.c.credentials)).scalar_one() == {
            "api_key": "sk_test_from_0012"
        }
        assert conn.execute(text("SELECT count(*) FROM webhook_deliveries")).scalar_one() == 1
    engine.dispose()
