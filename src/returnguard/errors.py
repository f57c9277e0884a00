"""Errors every module raises; each carries its HTTP status and a stable machine code.

Modules define their own small subclasses next to their service; the HTTP layer turns
any of them into an RFC 9457 problem document.
"""

from __future__ import annotations

from typing import Any


class ReturnGuardError(Exception):
    status: int = 400
    code: str = "bad_request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []
        self.extra = extra or {}


class NotFound(ReturnGuardError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(ReturnGuardError):
    status = 409
    code = "conflict"
    title = "Conflict"


class InvalidInput(ReturnGuardError):
    status = 422
    code = "validation_error"
    title = "Invalid input"

    @classmethod
    def field(cls, field: str, message: str) -> InvalidInput:
        return cls(f"{field}: {message}", errors=[{"field": field, "message": message}])


class Unauthorized(ReturnGuardError):
    status = 401
    code = "unauthorized"
    title = "Authentication required"


class Forbidden(ReturnGuardError):
    status = 403
    code = "forbidden"
    title = "Not allowed"
