"""Webhook signatures, Stripe-style: `ReturnGuard-Signature: t=<unix>,v1=<hex hmac>`.

The signed message is `<t>.<raw body>`, so a receiver can reject replays older than a
tolerance and verify the body byte for byte.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "ReturnGuard-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


class SignatureError(ValueError):
    pass


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    ts = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def verify(
    secret: str,
    body: bytes,
    header: str,
    *,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: int | None = None,
) -> int:
    """Check a signature header; returns its timestamp or raises SignatureError."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        ts = int(parts["t"][0])
    except (KeyError, ValueError, IndexError):
        raise SignatureError("signature header has no valid timestamp") from None
    current = int(time.time()) if now is None else now
    if abs(current - ts) > tolerance:
        raise SignatureError("signature timestamp is outside the tolerance")
    expected = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, given) for given in parts.get("v1", [])):
        raise SignatureError("no v1 signature matches")
    return ts
