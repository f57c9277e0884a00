"""Evidence a buyer or agent attaches to a return: photos, videos, documents, text."""

from __future__ import annotations

import io
import os
import uuid
from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from returnguard.audit import service as audit
from returnguard.auth.actor import Actor
from returnguard.domain.returns import TERMINAL, ReturnStatus
from returnguard.errors import Conflict, InvalidInput
from returnguard.kit import media
from returnguard.kit.storage import FileStore
from returnguard.policies.models import Evidence
from returnguard.returns.models import Return

MAX_FILES = 20


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
    store: FileStore,
    max_bytes: int,
) -> Added:
    """Keep files and text as evidence; nothing is kept if one file is refused, and a file
    whose bytes (SHA-256) are already on the return is not kept again."""
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
            key, size = store.put(body, max_bytes=max_bytes)
        except ValueError as exc:
            raise InvalidInput.field(f"files.{i}", f"{upload.filename!r}: {exc}") from None
        stored.append((upload, found, key, size))
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


def list_evidence(session: Session, return_id: uuid.UUID) -> list[Evidence]:
    stmt = select(Evidence).where(Evidence.return_id == return_id).order_by(Evidence.created_at)
    return list(session.scalars(stmt))
