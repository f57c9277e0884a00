"""Outbound webhooks end to end: API → outbox row → worker → a real HTTP receiver."""

from __future__ import annotations

import socket
import time
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from returnguard.app import create_app
from returnguard.auth.service import Actor
from returnguard.config import Settings
from returnguard.kit.db import Database, utcnow
from returnguard.outbox.models import OutboxMessage, WebhookEndpoint
from returnguard.outbox.signing import SIGNATURE_HEADER, verify
from returnguard.returns import service as returns_service
from returnguard.returns.models import Return
from returnguard.returns.schemas import ReturnIn
from tests.conftest import Api, Tenant
from tests.outbox.conftest import (
    HANG,
    Received,
    Receiver,
    WorkerFactory,
    deliveries,
    make_due,
    messages,
    register,
)

ENDPOINTS = "/api/v1/webhooks/endpoints"


def open_and_approve(api: Api) -> dict[str, Any]:
    api.channel()
    order = api.order()
    ret = api.open_return(order)
    r = api.post(f"/api/v1/returns/{ret['id']}/approve", {"note": "ok"})
    assert r.status_code == 200, r.text
    created: dict[str, Any] = ret
    return created


def assert_signed(request: Received, secret: str) -> None:
    verify(secret, request.body, request.headers[SIGNATURE_HEADER.lower()])


def test_created_and_approved_are_delivered_signed_in_order(
    api: Api, db: Database, tenant: Tenant, receiver: Receiver, make_worker: WorkerFactory
) -> None:
    endpoint = register(api, receiver.url("/hook"))
    ret = open_and_approve(api)

    worker = make_worker(db)
    assert worker.run_once() == 2
    created, changed = receiver.wait_for(2)

    for request in (created, changed):
        assert request.path == "/hook"
        assert request.headers["content-type"] == "application/json"
        assert request.headers["user-agent"].startswith("ReturnGuard-Webhooks/")
        body = request.json()
        assert set(body) == {"id", "type", "created_at", "organization_id", "data"}
        assert body["id"].startswith("evt_")
        assert request.event_id == body["id"]
        assert request.headers["returnguard-event-type"] == body["type"]
        assert body["organization_id"] == str(tenant.organization_id)
        assert body["data"]["return_id"] == ret["id"]
        assert body["data"]["number"] == ret["number"]
        assert body["data"]["order_id"] == ret["order_id"]
        assert_signed(request, endpoint["secret"])
    assert created.event_id != changed.event_id

    first = created.json()
    assert first["type"] == "return.created"
    assert first["data"]["status"] == "requested"
    assert "previous_status" not in first["data"]
    line = first["data"]["lines"][0]
    assert line["id"] == ret["lines"][0]["id"]
    assert (line["requested"], line["approved"], line["reason_code"]) == (1, 0, "changed_mind")

    second = changed.json()
    assert second["type"] == "return.status_changed"
    assert second["data"]["previous_status"] == "requested"
    assert second["data"]["status"] == "approved"
    assert second["data"]["action"] == "approve"
    assert second["data"]["lines"][0]["approved"] == 1

    # Delivered means done: another round sends nothing again.
    assert worker.run_once() == 0
    assert len(receiver.requests) == 2
    assert {m.status for m in messages(db)} == {"done"}

    r = api.get(f"{ENDPOINTS}/{endpoint['id']}/deliveries")
    assert r.status_code == 200
    rows = r.json()
    assert [d["webhook_event_id"] for d in rows] == [changed.event_id, created.event_id]
    assert [d["event_type"] for d in rows] == ["return.status_changed", "return.created"]
    assert all(d["ok"] and d["status_code"] == 200 and d["attempt"] == 1 for d in rows)
    assert all(d["error"] is None and d["duration_ms"] >= 0 for d in rows)


def test_endpoints_get_only_the_event_types_they_subscribed_to(
    api: Api, db: Database, receiver: Receiver, make_worker: WorkerFactory
) -> None:
    every = register(api, receiver.url("/all"), ["*"])
    created_only = register(api, receiver.url("/created"), ["return.created"])
    changes_only = register(api, receiver.url("/changes"), ["return.status_changed"])
    open_and_approve(api)

    assert len(messages(db)) == 4
    assert make_worker(db).run_once() == 4
    receiver.wait_for(4)

    assert [r.json()["type"] for r in receiver.at("/all")] == [
        "return.created",
        "return.status_changed",
    ]
    [created] = receiver.at("/created")
    [changed] = receiver.at("/changes")
    assert created.json()["type"] == "return.created"
    assert changed.json()["type"] == "return.status_changed"
    # One event fans out to every subscriber under the same id, signed per endpoint.
    assert created.event_id == receiver.at("/all")[0].event_id
    assert created.body == receiver.at("/all")[0].body
    assert_signed(created, created_only["secret"])
    assert_signed(changed, changes_only["secret"])
    assert_signed(receiver.at("/all")[1], every["secret"])
    with pytest.raises(ValueError, match="no v1 signature matches"):
        assert_signed(created, every["secret"])


