"""``POST /api/everything``: automatic masks for a whole image ("segment everything").

The upload goes through the embedding service first (same decoding, limits, content id, cache and
bounded encoder queue as ``POST /api/embeddings``), so an image the page already uploaded is not encoded
again. The generator then runs on its own worker thread (one run at a time, a short bounded backlog,
503 with ``Retry-After`` beyond it): the event loop and the encoder queue stay free while it works.
Finished results are kept in a small LRU keyed by image id and options.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Annotated, Any

import anyio
import numpy as np
from fastapi import APIRouter, File, Form, Request, UploadFile
from pydantic import BaseModel, Field

from clicksam.server.errors import EncoderBusyError, MissingImageError, UploadTooLargeError
from clicksam.server.images import decode_image
from clicksam.server.routes.deps import ServiceDep, SettingsDep
from clicksam.server.routes.embeddings import upload_too_large_message
from clicksam.server.schemas import ErrorResponse

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/everything", tags=["everything"])

#: runs that may wait while one runs; one more is answered 503
MAX_WAITING_RUNS = 2
#: finished results kept for repeated requests (same image and options)
RESULT_CACHE_ENTRIES = 16


class RleMask(BaseModel):
    size: list[int] = Field(description="[H, W]")
    counts: str = Field(description="COCO compressed RLE string (column-major runs)")


class EverythingMask(BaseModel):
    segmentation: RleMask
    area: int = Field(description="pixels in the mask")
    bbox: list[float] = Field(description="[x, y, w, h] in original image pixels")
    predicted_iou: float
    stability_score: float
    point_coords: list[list[float]] = Field(description="[[x, y]] prompt point in original image pixels")
    crop_box: list[float] = Field(description="[x, y, w, h] of the crop the mask came from")


class EverythingResponse(BaseModel):
    id: str = Field(description="the image's embedding id (as POST /api/embeddings)")
    original_size: list[int] = Field(description="[H, W] after EXIF orientation")
    masks: list[EverythingMask]


class _Runner:
    """One generator run at a time on a dedicated thread, a bounded backlog and an LRU of results."""

    def __init__(self) -> None:
        self.limiter = anyio.CapacityLimiter(1)
        self.pending = 0
        self.mean_seconds = 30.0
        self.results: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
        self.inflight: dict[tuple[Any, ...], asyncio.Task[dict[str, Any]]] = {}


def _runner(request: Request) -> _Runner:
    runner: _Runner | None = getattr(request.app.state, "everything_runner", None)
    if runner is None:
        runner = _Runner()
        request.app.state.everything_runner = runner
    return runner


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "empty, truncated or undecodable image"},
    413: {"model": ErrorResponse, "description": "upload bytes or declared pixel count over the limit"},
    415: {"model": ErrorResponse, "description": "not a supported image type"},
    422: {"model": ErrorResponse, "description": "no 'image' file, or an option out of range"},
    503: {"model": ErrorResponse, "description": "busy (see Retry-After) or model loading"},
}


@router.post("", response_model=EverythingResponse, responses=_ERRORS)
async def segment_everything(
    request: Request,
    service: ServiceDep,
    settings: SettingsDep,
    image: Annotated[UploadFile | None, File(description="the image file")] = None,
    points_per_side: Annotated[int, Form(ge=1, le=64, description="grid points per side")] = 32,
    pred_iou_thresh: Annotated[float, Form(ge=0.0, le=1.0)] = 0.88,
    stability_score_thresh: Annotated[float, Form(ge=0.0, le=1.0)] = 0.95,
    box_nms_thresh: Annotated[float, Form(ge=0.0, le=1.0)] = 0.7,
    crop_n_layers: Annotated[int, Form(ge=0, le=2, description="extra crop layers (slow)")] = 0,
    min_mask_region_area: Annotated[int, Form(ge=0, le=1_000_000)] = 0,
) -> dict[str, Any]:
    """Masks for everything in the image, as COCO RLE records (SAM's automatic mask generator).

    Takes seconds to minutes on a CPU (about ``points_per_side**2`` decoder runs).
    """
    if image is None:
        raise MissingImageError("no image: send the file as multipart/form-data in the field 'image'")
    if image.size is not None and image.size > settings.max_upload_bytes:
        raise UploadTooLargeError(upload_too_large_message(settings.max_upload_bytes))
    data = await image.read()
    if len(data) > settings.max_upload_bytes:
        raise UploadTooLargeError(upload_too_large_message(settings.max_upload_bytes))
    embedded = await service.embed(data)  # decodes, validates, encodes or hits the cache
    key = embedded.meta["id"]
    options = {
        "points_per_side": points_per_side,
        "pred_iou_thresh": pred_iou_thresh,
        "stability_score_thresh": stability_score_thresh,
        "box_nms_thresh": box_nms_thresh,
        "crop_n_layers": crop_n_layers,
        "min_mask_region_area": min_mask_region_area,
    }
    runner = _runner(request)
    cache_key = (key, *sorted(options.items()))
    cached = runner.results.get(cache_key)
    if cached is not None:
        runner.results.move_to_end(cache_key)
        logger.info("everything: cache hit %s", key[:12])
        return cached
    task = runner.inflight.get(cache_key)
    if task is None:
        if runner.pending > MAX_WAITING_RUNS:
            raise EncoderBusyError(
                f"segment-everything is busy ({runner.pending} runs in progress); retry later",
                retry_after=runner.mean_seconds * runner.pending,
            )
        task = asyncio.create_task(_run(service, runner, data, key, options))
        runner.inflight[cache_key] = task
        task.add_done_callback(lambda _t: runner.inflight.pop(cache_key, None))
    # shield: a client that leaves does not cancel a run others may be waiting for
    result = await asyncio.shield(task)
    return result


async def _run(
    service: Any, runner: _Runner, data: bytes, key: str, options: dict[str, Any]
) -> dict[str, Any]:
    runner.pending += 1
    try:
        decoded = await anyio.to_thread.run_sync(lambda: decode_image(data, max_pixels=service.max_pixels))
        entry = service.get(key)
        shape = entry.meta["shape"]
        embedding = np.frombuffer(entry.float32, dtype="<f4").reshape(shape).copy()

        def job() -> list[dict[str, Any]]:
            import torch

            from clicksam.model import SamAutomaticMaskGenerator

            generator = SamAutomaticMaskGenerator(service.sam, output_mode="coco_rle", **options)
            with torch.no_grad():
                return generator.generate(decoded.pixels, image_embedding=torch.from_numpy(embedding))

        start = time.perf_counter()
        records = await anyio.to_thread.run_sync(job, limiter=runner.limiter)
        elapsed = time.perf_counter() - start
        runner.mean_seconds = 0.7 * runner.mean_seconds + 0.3 * elapsed
        logger.info("everything %s: %d masks in %.1f s (%s)", key[:12], len(records), elapsed, options)
        height, width = decoded.pixels.shape[:2]
        result = {"id": key, "original_size": [height, width], "masks": records}
        runner.results[(key, *sorted(options.items()))] = result
        while len(runner.results) > RESULT_CACHE_ENTRIES:
            runner.results.popitem(last=False)
        return result
    finally:
        runner.pending -= 1
