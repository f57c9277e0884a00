"""The events of a bulk import's new orders, written by the event log's lean COPY writer,
are the rows its general writer makes of the same events, and their chains verify."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from returnguard.audit import service as audit
from returnguard.audit.chain import GENESIS, canonical
from returnguard.audit.models import Event, UnsealedHead
from returnguard.auth.actor import Actor
from returnguard.kit.db import Database, JSONText, new_ids
from tests.conftest import make_tenant

pytestmark = pytest.mark.postgresql_only

# More than audit.COPY_FROM, so the commit writes them by COPY.
N = 150

_COMPARED = (
    "organization_id",
    "subject_type",
    "subject_seq",
    "return_id",
    "action",
    "actor_type",
    "actor_id",
    "actor_label",
    "before",
    "after",
    "data",
    "prev_hash",
)


def _record(db: Database, org_id: uuid.UUID, ids: list[uuid.UUID]) -> None:
    actor = Actor.system(org_id, 'csv "import" ü\\')
    states = [
        (order_id, JSONText(canonical({"external_id": f'A-{n}\t\u00e9"', "n": n, "x": None})))
        for n, order_id in enumerate(ids)
    ]
    with db.session() as session:
        audit.record_created(
            session, actor, subject_type="order", action="order.created", created=states
        )


def _rows(db: Database, org_id: uuid.UUID) -> tuple[dict[str, dict[str, Any]], list[Any]]:
    with db.session() as session:
        events = {
            e.subject_id: {c: getattr(e, c) for c in (*_COMPARED, "seq", "hash", "occurred_at")}
            for e in session.scalars(
                select(Event).where(Event.organization_id == org_id, Event.subject_type == "order")
            )
        }
        heads = list(
            session.execute(
                select(
                    UnsealedHead.subject_id,
                    UnsealedHead.subject_seq,
                    UnsealedHead.seq,
                    UnsealedHead.hash,
                ).where(
                    UnsealedHead.organization_id == org_id, UnsealedHead.subject_type == "order"
                )
            )
        )
    return events, heads


def test_lean_event_copy_writes_what_the_general_writer_writes_and_verifies(
    pg_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    lean_org = make_tenant(pg_db, "Lean").organization_id
    general_org = make_tenant(pg_db, "General").organization_id
    ids = new_ids(N)

    lean_writes: list[int] = []
    copy_created = audit._copy_created

    def counted(session: Any, created: list[Any]) -> None:
        lean_writes.append(len(created))
        copy_created(session, created)

    with monkeypatch.context() as patch:
        patch.setattr(audit, "_copy_created", counted)
        _record(pg_db, lean_org, ids)
    assert lean_writes == [N]
    with monkeypatch.context() as patch:
        patch.setattr(audit, "_plain_created", lambda _p: False)
        _record(pg_db, general_org, ids)

    lean, lean_heads = _rows(pg_db, lean_org)
    general, general_heads = _rows(pg_db, general_org)
    assert len(lean) == len(general) == N
    for subject_id, row in lean.items():
        other = general[subject_id]
        assert {c: row[c] for c in _COMPARED if c != "organization_id"} == {
            c: other[c] for c in _COMPARED if c != "organization_id"
        }
        assert row["prev_hash"] == GENESIS and row["subject_seq"] == 1
        assert row["before"] is None and row["data"] is None
        assert row["after"] == json.loads(canonical(row["after"]))
    # One head per new chain, each the chain's only event.
    assert sorted((s, q, seq, h) for s, q, seq, h in lean_heads) == sorted(
        (s, 1, lean[s]["seq"], lean[s]["hash"]) for s in lean
    )
    assert len(general_heads) == N
    with pg_db.session() as session:
        for org_id in (lean_org, general_org):
            report = audit.verify_chain(session, org_id)
            # The tenant's own events (organization, API key) besides the orders'.
            assert report.ok and report.checked > N, report
