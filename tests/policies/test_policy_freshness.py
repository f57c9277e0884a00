"""A return is decided with the policy published now, whichever process published it.

Several server processes share one database and none hears of another's changes: a
publication, an assignment or a new default version written elsewhere must decide the
very next return. "Elsewhere" is played here by plain SQL on a connection of its own,
which no hook, event or cache of this process can see.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from sqlalchemy import Table, event, insert, select, update

from returnguard.domain.policy.defaults import default_policy_data
from returnguard.kit.db import Base, Database, new_id, utcnow
from returnguard.orders.models import Channel
from returnguard.policies.models import Policy, PolicyVersion
from tests.conftest import Api

REVIEW_EVERYTHING = {
    "id": "review-everything",
    "when": {"buyer_countries": ["DE"]},
    "then": {"human_review": True},
}


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


def _order(api: Api, ext: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    body = {
        "channel": "amazon-de",
        "external_id": ext,
        "currency": "EUR",
        "ordered_at": (now - timedelta(days=10)).isoformat(),
        "delivered_at": (now - timedelta(days=3)).isoformat(),
        "buyer": {"external_id": f"buyer-{ext}", "country": "DE"},
        "captured": {"amount": "40.00", "currency": "EUR"},
        "lines": [
            {
                "external_id": "l1",
                "sku": "MUG",
                "quantity": 1,
                "unit_price": {"amount": "40.00", "currency": "EUR"},
            }
        ],
    }
    r = api.post("/api/v1/orders", body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _decided(api: Api, ext: str) -> tuple[str, str, int]:
    """A new return's status, and the policy name and version that decided it."""
    order = _order(api, ext)
    r = api.post(
        "/api/v1/returns",
        {
            "order_id": order["id"],
            "lines": [
                {
                    "order_line_id": order["lines"][0]["id"],
                    "quantity": 1,
                    "reason_code": "changed_mind",
                }
            ],
        },
    )
    assert r.status_code == 201, r.text
    ret = r.json()
    decision = api.get(f"/api/v1/returns/{ret['id']}/decision").json()
    return ret["status"], decision["policy_name"], decision["policy_version"]


class OtherProcess:
    """Writes policies the way another server process would look from here: rows in the
    database, committed, with nothing said to this process."""

    def __init__(self, db: Database, organization_id: uuid.UUID) -> None:
        self.db = Database(db.url)
        self.organization_id = organization_id

    def add_version(self, policy_id: uuid.UUID, version: int, document: dict[str, Any]) -> None:
        with self.db.engine.begin() as conn:
            conn.execute(
                insert(_table(PolicyVersion)).values(
                    id=new_id(),
                    organization_id=self.organization_id,
                    policy_id=policy_id,
                    version=version,
                    document=document,
                    created_at=utcnow(),
                    created_by="elsewhere",
                )
            )

    def publish(self, policy_id: uuid.UUID, version: int | None) -> None:
        with self.db.engine.begin() as conn:
            conn.execute(
                update(_table(Policy))
                .where(_table(Policy).c.id == policy_id)
                .values(published_version=version, updated_at=utcnow())
            )

    def new_policy(self, name: str, document: dict[str, Any], *, publish: bool = True) -> uuid.UUID:
        policy_id = new_id()
        with self.db.engine.begin() as conn:
            conn.execute(
                insert(_table(Policy)).values(
                    id=policy_id,
                    organization_id=self.organization_id,
                    name=name,
                    created_at=utcnow(),
                    updated_at=utcnow(),
                )
            )
        self.add_version(policy_id, 1, document)
        if publish:
            self.publish(policy_id, 1)
        return policy_id

    def assign(self, code: str, policy_id: uuid.UUID | None) -> None:
        channels = _table(Channel)
        with self.db.engine.begin() as conn:
            conn.execute(
                update(channels)
                .where(channels.c.organization_id == self.organization_id, channels.c.code == code)
                .values(policy_id=policy_id)
            )

    def policy_id(self, name: str) -> uuid.UUID:
        with self.db.engine.connect() as conn:
            found = conn.scalar(
                select(_table(Policy).c.id).where(
                    _table(Policy).c.organization_id == self.organization_id,
                    _table(Policy).c.name == name,
                )
            )
        assert isinstance(found, uuid.UUID)
        return found


