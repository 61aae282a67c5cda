"""Upload -> embedding: decode, content id, cache, one shared encode per id, the bounded encoder.

``EmbeddingService`` is what the routes call; it owns the model, the cache and the encoder and knows
nothing about HTTP (it raises the domain errors of ``server.errors``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
import numpy as np

from clicksam.formats import EmbeddingMeta, EmbeddingTensor
from clicksam.server.cache import CachedEmbedding, EmbeddingCache
from clicksam.server.encoder import Encoder, OnnxImageEncoder, encode_input, input_size, model_input
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
    """The answer to one upload.

    Attributes:
        entry: the cached embedding (metadata and tensor bytes).
        cached: True when no encode was needed for this request.
        pixels: (H, W, 3) uint8 RGB of the decoded upload, original (EXIF-oriented) frame, for callers
            that need the image too (segment-everything), so it is never decoded twice.
    """

    entry: CachedEmbedding
    cached: bool
    pixels: np.ndarray

    @property
    def meta(self) -> EmbeddingMeta:
        return self.entry.meta


@dataclass(eq=False)
class EmbeddingService:
    """Everything between an uploaded file and its cached embedding.

    Attributes:
        sam: the loaded model (eval mode).
        spec: what ``sam`` is (name and weights identity).
        cache: the embedding cache.
        encoder: the worker that runs the image encoder.
        max_pixels: decoding limit, see ``decode_image``.
        onnx_encoder: a verified ONNX Runtime export of ``sam.image_encoder`` to run instead of PyTorch.
        decode_threads: decodes that may run at once (each holds a full-size RGB copy of its image).
        encodes: images encoded (not counting cache hits or shared encodes).
        joined: requests that waited for another request's encode of the same image.
        image_observers: called with (id, (H, W, 3) uint8 RGB pixels) for every decoded image, cached or
            not (the text/exemplar detector keeps the pixels for its own, later, image side).
    """

    sam: Sam
    spec: ModelSpec
    cache: EmbeddingCache
    encoder: Encoder
    max_pixels: int
    onnx_encoder: OnnxImageEncoder | None = None
    decode_threads: int = 2
    encodes: int = field(default=0, init=False)
    joined: int = field(default=0, init=False)
    image_observers: list[Callable[[str, np.ndarray], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._decode_limiter = anyio.CapacityLimiter(self.decode_threads)
        self._inflight: dict[str, asyncio.Task[CachedEmbedding]] = {}

    @property
    def image_size(self) -> int:
        """Side of the model's square input frame."""
        return int(self.sam.image_size)

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) of an (height, width) image in the model's input frame."""
        return input_size(self.sam, height, width)

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
        for observe in self.image_observers:
            observe(key, decoded.pixels)
        entry = self.cache.get(key)
        if entry is not None:
            logger.info("cache hit %s (%s %s)", key[:12], decoded.format, decoded.source_mode)
            return EmbeddingResult(entry, cached=True, pixels=decoded.pixels)
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
        return EmbeddingResult(entry, cached=False, pixels=decoded.pixels)

    async def _encode_and_store(self, key: str, decoded: DecodedImage) -> CachedEmbedding:
        height, width = decoded.pixels.shape[:2]
        # resize and normalise off the encoder thread, which only runs the encoder
        x = await anyio.to_thread.run_sync(
            model_input, self.sam, decoded.pixels, limiter=self._decode_limiter
        )

        def job() -> tuple[dict[str, np.ndarray], float]:
            # timed on the worker, so encode_ms is the model's time, not the wait in the queue
            start = time.perf_counter()
            out = encode_input(self.sam, x, self.onnx_encoder)
            return out, (time.perf_counter() - start) * 1000.0

        features, encode_ms = await self.encoder.run(job)
        self.encodes += 1
        tensors = EmbeddingTensor.layout([(name, a.shape) for name, a in features.items()])
        meta = EmbeddingMeta(
            id=key,
            model=self.spec.name,
            original_size=(height, width),
            input_size=self.input_size(height, width),
            shape=tensors[0].shape,
            tensors=tensors,
            dtype="float16",
            url=f"/api/embeddings/{key}",
            encode_ms=round(encode_ms, 1),
        )
        entry = CachedEmbedding.from_arrays(meta, list(features.values()))
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
