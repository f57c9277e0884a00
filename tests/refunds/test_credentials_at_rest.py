"""Provider credentials are stored encrypted and never shown, and a refund still
authenticates at the provider with them; credentials moved to another tenant's account
pay nothing."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import respx
from fastapi.testclient import TestClient
from sqlalchemy import Table, update

from returnguard.app import create_app
from returnguard.config import Settings
from returnguard.kit.db import Database, utcnow
from returnguard.outbox.models import OutboxMessage
from returnguard.outbox.worker import Worker
from returnguard.refunds.models import RefundProvider
from tests.conftest import Api, make_tenant
from tests.outbox.test_secrets_at_rest import stored_text

STRIPE = "https://api.stripe.com"
PROVIDERS = "/api/v1/refund-providers"


class Stripe:
    """Stripe's refunds endpoint, answering only the API key it was given."""

    def __init__(self) -> None:
        self.keys: list[str] = []  # the bearer token of every call

    def create(self, request: httpx.Request) -> httpx.Response:
        self.keys.append(request.headers.get("Authorization", ""))
        if not request.headers.get("Authorization", "").startswith("Bearer sk_test_"):
            return httpx.Response(401, json={"error": {"type": "invalid_request_error"}})
        return httpx.Response(
            200,
            json={
                "id": f"re_{uuid.uuid4().hex[:24]}",
                "object": "refund",
                "amount": 1999,
                "currency": "eur",
                "status": "succeeded",
            },
        )


@pytest.fixture
def stripe() -> Iterator[Stripe]:
    fake = Stripe()
    with respx.mock(assert_all_called=False) as mock:
        mock.post(f"{STRIPE}/v1/refunds").mock(side_effect=fake.create)
        yield fake


def connect_stripe(api: Api, api_key: str) -> dict[str, Any]:
    """A Stripe account for the tenant's amazon-de channel."""
    r = api.post(
        PROVIDERS, {"name": "stripe-eu", "kind": "stripe", "credentials": {"api_key": api_key}}
    )
    assert r.status_code == 201, r.text
    r = api.client.put(
        "/api/v1/channels/amazon-de/refund-provider",
        json={"provider": "stripe-eu"},
        headers=api.tenant.headers,
    )
    assert r.status_code == 200, r.text
    return dict(cast(dict[str, Any], api.get(PROVIDERS).json()[0]))


def refund_one(api: Api) -> dict[str, Any]:
    """A received, inspected return of one unit, refunded through the channel's provider."""
    order = api.order(payment_reference="pi_3QabcDEF")
    ret = api.open_return(order)
    line = ret["lines"][0]["id"]
    assert api.post(f"/api/v1/returns/{ret['id']}/approve", {"note": "ok"}).status_code == 200
    api.post(
        f"/api/v1/returns/{ret['id']}/receive", {"lines": [{"return_line_id": line, "quantity": 1}]}
    )
    api.post(
        f"/api/v1/returns/{ret['id']}/inspections",
        {"lines": [{"return_line_id": line, "passed": 1, "failed": 0}]},
    )
    r = api.client.post(
        f"/api/v1/returns/{ret['id']}/refunds",
        json={"lines": [{"return_line_id": line, "quantity": 1}]},
        headers=api.tenant.headers | {"Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def work(db: Database, **settings: Any) -> None:
    worker = Worker(db, Settings(database_url=db.url, **settings))
    try:
        with db.session() as session:
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.status == "pending")
                .values(next_attempt_at=utcnow(), locked_until=None)
            )
        worker.run_once()
    finally:
        worker.close()


def stored_credentials(db: Database, provider_id: str) -> str:
    with db.session() as session:
        provider = session.get(RefundProvider, uuid.UUID(provider_id))
        assert provider is not None
        return provider.credentials


