"""Embedding cache keyed by content id: an in-memory LRU with a byte budget, optionally backed by disk.

An entry holds the embedding twice, as ready-to-send little-endian bytes: float16 (what the page fetches)
and float32 (on request). Sending a cached tensor is then a dictionary lookup and one write, with no
conversion per request. The disk layer keeps ``<id>.f32`` (raw float32 bytes) and ``<id>.json`` (the
metadata, ``clicksam.formats.EmbeddingMeta``); file names come only from ids that passed ``is_valid_id``,
never from anything a client sent as a name.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from clicksam.formats import EmbeddingMeta, FormatError

logger = logging.getLogger(__name__)

_ID_PATTERN: Final = re.compile(r"[0-9a-f]{64}")


def is_valid_id(embedding_id: str) -> bool:
    """True when ``embedding_id`` has the shape of our ids (64 lowercase hex digits, a sha256)."""
    return _ID_PATTERN.fullmatch(embedding_id) is not None


@dataclass(frozen=True)
class CachedEmbedding:
    """One cached embedding.

    Attributes:
        meta: the metadata of ``POST /api/embeddings`` without the per-request field ``cached``.
        float16: the embedding (1, 256, 64, 64) as little-endian float16 bytes, C order.
        float32: the same as little-endian float32 bytes.
    """

    meta: EmbeddingMeta
    float16: bytes
    float32: bytes

    @property
    def nbytes(self) -> int:
        return len(self.float16) + len(self.float32)

    @classmethod
    def from_array(cls, meta: EmbeddingMeta, embedding: np.ndarray) -> CachedEmbedding:
        """Build an entry from a float32 array (any shape, stored in C order)."""
        f32 = np.ascontiguousarray(embedding, dtype="<f4")
        return cls(meta=meta, float16=f32.astype("<f2").tobytes(), float32=f32.tobytes())


class EmbeddingCache:
    """Thread-safe LRU of ``CachedEmbedding`` under ``max_bytes``, with an optional disk folder.

    Args:
        max_bytes: byte budget of the in-memory entries (float16 + float32 bytes); 0 keeps nothing in
            memory (the disk layer, if any, still works).
        disk_dir: folder for the disk layer, created if needed; None for memory only.
    """

    def __init__(self, max_bytes: int, disk_dir: Path | None = None) -> None:
        self.max_bytes = max_bytes
        self.disk_dir = disk_dir
        self._entries: OrderedDict[str, CachedEmbedding] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        if disk_dir is not None:
            disk_dir.mkdir(parents=True, exist_ok=True)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        """Bytes held in memory now."""
        return self._bytes

    def get(self, embedding_id: str) -> CachedEmbedding | None:
        """The entry for ``embedding_id`` (memory first, then disk), or None; counts a hit or a miss."""
        if not is_valid_id(embedding_id):
            return None
        with self._lock:
            entry = self._entries.get(embedding_id)
            if entry is not None:
                self._entries.move_to_end(embedding_id)
                self.hits += 1
                return entry
        entry = self._load_from_disk(embedding_id)
        with self._lock:
            if entry is None:
                self.misses += 1
                return None
            self.hits += 1
        self._put_memory(embedding_id, entry)
        return entry

    def put(self, embedding_id: str, entry: CachedEmbedding) -> None:
        """Store an entry in memory (evicting least recently used ones) and on disk if enabled."""
        if not is_valid_id(embedding_id):
            raise ValueError(f"not an embedding id: {embedding_id!r}")
        self._put_memory(embedding_id, entry)
        if self.disk_dir is not None:
            self._save_to_disk(embedding_id, entry)

    def _put_memory(self, embedding_id: str, entry: CachedEmbedding) -> None:
        if entry.nbytes > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(embedding_id, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._entries[embedding_id] = entry
            self._bytes += entry.nbytes
            while self._bytes > self.max_bytes:
                evicted_id, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.nbytes
                logger.debug("evicted embedding %s from the memory cache", evicted_id[:12])

    def _paths(self, embedding_id: str) -> tuple[Path, Path]:
        assert self.disk_dir is not None and is_valid_id(embedding_id)
        return self.disk_dir / f"{embedding_id}.f32", self.disk_dir / f"{embedding_id}.json"

    def _save_to_disk(self, embedding_id: str, entry: CachedEmbedding) -> None:
        tensor_path, meta_path = self._paths(embedding_id)
        try:
            # write-then-rename, tensor before metadata: a reader that finds the .json finds a whole .f32
            _atomic_write(tensor_path, entry.float32)
            _atomic_write(meta_path, json.dumps(entry.meta.to_json()).encode())
        except OSError as exc:
            # a full or read-only disk must not fail the request: the embedding is still in memory
            logger.warning("could not write embedding %s to %s: %s", embedding_id[:12], self.disk_dir, exc)

    def _load_from_disk(self, embedding_id: str) -> CachedEmbedding | None:
        if self.disk_dir is None:
            return None
        tensor_path, meta_path = self._paths(embedding_id)
        try:
            meta = EmbeddingMeta.from_json(json.loads(meta_path.read_bytes()))
            raw = tensor_path.read_bytes()
        except FileNotFoundError:
            return None
        except (OSError, ValueError, FormatError) as exc:
            logger.warning("ignoring unreadable cached embedding %s: %s", embedding_id[:12], exc)
            return None
        expected = int(np.prod(meta.shape)) * 4
        if len(raw) != expected:
            logger.warning(
                "ignoring cached embedding %s of %d bytes, expected %d", embedding_id[:12], len(raw), expected
            )
            return None
        return CachedEmbedding.from_array(meta, np.frombuffer(raw, dtype="<f4"))


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