def test_events_before_registration_and_without_endpoints_are_not_queued(
    api: Api, db: Database, receiver: Receiver, make_worker: WorkerFactory
) -> None:
    api.channel()
    order = api.order()
    api.open_return(order)
    assert messages(db) == []
    register(api, receiver.url("/late"))
    assert make_worker(db).run_once() == 0
    assert receiver.requests == []


def test_a_500_is_retried_after_backoff_with_the_same_event(
    api: Api, db: Database, receiver: Receiver, make_worker: WorkerFactory
) -> None:
    endpoint = register(api, receiver.url("/flaky"), ["return.created"])
    receiver.plan("/flaky", 500)
    api.channel()
    api.open_return(api.order())
    worker = make_worker(db)

    before = utcnow()
    assert worker.run_once() == 1
    [message] = messages(db)
    assert (message.status, message.attempts, message.last_error) == ("pending", 1, "HTTP 500")
    # First retry after 10 s; not before.
    assert before + timedelta(seconds=9) <= message.next_attempt_at
    assert message.next_attempt_at <= utcnow() + timedelta(seconds=11)
    assert worker.run_once() == 0

    make_due(db)
    assert worker.run_once() == 1
    first, second = receiver.wait_for(2)
    assert first.event_id == second.event_id
    assert first.body == second.body
    assert_signed(second, endpoint["secret"])
    [message] = messages(db)
    assert (message.status, message.attempts, message.last_error) == ("done", 2, None)

    rows = api.get(f"{ENDPOINTS}/{endpoint['id']}/deliveries").json()
    assert [(d["attempt"], d["ok"], d["status_code"], d["error"]) for d in rows] == [
        (2, True, 200, None),
        (1, False, 500, "HTTP 500"),
    ]
    assert {d["webhook_event_id"] for d in rows} == {first.event_id}


@pytest.mark.parametrize(
    ("status", "retried"),
    [
        (400, False),
        (401, False),
        (404, False),
        (410, False),
        (422, False),
        (408, True),
        (409, True),
        (429, True),
        (503, True),
        (302, True),
    ],
)
def test_client_errors_are_final_but_timeouts_rate_limits_and_redirects_are_retried(
    api: Api,
    db: Database,
    receiver: Receiver,
    make_worker: WorkerFactory,
    status: int,
    retried: bool,
) -> None:
    register(api, receiver.url("/hook"), ["return.created"])
    receiver.plan("/hook", status)
    api.channel()
    api.open_return(api.order())
    worker = make_worker(db)

    assert worker.run_once() == 1
    [message] = messages(db)
    assert message.status == ("pending" if retried else "dead")
    assert message.last_error == f"HTTP {status}"
    make_due(db)
    assert worker.run_once() == (1 if retried else 0)
    assert len(receiver.requests) == (2 if retried else 1)
    [row, *_] = deliveries(db)
    assert (row.status_code, row.ok, row.error) == (status, False, f"HTTP {status}")


def test_a_timeout_is_recorded_as_an_error_and_retried(
    api: Api, db: Database, receiver: Receiver, make_worker: WorkerFactory
) -> None:
    endpoint = register(api, receiver.url("/slow"))
    receiver.plan("/slow", HANG)
    api.channel()
    api.open_return(api.order())
    worker = make_worker(db, webhook_timeout_seconds=0.5)

    started = time.monotonic()
    assert worker.run_once() == 1
    assert time.monotonic() - started < 5
    [message] = messages(db)
    assert message.status == "pending"
    assert message.last_error is not None and "Timeout" in message.last_error

    make_due(db)
    assert worker.run_once() == 1
    first, second = receiver.wait_for(2)
    assert first.event_id == second.event_id
    rows = api.get(f"{ENDPOINTS}/{endpoint['id']}/deliveries").json()
    latest, timed_out = rows
    assert (latest["attempt"], latest["ok"], latest["status_code"]) == (2, True, 200)
    assert (timed_out["attempt"], timed_out["ok"], timed_out["status_code"]) == (1, False, None)
    assert "Timeout" in timed_out["error"]
    assert timed_out["duration_ms"] >= 400
    assert messages(db)[0].status == "done"


