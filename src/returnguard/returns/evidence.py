"""Evidence a buyer or agent attaches to a return: photos, videos, documents, text."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from returnguard.audit import service as audit
from returnguard.auth.actor import Actor
from returnguard.domain.returns import TERMINAL, ReturnStatus
from returnguard.errors import Conflict, InvalidInput
from returnguard.kit.storage import FileStore
from returnguard.policies.models import Evidence
from returnguard.returns.models import Return

ALLOWED_TYPES = {
    "image/jpeg": "photo",
    "image/png": "photo",
    "image/webp": "photo",
    "image/heic": "photo",
    "image/heif": "photo",
    "video/mp4": "video",
    "video/quicktime": "video",
    "video/webm": "video",
    "application/pdf": "document",
}
MAX_FILES = 20


class EvidenceClosed(Conflict):
    code = "evidence_closed"


@dataclass(frozen=True)
class Upload:
    filename: str
    content_type: str
    stream: BinaryIO


def add_evidence(
    session: Session,
    actor: Actor,
    ret: Return,
    *,
    uploads: list[Upload],
    text: str | None,
    store: FileStore,
    max_bytes: int,
) -> list[Evidence]:
    """Store files and text as evidence of the return; nothing is kept if one is refused."""
    if ReturnStatus(ret.status) in TERMINAL:
        raise EvidenceClosed(f"the return is {ret.status}; no more evidence is taken")
    if not uploads and not (text and text.strip()):
        raise InvalidInput.field("files", "send at least one file or a text")
    if len(uploads) > MAX_FILES:
        raise InvalidInput.field("files", f"at most {MAX_FILES} files per upload")
    for i, upload in enumerate(uploads):
        if upload.content_type not in ALLOWED_TYPES:
            allowed = ", ".join(sorted(ALLOWED_TYPES))
            raise InvalidInput.field(
                f"files.{i}", f"type {upload.content_type!r} is not accepted; send {allowed}"
            )
    rows: list[Evidence] = []
    for i, upload in enumerate(uploads):
        try:
            key, size = store.put(upload.stream, max_bytes=max_bytes)
        except ValueError as exc:
            raise InvalidInput.field(f"files.{i}", str(exc)) from None
        if size == 0:
            raise InvalidInput.field(f"files.{i}", "is empty")
        rows.append(
            Evidence(
                organization_id=ret.organization_id,
                return_id=ret.id,
                kind=ALLOWED_TYPES[upload.content_type],
                filename=upload.filename[:255],
                content_type=upload.content_type,
                size=size,
                sha256=key,
                storage_key=key,
                uploaded_by=actor.label,
            )
        )
    if text and text.strip():
        rows.append(
            Evidence(
                organization_id=ret.organization_id,
                return_id=ret.id,
                kind="text",
                text=text.strip(),
                size=len(text.encode()),
                uploaded_by=actor.label,
            )
        )
    session.add_all(rows)
    session.flush()
    audit.record(
        session,
        actor,
        subject_type="return",
        subject_id=ret.id,
        return_id=ret.id,
        action="return.evidence_added",
        data={"evidence": [{"id": e.id, "kind": e.kind, "sha256": e.sha256} for e in rows]},
    )
    return rows


def list_evidence(session: Session, return_id: uuid.UUID) -> list[Evidence]:
    stmt = select(Evidence).where(Evidence.return_id == return_id).order_by(Evidence.created_at)
    return list(session.scalars(stmt))
