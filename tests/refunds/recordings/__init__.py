"""Recorded answers of the payment providers' public APIs, replayed through respx.

Each `<provider>/<name>.json` holds `{"status": 200, "headers": {...}, "body": ...}`: the
body is the JSON the provider answers with, or a string for an answer that is not JSON
(an HTML error page from a gateway in front of the API).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).parent


@cache
def _load(provider: str, name: str) -> dict[str, Any]:
    document = json.loads((HERE / provider / f"{name}.json").read_text(encoding="utf-8"))
    assert isinstance(document, dict) and isinstance(document.get("status"), int), name
    return document


def recorded_body(provider: str, name: str) -> Any:
    """A fresh copy of the recorded body (safe to change in a test)."""
    return json.loads(json.dumps(_load(provider, name)["body"]))


def recorded(
    provider: str, name: str, *, headers: dict[str, str] | None = None, **changes: Any
) -> httpx.Response:
    """The recorded answer as a new httpx.Response; ``changes`` replace top-level body keys
    and ``headers`` replace or add response headers."""
    document = _load(provider, name)
    headers = dict(document.get("headers") or {}) | (headers or {})
    body = recorded_body(provider, name)
    if isinstance(body, str):
        return httpx.Response(document["status"], headers=headers, content=body.encode())
    if changes:
        body.update(changes)
    content = json.dumps(body).encode()
    headers["Content-Type"] = headers.get("Content-Type", "application/json")
    return httpx.Response(document["status"], headers=headers, content=content)
