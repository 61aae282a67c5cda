"""``POST /api/everything``: automatic masks for a whole image ("segment everything").

A thin route over ``EverythingService`` (``server/everything.py``, built in the app's ``lifespan``): the
upload's limits and the generator options are checked here, the work and its queueing happen there.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from clicksam.formats import EverythingResult
from clicksam.server.everything import EverythingOptions
from clicksam.server.routes.deps import EverythingDep, SettingsDep, read_upload, upload_errors
from clicksam.server.schemas import IMAGE_UPLOAD_BODY

router = APIRouter(prefix="/api/everything", tags=["everything"])

_ERRORS = upload_errors("no 'image' file, or an option out of range")


@router.post("", response_model=EverythingResult, responses=_ERRORS, openapi_extra=IMAGE_UPLOAD_BODY)
async def segment_everything(
    everything: EverythingDep,
    settings: SettingsDep,
    image: Annotated[UploadFile, File(description="the image file")],
    points_per_side: Annotated[int, Form(ge=1, le=64, description="grid points per side")] = 32,
    pred_iou_thresh: Annotated[
        float | None,
        Form(ge=0.0, le=1.0, description="default: the model's official value (SAM 1 0.88, SAM 2.1 0.8)"),
    ] = None,
    stability_score_thresh: Annotated[float, Form(ge=0.0, le=1.0)] = 0.95,
    box_nms_thresh: Annotated[float, Form(ge=0.0, le=1.0)] = 0.7,
    crop_n_layers: Annotated[int, Form(ge=0, le=2, description="extra crop layers (slow)")] = 0,
    min_mask_region_area: Annotated[int, Form(ge=0, le=1_000_000)] = 0,
) -> EverythingResult:
    """Masks for everything in the image, as COCO RLE records (SAM's automatic mask generator).

    Takes seconds to minutes on a CPU (about ``points_per_side**2`` decoder runs).
    """
    # the fields of EverythingOptions, in order
    options = EverythingOptions(
        points_per_side, pred_iou_thresh, stability_score_thresh, box_nms_thresh, crop_n_layers,
        min_mask_region_area,
    )  # fmt: skip
    return await everything.segment(await read_upload(image, settings), options)
