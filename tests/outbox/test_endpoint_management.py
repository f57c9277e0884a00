"""A seller can disable, re-enable, change and delete a webhook endpoint, over the API and
the CLI; disabling or deleting stops what is already queued for it (both databases)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from typer.testing import CliRunner

from returnguard.audit.models import Event
from returnguard.cli import app as cli
from returnguard.kit.db import Database
from tests.conftest import Api, Tenant, make_tenant
from tests.outbox.conftest import Receiver, WorkerFactory, messages, register

ENDPOINTS = "/api/v1/webhooks/endpoints"
runner = CliRunner()


_orders = iter(range(1, 10_000))


def _return_opened(api: Api) -> None:
    api.open_return(api.order(f"302-0000000-{next(_orders):07d}"))


def _patch(api: Api, endpoint_id: str, body: dict[str, Any]) -> Any:
    return api.client.patch(f"{ENDPOINTS}/{endpoint_id}", json=body, headers=api.tenant.headers)


def _actions(db: Database, endpoint_id: str) -> list[str]:
    with db.session() as session:
        return list(
            session.scalars(
                select(Event.action).where(Event.subject_id == endpoint_id).order_by(Event.seq)
            )
        )


def test_a_disabled_endpoint_gets_nothing_not_even_what_was_queued_and_resumes_when_enabled(
    api: Api, db: Database, receiver: Receiver, make_worker: WorkerFactory
) -> None:
    endpoint = register(api, receiver.url("/hook"))
    api.channel()
    _return_opened(api)
    _return_opened(api)
    assert [m.status for m in messages(db)] == ["pending", "pending"]

    r = _patch(api, endpoint["id"], {"active": False})
    assert r.status_code == 200, r.text
    assert r.json()["active"] is False
    assert r.headers["Undelivered-Messages"] == "2"
    assert api.get(f"{ENDPOINTS}/{endpoint['id']}").json()["active"] is False
    _return_opened(api)  # while disabled: nothing is queued for it
    worker = make_worker(db)
    assert worker.run_once() == 0
    assert receiver.requests == []
    assert [(m.status, m.last_error) for m in messages(db)] == [
        ("dead", "endpoint disabled"),
        ("dead", "endpoint disabled"),
    ]

    r = _patch(api, endpoint["id"], {"active": True})
    assert r.status_code == 200 and r.json()["active"] is True
    assert r.headers["Undelivered-Messages"] == "0"
    _return_opened(api)
    assert worker.run_once() == 1
    [delivered] = receiver.wait_for(1)
    assert delivered.json()["type"] == "return.created"
    assert _actions(db, endpoint["id"]) == [
        "webhook_endpoint.created",
        "webhook_endpoint.updated",
        "webhook_endpoint.updated",
    ]


def test_an_endpoint_can_change_its_url_and_event_types_checked_like_a_new_one(
    api: Api, receiver: Receiver
) -> None:
    endpoint = register(api, receiver.url("/hook"))
    r = _patch(
        api,
        endpoint["id"],
        {"url": receiver.url("/other"), "event_types": ["return.status_changed"]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["url"] == receiver.url("/other")
    assert r.json()["event_types"] == ["return.status_changed"]
    for body, field in (
        ({"url": "ftp://example.com/x"}, "url"),
        ({"event_types": ["order.eaten"]}, "event_types"),
        ({"event_types": []}, "event_types"),
        ({"active": "sometimes"}, "active"),
    ):
        r = _patch(api, endpoint["id"], body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["errors"][0]["field"].endswith(field), r.text
    r = _patch(api, endpoint["id"], {})
    assert r.status_code == 422
    assert "say what to change" in r.json()["detail"]
    # Nothing of the refused changes stuck.
    assert api.get(f"{ENDPOINTS}/{endpoint['id']}").json()["url"] == receiver.url("/other")


def test_a_deleted_endpoint_is_gone_with_its_log_and_its_queue_is_not_delivered(
    api: Api, db: Database, receiver: Receiver, make_worker: WorkerFactory
) -> None:
    endpoint = register(api, receiver.url("/hook"))
    api.channel()
    _return_opened(api)
    r = api.client.delete(f"{ENDPOINTS}/{endpoint['id']}", headers=api.tenant.headers)
    assert r.status_code == 204, r.text
    assert r.headers["Undelivered-Messages"] == "1"
    assert api.get(f"{ENDPOINTS}/{endpoint['id']}").status_code == 404
    assert api.get(f"{ENDPOINTS}/{endpoint['id']}/deliveries").status_code == 404
    assert api.get(ENDPOINTS).json() == []
    assert make_worker(db).run_once() == 0
    assert receiver.requests == []
    assert [(m.status, m.last_error) for m in messages(db)] == [("dead", "endpoint deleted")]
    assert _actions(db, endpoint["id"])[-1] == "webhook_endpoint.deleted"
    again = api.client.delete(f"{ENDPOINTS}/{endpoint['id']}", headers=api.tenant.headers)
    assert again.status_code == 404


def test_another_seller_can_neither_see_nor_change_an_endpoint(
    api: Api, db: Database, receiver: Receiver
) -> None:
    endpoint = register(api, receiver.url("/hook"))
    other = make_tenant(db, "Other GmbH")
    path = f"{ENDPOINTS}/{endpoint['id']}"
    assert api.client.get(path, headers=other.headers).status_code == 404
    r = api.client.patch(path, json={"active": False}, headers=other.headers)
    assert r.status_code == 404
    assert api.client.delete(path, headers=other.headers).status_code == 404
    assert api.get(path).json()["active"] is True


def test_the_cli_lists_disables_enables_and_deletes_endpoints(
    api: Api, db: Database, tenant: Tenant, receiver: Receiver
) -> None:
    endpoint = register(api, receiver.url("/hook"))
    org, url = str(tenant.organization_id), ["--database-url", db.url]
    listed = runner.invoke(cli, ["webhooks", "list", "--org", org, *url])
    assert listed.exit_code == 0, listed.output
    assert f"{endpoint['id']}  active    {receiver.url('/hook')}  *" in listed.output

    off = runner.invoke(cli, ["webhooks", "disable", endpoint["id"], "--org", org, *url])
    assert off.exit_code == 0, off.output
    assert "disabled; 0 queued message(s) not delivered" in off.output
    assert api.get(f"{ENDPOINTS}/{endpoint['id']}").json()["active"] is False
    on = runner.invoke(cli, ["webhooks", "enable", endpoint["id"], "--org", org, *url])
    assert on.exit_code == 0 and "enabled" in on.output
    assert api.get(f"{ENDPOINTS}/{endpoint['id']}").json()["active"] is True

    gone = runner.invoke(cli, ["webhooks", "delete", endpoint["id"], "--org", org, *url])
    assert gone.exit_code == 0 and "deleted" in gone.output
    assert api.get(ENDPOINTS).json() == []
    missing = runner.invoke(cli, ["webhooks", "delete", endpoint["id"], "--org", org, *url])
    assert missing.exit_code == 1
    assert "not found" in missing.output
    bad = runner.invoke(cli, ["webhooks", "disable", "nope", "--org", org, *url])
    assert bad.exit_code == 2 and "not an endpoint id" in bad.output
