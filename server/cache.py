"""Embedding cache keyed by content id: an in-memory LRU with a byte budget, optionally backed by disk.

An entry holds the image's tensors twice, as ready-to-send little-endian bytes: float16 (what the page
fetches) and float32 (on request), each the tensors of ``meta.tensors`` concatenated in that order, C
order (the wire layout documented in ``clicksam.formats.EmbeddingMeta``). Sending a cached embedding is
then a dictionary lookup and one write, with no conversion per request.

An entry's serialised form (``CachedEmbedding.to_bytes`` / ``from_bytes``) is one self-describing blob:
a format line, the metadata JSON on one line, then the float32 body. The disk layer stores exactly
that as ``<id>.emb``; a shared store (Redis) can store the same bytes. File names come only from ids
that passed ``is_valid_id``, never from anything a client sent as a name.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
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


#: first line of a serialised entry (``CachedEmbedding.to_bytes``)
SERIAL_MAGIC: Final = b"clicksam-embedding 1\n"


class CacheEntryError(ValueError):
    """Bytes that are not a serialised ``CachedEmbedding`` (or disagree with their own metadata)."""


@dataclass(frozen=True)
class CachedEmbedding:
    """One cached embedding.

    Attributes:
        meta: the metadata of ``POST /api/embeddings`` without the per-request field ``cached``;
            ``meta.tensors`` gives each tensor's name, shape and element offset in the bodies.
        float16: the tensors as little-endian float16 bytes, concatenated in ``meta.tensors`` order.
        float32: the same as little-endian float32 bytes.
    """

    meta: EmbeddingMeta
    float16: bytes
    float32: bytes

    @property
    def nbytes(self) -> int:
        return len(self.float16) + len(self.float32)

    @classmethod
    def from_arrays(cls, meta: EmbeddingMeta, arrays: Sequence[np.ndarray]) -> CachedEmbedding:
        """Build an entry from one float32 array per tensor of ``meta.tensors``, in that order.

        Raises:
            CacheEntryError: the number of arrays or a shape differs from ``meta.tensors``.
        """
        if len(arrays) != len(meta.tensors):
            raise CacheEntryError(f"{len(arrays)} arrays for {len(meta.tensors)} tensors in the metadata")
        for array, spec in zip(arrays, meta.tensors, strict=True):
            if tuple(array.shape) != tuple(spec.shape):
                raise CacheEntryError(
                    f"tensor {spec.name!r} has shape {array.shape}, the metadata says {spec.shape}"
                )
        f32 = np.concatenate([np.ascontiguousarray(a, dtype="<f4").reshape(-1) for a in arrays])
        return cls(meta=meta, float16=f32.astype("<f2").tobytes(), float32=f32.tobytes())

    @classmethod
    def from_array(cls, meta: EmbeddingMeta, embedding: np.ndarray) -> CachedEmbedding:
        """Build an entry of one tensor from a float32 array (a shorthand for ``from_arrays``)."""
        return cls.from_arrays(meta, [embedding])

    def arrays(self, dtype: str = "float32") -> dict[str, np.ndarray]:
        """The tensors by name, as read-only arrays over the cached bytes (``float16`` or ``float32``)."""
        body = np.frombuffer(
            self.float32 if dtype == "float32" else self.float16, "<f4" if dtype == "float32" else "<f2"
        )
        return {t.name: body[t.offset : t.offset + t.size].reshape(t.shape) for t in self.meta.tensors}

    def to_bytes(self) -> bytes:
        """The serialised entry: ``SERIAL_MAGIC``, the metadata JSON on one line, the float32 body."""
        return SERIAL_MAGIC + json.dumps(self.meta.to_json()).encode() + b"\n" + self.float32

    @classmethod
    def from_bytes(cls, data: bytes) -> CachedEmbedding:
        """Read what ``to_bytes`` wrote.

        Raises:
            CacheEntryError: not a serialised entry, bad metadata, or a body of the wrong size.
        """
        if not data.startswith(SERIAL_MAGIC):
            raise CacheEntryError("not a serialised clicksam embedding (bad first line)")
        end = data.find(b"\n", len(SERIAL_MAGIC))
        if end < 0:
            raise CacheEntryError("serialised embedding without a metadata line")
        try:
            meta = EmbeddingMeta.from_json(json.loads(data[len(SERIAL_MAGIC) : end]))
        except (ValueError, FormatError) as exc:
            raise CacheEntryError(f"bad metadata in a serialised embedding: {exc}") from exc
        body = data[end + 1 :]
        expected = meta.element_count() * 4
        if len(body) != expected:
            raise CacheEntryError(f"serialised embedding body of {len(body)} bytes, expected {expected}")
        f32 = np.frombuffer(body, dtype="<f4")
        return cls(meta=meta, float16=f32.astype("<f2").tobytes(), float32=bytes(body))


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

    def _path(self, embedding_id: str) -> Path:
        assert self.disk_dir is not None and is_valid_id(embedding_id)
        return self.disk_dir / f"{embedding_id}.emb"

    def _save_to_disk(self, embedding_id: str, entry: CachedEmbedding) -> None:
        try:
            # write-then-rename: a reader finds a whole entry or none
            _atomic_write(self._path(embedding_id), entry.to_bytes())
        except OSError as exc:
            # a full or read-only disk must not fail the request: the embedding is still in memory
            logger.warning("could not write embedding %s to %s: %s", embedding_id[:12], self.disk_dir, exc)

    def _load_from_disk(self, embedding_id: str) -> CachedEmbedding | None:
        if self.disk_dir is None:
            return None
        try:
            return CachedEmbedding.from_bytes(self._path(embedding_id).read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, CacheEntryError) as exc:
            logger.warning("ignoring unreadable cached embedding %s: %s", embedding_id[:12], exc)
            return None


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
