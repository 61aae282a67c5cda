"""What the projects API accepts and answers (pydantic models; they are what ``/docs`` shows)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

#: largest id, version or offset accepted (32-bit signed: every database's INTEGER holds it)
MAX_ID: Final[int] = 2**31 - 1
#: a finite float (JSON has no NaN or infinity)
Finite = Annotated[float, Field(allow_inf_nan=False)]

ImageStatus = Literal["new", "in_progress", "done", "skipped"]
AnnotationSource = Literal["manual", "everything", "text", "auto"]
ExportFormat = Literal["coco", "coco-polygons", "yolo", "masks"]
ProposalSource = Literal["everything", "text"]


class ProjectCreate(BaseModel):
    name: str = Field(description="unique name of the project (1-200 characters)")
    categories: list[str] = Field(default_factory=list, description="category names, in display order")


class ProjectOut(BaseModel):
    id: int
    name: str
    categories: list[str]
    image_count: int
    status_counts: dict[str, int] = Field(description="number of images per status")
    created_at: datetime


class ProjectList(BaseModel):
    projects: list[ProjectOut]


class ImageOut(BaseModel):
    id: int
    file_name: str = Field(description="the uploaded file's name (metadata only)")
    width: int = Field(description="width in pixels after EXIF orientation")
    height: int = Field(description="height in pixels after EXIF orientation")
    status: ImageStatus
    version: int = Field(description="annotation version (the number of saves)")
    embedding_id: str | None = Field(
        None, description="id for /api/embeddings/{id} (in upload answers; null in listings)"
    )


class UploadError(BaseModel):
    file_name: str
    status_code: int = Field(description="what POST /api/embeddings would have answered for this file")
    detail: str


class ImagesCreated(BaseModel):
    images: list[ImageOut]
    errors: list[UploadError] = Field(description="files that were refused (the others are stored)")


class ImagePage(BaseModel):
    images: list[ImageOut]
    total: int = Field(description="images matching the filter")
    offset: int
    limit: int


class Rle(BaseModel):
    size: list[int] = Field(description="[height, width]: must be the image's")
    counts: str | list[int] = Field(description="COCO compressed RLE string (or uncompressed counts)")


class Prompts(BaseModel):
    points: list[tuple[Finite, Finite, int]] = Field(
        default_factory=list, description="[x, y, label] in image pixels; label 1 foreground, 0 background"
    )
    box: tuple[float, float, float, float] | None = Field(
        None, description="[x0, y0, x1, y1] in image pixels"
    )


class AnnotationIn(BaseModel):
    id: int | None = Field(
        None, ge=1, le=MAX_ID, description="id of an annotation of this image to keep (created_at stays)"
    )
    category: str = Field(description="one of the project's category names")
    segmentation: Rle
    source: AnnotationSource = "manual"
    score: Finite | None = None
    prompts: Prompts | None = None


class AnnotationOut(BaseModel):
    id: int
    category: str
    segmentation: Rle
    bbox: list[float] = Field(description="[x, y, w, h] in pixels (COCO)")
    area: int = Field(description="pixels in the mask")
    source: AnnotationSource
    score: float | None
    prompts: Prompts | None
    created_at: datetime
    updated_at: datetime


class AnnotationsOut(BaseModel):
    version: int
    annotations: list[AnnotationOut]


class AnnotationsIn(BaseModel):
    version: int = Field(
        ge=0, le=MAX_ID, description="the version these edits start from (as last read or saved)"
    )
    annotations: list[AnnotationIn]
    status: ImageStatus | None = Field(
        None, description="new image status; by default a 'new' image with annotations becomes 'in_progress'"
    )


class Saved(BaseModel):
    version: int


class ImportResult(BaseModel):
    images: int = Field(description="images of the file matched to the project's by file name")
    annotations: int = Field(description="annotations imported")
    categories_added: list[str]
    unmatched: list[str] = Field(description="file names in the file that the project does not have")


class PrelabelIn(BaseModel):
    """Segment-everything options of a pre-label (SAM's defaults; the bounds of ``POST /api/everything``)."""

    model_config = ConfigDict(strict=True)  # JSON numbers only: no true for 1, no "0.5" for 0.5

    points_per_side: int = Field(32, ge=1, le=64, description="grid points per side")
    pred_iou_thresh: float = Field(0.88, ge=0.0, le=1.0)
    stability_score_thresh: float = Field(0.95, ge=0.0, le=1.0)
    box_nms_thresh: float = Field(0.7, ge=0.0, le=1.0)
    crop_n_layers: int = Field(0, ge=0, le=2, description="extra crop layers (slow)")
    min_mask_region_area: int = Field(0, ge=0, le=1_000_000)
    min_score: float = Field(0.0, ge=0.0, le=1.0, description="keep masks whose score is at least this")


class ProposalOut(BaseModel):
    id: int
    segmentation: Rle
    bbox: list[float] = Field(description="[x, y, w, h] in pixels (COCO)")
    area: int = Field(description="pixels in the mask")
    source: ProposalSource
    score: float = Field(description="the model's predicted IoU (segment-everything)")
    stability_score: float | None = Field(description="the generator's stability score, when it has one")
    prompts: Prompts | None = Field(description="the grid point that made it")
    created_at: datetime


class ProposalsOut(BaseModel):
    proposals: list[ProposalOut] = Field(description="best score first")


class ProposalIds(BaseModel):
    model_config = ConfigDict(strict=True)

    ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(
        max_length=10_000, description="proposals to discard (ids no longer there are ignored)"
    )


class Discarded(BaseModel):
    discarded: int = Field(description="proposals removed by this request")