def test_credentials_are_stored_encrypted_never_shown_and_still_authenticate(
    api: Api, db: Database, stripe: Stripe, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = "sk_test_Recognisable" + uuid.uuid4().hex
    api.channel()
    r = api.post(
        PROVIDERS, {"name": "stripe-eu", "kind": "stripe", "credentials": {"api_key": key}}
    )
    assert r.status_code == 201, r.text
    assert key not in r.text and "credentials" not in r.json()
    provider = r.json()
    sealed = stored_credentials(db, provider["id"])
    assert sealed.startswith("v1:") and key not in sealed
    api.client.put(
        "/api/v1/channels/amazon-de/refund-provider",
        json={"provider": "stripe-eu"},
        headers=api.tenant.headers,
    )

    refund = refund_one(api)
    work(db)
    assert stripe.keys == [f"Bearer {key}"]
    assert api.get(f"/api/v1/refunds/{refund['id']}").json()["status"] == "succeeded"

    answers = [
        api.get(PROVIDERS),
        api.get(f"{PROVIDERS}/{provider['id']}"),
        api.get(f"/api/v1/refunds/{refund['id']}"),
        api.get(f"/api/v1/returns/{refund['return_id']}/events"),
        api.post(f"{PROVIDERS}/{provider['id']}/disable"),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert key not in answer.text and sealed not in answer.text
    assert key not in stored_text(db)
    assert key not in caplog.text


def test_a_duplicate_or_refused_provider_never_echoes_its_credentials(api: Api) -> None:
    key = "sk_test_Recognisable" + uuid.uuid4().hex
    body = {"name": "stripe-eu", "kind": "stripe", "credentials": {"api_key": key}}
    assert api.post(PROVIDERS, body).status_code == 201
    again = api.post(PROVIDERS, body)
    assert again.status_code == 409 and key not in again.text
    refused = [
        body | {"name": "x", "settings": {"base_url": "http://a b"}},
        body | {"name": "y", "credentials": {"api_key": key, "webhook_secret": key}},
        body | {"name": "z", "credentials": key},
        body | {"name": "bad name!"},
    ]
    for wrong in refused:
        answer = api.post(PROVIDERS, wrong)
        assert answer.status_code == 422, answer.text
        assert key not in answer.text and answer.json()["errors"][0]["field"]


@pytest.mark.postgresql_only
def test_without_a_key_postgresql_connects_no_provider_with_credentials(
    db: Database, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=db.url,
        in_process_worker=False,
        storage_dir=str(tmp_path / "files"),
        secret_keys=None,
    )
    with TestClient(create_app(settings, db=db)) as client:
        api = Api(client, make_tenant(db))
        key = "sk_test_Recognisable" + uuid.uuid4().hex
        r = api.post(PROVIDERS, {"name": "s", "kind": "stripe", "credentials": {"api_key": key}})
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "secret_key_missing" and key not in r.text
        assert "RETURNGUARD_SECRET_KEYS" in r.json()["detail"]
        assert api.get(PROVIDERS).json() == []
        # A named manual account has nothing secret: it needs no key.
        assert api.post(PROVIDERS, {"name": "by-hand", "kind": "manual"}).status_code == 201


def test_credentials_moved_to_another_tenants_account_pay_nothing(
    api: Api, db: Database, client: TestClient, stripe: Stripe
) -> None:
    other = Api(client, make_tenant(db, "Other GmbH"))
    for tenant in (api, other):
        tenant.channel()
    mine = connect_stripe(api, "sk_test_mine_" + uuid.uuid4().hex)
    theirs = connect_stripe(other, "sk_test_theirs_" + uuid.uuid4().hex)
    # Someone who can write to the database puts the other tenant's credentials on ours.
    table = cast(Table, RefundProvider.__table__)
    moved = stored_credentials(db, theirs["id"])
    with db.engine.begin() as conn:
        conn.execute(
            update(table).where(table.c.id == uuid.UUID(mine["id"])).values(credentials=moved)
        )
    refund = refund_one(api)
    work(db)
    assert stripe.keys == []  # nothing reached Stripe with the other tenant's key
    seen = api.get(f"/api/v1/refunds/{refund['id']}").json()
    assert seen["status"] == "pending"
    assert "provider credentials unreadable" in seen["last_error"]
    assert "does not open" in seen["last_error"]