@pytest.fixture
def elsewhere(db: Database, api: Api) -> Any:
    other = OtherProcess(db, api.tenant.organization_id)
    yield other
    other.db.dispose()


def test_policy_changes_made_by_another_process_decide_the_next_return(
    api: Api, elsewhere: OtherProcess
) -> None:
    api.channel()
    assert _decided(api, "o-1") == ("approved", "Default policy (EUR)", 1)
    # Decided again in this process: whatever it keeps from one request to the next.
    assert _decided(api, "o-2") == ("approved", "Default policy (EUR)", 1)

    strict = default_policy_data("EUR")
    strict["rules"].insert(0, REVIEW_EVERYTHING)
    policy_id = elsewhere.new_policy("Strict", default_policy_data("EUR"))
    elsewhere.assign("amazon-de", policy_id)
    assert _decided(api, "o-3") == ("approved", "Strict", 1)

    elsewhere.add_version(policy_id, 2, strict)
    assert _decided(api, "o-4") == ("approved", "Strict", 1)  # a draft decides nothing
    elsewhere.publish(policy_id, 2)
    assert _decided(api, "o-5") == ("pending_review", "Strict", 2)

    elsewhere.assign("amazon-de", None)
    assert _decided(api, "o-6") == ("approved", "Default policy (EUR)", 1)

    # The built-in default, given a stricter version and republished elsewhere.
    default_id = elsewhere.policy_id("Default policy (EUR)")
    elsewhere.add_version(default_id, 2, strict)
    elsewhere.publish(default_id, 2)
    assert _decided(api, "o-7") == ("pending_review", "Default policy (EUR)", 2)


def test_an_unpublished_assigned_policy_leaves_the_channel_on_the_default(
    api: Api, elsewhere: OtherProcess
) -> None:
    api.channel()
    assert _decided(api, "o-1")[1] == "Default policy (EUR)"
    policy_id = elsewhere.new_policy("Draft only", default_policy_data("EUR"), publish=False)
    elsewhere.assign("amazon-de", policy_id)
    assert _decided(api, "o-2") == ("approved", "Default policy (EUR)", 1)


def test_a_decided_return_reads_its_order_policy_and_endpoints_once(api: Api, db: Database) -> None:
    """Creating and deciding a return reads each thing it needs once: the order (locked),
    the channel's published policy (with its version, in one statement) and the
    organization's webhook endpoints (for two events)."""
    api.channel()
    _decided(api, "warm-up")  # publishes the built-in default on first use
    order = _order(api, "o-1")
    sent: list[str] = []

    def keep(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(" ".join(statement.split()))

    event.listen(db.engine, "before_cursor_execute", keep)
    try:
        r = api.post(
            "/api/v1/returns",
            {
                "order_id": order["id"],
                "lines": [
                    {
                        "order_line_id": order["lines"][0]["id"],
                        "quantity": 1,
                        "reason_code": "changed_mind",
                    }
                ],
            },
        )
    finally:
        event.remove(db.engine, "before_cursor_execute", keep)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "approved"

    def reading(table: str) -> list[str]:
        return [s for s in sent if s.startswith("SELECT") and f" {table} " in f"{s} "]

    orders = [s for s in sent if s.startswith("SELECT orders.id,")]  # the order's row
    assert len(orders) == 1, orders
    assert len(reading("webhook_endpoints")) == 1, reading("webhook_endpoints")
    assert len(reading("policies")) == 1, reading("policies")
    assert len(reading("policy_versions")) == 1, reading("policy_versions")
