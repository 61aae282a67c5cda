"""Upload -> embedding: decode, content id, cache, one shared encode per id, the bounded encoder.

``EmbeddingService`` is what the routes call; it owns the model, the cache and the encoder and knows
nothing about HTTP (it raises the domain errors of ``server.errors``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import numpy as np

from clicksam.server.cache import CachedEmbedding, EmbeddingCache
from clicksam.server.encoder import Encoder, OnnxImageEncoder, encode_resized
from clicksam.server.errors import EmbeddingNotFoundError
from clicksam.server.images import DecodedImage, decode_image
from clicksam.server.loading import ModelSpec

if TYPE_CHECKING:
    from clicksam.model import Sam

logger = logging.getLogger(__name__)


def embedding_id(model_id: str, pixels: np.ndarray) -> str:
    """Content id of an image for a model: sha256 over the model id, the shape and the RGB pixels.

    Args:
        model_id: ``ModelSpec.model_id`` (preset + weights hash or seed).
        pixels: (H, W, 3) uint8 RGB in the original (EXIF-oriented) frame.
    """
    digest = hashlib.sha256()
    digest.update(model_id.encode())
    digest.update(b"|" + "x".join(str(d) for d in pixels.shape).encode() + b"|uint8|")
    digest.update(np.ascontiguousarray(pixels).data)
    return digest.hexdigest()


@dataclass(frozen=True)
class EmbeddingResult:
    """The answer to one upload: the metadata and whether it came from the cache."""

    meta: dict[str, Any]
    cached: bool


class EmbeddingService:
    """Everything between an uploaded file and its cached embedding.

    Args:
        sam: the loaded model (eval mode).
        spec: what ``sam`` is (name and weights identity).
        cache: the embedding cache.
        encoder: the worker that runs the image encoder.
        max_pixels: decoding limit, see ``decode_image``.
        onnx_encoder: a verified ONNX Runtime export of ``sam.image_encoder`` to run instead of PyTorch.
        decode_threads: decodes that may run at once (each holds a full-size RGB copy of its image).
    """

    def __init__(
        self,
        sam: Sam,
        spec: ModelSpec,
        cache: EmbeddingCache,
        encoder: Encoder,
        *,
        max_pixels: int,
        onnx_encoder: OnnxImageEncoder | None = None,
        decode_threads: int = 2,
    ) -> None:
        from clicksam.model.frames import get_preprocess_shape

        self.sam = sam
        self.spec = spec
        self.cache = cache
        self.encoder = encoder
        self.max_pixels = max_pixels
        self.onnx_encoder = onnx_encoder
        self.image_size = int(sam.image_size)
        self._get_preprocess_shape = get_preprocess_shape
        self._decode_limiter = anyio.CapacityLimiter(decode_threads)
        self._inflight: dict[str, asyncio.Task[CachedEmbedding]] = {}
        self.encodes = 0  # images encoded (not counting cache hits or shared encodes)
        self.joined = 0  # requests that waited for another request's encode of the same image

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) of an (height, width) image in the resized input frame."""
        newh, neww = self._get_preprocess_shape(height, width, self.image_size)
        return int(newh), int(neww)

    def _decode_and_hash(self, data: bytes) -> tuple[DecodedImage, str]:
        decoded = decode_image(data, max_pixels=self.max_pixels)
        return decoded, embedding_id(self.spec.model_id, decoded.pixels)

    async def embed(self, data: bytes) -> EmbeddingResult:
        """Embedding metadata for an uploaded file, encoding it unless it is cached or being encoded.

        Raises:
            InvalidImageError, UnsupportedImageTypeError, ImageTooLargeError: see ``decode_image``.
            EncoderBusyError: the encoder backlog is full.
        """
        decoded, key = await anyio.to_thread.run_sync(
            self._decode_and_hash, data, limiter=self._decode_limiter
        )
        entry = self.cache.get(key)
        if entry is not None:
            logger.info("cache hit %s (%s %s)", key[:12], decoded.format, decoded.source_mode)
            return EmbeddingResult(entry.meta, cached=True)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._encode_and_store(key, decoded))
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        else:
            self.joined += 1
            logger.info("joining the running encode of %s", key[:12])
        # shield: a client that goes away must not cancel an encode that others wait for or that will
        # land in the cache anyway
        entry = await asyncio.shield(task)
        return EmbeddingResult(entry.meta, cached=False)

    async def _encode_and_store(self, key: str, decoded: DecodedImage) -> CachedEmbedding:
        from clicksam.model.frames import resize_to_long_side

        height, width = decoded.pixels.shape[:2]
        resized = await anyio.to_thread.run_sync(
            resize_to_long_side, decoded.pixels, self.image_size, limiter=self._decode_limiter
        )

        def job() -> tuple[np.ndarray, float]:
            # timed on the worker, so encode_ms is the model's time, not the wait in the queue
            start = time.perf_counter()
            out = encode_resized(self.sam, resized, self.onnx_encoder)
            return out, (time.perf_counter() - start) * 1000.0

        embedding, encode_ms = await self.encoder.run(job)
        self.encodes += 1
        meta: dict[str, Any] = {
            "id": key,
            "model": self.spec.name,
            "original_size": [height, width],
            "input_size": list(self.input_size(height, width)),
            "shape": list(embedding.shape),
            "dtype": "float16",
            "url": f"/api/embeddings/{key}",
            "encode_ms": round(encode_ms, 1),
        }
        entry = CachedEmbedding.from_array(meta, embedding)
        self.cache.put(key, entry)
        logger.info(
            "encoded %s (%s %s, %dx%d) in %.0f ms",
            key[:12],
            decoded.format,
            decoded.source_mode,
            width,
            height,
            encode_ms,
        )
        return entry

    def get(self, key: str) -> CachedEmbedding:
        """The cached embedding ``key``.

        Raises:
            EmbeddingNotFoundError: unknown (or evicted) id.
        """
        entry = self.cache.get(key)
        if entry is None:
            raise EmbeddingNotFoundError(
                "no embedding with this id on this server; upload the image to POST /api/embeddings"
            )
        return entry
