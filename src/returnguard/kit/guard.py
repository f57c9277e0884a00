"""The request's shape and limits checked before any handler runs, for every operation.

What is checked here is what no endpoint should have to remember: query parameters the
operation does not declare, NUL characters in the query, the path or a header, and a
body sent with a media type the operation does not read. Each is a problem document
naming the parameter or header, so a typo (`?stauts=received`) is never silently
ignored and text PostgreSQL cannot store never reaches it.

And limits before work: a body is read only after its sender has authenticated, and
only up to the size its media type allows (counted while it arrives, never buffered
first); a client address that keeps failing authentication is refused for a while.
"""

from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from returnguard.auth.service import authenticate
from returnguard.config import Settings
from returnguard.errors import Unauthorized
from returnguard.kit.db import Database
from returnguard.kit.problem import problem_response

NUL = "\x00"
NUL_MESSAGE = "must not contain NUL (U+0000) characters"
JSON = "application/json"
MULTIPART = "multipart/form-data"
URLENCODED = "application/x-www-form-urlencoded"


@dataclass(frozen=True, slots=True)
class Operation:
    """What one documented operation accepts besides its path."""

    query: frozenset[str]
    # Empty: the operation takes no body.
    media_types: frozenset[str]
    # It answers 401: it needs an API key.
    authenticated: bool


@dataclass(frozen=True, slots=True)
class PathTemplate:
    regex: re.Pattern[str]
    names: tuple[str, ...]
    # Literal characters: `/policies/schema` wins over `/policies/{policy_id}`.
    literal: int
    operations: dict[str, Operation]


def _operation(operation: dict[str, Any]) -> Operation:
    query = frozenset(p["name"] for p in operation.get("parameters", []) if p.get("in") == "query")
    media = {media_type(k) for k in operation.get("requestBody", {}).get("content", {})}
    if MULTIPART in media:
        # FastAPI reads a form from either encoding.
        media.add(URLENCODED)
    authenticated = "401" in operation.get("responses", {})
    return Operation(query=query, media_types=frozenset(media), authenticated=authenticated)


def index(document: dict[str, Any]) -> list[PathTemplate]:
    """The OpenAPI document as path templates to match requests against."""
    templates = []
    for path, operations in document.get("paths", {}).items():
        names = tuple(re.findall(r"{([^}]+)}", path))
        pattern = re.sub(r"\\{[^}]+\\}", "([^/]+)", re.escape(path))
        templates.append(
            PathTemplate(
                regex=re.compile(f"^{pattern}$"),
                names=names,
                literal=len(re.sub(r"{[^}]+}", "", path)),
                operations={m.upper(): _operation(op) for m, op in operations.items()},
            )
        )
    return sorted(templates, key=lambda t: -t.literal)


def media_type(header: str) -> str:
    return header.partition(";")[0].strip().lower()


def accepts(operation: Operation, header: str) -> bool:
    kind = media_type(header)
    if kind in operation.media_types:
        return True
    # `application/problem+json`, `application/merge-patch+json`… are JSON too.
    return (
        JSON in operation.media_types and kind.startswith("application/") and kind.endswith("+json")
    )


def _has_body(headers: dict[str, str]) -> bool:
    length = headers.get("content-length", "")
    return "transfer-encoding" in headers or (length.strip() not in {"", "0"})


class RequestGuard:
    """Pure ASGI middleware: it reads the request's head only, never its body.

    The OpenAPI document is the contract it enforces: the query parameters and body
    media types each operation declares. Paths no operation documents (the docs pages,
    404s) pass through untouched.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._index: list[PathTemplate] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        app = scope["app"]
        settings: Settings = app.state.settings
        failures = _failure_limiter(app, settings)
        client = scope["client"][0] if scope.get("client") else "unknown"
        retry_after = failures.blocked(client)
        if retry_after is not None:
            await _too_many_failures(Request(scope), retry_after)(scope, receive, send)
            return
        response, operation = self._check(scope)
        if response is None and operation is not None and _has_body(_headers(scope)):
            if operation.authenticated:
                response = await _authenticate(scope, app.state.db)
            if response is None:
                response = _declared_too_large(scope, settings)
        if response is not None:
            await response(scope, receive, self._counting(send, failures, client))
            return
        limit = _body_limit(scope, settings)
        started = False

        async def capped(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, _capped(receive, limit), self._counting(capped, failures, client))
        except BodyTooLarge:
            if started:
                raise
            await _too_large(Request(scope), limit)(scope, receive, send)

    @staticmethod
    def _counting(send: Send, failures: FailureLimiter, client: str) -> Send:
        """Count every 401 the request ends with against its client address."""

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                failures.failed(client)
            await send(message)

        return counted

    def _templates(self, scope: Scope) -> list[PathTemplate]:
        if self._index is None:
            app = scope.get("app")
            openapi = getattr(app, "openapi", None)
            self._index = index(openapi()) if openapi is not None else []
        return self._index

    def _match(self, scope: Scope) -> tuple[PathTemplate | None, dict[str, str]]:
        path = scope.get("path", "")
        for template in self._templates(scope):
            found = template.regex.match(path)
            if found:
                # ASGI's `path` is already percent-decoded.
                return template, dict(zip(template.names, found.groups(), strict=True))
        return None, {}

    def _check(self, scope: Scope) -> tuple[Response | None, Operation | None]:
        """A problem for a request of the wrong shape, else None; and its operation."""
        response, operation = self._shape(scope)
        return response, (operation if response is None else None)

    def _shape(self, scope: Scope) -> tuple[Response | None, Operation | None]:
        request = Request(scope)
        headers = _headers(scope)
        # A NUL in the credentials is a bad key (401 from authentication), not a bad header.
        bad_headers = [
            name
            for name, value in headers.items()
            if (NUL in value or NUL in name) and name != "authorization"
        ]
        if bad_headers:
            errors = [{"field": name, "message": NUL_MESSAGE} for name in bad_headers]
            return _invalid(request, 400, "invalid_header", "Invalid header", errors), None
        template, path_params = self._match(scope)
        if template is None:
            return None, None
        # The 405 handler names every method of the path in `Allow`.
        scope.setdefault("state", {})["allowed_methods"] = sorted(template.operations)
        errors = [
            {"field": name, "message": NUL_MESSAGE}
            for name, value in path_params.items()
            if NUL in value
        ]
        query = QueryParams(scope.get("query_string", b""))
        for name, value in query.multi_items():
            if NUL in name or NUL in value:
                errors.append({"field": name.replace(NUL, "\\x00"), "message": NUL_MESSAGE})
        operation = template.operations.get(scope["method"])
        if operation is None:
            # Another method of this path: the router answers 405.
            return None, None
        for name in dict.fromkeys(query.keys()):
            if name not in operation.query and NUL not in name:
                allowed = ", ".join(sorted(operation.query)) or "none"
                message = f"unknown query parameter; this operation takes: {allowed}"
                errors.append({"field": name, "message": message})
        if errors:
            return _invalid(request, 422, "validation_error", "Invalid input", errors), None
        if operation.media_types and _has_body(headers):
            declared = headers.get("content-type", "")
            if not accepts(operation, declared):
                expected = " or ".join(sorted(operation.media_types))
                got = media_type(declared) or "no Content-Type"
                return problem_response(
                    request,
                    status=415,
                    code="unsupported_media_type",
                    title="Unsupported media type",
                    detail=f"send the body as {expected} (not {got})",
                    errors=[{"field": "content-type", "message": f"must be {expected}"}],
                ), None
        return None, operation


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


# --- limits before work ------------------------------------------------------------------


class BodyTooLarge(HTTPException):
    """Raised from `receive` once a body passes its limit. FastAPI's own HTTPException, so
    FastAPI's body reading lets it through to the problem handlers as it is (any other
    error there becomes a 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")
        self.limit = limit


