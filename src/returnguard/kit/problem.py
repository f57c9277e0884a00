"""RFC 9457 problem details for every error the API returns."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
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


def _loc_to_field(loc: tuple[Any, ...]) -> str:
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
        return "malformed JSON: " + str(err.get("ctx", {}).get("error", "invalid"))
    message = str(err.get("msg", "invalid value"))
    return message.removeprefix("Value error, ")


def install_problem_handlers(app: FastAPI) -> None:
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
            {"field": _loc_to_field(tuple(e.get("loc", ()))), "message": _validation_message(e)}
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

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return problem_response(
            request,
            status=exc.status_code,
            code=code,
            title=str(exc.detail),
            detail=str(exc.detail),
        )


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting the problem documents a route may return."""
    descriptions = {
        400: "Malformed request",
        401: "Missing or invalid API key",
        403: "The API key's role may not do this",
        404: "Not found in the caller's organization",
        409: "Conflicts with the current state",
        422: "Invalid input; `errors` names each field and reason",
    }
    return {
        s: {
            "model": Problem,
            "description": descriptions.get(s, "Error"),
            "content": {PROBLEM_MEDIA_TYPE: {}},
        }
        for s in statuses
    }
