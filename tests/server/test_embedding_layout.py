"""The embedding's wire layout with several tensors (SAM 2.1 sends three): metadata, cache entry, its
serialised (disk) form, and the bytes ``GET /api/embeddings/{id}`` sends, against a real app."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from clicksam.formats import EmbeddingMeta, EmbeddingTensor, FormatError
from clicksam.server.cache import SERIAL_MAGIC, CachedEmbedding, CacheEntryError, EmbeddingCache

# SAM 2.1's three per-image tensors, scaled down (the layout is the same whatever the sizes)
SHAPES = [
    ("image_embed", (1, 8, 4, 4)),
    ("high_res_feats_0", (1, 2, 16, 16)),
    ("high_res_feats_1", (1, 4, 8, 8)),
]


def _entry(key: str, seed: int = 0) -> tuple[CachedEmbedding, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(shape).astype(np.float32) for _, shape in SHAPES]
    tensors = EmbeddingTensor.layout(SHAPES)
    meta = EmbeddingMeta(
        key,
        "sam2_test",
        (30, 40),
        (1024, 1024),
        tensors[0].shape,
        tensors,
        "float16",
        f"/api/embeddings/{key}",
        3.0,
    )
    return CachedEmbedding.from_arrays(meta, arrays), arrays


def test_layout_puts_the_tensors_one_after_the_other_and_the_metadata_says_so() -> None:
    tensors = EmbeddingTensor.layout(SHAPES)
    assert [(t.name, t.offset, t.size) for t in tensors] == [
        ("image_embed", 0, 128),
        ("high_res_feats_0", 128, 512),
        ("high_res_feats_1", 640, 256),
    ]
    entry, arrays = _entry("a" * 64)
    assert entry.meta.element_count() == 896
    assert entry.float32 == b"".join(a.astype("<f4").tobytes() for a in arrays)
    assert entry.float16 == b"".join(a.astype("<f2").tobytes() for a in arrays)
    for (name, _), array in zip(SHAPES, arrays, strict=True):
        assert np.array_equal(entry.arrays()[name], array)
        assert np.array_equal(entry.arrays("float16")[name], array.astype(np.float16))
    doc = json.loads(json.dumps(entry.meta.to_json()))
    assert doc["tensors"][1] == {
        "name": "high_res_feats_0",
        "shape": [1, 2, 16, 16],
        "offset": 128,
        "size": 512,
    }
    assert EmbeddingMeta.from_json(doc) == entry.meta


def test_metadata_with_a_bad_layout_is_refused_naming_the_field() -> None:
    doc = json.loads(json.dumps(_entry("a" * 64)[0].meta.to_json()))
    doc["tensors"][2]["offset"] = 641
    with pytest.raises(
        FormatError, match=r"embedding\.tensors: expected at least one tensor, laid out one after"
    ):
        EmbeddingMeta.from_json(doc)
    doc = json.loads(json.dumps(_entry("a" * 64)[0].meta.to_json()))
    doc["shape"] = [1, 2, 16, 16]
    with pytest.raises(
        FormatError, match=r"embedding\.shape: expected the first tensor's shape \[1, 8, 4, 4\]"
    ):
        EmbeddingMeta.from_json(doc)
    with pytest.raises(CacheEntryError, match=r"tensor 'high_res_feats_0' has shape \(1, 2, 16\)"):
        CachedEmbedding.from_arrays(
            _entry("a" * 64)[0].meta, [np.zeros((1, 8, 4, 4)), np.zeros((1, 2, 16)), np.zeros((1, 4, 8, 8))]
        )
    with pytest.raises(CacheEntryError, match="2 arrays for 3 tensors"):
        CachedEmbedding.from_arrays(
            _entry("a" * 64)[0].meta, [np.zeros((1, 8, 4, 4)), np.zeros((1, 2, 16, 16))]
        )


def test_the_serialised_entry_reads_back_and_damage_is_refused() -> None:
    entry, _ = _entry("b" * 64)
    blob = entry.to_bytes()
    assert blob.startswith(SERIAL_MAGIC)
    assert CachedEmbedding.from_bytes(blob) == entry
    with pytest.raises(CacheEntryError, match="bad first line"):
        CachedEmbedding.from_bytes(b"x" + blob)
    with pytest.raises(CacheEntryError, match=r"body of 3580 bytes, expected 3584"):
        CachedEmbedding.from_bytes(blob[:-4])
    with pytest.raises(CacheEntryError, match="bad metadata"):
        CachedEmbedding.from_bytes(SERIAL_MAGIC + b'{"id": 1}\n' + entry.float32)


def test_disk_layer_stores_the_serialised_entry_and_skips_a_damaged_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    entry, _ = _entry("c" * 64)
    cache = EmbeddingCache(max_bytes=0, disk_dir=tmp_path)  # nothing in memory: every get reads the disk
    cache.put("c" * 64, entry)
    assert (tmp_path / f"{'c' * 64}.emb").read_bytes() == entry.to_bytes()
    assert cache.get("c" * 64) == entry and len(cache) == 0
    (tmp_path / f"{'c' * 64}.emb").write_bytes(entry.to_bytes()[:-1])
    with caplog.at_level(logging.WARNING, logger="clicksam.server.cache"):
        assert cache.get("c" * 64) is None
    assert "ignoring unreadable cached embedding cccccccccccc" in caplog.text


def test_memory_budget_counts_every_tensor() -> None:
    entry, _ = _entry("d" * 64)
    assert entry.nbytes == 896 * (2 + 4)
    cache = EmbeddingCache(max_bytes=2 * entry.nbytes)
    for i in range(3):
        cache.put(f"{i:064x}", _entry(f"{i:064x}", seed=i)[0])
    assert len(cache) == 2 and cache.nbytes == 2 * entry.nbytes and cache.get(f"{0:064x}") is None


def test_get_sends_every_tensor_in_layout_order(client: TestClient) -> None:
    """A cached three-tensor entry goes out as its float16 / float32 body with the usual headers."""
    key = "e" * 64
    entry, arrays = _entry(key, seed=4)
    client.app.state.service.cache.put(key, entry)  # type: ignore[attr-defined]
    f16 = client.get(f"/api/embeddings/{key}")
    assert f16.status_code == 200 and f16.headers["content-type"] == "application/octet-stream"
    assert f16.headers["etag"] == f'"{key}-float16"' and f16.headers["x-embedding-dtype"] == "float16"
    body16 = np.frombuffer(f16.content, "<f2")
    f32 = client.get(f"/api/embeddings/{key}", params={"dtype": "float32"})
    body32 = np.frombuffer(f32.content, "<f4")
    meta = client.get(f"/api/embeddings/{key}/meta").json()
    assert len(meta["tensors"]) == 3 and meta["cached"] is True
    for t, array in zip(meta["tensors"], arrays, strict=True):
        part = slice(t["offset"], t["offset"] + t["size"])
        assert np.array_equal(body32[part].reshape(t["shape"]), array)
        assert np.array_equal(body16[part].reshape(t["shape"]), array.astype(np.float16))
    assert (
        client.get(f"/api/embeddings/{key}", headers={"If-None-Match": f16.headers["etag"]}).status_code
        == 304
    )
