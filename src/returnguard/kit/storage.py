"""Content-addressed file storage on the local disk (evidence uploads).

Files are stored under their SHA-256, so a photo uploaded twice is kept once and a
stored file can be checked against the hash recorded with its evidence row.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO


class FileStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        if len(key) != 64 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError("storage keys are SHA-256 hex digests")
        return self.root / key[:2] / key

    def put(self, stream: BinaryIO, *, max_bytes: int) -> tuple[str, int]:
        """Store a stream; returns (sha256, size). Raises ValueError above ``max_bytes``."""
        self.root.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=self.root, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as tmp:
                while chunk := stream.read(1024 * 1024):
                    size += len(chunk)
                    if size > max_bytes:
                        raise ValueError(f"file is larger than {max_bytes} bytes")
                    digest.update(chunk)
                    tmp.write(chunk)
            key = digest.hexdigest()
            target = self._path(key)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp_name, target)
            return key, size
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    def open(self, key: str) -> BinaryIO:
        return self._path(key).open("rb")
