"""The pure arithmetic of the event log: what is hashed, how links and seals are made.

No database here: the write path (service.py), the checkpoint writer (checkpoints.py),
the verifier (verify.py) and the migration that re-chained the old log all compute the
same bytes, and a test can check a chain by hand.

An event's hash covers its content, its place in its subject's chain (``subject_seq``)
and its number in the organization's listing (``seq``), chained to the hash of the
subject's previous event. Anyone can recompute such hashes, so on their own they only
catch changes made without care. A **checkpoint** seals the head (seq and hash) of each
chain with an HMAC-SHA256 under a key the database never holds; a chain rewritten with
recomputed hashes then no longer meets its seal.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, NamedTuple

GENESIS = "0" * 64
CHECKPOINT_FORMAT = "returnguard.checkpoint.v1"


def jsonable(value: Any) -> Any:
    """Plain JSON values only, so what is stored is exactly what was hashed."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Enum):
        return jsonable(value.value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    raise TypeError(f"cannot record {type(value).__name__} in an event")


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# The columns an event's hash covers (besides the previous hash it is chained to).
HASHED_FIELDS = (
    "seq",
    "organization_id",
    "subject_type",
    "subject_id",
    "subject_seq",
    "return_id",
    "action",
    "actor_type",
    "actor_id",
    "actor_label",
    "before",
    "after",
    "data",
    "occurred_at",
)


def hash_body(values: Mapping[Any, Any]) -> dict[str, Any]:
    """The hashed content of an event, from its row (an Event's columns or a mapping)."""
    return_id = values["return_id"]
    occurred_at: datetime = values["occurred_at"]
    return {
        "seq": int(values["seq"]),
        "organization_id": str(values["organization_id"]),
        "subject_type": values["subject_type"],
        "subject_id": values["subject_id"],
        "subject_seq": int(values["subject_seq"]),
        "return_id": str(return_id) if return_id else None,
        "action": values["action"],
        "actor_type": values["actor_type"],
        "actor_id": values["actor_id"],
        "actor_label": values["actor_label"],
        "before": values["before"],
        "after": values["after"],
        "data": values["data"],
        "occurred_at": occurred_at.isoformat(),
    }


def chain_hash(prev_hash: str, body: Mapping[Any, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical(body)).encode()).hexdigest()


def event_hash(values: Mapping[Any, Any]) -> str:
    """The hash an event row should carry, given the ``prev_hash`` it points at."""
    return chain_hash(values["prev_hash"], hash_body(values))


# --- checkpoints -----------------------------------------------------------------------


class Head(NamedTuple):
    """The head of one subject's chain as a checkpoint seals it."""

    subject_type: str
    subject_id: str
    subject_seq: int
    seq: int
    hash: str


def key_id(key: bytes) -> str:
    """A short public name for a key, so a checkpoint says which key signed it."""
    return hmac.new(key, b"returnguard audit key id", hashlib.sha256).hexdigest()[:16]


def heads_digest(heads: Iterable[Head]) -> tuple[int, str]:
    """(count, SHA-256) of a checkpoint's heads, in one order every reader can rebuild."""
    digest = hashlib.sha256()
    count = 0
    for head in sorted(heads, key=lambda h: (h.subject_type, h.subject_id)):
        digest.update(canonical(list(head)).encode())
        digest.update(b"\n")
        count += 1
    return count, digest.hexdigest()


def checkpoint_body(
    *,
    organization_id: uuid.UUID,
    number: int,
    created_at: datetime,
    previous_digest: str | None,
    previous_signature: str | None,
    subjects: int,
    heads_sha256: str,
) -> str:
    """The canonical text a checkpoint's digest and signature are computed over."""
    return canonical(
        {
            "format": CHECKPOINT_FORMAT,
            "organization_id": str(organization_id),
            "number": number,
            "created_at": created_at.isoformat(),
            "previous": {"digest": previous_digest, "signature": previous_signature},
            "subjects": subjects,
            "heads_sha256": heads_sha256,
        }
    )


def digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def sign(key: bytes, body: str) -> str:
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def seal(key: bytes, organization_id: uuid.UUID, number: int, head: Head) -> str:
    """One head's own HMAC: names the very chain that was rewritten, not just the
    checkpoint."""
    text = canonical([str(organization_id), number, *head])
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def same(a: str | None, b: str | None) -> bool:
    """Constant-time comparison of two hex signatures (None equals only None)."""
    if a is None or b is None:
        return a is b
    return hmac.compare_digest(a, b)
