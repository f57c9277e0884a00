"""Keyset pagination cursors: an opaque token for (timestamp, id) of a page's last row."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, datetime

from returnguard.errors import InvalidInput


def encode_cursor(at: datetime, row_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{row_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (timestamp, id) a cursor stands for; a 422 naming `cursor` when it was forged."""
    try:
        at, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        when = datetime.fromisoformat(at)
        if when.tzinfo is None:
            # Only a tampered cursor lacks the offset; it must not reach the database.
            raise ValueError("naive timestamp")
        return when.astimezone(UTC), uuid.UUID(row_id)
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput.field("cursor", "is not a cursor this API returned") from None