def test_an_unreachable_endpoint_is_recorded_and_retried(
    api: Api, db: Database, make_worker: WorkerFactory
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    register(api, f"http://127.0.0.1:{port}/gone")
    api.channel()
    api.open_return(api.order())

    assert make_worker(db).run_once() == 1
    [row] = deliveries(db)
    assert (row.ok, row.status_code) == (False, None)
    assert row.error is not None and row.error.startswith("ConnectError")
    [message] = messages(db)
    assert (message.status, message.last_error) == ("pending", row.error)


def test_a_url_the_http_client_refuses_is_recorded_as_a_failed_delivery(
    api: Api, db: Database, make_worker: WorkerFactory
) -> None:
    """E.g. a URL stored before registration validated URLs as strictly as now."""
    endpoint = register(api, "https://example.com/hook")
    with db.session() as session:
        session.execute(update(WebhookEndpoint).values(url="http://[::1/hook"))
    api.channel()
    api.open_return(api.order())

    assert make_worker(db).run_once() == 1
    [row] = api.get(f"{ENDPOINTS}/{endpoint['id']}/deliveries").json()
    assert (row["ok"], row["status_code"]) == (False, None)
    assert row["error"].startswith("InvalidURL")
    assert messages(db)[0].last_error == row["error"]


def test_after_max_attempts_the_message_is_dead(
    api: Api, db: Database, receiver: Receiver, make_worker: WorkerFactory
) -> None:
    endpoint = register(api, receiver.url("/down"), ["return.created"])
    receiver.plan("/down", 500, 502, 503, 500)
    api.channel()
    api.open_return(api.order())
    worker = make_worker(db, webhook_max_attempts=3)

    for attempt in (1, 2, 3):
        assert worker.run_once() == 1
        [message] = messages(db)
        assert message.attempts == attempt
        assert message.status == ("dead" if attempt == 3 else "pending")
        make_due(db)
    assert worker.run_once() == 0

    requests = receiver.wait_for(3)
    assert len(requests) == 3
    assert len({r.event_id for r in requests}) == 1
    [message] = messages(db)
    assert (message.status, message.last_error, message.done_at) == ("dead", "HTTP 503", None)
    rows = api.get(f"{ENDPOINTS}/{endpoint['id']}/deliveries").json()
    assert [(d["attempt"], d["status_code"], d["ok"]) for d in rows] == [
        (3, 503, False),
        (2, 502, False),
        (1, 500, False),
    ]


def test_a_disabled_endpoint_gets_nothing_and_the_message_dies(
    api: Api, db: Database, receiver: Receiver, make_worker: WorkerFactory
) -> None:
    endpoint = register(api, receiver.url("/off"))
    api.channel()
    api.open_return(api.order())
    with db.session() as session:
        session.execute(update(WebhookEndpoint).values(active=False))

    assert make_worker(db).run_once() == 1
    assert receiver.requests == []
    [message] = messages(db)
    assert (message.status, message.last_error) == ("dead", "endpoint removed or disabled")
    assert api.get(f"{ENDPOINTS}/{endpoint['id']}/deliveries").json() == []


def test_a_rejected_request_leaves_no_outbox_row(
    api: Api, db: Database, receiver: Receiver, make_worker: WorkerFactory
) -> None:
    register(api, receiver.url("/hook"))
    api.channel()
    order = api.order(quantity=2)
    line = order["lines"][0]["id"]
    r = api.post(
        "/api/v1/returns",
        {
            "order_id": order["id"],
            "lines": [{"order_line_id": line, "quantity": 5, "reason_code": "changed_mind"}],
        },
    )
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "quantity_exceeded"
    assert messages(db) == []
    assert make_worker(db).run_once() == 0
    assert receiver.requests == []

    api.open_return(order, quantity=2)  # the same order, valid: exactly one event
    assert [m.payload["event"]["type"] for m in messages(db)] == ["return.created"]


def test_the_outbox_row_commits_and_rolls_back_with_the_return(
    api: Api, db: Database, tenant: Tenant, receiver: Receiver, make_worker: WorkerFactory
) -> None:
    register(api, receiver.url("/hook"))
    api.channel()
    order = api.order()
    data = ReturnIn.model_validate(
        {
            "order_id": order["id"],
            "lines": [
                {
                    "order_line_id": order["lines"][0]["id"],
                    "quantity": 1,
                    "reason_code": "defective",
                }
            ],
        }
    )

    class Boom(Exception):
        pass

    with pytest.raises(Boom), db.session() as session:
        returns_service.create_return(session, Actor.system(tenant.organization_id), data)
        session.flush()
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 1
        raise Boom  # anything failing later in the same unit of work

    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Return)) == 0
    assert messages(db) == []
    assert make_worker(db).run_once() == 0
    assert receiver.requests == []


def test_in_process_worker_delivers_after_the_request(
    db: Database, tenant: Tenant, receiver: Receiver
) -> None:
    settings = Settings(database_url=db.url, in_process_worker=True, webhook_timeout_seconds=0.5)
    with TestClient(create_app(settings, db=db)) as client:
        api = Api(client, tenant)
        endpoint = register(api, receiver.url("/live"))
        ret = open_and_approve(api)
        created, changed = receiver.wait_for(2, timeout=5)
        assert [created.json()["type"], changed.json()["type"]] == [
            "return.created",
            "return.status_changed",
        ]
        assert changed.json()["data"]["return_id"] == ret["id"]
        assert_signed(changed, endpoint["secret"])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            rows = api.get(f"{ENDPOINTS}/{endpoint['id']}/deliveries").json()
            if len(rows) == 2:
                break
            time.sleep(0.05)
        assert [d["ok"] for d in rows] == [True, True]
