"""Content-addressed storage of evidence files: the local disk, or S3-compatible storage.

Files are stored under their SHA-256, so a photo uploaded twice is kept once, a stored
file can be checked against the hash recorded with its evidence row, and an existing
object is never overwritten with different bytes (a key names exactly one content).
The key recorded in the database is the bare hex digest; where it lives (a directory,
a bucket and prefix) is the backend's business, so moving backends moves no rows.

Files are written before the evidence row commits. A rolled-back upload therefore
leaves an object no row names; ``returnguard evidence sweep`` removes those once they
are older than a grace period (returns/evidence.py, sweep_orphans).
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, cast

from returnguard.errors import ReturnGuardError

if TYPE_CHECKING:
    from returnguard.config import Settings

_CHUNK = 1024 * 1024
_HEX = frozenset("0123456789abcdef")
# An upload is spooled to memory up to this size, then to a temporary file, while it is
# hashed: the key (its SHA-256) is known only once the last byte has arrived.
_SPOOL_BYTES = 8 * 1024 * 1024


def check_key(key: str) -> str:
    if len(key) != 64 or not set(key) <= _HEX:
        raise ValueError("storage keys are SHA-256 hex digests")
    return key


@dataclass(frozen=True)
class Stored:
    """What ``put`` kept: the key is the SHA-256 of the bytes."""

    key: str
    size: int

    @property
    def sha256(self) -> str:
        return self.key


@dataclass(frozen=True)
class Blob:
    """A stored file opened for a streamed read; the caller closes ``stream``."""

    stream: BinaryIO
    size: int


class Store(Protocol):
    """Where evidence files are kept. ``open`` raises FileNotFoundError for a missing key."""

    def put(self, stream: BinaryIO, *, max_bytes: int) -> Stored: ...
    def open(self, key: str) -> Blob: ...
    def exists(self, key: str) -> bool: ...
    def delete(self, key: str) -> None: ...
    def iter_keys(self) -> Iterator[tuple[str, datetime]]:
        """Every stored key with when it was written (UTC), in no particular order."""
        ...


def _copy_hashing(stream: BinaryIO, out: BinaryIO, max_bytes: int) -> Stored:
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise ValueError(f"file is larger than {max_bytes} bytes")
        digest.update(chunk)
        out.write(chunk)
    return Stored(digest.hexdigest(), size)


class FileStore:
    """The local disk: ``<root>/<first two hex digits>/<sha256>``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)[:2] / key

    def put(self, stream: BinaryIO, *, max_bytes: int) -> Stored:
        """Store a stream; raises ValueError above ``max_bytes`` (and keeps nothing)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self.root, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as tmp:
                stored = _copy_hashing(stream, tmp, max_bytes)
            target = self._path(stored.key)
            if target.exists():
                # Same name, same bytes: keep the file that is there, made young again so
                # the sweeper leaves it to the upload that has just named it.
                Path(tmp_name).unlink()
                os.utime(target)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp_name, target)
            return stored
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    def open(self, key: str) -> Blob:
        stream = self._path(key).open("rb")
        return Blob(stream, os.fstat(stream.fileno()).st_size)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def iter_keys(self) -> Iterator[tuple[str, datetime]]:
        if not self.root.is_dir():
            return
        for folder in self.root.iterdir():
            if len(folder.name) != 2 or not folder.is_dir():
                continue
            for path in folder.iterdir():
                name = path.name
                if len(name) == 64 and set(name) <= _HEX and name[:2] == folder.name:
                    mtime = path.stat().st_mtime
                    yield name, datetime.fromtimestamp(mtime, UTC)


class StorageUnavailable(ReturnGuardError):
    """The object store cannot give a file right now (unreachable, refused, throttled)."""

    status = 503
    code = "storage_unavailable"
    title = "Evidence storage unavailable"


class S3Store:
    """An S3-compatible bucket (AWS S3, MinIO, Ceph, R2...): ``<prefix><aa>/<sha256>``.

    Uploads go through boto3's managed transfer (multipart above 8 MiB, streamed from the
    spooled copy), so no upload is ever held whole in memory."""

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def _name(self, key: str) -> str:
        return f"{self.prefix}{check_key(key)[:2]}/{key}"

    def put(self, stream: BinaryIO, *, max_bytes: int) -> Stored:
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spool:
            stored = _copy_hashing(stream, cast(BinaryIO, spool), max_bytes)
            name = self._name(stored.key)
            if not self.exists(stored.key):
                spool.seek(0)
                self.client.upload_fileobj(spool, self.bucket, name)
            else:
                # Same key, same bytes: not sent again, only made young again (a copy onto
                # itself) so the sweeper leaves it to the upload that has just named it.
                self.client.copy_object(
                    Bucket=self.bucket,
                    Key=name,
                    CopySource={"Bucket": self.bucket, "Key": name},
                    MetadataDirective="REPLACE",
                )
            return stored

    def open(self, key: str) -> Blob:
        from botocore.exceptions import (  # type: ignore[import-untyped]
            BotoCoreError,
            ClientError,
        )

        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._name(key))
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in {"NoSuchKey", "404"}:
                raise FileNotFoundError(key) from None
            # A missing bucket, a refused permission, a throttled store: not the file's fault.
            raise StorageUnavailable(f"the evidence store answered {code}") from None
        except BotoCoreError:
            raise StorageUnavailable("the evidence store cannot be reached") from None
        return Blob(cast(BinaryIO, answer["Body"]), int(answer["ContentLength"]))

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._name(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404", "NotFound"}:
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._name(key))

    def iter_keys(self) -> Iterator[tuple[str, datetime]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        )
        for page in pages:
            for item in page.get("Contents", []):
                folder, _, name = str(item["Key"]).removeprefix(self.prefix).partition("/")
                if len(name) == 64 and set(name) <= _HEX and name[:2] == folder:
                    yield name, item["LastModified"].astimezone(UTC)


def from_settings(settings: Settings) -> Store:
    """The store the settings name (``storage_backend``: local, the default, or s3)."""
    if settings.storage_backend == "local":
        return FileStore(settings.storage_dir)
    if not settings.s3_bucket:
        raise ValueError("storage_backend s3 needs s3_bucket (RETURNGUARD_S3_BUCKET)")
    secret = settings.s3_secret_access_key
    client = _s3_client(
        settings.s3_endpoint_url or None,
        settings.s3_region or None,
        settings.s3_access_key_id or None,
        secret.get_secret_value() if secret else None,
    )
    return S3Store(client, settings.s3_bucket, settings.s3_prefix)


@functools.lru_cache(maxsize=8)
def _s3_client(
    endpoint_url: str | None, region: str | None, key_id: str | None, secret: str | None
) -> Any:
    """One client per configuration (they are thread-safe and slow to make)."""
    import boto3  # type: ignore[import-untyped]

    # None lets boto3 find credentials itself (environment, profile, instance role).
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )
