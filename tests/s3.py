"""An S3-compatible server for tests: moto's standalone server (``moto[server]``).

``ThreadedMotoServer`` is started by the tests on 127.0.0.1 at a free port and spoken to
over real HTTP by boto3, exactly as a MinIO or Ceph endpoint would be. It is on PyPI
(MinIO is not), starts in well under a second, needs no Docker and no network, and
implements what the S3 backend uses: multipart uploads, HEAD, GET, copy onto itself,
delete and ListObjectsV2 pagination.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from moto.server import ThreadedMotoServer

from returnguard.config import Settings

CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test-secret"}
REGION = "eu-central-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """An S3-compatible server for this test process (each xdist worker has its own)."""
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def s3_client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION, **CREDENTIALS)


def new_bucket(endpoint: str) -> str:
    name = f"evidence-{uuid.uuid4().hex[:12]}"
    s3_client(endpoint).create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    return name


def s3_settings(endpoint: str, bucket: str, **kw: Any) -> Settings:
    return Settings(
        storage_backend="s3",
        s3_bucket=bucket,
        s3_endpoint_url=endpoint,
        s3_region=REGION,
        s3_access_key_id=CREDENTIALS["aws_access_key_id"],
        s3_secret_access_key=CREDENTIALS["aws_secret_access_key"],
        **kw,
    )
