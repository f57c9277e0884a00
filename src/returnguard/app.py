"""The HTTP application: API routers, problem documents, health and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text

from returnguard import __version__
from returnguard.auth.endpoints import router as auth_router
from returnguard.composition import default_handlers
from returnguard.config import Settings
from returnguard.fx.endpoints import router as fx_router
from returnguard.kit.db import Database
from returnguard.kit.guard import RequestGuard
from returnguard.kit.problem import (
    PROBLEM_MEDIA_TYPE,
    install_problem_handlers,
    problem_responses,
)
from returnguard.ledger.endpoints import router as ledger_router
from returnguard.metrics import Metrics
from returnguard.orders.buyer_endpoints import router as buyers_router
from returnguard.orders.endpoints import router as orders_router
from returnguard.outbox.endpoints import router as webhooks_router
from returnguard.outbox.handlers import Handlers
from returnguard.outbox.worker import InProcessWorker
from returnguard.policies.endpoints import router as policies_router
from returnguard.policies.public import router as public_policy_page_router
from returnguard.refunds.endpoints import router as refunds_router
from returnguard.returns.endpoints import router as returns_router


def create_app(
    settings: Settings | None = None,
    db: Database | None = None,
    *,
    handlers: Handlers | None = None,
) -> FastAPI:
    """The API; with no arguments (the `returnguard serve` worker processes) every setting
    comes from the environment. ``handlers`` are the outbox topics the in-process worker
    runs (default: the application's, as `returnguard worker` runs them)."""
    settings = settings or Settings()
    database = db or Database(settings.database_url)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker = None
        if settings.run_worker_in_process:
            topics = handlers if handlers is not None else default_handlers()
            worker = InProcessWorker(database, settings, handlers=topics)
            worker.start()
            app.state.notify_worker = worker.notify
        try:
            yield
        finally:
            if worker is not None:
                worker.shutdown()
            if db is None:
                database.dispose()

    app = FastAPI(
        title="ReturnGuard",
        version=__version__,
        description="Returns management and refund-risk API. Errors are RFC 9457 problem "
        "documents with a stable `code`; amounts are decimal strings with a currency.",
        lifespan=lifespan,
        # Served by _install_docs from installed files, not from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.db = database
    app.state.settings = settings
    app.state.notify_worker = None
    install_problem_handlers(app)
    # Inside the metrics middleware (added after it), so its answers are counted too and
    # the body limit's exception reaches FastAPI directly, not through a task group.
    app.add_middleware(RequestGuard)
    metrics.install(app)
    for router in (
        auth_router,
        orders_router,
        buyers_router,
        returns_router,
        refunds_router,
        policies_router,
        public_policy_page_router,
        fx_router,
        webhooks_router,
        ledger_router,
    ):
        app.include_router(router)
    _install_docs(app)

    @app.get("/healthz", tags=["operations"], responses=problem_responses(503))
    def healthz(request: Request) -> Response:
        """Liveness and database reachability."""
        try:
            # The read engine: on SQLite it never waits for the write lock.
            with database.read_engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            return JSONResponse(
                {
                    "type": "https://returnguard.dev/problems/database_unavailable",
                    "title": "Database unavailable",
                    "status": 503,
                    "code": "database_unavailable",
                    "detail": f"{type(exc).__name__}",
                    "errors": [],
                },
                status_code=503,
                media_type="application/problem+json",
            )
        return JSONResponse({"status": "ok", "database": database.dialect, "version": __version__})

    @app.get("/metrics", tags=["operations"], response_class=Response)
    def metrics_endpoint() -> Response:
        """Prometheus metrics."""
        return metrics.render(database)

    app.openapi = _once_per_process(app, _declaring_guard_answers(app.openapi))  # type: ignore[method-assign]
    return app


# Swagger UI and ReDoc come with the fastapi-offline package (its static folder holds
# swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js and favicon.png): the pages
# work on a machine without internet, and load nothing from another origin.
DOCS_ASSETS = "/docs/assets"


def _install_docs(app: FastAPI) -> None:
    """`/docs` (Swagger UI) and `/redoc` (ReDoc), their assets under DOCS_ASSETS."""
    app.mount(
        DOCS_ASSETS,
        StaticFiles(packages=[("fastapi_offline", "static")]),
        name="docs-assets",
    )

    def prefix(request: Request) -> str:
        # Behind a proxy that serves the app under a path, links must carry that path.
        return str(request.scope.get("root_path", "")).rstrip("/")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = prefix(request)
        return get_swagger_ui_html(
            openapi_url=root + str(app.openapi_url),
            title=f"{app.title} - API",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            # No badge image from the public validator service.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = prefix(request)
        return get_redoc_html(
            openapi_url=root + str(app.openapi_url),
            title=f"{app.title} - API",
            redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )


_PROBLEM = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
_RETRY_AFTER = {"description": "Seconds", "schema": {"type": "integer"}}


# The document of an app's routes, per set of routes: every app this process creates has
# the same ones, and building the document takes about half a second (the guard reads it
# at an app's first request, each test's app included).
_DOCUMENTS: dict[tuple[tuple[str, tuple[str, ...]], ...], dict[str, Any]] = {}


def _once_per_process(
    app: FastAPI, openapi: Callable[[], dict[str, Any]]
) -> Callable[[], dict[str, Any]]:
    def document() -> dict[str, Any]:
        routes = tuple(
            (str(getattr(r, "path", "")), tuple(sorted(getattr(r, "methods", None) or ())))
            for r in app.routes
        )
        found = _DOCUMENTS.get(routes)
        if found is None:
            found = _DOCUMENTS[routes] = openapi()
        app.openapi_schema = found
        return found

    return document


def _declaring_guard_answers(
    openapi: Callable[[], dict[str, Any]],
) -> Callable[[], dict[str, Any]]:
    """Declare on every operation the answers the central checks give (kit/guard.py and
    the validation handlers), so the document lists every status a client can meet:
    400 (malformed JSON, a NUL in a header), 413 (a body above its limit), 415 (a body
    of another media type), 422 (an unknown or invalid query parameter) and 429 (too many
    failed authentications). Idempotent over the cached document."""

    def document() -> dict[str, Any]:
        schema = openapi()
        descriptions = {
            "400": "Malformed JSON body, or a header carrying a NUL character",
            "413": "The request body is larger than this operation accepts",
            "415": "The body's Content-Type is not one this operation reads",
            "422": "Invalid input; `errors` names each field and reason",
            "429": "Too many failed authentications from this address; retry after "
            "`Retry-After` seconds",
        }
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                wanted = ["400", "422"]
                if "requestBody" in operation:
                    wanted += ["413", "415"]
                if "401" in responses:
                    wanted.append("429")
                for status in wanted:
                    answer: dict[str, Any] = {
                        "description": descriptions[status],
                        "content": dict(_PROBLEM),
                    }
                    if status == "429":
                        answer["headers"] = {"Retry-After": _RETRY_AFTER}
                    responses.setdefault(status, answer)
        return schema

    return document
