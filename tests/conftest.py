"""Fixtures: every storage test runs on SQLite and on PostgreSQL.

PostgreSQL comes from RETURNGUARD_TEST_POSTGRES_URL (default: the local server's `test`
database). Each test run creates its own database there and drops it at the end. When
CI is set and PostgreSQL cannot be reached the run fails instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from returnguard.app import create_app
from returnguard.auth import service as auth
from returnguard.config import Settings
from returnguard.kit.db import Base, Database
from returnguard.kit.migrate import upgrade

# The tests' webhook receivers and fake providers listen on loopback, which production
# refuses (kit/egress.py); tests of that refusal pass their own, stricter settings.
os.environ.setdefault("RETURNGUARD_OUTBOUND_ALLOWED_NETWORKS", "127.0.0.0/8,::1")

PG_ADMIN_URL = os.environ.get(
    "RETURNGUARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BACKENDS = ["sqlite", "postgresql"]


def _pg_reachable() -> str | None:
    try:
        engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    problem = _pg_reachable()
    if problem:
        message = f"PostgreSQL at {PG_ADMIN_URL} is unreachable ({problem})"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI requires it", pytrace=False)
        pytest.skip(message)
    name = f"rg_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("db") / "returnguard.sqlite3"
    url = f"sqlite:///{path}"
    upgrade(url)
    return url


def _wipe(db: Database) -> None:
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked `postgresql_only` runs on PostgreSQL only: its SQLite run is not
    collected at all (deselected, so it is never reported as a skip)."""
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("db_url") if callspec else None
        if item.get_closest_marker("postgresql_only") and backend == "sqlite":
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest) -> str:
    name = "postgres_url" if request.param == "postgresql" else "sqlite_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    _wipe(database)
    yield database
    database.dispose()


@pytest.fixture
def pg_db(postgres_url: str) -> Iterator[Database]:
    """PostgreSQL only: for tests of cross-process and row-locking behaviour."""
    database = Database(postgres_url)
    _wipe(database)
    yield database
    database.dispose()


@dataclass
class Tenant:
    organization_id: uuid.UUID
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def make_tenant(db: Database, name: str = "Acme GmbH", role: str = "admin") -> Tenant:
    with db.session() as session:
        org = auth.create_organization(session, name, "EUR")
        _, plain = auth.create_api_key(session, org.id, name="test", role=role)
        return Tenant(org.id, plain)


def add_key(db: Database, tenant: Tenant, role: str) -> Tenant:
    with db.session() as session:
        _, plain = auth.create_api_key(session, tenant.organization_id, name=role, role=role)
    return Tenant(tenant.organization_id, plain)


def add_user(db: Database, tenant: Tenant, role: str, email: str) -> Tenant:
    """A person of the tenant with a personal key (four-eyes tells people apart)."""
    with db.session() as session:
        user = auth.create_user(session, tenant.organization_id, email=email, role=role)
        _, plain = auth.create_api_key(
            session, tenant.organization_id, name=email, role=role, user_id=user.id
        )
    return Tenant(tenant.organization_id, plain)


@pytest.fixture
def tenant(db: Database) -> Tenant:
    return make_tenant(db)


@pytest.fixture
def client(db: Database, tmp_path: Path) -> Iterator[TestClient]:
    # Uploaded evidence goes to the test's own folder, never into the working tree.
    settings = Settings(
        database_url=db.url, in_process_worker=False, storage_dir=str(tmp_path / "files")
    )
    with TestClient(create_app(settings, db=db)) as test_client:
        yield test_client


class Api:
    """A thin helper over TestClient for one tenant's key."""

    def __init__(self, client: TestClient, tenant: Tenant) -> None:
        self.client = client
        self.tenant = tenant

    def post(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.client.post(path, json=json, headers=self.tenant.headers, **kw)

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, headers=self.tenant.headers, **kw)

    def channel(self, code: str = "amazon-de", currency: str = "EUR", country: str = "DE") -> Any:
        r = self.post(
            "/api/v1/channels",
            {
                "code": code,
                "name": code,
                "marketplace": "amazon",
                "country": country,
                "currency": currency,
            },
        )
        assert r.status_code == 201, r.text
        return r.json()

    def order(
        self,
        external_id: str = "302-0000001-0000001",
        channel: str = "amazon-de",
        currency: str = "EUR",
        quantity: int = 2,
        price: str = "19.99",
        **extra: Any,
    ) -> Any:
        body = order_body(external_id, channel, currency, quantity, price) | extra
        r = self.post("/api/v1/orders", body)
        assert r.status_code in (200, 201), r.text
        return r.json()

    def open_return(self, order: Any, quantity: int = 1, reason: str = "changed_mind") -> Any:
        r = self.post(
            "/api/v1/returns",
            {
                "order_id": order["id"],
                "decide": False,
                "lines": [
                    {
                        "order_line_id": order["lines"][0]["id"],
                        "quantity": quantity,
                        "reason_code": reason,
                    }
                ],
            },
        )
        assert r.status_code == 201, r.text
        return r.json()


def order_body(
    external_id: str = "302-0000001-0000001",
    channel: str = "amazon-de",
    currency: str = "EUR",
    quantity: int = 2,
    price: str = "19.99",
) -> dict[str, Any]:
    return {
        "channel": channel,
        "external_id": external_id,
        "currency": currency,
        "ordered_at": "2026-10-01T10:00:00+00:00",
        "delivered_at": "2026-10-03T15:00:00+00:00",
        "buyer": {"external_id": "buyer-1", "email": "anna@example.de", "country": "DE"},
        "captured": {
            "amount": str(Decimal(price) * quantity),
            "currency": currency,
        },
        "lines": [
            {
                "external_id": "item-1",
                "sku": "MUG-BLUE",
                "title": "Blue mug",
                "quantity": quantity,
                "unit_price": {"amount": price, "currency": currency},
            }
        ],
    }


@pytest.fixture
def api(client: TestClient, tenant: Tenant) -> Api:
    return Api(client, tenant)
