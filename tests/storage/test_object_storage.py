"""Evidence file storage behaves the same on the local disk and in S3-compatible storage.

The S3 backend is tested against moto's standalone server (``moto[server]``,
``ThreadedMotoServer``), started by the tests on 127.0.0.1 at a free port and spoken to
over real HTTP by boto3, exactly as a MinIO or Ceph endpoint would be. It is on PyPI
(MinIO is not), starts in well under a second, needs no Docker and no network, and
implements what the backend uses: multipart uploads, HEAD, GET, copy, delete and
ListObjectsV2 pagination.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from returnguard.config import Settings
from returnguard.kit import storage
from returnguard.kit.storage import FileStore, S3Store, Store
from tests.s3 import new_bucket, s3_client, s3_endpoint, s3_settings

__all__ = ["s3_endpoint"]  # the fixture, imported for pytest


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        return FileStore(tmp_path / "files")
    endpoint = request.getfixturevalue("s3_endpoint")
    return storage.from_settings(s3_settings(endpoint, new_bucket(endpoint)))


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_a_stored_file_reads_back_under_its_sha256(store: Store) -> None:
    data = b"evidence " * 1000
    kept = store.put(io.BytesIO(data), max_bytes=1 << 20)
    assert (kept.key, kept.sha256, kept.size) == (_sha(data), _sha(data), len(data))
    assert store.exists(kept.key)
    blob = store.open(kept.key)
    with blob.stream:
        assert blob.stream.read() == data
    assert blob.size == len(data)


def test_the_same_bytes_are_stored_once(store: Store) -> None:
    first = store.put(io.BytesIO(b"same photo"), max_bytes=1024)
    again = store.put(io.BytesIO(b"same photo"), max_bytes=1024)
    other = store.put(io.BytesIO(b"other photo"), max_bytes=1024)
    assert first == again
    assert sorted(k for k, _ in store.iter_keys()) == sorted({first.key, other.key})


def test_a_file_above_the_limit_is_refused_and_nothing_is_kept(store: Store) -> None:
    with pytest.raises(ValueError, match="larger than 100 bytes"):
        store.put(io.BytesIO(b"x" * 101), max_bytes=100)
    assert list(store.iter_keys()) == []
    if isinstance(store, FileStore):  # no temporary file left either
        assert [p for p in store.root.rglob("*") if p.is_file()] == []


def test_a_file_larger_than_a_multipart_part_arrives_whole(store: Store) -> None:
    # Above boto3's 8 MiB multipart threshold and the 8 MiB in-memory spool.
    data = bytes(range(256)) * (9 * 4096 + 7)
    kept = store.put(io.BytesIO(data), max_bytes=len(data))
    blob = store.open(kept.key)
    with blob.stream:
        assert _sha(blob.stream.read()) == _sha(data)
    assert blob.size == len(data)


def test_delete_removes_the_file_and_a_missing_file_is_file_not_found(store: Store) -> None:
    kept = store.put(io.BytesIO(b"to go"), max_bytes=1024)
    store.delete(kept.key)
    store.delete(kept.key)  # deleting twice is no error
    assert not store.exists(kept.key)
    with pytest.raises(FileNotFoundError):
        store.open(kept.key)


def test_keys_are_listed_with_when_they_were_written(store: Store) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    kept = store.put(io.BytesIO(b"dated"), max_bytes=1024)
    [(key, written)] = list(store.iter_keys())
    assert key == kept.key
    assert before <= written <= datetime.now(UTC) + timedelta(seconds=5)


def test_a_key_that_is_not_a_sha256_is_refused(store: Store) -> None:
    for bad in ("../../etc/passwd", "A" * 64, "ab"):
        with pytest.raises(ValueError, match="SHA-256"):
            store.open(bad)


def test_s3_objects_live_under_the_prefix_and_other_objects_are_not_listed(
    s3_endpoint: str,
) -> None:
    bucket = new_bucket(s3_endpoint)
    client = s3_client(s3_endpoint)
    client.put_object(Bucket=bucket, Key="evidence/readme.txt", Body=b"not evidence")
    client.put_object(Bucket=bucket, Key="elsewhere/x", Body=b"someone else's")
    store = storage.from_settings(s3_settings(s3_endpoint, bucket))
    assert isinstance(store, S3Store)
    kept = store.put(io.BytesIO(b"photo"), max_bytes=1024)
    names = {o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert f"evidence/{kept.key[:2]}/{kept.key}" in names
    assert [k for k, _ in store.iter_keys()] == [kept.key]


def test_s3_lists_more_keys_than_one_page(s3_endpoint: str) -> None:
    bucket = new_bucket(s3_endpoint)
    client = s3_client(s3_endpoint)
    keys = {_sha(str(i).encode()) for i in range(1001)}  # a page holds 1000
    for key in keys:
        client.put_object(Bucket=bucket, Key=f"p/{key[:2]}/{key}", Body=b"")
    assert {k for k, _ in S3Store(client, bucket, "p/").iter_keys()} == keys


def test_a_store_that_refuses_is_unavailable_not_a_missing_file(s3_endpoint: str) -> None:
    """No such bucket (or no permission): a 503 problem, never "file not found" or a 500."""
    store = S3Store(s3_client(s3_endpoint), "no-such-bucket-here", "p/")
    with pytest.raises(storage.StorageUnavailable, match="NoSuchBucket") as refused:
        store.open(_sha(b"anything"))
    assert refused.value.status == 503


def test_s3_backend_needs_a_bucket() -> None:
    with pytest.raises(ValueError, match="s3_bucket"):
        storage.from_settings(Settings(storage_backend="s3"))


def test_an_unknown_backend_is_refused_at_start_up() -> None:
    with pytest.raises(ValueError, match="storage_backend"):
        Settings(storage_backend="ftp")
