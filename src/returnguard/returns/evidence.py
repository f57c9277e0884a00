"""Evidence a buyer or agent attaches to a return: photos, videos, documents, text."""

from __future__ import annotations

import io
import os
import re
import unicodedata
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import BinaryIO, Literal, get_args
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.orm import Session

from returnguard.audit import service as audit
from returnguard.auth.actor import Actor
from returnguard.domain.returns import TERMINAL, ReturnStatus
from returnguard.errors import Conflict, InvalidInput
from returnguard.kit import media
from returnguard.kit.db import utcnow
from returnguard.kit.storage import Store
from returnguard.policies.models import Evidence
from returnguard.returns.models import Return

MAX_FILES = 20
# Who a file came from (return_evidence.source; a CHECK in migration 0016 keeps to these).
Source = Literal["buyer", "agent", "inspector", "carrier"]
SOURCES: tuple[str, ...] = get_args(Source)


class EvidenceClosed(Conflict):
    code = "evidence_closed"


@dataclass(frozen=True)
class Upload:
    filename: str
    content_type: str  # as declared by the sender: never trusted, the content decides
    stream: BinaryIO


@dataclass(frozen=True)
class Added:
    """What an upload came to: ``shown`` answers it, one row per file (in order) then the
    text; a file already on the return shows its existing row. ``new`` is what was kept."""

    shown: list[Evidence]
    new: list[Evidence]


def _seekable(upload: Upload, field: str, max_bytes: int) -> tuple[BinaryIO, int]:
    """The file, rewindable, and its size; refuses it empty or above ``max_bytes``."""
    stream = upload.stream
    if stream.seekable():
        size = stream.seek(0, os.SEEK_END)
        stream.seek(0)
        body: BinaryIO = stream
    else:
        data = stream.read(max_bytes + 1)
        size, body = len(data), io.BytesIO(data)
    if size > max_bytes:
        raise InvalidInput.field(field, f"{upload.filename!r} is larger than {max_bytes} bytes")
    if size == 0:
        raise InvalidInput.field(field, f"{upload.filename!r} is empty")
    return body, size


def add_evidence(
    session: Session,
    actor: Actor,
    ret: Return,
    *,
    uploads: list[Upload],
    text: str | None,
    store: Store,
    max_bytes: int,
    source: str | None = None,
) -> Added:
    """Keep files and text as evidence; nothing is kept if one file is refused, and a file
    whose bytes (SHA-256) are already on the return is not kept again; ``source`` is by
    default the actor's (inspector, else agent)."""
    if source is None:
        source = "inspector" if actor.role == "inspector" else "agent"
    if source not in SOURCES:
        raise InvalidInput.field("source", f"must be one of {', '.join(SOURCES)}")
    if ReturnStatus(ret.status) in TERMINAL:
        raise EvidenceClosed(f"the return is {ret.status}; no more evidence is taken")
    if not uploads and not (text and text.strip()):
        raise InvalidInput.field("files", "send at least one file or a text")
    if len(uploads) > MAX_FILES:
        raise InvalidInput.field("files", f"at most {MAX_FILES} files per upload")
    # Every file is checked before any is stored, so a refusal leaves nothing behind.
    checked: list[tuple[Upload, BinaryIO, media.Detected]] = []
    for i, upload in enumerate(uploads):
        body, _ = _seekable(upload, f"files.{i}", max_bytes)
        try:
            found = media.detect(body)
        except media.MediaRefused as exc:
            raise InvalidInput.field(f"files.{i}", f"{upload.filename!r} {exc}") from None
        checked.append((upload, body, found))
    stored: list[tuple[Upload, media.Detected, str, int]] = []
    for i, (upload, body, found) in enumerate(checked):
        body.seek(0)
        try:
            kept_file = store.put(body, max_bytes=max_bytes)
        except ValueError as exc:
            raise InvalidInput.field(f"files.{i}", f"{upload.filename!r}: {exc}") from None
        stored.append((upload, found, kept_file.key, kept_file.size))
    by_hash: dict[str, Evidence] = {}
    if stored:
        for earlier in session.scalars(
            select(Evidence)
            .where(
                Evidence.return_id == ret.id,
                Evidence.sha256.in_({key for _, _, key, _ in stored}),
            )
            .order_by(Evidence.created_at)
        ):
            by_hash.setdefault(earlier.sha256 or "", earlier)
    shown: list[Evidence] = []
    new: list[Evidence] = []
    for upload, found, key, size in stored:
        kept = by_hash.get(key)
        if kept is None:
            kept = Evidence(
                organization_id=ret.organization_id,
                return_id=ret.id,
                kind=found.kind,
                filename=upload.filename[:255],
                content_type=found.content_type,
                size=size,
                sha256=key,
                storage_key=key,
                uploaded_by=actor.label,
                source=source,
            )
            by_hash[key] = kept
            new.append(kept)
        shown.append(kept)
    if text and text.strip():
        written = Evidence(
            organization_id=ret.organization_id,
            return_id=ret.id,
            kind="text",
            text=text.strip(),
            size=len(text.encode()),
            uploaded_by=actor.label,
            source=source,
        )
        new.append(written)
        shown.append(written)
    if not new:
        return Added(shown, new)  # only files the return already had: nothing to record
    session.add_all(new)
    session.flush()
    audit.record(
        session,
        actor,
        subject_type="return",
        subject_id=ret.id,
        return_id=ret.id,
        action="return.evidence_added",
        data={"evidence": [{"id": e.id, "kind": e.kind, "sha256": e.sha256} for e in new]},
    )
    return Added(shown, new)


_SWEEP_BATCH = 500


def _batches(keys: Iterator[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    for key in keys:
        batch.append(key)
        if len(batch) == _SWEEP_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def orphans(
    session: Session, store: Store, *, older_than: timedelta, now: datetime | None = None
) -> list[str]:
    """Stored files that no evidence row (of any organization: the store is shared and
    content-addressed) names and that were written before ``now - older_than``. Younger
    files are left out: their upload may not have committed yet."""
    cutoff = (now or utcnow()) - older_than
    old = (key for key, written in store.iter_keys() if written < cutoff)
    found: list[str] = []
    for batch in _batches(old):
        named = set(
            session.scalars(select(Evidence.storage_key).where(Evidence.storage_key.in_(batch)))
        )
        found.extend(key for key in batch if key not in named)
    return found


def sweep_orphans(
    session: Session, store: Store, *, older_than: timedelta, now: datetime | None = None
) -> list[str]:
    """Delete the files ``orphans`` finds; returns their keys."""
    found = orphans(session, store, older_than=older_than, now=now)
    for key in found:
        store.delete(key)
    return found


def list_evidence(session: Session, return_id: uuid.UUID) -> list[Evidence]:
    stmt = select(Evidence).where(Evidence.return_id == return_id).order_by(Evidence.created_at)
    return list(session.scalars(stmt))


def get_evidence(
    session: Session, organization_id: uuid.UUID, return_id: uuid.UUID, evidence_id: uuid.UUID
) -> Evidence | None:
    """The evidence if it is on this return of this organization, else None."""
    stmt = select(Evidence).where(
        Evidence.id == evidence_id,
        Evidence.return_id == return_id,
        Evidence.organization_id == organization_id,
    )
    return session.scalar(stmt)


# The extensions each stored content type (kit/media.py) is saved with; the first one is
# added to a name that has none of them, so a download never opens as something else.
EXTENSIONS = {
    "image/jpeg": (".jpg", ".jpeg"),
    "image/png": (".png",),
    "image/webp": (".webp",),
    "image/heic": (".heic", ".heif"),
    "video/mp4": (".mp4", ".m4v"),
    "video/quicktime": (".mov", ".qt"),
    "video/webm": (".webm",),
    "application/pdf": (".pdf",),
}
MAX_NAME_LENGTH = 150
_FALLBACK_UNSAFE = re.compile(r"[^A-Za-z0-9._()+ -]+")
# RFC 8187 attr-char besides letters and digits: everything else is percent-encoded.
_ATTR_CHARS = "!#$&+-.^_`|~"


def download_name(filename: str | None, content_type: str) -> str:
    """The uploaded name as it is safe to save: its last path part, without control or
    format characters and quotes, ending in an extension of the stored content type."""
    name = re.split(r"[/\\]", filename or "")[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] not in "CZ" or c == " ")
    name = name.replace('"', "").strip(" .") or "evidence"
    extensions = EXTENSIONS.get(content_type, ())
    if extensions and not name.lower().endswith(extensions):
        name += extensions[0]
    stem, ext = os.path.splitext(name)
    if not stem.strip(" ."):
        stem = "evidence"
    return stem[: MAX_NAME_LENGTH - len(ext)].rstrip(" .") + ext


def _ascii(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _FALLBACK_UNSAFE.sub("_", plain)


def content_disposition(name: str) -> str:
    """`attachment` with an ASCII ``filename`` for old clients and the exact name as
    ``filename*`` (RFC 6266, RFC 8187); ``name`` comes from download_name."""
    stem, ext = os.path.splitext(name)
    fallback = (_ascii(stem).strip(" ._") or "evidence") + _ascii(ext)
    encoded = quote(name, safe=_ATTR_CHARS)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"