def _is_json(header: str) -> bool:
    kind = media_type(header)
    return kind in {"", JSON} or (kind.startswith("application/") and kind.endswith("+json"))


def _body_limit(scope: Scope, settings: Settings) -> int:
    if _is_json(_headers(scope).get("content-type", "")):
        return settings.max_json_body_bytes
    return settings.max_multipart_body_bytes


def _capped(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def capped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return capped


def _too_large(request: Request, limit: int) -> Response:
    return problem_response(
        request,
        status=413,
        code="body_too_large",
        title="Request body too large",
        detail=f"the request body is larger than {limit} bytes; nothing was read or kept",
        extra={"max_bytes": limit},
    )


def _declared_too_large(scope: Scope, settings: Settings) -> Response | None:
    """A Content-Length above the limit is refused before a byte of the body is read."""
    declared = _headers(scope).get("content-length", "").strip()
    limit = _body_limit(scope, settings)
    if declared.isdigit() and int(declared) > limit:
        return _too_large(Request(scope), limit)
    return None


async def _authenticate(scope: Scope, db: Database) -> Response | None:
    """The same check the operation makes (`get_actor`), made before its body is read:
    an unauthenticated sender costs one key lookup, not the body's bytes."""
    authorization = _headers(scope).get("authorization")

    def check() -> None:
        session = db.read_sessionmaker()
        try:
            authenticate(session, authorization)
        finally:
            # Only a look: whatever authentication would record waits for the request.
            session.rollback()
            session.close()

    try:
        await run_in_threadpool(check)
    except Unauthorized as exc:
        return problem_response(
            Request(scope),
            status=exc.status,
            code=exc.code,
            title=exc.title,
            detail=exc.detail,
            headers={"WWW-Authenticate": "Bearer"},
        )
    return None


class FailureLimiter:
    """Failed authentications per client address, in a moving window in this process."""

    def __init__(self, rate: str) -> None:
        self.item: RateLimitItem = parse(rate)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def failed(self, client: str) -> None:
        self._limiter.hit(self.item, "auth-failure", client)

    def blocked(self, client: str) -> int | None:
        """Seconds until the client may try again, or None when it may now."""
        if self._limiter.test(self.item, "auth-failure", client):
            return None
        reset = self._limiter.get_window_stats(self.item, "auth-failure", client).reset_time
        return max(1, math.ceil(reset - time.time()))


_limiter_lock = threading.Lock()


def _failure_limiter(app: Any, settings: Settings) -> FailureLimiter:
    limiter: FailureLimiter | None = getattr(app.state, "auth_failure_limiter", None)
    if limiter is None:
        with _limiter_lock:
            limiter = getattr(app.state, "auth_failure_limiter", None)
            if limiter is None:
                limiter = FailureLimiter(settings.auth_failure_rate_limit)
                app.state.auth_failure_limiter = limiter
    return limiter


def _too_many_failures(request: Request, retry_after: int) -> Response:
    return problem_response(
        request,
        status=429,
        code="too_many_failed_authentications",
        title="Too many failed authentications",
        detail=f"too many requests from this address failed authentication; "
        f"retry in {retry_after} seconds",
        headers={"Retry-After": str(retry_after)},
    )


def _invalid(
    request: Request, status: int, code: str, title: str, errors: list[dict[str, str]]
) -> Response:
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return problem_response(
        request, status=status, code=code, title=title, detail=detail, errors=errors
    )
