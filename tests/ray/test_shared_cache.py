"""The Redis-backed embedding cache two ingress replicas share (real Redis at 127.0.0.1:6379, no Ray)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from ray_helpers import redis_or_skip

from clicksam.formats import EmbeddingMeta, EmbeddingTensor
from clicksam.server.cache import CachedEmbedding
from clicksam.server.scale.shared_cache import SharedEmbeddingCache, connect_redis

REDIS_URL = "redis://127.0.0.1:6379/0"


def _entry(seed: int) -> tuple[str, CachedEmbedding]:
    key = uuid.uuid4().hex + uuid.uuid4().hex  # 64 hex digits, new each run
    tensors = EmbeddingTensor.layout(
        [("image_embeddings", (1, 4, 8, 8)), ("high_res_feats_0", (1, 2, 16, 16))]
    )
    meta = EmbeddingMeta(
        id=key,
        model="vit_test",
        original_size=(30, 40),
        input_size=(48, 64),
        shape=tensors[0].shape,
        tensors=tensors,
        dtype="float16",
        url=f"/api/embeddings/{key}",
        encode_ms=1.0,
    )
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(t.shape).astype(np.float32) for t in tensors]
    return key, CachedEmbedding.from_arrays(meta, arrays)


def test_an_entry_one_replica_stores_is_a_hit_on_another() -> None:
    client = redis_or_skip(REDIS_URL)
    first, second = (SharedEmbeddingCache(1 << 20, client, ttl_seconds=60) for _ in range(2))
    key, entry = _entry(0)
    assert second.get(key) is None and second.misses == 1
    first.put(key, entry)
    got = second.get(key)
    assert got == entry  # every tensor, byte for byte, and the metadata
    assert (second.hits, second.misses, second.shared_hits) == (1, 1, 1)
    assert second.get(key) is got and second.shared_hits == 1  # now from its own memory
    assert 0 < client.ttl(SharedEmbeddingCache.key(key)) <= 60
    client.delete(SharedEmbeddingCache.key(key))


def test_a_garbled_or_unreachable_redis_is_a_miss_not_an_error() -> None:
    client = redis_or_skip(REDIS_URL)
    cache = SharedEmbeddingCache(1 << 20, client)
    key, entry = _entry(1)
    client.set(SharedEmbeddingCache.key(key), b"not an embedding", ex=60)
    assert cache.get(key) is None
    client.delete(SharedEmbeddingCache.key(key))

    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # nothing listens on port 1; no retries, so the test does not wait out redis-py's backoff
    nobody = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    offline = SharedEmbeddingCache(1 << 20, nobody)
    offline.put(key, entry)  # kept in memory, the failed write counted
    assert offline.shared_errors == 1 and offline.get(key) is entry
    assert offline.get(_entry(2)[0]) is None and offline.shared_errors == 2


def test_connect_says_what_to_do_when_nothing_answers() -> None:
    from clicksam.errors import ClickSamError

    with pytest.raises(ClickSamError, match=r"no Redis answers at redis://127\.0\.0\.1:1/0"):
        connect_redis("redis://127.0.0.1:1/0")
