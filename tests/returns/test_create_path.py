"""Creating and deciding a return: what it reads once per transaction stays right.

The webhook endpoints are read once per transaction (creating and deciding a return
publishes two events), a new return's evidence is not looked up when the transaction
that made it added none, and a transition writes its return in one conditional UPDATE.
Each shortcut must give what reading again would have given.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, event, insert, select, update

from returnguard.auth.actor import Actor
from returnguard.kit.db import Base, Database, new_id, utcnow
from returnguard.kit.storage import FileStore
from returnguard.outbox import service as outbox
from returnguard.outbox.models import OutboxMessage, WebhookEndpoint
from returnguard.returns import evidence
from returnguard.returns import service as returns
from returnguard.returns.schemas import ReturnIn
from tests.conftest import Api


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


def _return_in(order: dict[str, Any], *, decide: bool = True) -> ReturnIn:
    return ReturnIn.model_validate(
        {
            "order_id": order["id"],
            "decide": decide,
            "lines": [
                {
                    "order_line_id": order["lines"][0]["id"],
                    "quantity": 1,
                    "reason_code": "changed_mind",
                }
            ],
        }
    )


def _endpoint_elsewhere(db: Database, organization_id: uuid.UUID, *, active: bool = True) -> str:
    """An endpoint written by another process: a committed row, and nothing else."""
    endpoint_id = new_id()
    other = Database(db.url)
    try:
        with other.engine.begin() as conn:
            conn.execute(
                insert(_table(WebhookEndpoint)).values(
                    id=endpoint_id,
                    organization_id=organization_id,
                    url="https://hooks.example.com/rg",
                    secret="whsec_test",
                    event_types=["*"],
                    active=active,
                    description="elsewhere",
                    created_at=utcnow(),
                )
            )
    finally:
        other.dispose()
    return str(endpoint_id)


def _queued_for(db: Database, endpoint_id: str) -> list[str]:
    with db.session() as session:
        rows = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
        return [m.payload["event"]["type"] for m in rows if m.payload["endpoint_id"] == endpoint_id]


def test_an_endpoint_added_by_another_process_gets_the_next_returns_events(
    api: Api, db: Database
) -> None:
    api.channel()
    first = api.order("o-1")
    assert api.post("/api/v1/returns", _return_in(first).model_dump(mode="json")).status_code == 201
    endpoint_id = _endpoint_elsewhere(db, api.tenant.organization_id)
    second = api.order("o-2")
    r = api.post("/api/v1/returns", _return_in(second).model_dump(mode="json"))
    assert r.status_code == 201, r.text
    assert r.json()["status"] != "requested"  # decided: a second event
    assert _queued_for(db, endpoint_id) == ["return.created", "return.status_changed"]


def test_an_endpoint_disabled_by_another_process_gets_nothing_more(api: Api, db: Database) -> None:
    api.channel()
    endpoint_id = _endpoint_elsewhere(db, api.tenant.organization_id)
    api.post("/api/v1/returns", _return_in(api.order("o-1")).model_dump(mode="json"))
    assert len(_queued_for(db, endpoint_id)) == 2
    other = Database(db.url)
    try:
        with other.engine.begin() as conn:
            table = _table(WebhookEndpoint)
            conn.execute(
                update(table).where(table.c.id == uuid.UUID(endpoint_id)).values(active=False)
            )
    finally:
        other.dispose()
    api.post("/api/v1/returns", _return_in(api.order("o-2")).model_dump(mode="json"))
    assert len(_queued_for(db, endpoint_id)) == 2


def test_endpoints_changed_within_the_transaction_get_its_later_events(
    api: Api, db: Database
) -> None:
    """The endpoints read for one event are read again after the same transaction added,
    disabled or changed one, flushed or not."""
    org = api.tenant.organization_id
    with db.session() as session:
        outbox.publish_webhook_event(session, org, "return.created", {"n": 1})
        added = WebhookEndpoint(
            organization_id=org,
            url="https://hooks.example.com/a",
            secret="whsec_a",
            event_types=["return.created"],
            description="",
        )
        session.add(added)  # not flushed yet
        outbox.publish_webhook_event(session, org, "return.created", {"n": 2})
        outbox.publish_webhook_event(session, org, "return.status_changed", {"n": 3})
        added.event_types = ["return.status_changed"]
        session.flush()
        outbox.publish_webhook_event(session, org, "return.status_changed", {"n": 4})
        added.active = False
        outbox.publish_webhook_event(session, org, "return.status_changed", {"n": 5})
        endpoint_id = str(added.id)
    with db.session() as session:
        sent = [
            m.payload["event"]["data"]["n"]
            for m in session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
            if m.payload["endpoint_id"] == endpoint_id
        ]
    assert sent == [2, 4]


def test_evidence_added_in_the_transaction_that_made_the_return_counts(
    api: Api, db: Database, tmp_path: Path
) -> None:
    """A return made and given evidence in one transaction is decided on that evidence."""
    api.channel()
    order = api.order("o-1")
    actor = Actor.system(api.tenant.organization_id)
    with db.session() as session:
        ret = returns.create_return(session, actor, _return_in(order, decide=False))
        evidence.add_evidence(
            session,
            actor,
            ret,
            uploads=[],
            text="It arrived scratched.",
            store=FileStore(tmp_path),
            max_bytes=1_000_000,
        )
        _, decided = returns.decide(session, actor, ret.id)
        with_text = decided.record.facts["evidence"]["explanation"]
    with db.session() as session:
        ret = returns.create_return(session, actor, _return_in(api.order("o-2"), decide=False))
        _, decided = returns.decide(session, actor, ret.id)
        without = decided.record.facts["evidence"]["explanation"]
    assert (with_text, without) == (True, False)


def test_a_transition_writes_its_return_in_one_update(api: Api, db: Database) -> None:
    """Status, version, reason and time of a transition go in its conditional UPDATE; the
    return then reads back as written."""
    api.channel()
    ret = api.open_return(api.order())
    sent: list[str] = []

    def keep(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(" ".join(statement.split()))

    event.listen(db.engine, "before_cursor_execute", keep)
    try:
        r = api.post(f"/api/v1/returns/{ret['id']}/reject", {"reason": "outside the window"})
    finally:
        event.remove(db.engine, "before_cursor_execute", keep)
    assert r.status_code == 200, r.text
    updates = [s for s in sent if s.startswith("UPDATE returns ")]
    assert len(updates) == 1, updates
    assert "status_reason" in updates[0] and "updated_at" in updates[0]
    after = api.get(f"/api/v1/returns/{ret['id']}").json()
    assert (after["status"], after["status_reason"], after["version"]) == (
        "rejected",
        "outside the window",
        ret["version"] + 1,
    )
    assert after["updated_at"] > ret["updated_at"]
