"""No server-side request forgery: the URLs a seller gives us (webhook endpoints, a refund
provider's base_url) may lead only to public addresses, checked when they are registered
and again, after DNS resolution, when the worker connects (on both databases)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from returnguard.app import create_app
from returnguard.auth.actor import Actor
from returnguard.config import Settings
from returnguard.kit.db import Database
from returnguard.kit.egress import Egress, guarded_client
from returnguard.outbox import service as outbox
from tests.conftest import Api, Tenant
from tests.outbox.conftest import Receiver, WorkerFactory, deliveries, messages

ENDPOINTS = "/api/v1/webhooks/endpoints"
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)

# Each of these reaches a host of ours, not the seller's: the database, the cloud's
# metadata service, the private network, in every spelling a URL parser lets through.
HOSTILE = [
    "http://127.0.0.1:5432/",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.1.2.3/hook",
    "http://192.168.0.10/hook",
    "http://172.16.5.4/hook",
    "http://100.64.0.1/hook",
    "http://localhost:8000/hook",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[fe80::1]/hook",
    "http://[fd00::1]/hook",
    "http://2130706433/hook",
    "http://0x7f000001/hook",
    "http://0177.0.0.1/hook",
    "http://127.1/hook",
    "http://0.0.0.0:8000/hook",
    "http://224.0.0.1/hook",
    "https://[64:ff9b::a9fe:a9fe]/",
]


@pytest.fixture
def strict_api(db: Database, tmp_path: Path, tenant: Tenant) -> Iterator[Api]:
    """The API as production runs it: no network besides the public internet allowed."""
    settings = Settings(
        database_url=db.url,
        in_process_worker=False,
        storage_dir=str(tmp_path / "files"),
        outbound_allowed_networks=[],
    )
    with TestClient(create_app(settings, db=db)) as client:
        yield Api(client, tenant)


@pytest.mark.parametrize("url", HOSTILE)
def test_a_webhook_url_leading_to_our_own_network_is_refused_naming_the_field(
    strict_api: Api, url: str
) -> None:
    r = strict_api.post(ENDPOINTS, {"url": url, "event_types": ["*"]})
    assert r.status_code == 422, r.text
    [error] = r.json()["errors"]
    assert error["field"] == "url"
    # (Some spellings, like 0177.0.0.1, are not even URLs to httpx; refused as such.)
    assert "must point at a public address" in error["message"] or (
        "must be an absolute" in error["message"] and "0177" in url
    )


def test_public_and_not_yet_resolvable_urls_are_registered(strict_api: Api) -> None:
    for url in ("https://8.8.8.8/hook", "https://hooks.seller-shop.invalid/returnguard"):
        r = strict_api.post(ENDPOINTS, {"url": url, "event_types": ["*"]})
        assert r.status_code == 201, r.text


def test_a_network_listed_in_the_setting_may_be_called(api: Api, receiver: Receiver) -> None:
    # The tests' own settings list loopback (tests/conftest.py), as local development does.
    r = api.post(ENDPOINTS, {"url": receiver.url("/hook"), "event_types": ["*"]})
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    "base_url",
    [
        "https://169.254.169.254/",
        "https://10.0.0.5/v1",
        "https://localhost/",
        "https://[::1",  # not even a URL: a 422 too, never a 500
        "https://api.example.com:99999/",
    ],
)
def test_a_refund_provider_base_url_leading_to_our_network_is_refused(
    strict_api: Api, base_url: str
) -> None:
    r = strict_api.post(
        "/api/v1/refund-providers",
        {
            "name": "stripe-eu",
            "kind": "stripe",
            "settings": {"base_url": base_url},
            "credentials": {"api_key": "sk_test_123"},
        },
    )
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "settings.base_url"


def _resolving(name: str, *addresses: str) -> Any:
    def resolve(host: str, port: int) -> list[str]:
        if host == name:
            return list(addresses)
        raise OSError(f"unknown host {host}")

    return resolve


def test_a_name_that_resolves_to_a_private_address_at_connect_time_is_not_called(
    receiver: Receiver,
) -> None:
    """DNS rebinding: public when registered, loopback when the worker connects."""
    port = httpx.URL(receiver.base_url).port
    rebinding = Egress(resolver=_resolving("hooks.example.test", "127.0.0.1"))
    refused = r"refused: .*127\.0\.0\.1, a loopback"
    with (
        guarded_client(rebinding, timeout=2) as http,
        pytest.raises(httpx.ConnectError, match=refused),
    ):
        http.post(f"http://hooks.example.test:{port}/hook", content=b"{}")
    assert receiver.requests == []
    # The same request where loopback is allowed does arrive: the check is what stopped it.
    allowed = Egress(LOOPBACK, resolver=_resolving("hooks.example.test", "127.0.0.1"))
    with guarded_client(allowed, timeout=2) as http:
        answer = http.post(f"http://hooks.example.test:{port}/hook", content=b"{}")
    assert answer.status_code == 200
    assert [r.path for r in receiver.wait_for(1)] == ["/hook"]


def test_a_name_with_one_private_address_among_public_ones_is_refused() -> None:
    mixed = Egress(resolver=_resolving("cdn.example.test", "8.8.8.8", "10.0.0.7"))
    refused = r"10\.0\.0\.7, a private address"
    with guarded_client(mixed, timeout=2) as http, pytest.raises(httpx.ConnectError, match=refused):
        http.get("http://cdn.example.test/")


def test_the_worker_does_not_deliver_to_an_endpoint_stored_before_the_check(
    api: Api, db: Database, tenant: Tenant, receiver: Receiver, make_worker: WorkerFactory
) -> None:
    """An endpoint registered where loopback was allowed (or before this check existed)
    is refused by a worker that does not allow it: the attempt fails, nothing is sent."""
    with db.session() as session:
        outbox.create_endpoint(
            session,
            Actor.system(tenant.organization_id),
            url=receiver.url("/hook"),
            event_types=["*"],
            egress=Egress(LOOPBACK),
        )
    api.channel()
    api.open_return(api.order())
    worker = make_worker(db, outbound_allowed_networks=[])
    assert worker.run_once() == 1
    assert receiver.requests == []
    [attempt] = deliveries(db)
    assert not attempt.ok
    assert attempt.error is not None and "refused" in attempt.error
    assert "127.0.0.1, a loopback address" in attempt.error
    [message] = messages(db)
    assert message.status == "pending"  # retried later, as any unreachable receiver


def test_the_setting_takes_comma_separated_networks_and_refuses_a_bad_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RETURNGUARD_OUTBOUND_ALLOWED_NETWORKS", "10.0.0.0/8, ::1")
    assert Settings().outbound_allowed_networks == ["10.0.0.0/8", "::1"]
    monkeypatch.setenv("RETURNGUARD_OUTBOUND_ALLOWED_NETWORKS", "10.0.0.0/33")
    with pytest.raises(ValidationError, match="outbound_allowed_networks"):
        Settings()
