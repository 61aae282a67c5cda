"""``POST /api/embeddings/{id}/detect``: text and exemplar prompts on an uploaded image (issue 19)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from clicksam.server.detection import (
    MAX_DETECTIONS,
    MAX_QUERIES,
    DetectionService,
    DetectorUnavailableError,
)
from clicksam.server.errors import NotReadyError
from clicksam.server.schemas import ErrorResponse

router = APIRouter(prefix="/api/embeddings", tags=["detection"])


class DetectRequest(BaseModel):
    """Text queries and/or exemplar boxes (at least one of them)."""

    text: list[str] = Field(
        default_factory=list,
        description=f"what to find, one query per string (at most {MAX_QUERIES} queries with the exemplars)",
        examples=[["dog", "red car"]],
    )
    exemplars: list[list[float]] = Field(
        default_factory=list,
        description="example boxes [x0, y0, x1, y1] in original image pixels: find objects like these",
        examples=[[[10, 20, 110, 140]]],
    )
    threshold: float = Field(0.1, description="keep detections whose score exceeds this (0 <= t < 1)")
    max_detections: int = Field(100, description=f"at most this many detections (1..{MAX_DETECTIONS})")


class DetectionOut(BaseModel):
    label: str = Field(description='the text query that matched, or "exemplar" for an exemplar match')
    box: list[float] = Field(description="[x0, y0, x1, y1] in original image pixels")
    score: float = Field(description="the detector's probability in [0, 1]")


class DetectResponse(BaseModel):
    model: str = Field(description="the detector that answered")
    detections: list[DetectionOut] = Field(description="sorted by descending score")


def get_detection(request: Request) -> DetectionService:
    """The app's detection service; 409 (with how to turn it on) when the server has no detector."""
    if getattr(request.app.state, "service", None) is None:
        raise NotReadyError("the model is still loading; retry in a few seconds")
    detection: DetectionService | None = getattr(request.app.state, "detection", None)
    if detection is None:
        hint = getattr(request.app.state, "detector_hint", None) or "this server has no detector"
        raise DetectorUnavailableError(hint)
    return detection


DetectionDep = Annotated[DetectionService, Depends(get_detection)]

_ERRORS = {
    404: "unknown image id (upload it to POST /api/embeddings first)",
    409: "this server runs without a detector; the detail says how to turn one on (--text-model)",
    422: "bad input: no query, empty or over-long text, too many queries, a box outside the image or "
    "with no area, a threshold or max_detections out of range",
    503: "busy (see Retry-After) or model loading",
}


@router.post(
    "/{embedding_id}/detect",
    response_model=DetectResponse,
    responses={code: {"model": ErrorResponse, "description": text} for code, text in _ERRORS.items()},
)
async def detect(
    embedding_id: str, body: DetectRequest, detection: DetectionDep, response: Response
) -> DetectResponse:
    """Find every object matching text queries ("dog") or like exemplar boxes, on an uploaded image.

    The detector's image side runs once per image, on the first query, and is cached; later queries only
    run the text side (cached by string) and a few matrix products. Boxes are in original image pixels;
    detections go through a score threshold, non-maximum suppression within each label and a cap, and
    come sorted by score. Detections found by exemplars are labelled ``"exemplar"``; scores are
    probabilities for text and exemplars alike. The ``Server-Timing`` header says how long the image
    side (``image``, 0 when cached) and the query (``query``) took.
    """
    outcome = await detection.detect(
        embedding_id, body.text, body.exemplars, body.threshold, body.max_detections
    )
    response.headers["Server-Timing"] = (
        f'image;dur={outcome.image_ms:.1f};desc="{"cached" if outcome.image_cached else "computed"}", '
        f"query;dur={outcome.query_ms:.1f}"
    )
    return DetectResponse(
        model=detection.detector.name,
        detections=[DetectionOut(label=d.label, box=list(d.box), score=d.score) for d in outcome.detections],
    )
