"""Segment-everything as a service: SAM's automatic mask generator on the served model.

The generator is the served model's family's (``clicksam.model.automatic.mask_generator``: SAM 1's or SAM
2.1's, with that family's official defaults where a request leaves an option out), and it starts from the
cached per-image tensors, whatever their number (one for SAM 1, three for SAM 2.1).

``EverythingService`` is built in the app's ``lifespan`` beside the embedding service it uses. A request's
upload goes through ``EmbeddingService.embed`` first (same decoding, limits, content id, cache and bounded
encoder queue as ``POST /api/embeddings``), so an image the page already uploaded is not encoded again,
and the decoded pixels that ``embed`` returns are reused: the upload is decoded once. The generator then
runs on its own worker thread (one run at a time, a short bounded backlog, ``EncoderBusyError`` with a
retry time beyond it), so the event loop and the encoder queue stay free while it works. Finished
results are kept in a small LRU keyed by image id and options.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import anyio
import numpy as np

from clicksam.formats import EverythingMask, EverythingResult, RleMask
from clicksam.server.errors import EncoderBusyError
from clicksam.server.service import EmbeddingService

logger = logging.getLogger(__name__)

#: runs that may wait while one runs; one more is answered 503
MAX_WAITING_RUNS = 2
#: finished results kept for repeated requests (same image and options)
RESULT_CACHE_ENTRIES = 16


@dataclass(frozen=True)
class EverythingOptions:
    """The generator options a client may set (SAM's defaults; ``None``: the model family's official
    default, 0.88 for SAM 1, 0.8 for SAM 2.1); hashable, so part of the result key."""

    points_per_side: int = 32
    pred_iou_thresh: float | None = None
    stability_score_thresh: float = 0.95
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    min_mask_region_area: int = 0


def _box(values: Sequence[float]) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in values)
    return x, y, w, h


def _mask(record: dict[str, Any]) -> EverythingMask:
    """One ``coco_rle`` record of the generator as the wire type."""
    height, width = (int(v) for v in record["segmentation"]["size"])
    return EverythingMask(
        segmentation=RleMask(size=(height, width), counts=str(record["segmentation"]["counts"])),
        area=int(record["area"]),
        bbox=_box(record["bbox"]),
        predicted_iou=float(record["predicted_iou"]),
        stability_score=float(record["stability_score"]),
        point_coords=[(float(x), float(y)) for x, y in record["point_coords"]],
        crop_box=_box(record["crop_box"]),
    )


class EverythingService:
    """One generator run at a time on a dedicated thread, a bounded backlog and an LRU of results.

    Args:
        embeddings: the embedding service (model, cache, encoder) of the app.
    """

    def __init__(self, embeddings: EmbeddingService) -> None:
        self.embeddings = embeddings
        self.pending = 0  # runs in progress or waiting
        self.mean_seconds = 30.0  # moving average of a run, for the retry time
        self._limiter = anyio.CapacityLimiter(1)
        self._results: OrderedDict[tuple[str, EverythingOptions], EverythingResult] = OrderedDict()
        self._inflight: dict[tuple[str, EverythingOptions], asyncio.Task[EverythingResult]] = {}

    async def segment(self, data: bytes, options: EverythingOptions) -> EverythingResult:
        """Masks for everything in the uploaded image.

        Raises:
            InvalidImageError, UnsupportedImageTypeError, ImageTooLargeError, EncoderBusyError: see
                ``EmbeddingService.embed``.
            EncoderBusyError: too many runs are waiting.
        """
        embedded = await self.embeddings.embed(data)  # decodes, validates, encodes or hits the cache
        key = (embedded.meta.id, options)
        cached = self._results.get(key)
        if cached is not None:
            self._results.move_to_end(key)
            logger.info("everything: cache hit %s", embedded.meta.id[:12])
            return cached
        task = self._inflight.get(key)
        if task is None:
            if self.pending > MAX_WAITING_RUNS:
                raise EncoderBusyError(
                    f"segment-everything is busy ({self.pending} runs in progress); retry later",
                    retry_after=self.mean_seconds * self.pending,
                )
            tensors = {name: a.copy() for name, a in embedded.entry.arrays("float32").items()}
            task = asyncio.create_task(self._run(key, embedded.pixels, tensors))
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        # shield: a client that leaves does not cancel a run others may be waiting for
        return await asyncio.shield(task)

    async def _run(
        self, key: tuple[str, EverythingOptions], pixels: np.ndarray, tensors: dict[str, np.ndarray]
    ) -> EverythingResult:
        image_id, options = key
        self.pending += 1
        try:

            def job() -> list[dict[str, Any]]:
                import torch

                from clicksam.model.automatic import mask_generator

                chosen = {k: v for k, v in asdict(options).items() if v is not None}
                generator = mask_generator(self.embeddings.sam, output_mode="coco_rle", **chosen)
                features = generator.features_from_tensors(
                    {name: torch.from_numpy(a) for name, a in tensors.items()}
                )
                with torch.no_grad():
                    return generator.generate(pixels, image_embedding=features)

            start = time.perf_counter()
            records = await anyio.to_thread.run_sync(job, limiter=self._limiter)
            elapsed = time.perf_counter() - start
            self.mean_seconds = 0.7 * self.mean_seconds + 0.3 * elapsed
            logger.info(
                "everything %s: %d masks in %.1f s (%s)", image_id[:12], len(records), elapsed, options
            )
            height, width = pixels.shape[:2]
            result = EverythingResult(
                id=image_id, original_size=(height, width), masks=[_mask(r) for r in records]
            )
            self._results[key] = result
            while len(self._results) > RESULT_CACHE_ENTRIES:
                self._results.popitem(last=False)
            return result
        finally:
            self.pending -= 1
