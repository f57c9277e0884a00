"""PostgreSQL itself refuses to change or delete events and checkpoints."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from returnguard.audit import service as audit
from returnguard.audit.checkpoints import write_checkpoints
from returnguard.kit.db import Database
from tests.conftest import make_tenant

KEY = b"a key of at least thirty-two characters"


@pytest.mark.postgresql_only  # the triggers; SQLite relies on the session guard
def test_postgresql_refuses_updates_and_deletes_of_events_and_checkpoints(db: Database) -> None:
    assert db.dialect == "postgresql"
    t = make_tenant(db)
    assert write_checkpoints(db, KEY).written
    for statement in (
        "UPDATE events SET action = 'rewritten' WHERE organization_id = :org",
        "DELETE FROM events WHERE organization_id = :org",
        "UPDATE event_checkpoints SET signature = NULL WHERE organization_id = :org",
        "DELETE FROM event_checkpoints WHERE organization_id = :org",
        "UPDATE event_checkpoint_heads SET hash = '0' WHERE organization_id = :org",
        "DELETE FROM event_checkpoint_heads WHERE organization_id = :org",
    ):
        with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as conn:
            conn.execute(text(statement), {"org": t.organization_id})
    with db.session() as session:
        report = audit.verify_chain(session, t.organization_id, key=KEY)
    assert report.ok and report.checked == 2 and report.sealed_events == 2
