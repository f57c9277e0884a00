"""Fixtures: every storage test runs on SQLite and on PostgreSQL.

PostgreSQL comes from RETURNGUARD_TEST_POSTGRES_URL (default: the local server's `test`
database). Each test run creates its own database there and drops it at the end. When
CI is set and PostgreSQL cannot be reached the run fails instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
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
from returnguard.domain.policy.defaults import default_policy_data
from returnguard.kit.db import Base, Database
from returnguard.kit.migrate import upgrade

# The tests' webhook receivers and fake providers listen on loopback, which production
# refuses (kit/egress.py); tests of that refusal pass their own, stricter settings.
os.environ.setdefault("RETURNGUARD_OUTBOUND_ALLOWED_NETWORKS", "127.0.0.0/8,::1")
# Webhook secrets and provider credentials are stored encrypted (kit/secrets.py); PostgreSQL
# needs a configured key for that. A fixed test key; tests of keys pass their own settings.
TEST_SECRET_KEY = "dGVzdC1vbmx5LWtleS1mb3Itc2VjcmV0cy1hdC1yZXM"
os.environ.setdefault("RETURNGUARD_SECRET_KEYS", TEST_SECRET_KEY)

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


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Schemathesis's counts (tests/api/test_schemathesis.py), from every xdist worker's
    reports: requests sent, operation x database cases, answers by status class."""
    statuses: list[object] = []
    cases = failed = 0
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            nodeid = str(getattr(report, "nodeid", ""))
            if getattr(report, "when", "") != "call" or "test_schemathesis.py::" not in nodeid:
                continue
            cases += 1
            failed += outcome == "failed"
            statuses += [v for k, v in report.user_properties if k == "schemathesis_status"]
    if not cases:
        return
    classes = Counter(f"{s // 100}xx" if isinstance(s, int) else str(s) for s in statuses)
    shown = ", ".join(f"{n} {c}" for c, n in sorted(classes.items()))
    terminalreporter.write_line(
        f"schemathesis: {len(statuses)} requests over {cases} operation x database cases "
        f"({shown}); {classes.get('5xx', 0)} server errors; {failed} cases failed a check"
    )


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


def seed_every_object(other: Api) -> dict[str, Any]:
    """One of each object a path names (order, return, refund, webhook endpoint, API key,
    policy, ledger entry, evidence, ...) in ``other``'s organization, keyed by the path
    parameter that names it: for tests that walk every route with real ids."""
    other.channel()
    order = other.order(quantity=2)
    ret = other.open_return(order)
    hook = other.post(
        "/api/v1/webhooks/endpoints",
        {"url": "https://other.example/hooks", "event_types": ["return.created"]},
    )
    assert hook.status_code == 201, hook.text
    key = other.post("/api/v1/api-keys", {"name": "other", "role": "agent"})
    assert key.status_code == 201, key.text
    policy = other.post(
        "/api/v1/policies", {"name": "Other's policy", "document": default_policy_data("EUR")}
    )
    assert policy.status_code == 201, policy.text
    other_line = ret["lines"][0]["id"]
    other.post(f"/api/v1/returns/{ret['id']}/approve", {"note": "checked by hand"})
    other.post(
        f"/api/v1/returns/{ret['id']}/receive",
        {"lines": [{"return_line_id": other_line, "quantity": 1}]},
    )
    refund = other.client.post(
        f"/api/v1/returns/{ret['id']}/refunds",
        json={"lines": [{"return_line_id": other_line, "quantity": 1}]},
        headers=other.tenant.headers | {"Idempotency-Key": "other-refund"},
    )
    assert refund.status_code == 201, refund.text
    provider = other.post(
        "/api/v1/refund-providers",
        {"name": "stripe-main", "kind": "stripe", "credentials": {"api_key": "sk_test_other"}},
    )
    assert provider.status_code == 201, provider.text
    entry = other.post(
        "/api/v1/ledger",
        {
            "kind": "handling_fee",
            "amount": {"amount": "2.00", "currency": "EUR"},
            "return_id": ret["id"],
        },
    )
    assert entry.status_code == 201, entry.text
    evidence = other.client.post(
        f"/api/v1/returns/{ret['id']}/evidence",
        data={"text": "the lid was broken"},
        headers=other.tenant.headers,
    )
    assert evidence.status_code == 201, evidence.text
    return {
        "evidence_id": evidence.json()[0]["id"],
        "code": order["channel"],
        "external_id": order["external_id"],
        "refund_id": refund.json()["id"],
        "entry_id": entry.json()["id"],
        "provider_id": provider.json()["id"],
        "policy_id": policy.json()["id"],
        "version": 1,
        "order_id": order["id"],
        "return_id": ret["id"],
        "line_id": ret["lines"][0]["id"],
        "order_line_id": order["lines"][0]["id"],
        "buyer_id": order["buyer"]["id"],
        "endpoint_id": hook.json()["id"],
        "key_id": key.json()["id"],
        "key": key.json()["api_key"],
    }
