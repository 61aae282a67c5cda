"""The embedding cache every ingress replica shares: the process's own LRU in front of Redis.

Why Redis and not Ray's object store: an embedding must outlive the request (and the replica) that made
it, and any ingress replica must find it by its content id. In the object store that needs a holder actor
that owns every reference and a name -> ref table in it: one more single point of failure, entries that
die with their owner, and memory shared with the cluster's task data (spilled to disk under pressure).
Redis is a cache made for this, already on these machines (127.0.0.1:6379): a key per embedding, its own
memory budget and eviction (``maxmemory`` + ``allkeys-lru``), shared by every replica on every node that
can reach it, and kept across restarts of the Serve app. Content-hash ids make every write idempotent:
two replicas that encode the same image store the same bytes under the same key.

The value is the entry's serialised form, ``CachedEmbedding.to_bytes()`` (what the disk cache writes), so
this layer does not depend on the entry's fields (SAM 1 has one tensor, SAM 2.1 three). Redis being
unreachable never fails a request: a failed read is a miss, a failed write a warning (the embedding is
still in this replica's memory).
"""

from __future__ import annotations

import logging
from typing import Any

from clicksam.server.cache import CachedEmbedding, EmbeddingCache, is_valid_id

logger = logging.getLogger(__name__)

#: every key of ours starts with this (one Redis may serve other applications)
KEY_PREFIX = "clicksam:embedding:"


class SharedEmbeddingCache(EmbeddingCache):
    """``EmbeddingCache`` (memory LRU, no disk) backed by a Redis that other replicas share.

    Args:
        max_bytes: byte budget of this process's memory LRU.
        client: a ``redis.Redis`` (bytes responses).
        ttl_seconds: lifetime of a key in Redis (refreshed by each write; 0 keeps it until evicted).

    Attributes:
        shared_hits: ``get`` answered from Redis (a hit another replica, or an earlier run, made).
        shared_errors: Redis calls that failed (counted as misses / skipped writes).
    """

    def __init__(self, max_bytes: int, client: Any, *, ttl_seconds: int = 0) -> None:
        super().__init__(max_bytes, None)
        self.client = client
        self.ttl_seconds = ttl_seconds
        self.shared_hits = 0
        self.shared_errors = 0

    @staticmethod
    def key(embedding_id: str) -> str:
        return KEY_PREFIX + embedding_id

    def get(self, embedding_id: str) -> CachedEmbedding | None:
        """Memory first, then Redis (a Redis hit is kept in memory too); counts one hit or one miss."""
        entry = super().get(embedding_id)  # counts a miss when it is not in memory
        if entry is not None or not is_valid_id(embedding_id):
            return entry
        data = self._fetch(embedding_id)
        if data is None:
            return None
        try:
            entry = CachedEmbedding.from_bytes(data)
        except ValueError as exc:
            logger.warning("ignoring an unreadable shared embedding %s: %s", embedding_id[:12], exc)
            return None
        with self._lock:
            self.misses -= 1
            self.hits += 1
            self.shared_hits += 1
        super().put(embedding_id, entry)
        return entry

    def put(self, embedding_id: str, entry: CachedEmbedding) -> None:
        """Store in memory and in Redis."""
        super().put(embedding_id, entry)
        try:
            self.client.set(self.key(embedding_id), entry.to_bytes(), ex=self.ttl_seconds or None)
        except Exception as exc:  # redis' errors have no common base with OSError; never fail the request
            self.shared_errors += 1
            logger.warning("could not store embedding %s in Redis: %s", embedding_id[:12], exc)

    def _fetch(self, embedding_id: str) -> bytes | None:
        try:
            data = self.client.get(self.key(embedding_id))
        except Exception as exc:
            self.shared_errors += 1
            logger.warning("Redis read of embedding %s failed (a miss): %s", embedding_id[:12], exc)
            return None
        return bytes(data) if data is not None else None


def connect_redis(url: str) -> Any:
    """A ``redis.Redis`` for ``url`` that answered PING.

    Raises:
        ClickSamError: redis-py is missing (the ``ray`` extra) or nothing answers at ``url``.
    """
    from clicksam.errors import ClickSamError

    try:
        import redis
    except ModuleNotFoundError as exc:
        raise ClickSamError("the shared embedding cache needs redis-py: pip install 'clicksam[ray]'") from exc
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # one quick retry: a Redis that is down must cost a request milliseconds, not a backoff schedule
    client = redis.Redis.from_url(
        url, socket_timeout=2, socket_connect_timeout=2, retry=Retry(NoBackoff(), 1)
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        raise ClickSamError(
            f"no Redis answers at {url} ({exc}): start one (e.g. redis-server) or pass --redis-url"
        ) from exc
    return client
