"""Image bytes on disk, content-addressed: ``<root>/<sha[:2]>/<sha[2:4]>/<sha>``, never re-encoded.

The name is the sha256 of the bytes, so the same file uploaded twice is stored once and nothing a client
sends (its file name least of all) ever becomes part of a path. A write goes to a temporary file in the
same folder, is fsynced, then renamed into place: a crash leaves either the whole blob or none.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Final

_SHA256: Final[re.Pattern[str]] = re.compile(r"^[0-9a-f]{64}$")


class BlobStore:
    """Content-addressed files under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        """Where the blob ``sha256`` lives (it need not exist)."""
        if not _SHA256.match(sha256):
            raise ValueError(f"not a hex sha256: {sha256!r:.80}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> str:
        """Store ``data`` (once) and return its hex sha256."""
        sha256 = hashlib.sha256(data).hexdigest()
        target = self.path(sha256)
        if target.is_file():
            return sha256
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha256

    def read(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)
