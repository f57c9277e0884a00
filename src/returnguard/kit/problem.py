"""RFC 9457 problem details for every error the API returns."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as SATimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from returnguard.errors import ReturnGuardError

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://returnguard.dev/problems/"


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the offending field, e.g. `lines.0.quantity`")
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem document with a stable machine-readable `code`."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=[PROBLEM_TYPE_BASE + "illegal_transition"])
    title: str
    status: int
    detail: str
    code: str = Field(description="Stable machine-readable error code")
    instance: str | None = None
    errors: list[FieldError] = Field(default_factory=list)


def problem_response(
    request: Request,
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    errors: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "instance": request.url.path,
        "errors": errors or [],
    }
    body.update(extra or {})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _loc_to_field(loc: tuple[Any, ...], kind: str = "") -> str:
    if kind == "json_invalid":
        # Pydantic's loc is ("body", <character offset>): the offset is no field name.
        return "body"
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:] or parts
    return ".".join(parts) or "body"


def _validation_message(err: dict[str, Any]) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "field required"
    if kind == "json_invalid":
        message = "malformed JSON: " + str(err.get("ctx", {}).get("error", "invalid"))
        position = [p for p in err.get("loc", ()) if isinstance(p, int)]
        return message + (f" at character {position[0]}" if position else "")
    message = str(err.get("msg", "invalid value"))
    return message.removeprefix("Value error, ")


_COMPONENTS = "#/components/schemas/"
_PROBLEM_REF = {"$ref": _COMPONENTS + "Problem"}


def _problem_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    """Document error responses as what they are: `application/problem+json` Problems.

    FastAPI files a response `model` under `application/json` and documents its own
    422 (`HTTPValidationError`) on every route with parameters; neither is what the API
    sends. Idempotent, so it is safe to apply to the cached document.
    """
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                ref = content.get("application/json", {}).get("schema", {}).get("$ref", "")
                if ref == _PROBLEM_REF["$ref"]:
                    response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": dict(_PROBLEM_REF)}}
                elif ref == _COMPONENTS + "HTTPValidationError" and status == "422":
                    response["description"] = _DESCRIPTIONS[422]
                    response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": dict(_PROBLEM_REF)}}
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    if "Problem" not in components:
        definition = Problem.model_json_schema(ref_template=_COMPONENTS + "{model}")
        components.update(definition.pop("$defs", {}))
        components["Problem"] = definition
    for name in ("HTTPValidationError", "ValidationError"):
        others = {key: value for key, value in components.items() if key != name}
        if _COMPONENTS + name not in json.dumps([schema.get("paths", {}), others]):
            components.pop(name, None)
    return schema


BUSY_RETRY_AFTER_SECONDS = 1


def _busy(exc: OperationalError) -> bool:
    """SQLite's write lock stayed taken for the whole busy timeout."""
    text = str(exc.orig).lower()
    return "database is locked" in text or "database is busy" in text


def _busy_response(request: Request) -> JSONResponse:
    # Above capacity: tell the client to come back shortly instead of holding it.
    return problem_response(
        request,
        status=503,
        code="database_busy",
        title="Too busy, retry shortly",
        detail="the database is busy with other writes; retry after a second",
        headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)},
    )


def install_problem_handlers(app: FastAPI) -> None:
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        return _problem_openapi(default_openapi())

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(ReturnGuardError)
    async def _domain_error(request: Request, exc: ReturnGuardError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return problem_response(
            request,
            status=exc.status,
            code=exc.code,
            title=exc.title,
            detail=exc.detail,
            errors=exc.errors,
            extra=exc.extra,
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "field": _loc_to_field(tuple(e.get("loc", ())), str(e.get("type", ""))),
                "message": _validation_message(e),
            }
            for e in exc.errors()
        ]
        malformed = any(e.get("type") == "json_invalid" for e in exc.errors())
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem_response(
            request,
            status=400 if malformed else 422,
            code="malformed_json" if malformed else "validation_error",
            title="Malformed request body" if malformed else "Invalid input",
            detail=detail,
            errors=errors,
        )

    @app.exception_handler(OperationalError)
    async def _database_error(request: Request, exc: OperationalError) -> JSONResponse:
        if not _busy(exc):
            return await _unexpected_error(request, exc)
        return _busy_response(request)

    @app.exception_handler(SATimeoutError)
    async def _pool_exhausted(request: Request, exc: SATimeoutError) -> JSONResponse:
        return _busy_response(request)

    @app.exception_handler(Exception)
    async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        # Starlette still re-raises the exception after this response, so the server
        # logs it; the client gets a problem document that reveals nothing internal.
        return problem_response(
            request,
            status=500,
            code="internal_error",
            title="Internal server error",
            detail="an unexpected error occurred; please retry later or contact support",
        )

    @app.exception_handler(DataError)
    async def _value_out_of_range(request: Request, exc: DataError) -> JSONResponse:
        # The last line, behind the schemas' own bounds: a value the column cannot hold
        # (too long, too large) is the client's input, not a server fault.
        return _out_of_range(request)

    @app.exception_handler(OverflowError)
    async def _overflow(request: Request, exc: OverflowError) -> JSONResponse:
        # SQLite's driver refuses integers beyond 64 bits with OverflowError; date and
        # time arithmetic beyond year 9999 raises it too.
        return _out_of_range(request)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(
            exc.status_code, "http_error"
        )
        headers = dict(exc.headers or {})
        if exc.status_code == 405 and allowed_methods(request):
            headers["Allow"] = ", ".join(allowed_methods(request))
        limit = getattr(exc, "limit", None)  # kit/guard.py's BodyTooLarge
        return problem_response(
            request,
            status=exc.status_code,
            code=code,
            title=str(exc.detail),
            detail=str(exc.detail),
            headers=headers or None,
            extra={"max_bytes": limit} if isinstance(limit, int) else None,
        )


def allowed_methods(request: Request) -> list[str]:
    """Every method the path answers: the request guard (kit/guard.py) finds them in the
    OpenAPI document; FastAPI's own answer names only the first route's."""
    methods = set(getattr(request.state, "allowed_methods", None) or ())
    return sorted(methods)


def _out_of_range(request: Request) -> JSONResponse:
    return problem_response(
        request,
        status=422,
        code="value_out_of_range",
        title="Invalid input",
        detail="a value is outside what can be stored (too long or too large)",
        errors=[{"field": "body", "message": "a value is too long or too large to store"}],
    )


_DESCRIPTIONS = {
    400: "Malformed request",
    401: "Missing or invalid API key",
    403: "The API key's role may not do this",
    404: "Not found in the caller's organization",
    409: "Conflicts with the current state",
    413: "The request body is larger than this operation accepts",
    415: "The body's Content-Type is not one this operation reads",
    422: "Invalid input; `errors` names each field and reason",
    429: "Too many failed attempts; retry after `Retry-After` seconds",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting the problem documents a route may return."""
    return {
        s: {
            "model": Problem,
            "description": _DESCRIPTIONS.get(s, "Error"),
            "content": {PROBLEM_MEDIA_TYPE: {}},
        }
        for s in statuses
    }
