"""Property-based tests of every operation against the app's own OpenAPI document.

Schemathesis generates valid and invalid requests for each operation from the document
the app serves, sends them in-process with a valid admin key, and fails on any 5xx and
on any answer the document does not declare (status, content type, headers, body
schema). Bounded for CI: a fixed seed, a few examples per operation and mode, and a
deadline per example; each operation runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from returnguard.app import create_app
from returnguard.config import Settings
from returnguard.kit.db import Database
from tests.conftest import BACKENDS, Api, Tenant, make_tenant, seed_every_object


def _document() -> dict[str, Any]:
    # The document does not depend on the database; this one is never connected to.
    path = Path(tempfile.gettempdir()) / "returnguard-schemathesis-unused.sqlite3"
    app = create_app(Settings(database_url=f"sqlite:///{path}", in_process_worker=False))
    return app.openapi()


# The ECB import reads `application/csv` too: sent as the text it is.
schemathesis.serializer.alias("application/csv", "text/plain")

schema = schemathesis.openapi.from_dict(_document())
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    deterministic=True,
    database="none",
)

STATUS_PROPERTY = "schemathesis_status"

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module", params=BACKENDS)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, Tenant, dict[str, Any]]]:
    """One app and one tenant per database for the whole module: what the generated
    requests create accumulates, as it would on a real server. The tenant starts with one
    of each object a path can name (``seed_every_object``), so valid requests reach real
    rows instead of stopping at a 404 for a random id."""
    name = "postgres_url" if request.param == "postgresql" else "sqlite_url"
    url = str(request.getfixturevalue(name))
    database = Database(url)
    settings = Settings(
        database_url=url,
        in_process_worker=False,
        storage_dir=str(tmp_path_factory.mktemp("files")),
    )
    tenant = make_tenant(database, name="Schemathesis GmbH")
    with TestClient(create_app(settings, db=database)) as client:
        ids = seed_every_object(Api(client, tenant))
        number = client.get(f"/api/v1/returns/{ids['return_id']}", headers=tenant.headers)
        ids |= {
            "organization_id": str(tenant.organization_id),
            "channel_code": ids["code"],
            "rma": number.json()["number"],
        }
        yield client, tenant, ids
    database.dispose()


@schema.parametrize()
@settings(
    max_examples=12,
    # A guard against a hanging request, far above the ~10 ms one takes.
    deadline=10_000,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_documented(
    case: schemathesis.Case[Any],
    live: tuple[TestClient, Tenant, dict[str, Any]],
    record_property: Callable[[str, object], None],
) -> None:
    client, tenant, ids = live
    if case.meta is not None and case.meta.generation.mode == GenerationMode.POSITIVE:
        # A valid request names objects that exist (they may be gone by now: deleted or
        # revoked by an earlier case, which the answer then says).
        for name in case.path_parameters or {}:
            if name in ids:
                case.path_parameters[name] = ids[name]
    headers = dict(tenant.headers)
    if case.headers and "authorization" in {k.lower() for k in case.headers}:
        # A generated Authorization header tests authentication; keep it.
        headers = {}
    try:
        response = case.call_and_validate(app=client.app, headers=headers, checks=CHECKS)
    except Exception as failure:
        # What the failing answer was, when there was one, is counted too.
        answered = getattr(failure, "response", None)
        record_property(STATUS_PROPERTY, getattr(answered, "status_code", "error"))
        raise
    record_property(STATUS_PROPERTY, response.status_code)
