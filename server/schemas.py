"""Response models of the HTTP API that are not wire formats (those are in ``clicksam.formats``), and
what the OpenAPI document says about image uploads."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

#: what the ``image`` part of an upload may be (decided by sniffing the bytes, not by the part's type)
IMAGE_MEDIA_TYPES = (
    "image/jpeg, image/png, image/gif, image/webp, image/bmp, image/tiff, image/heic, image/heif, image/avif"
)
#: ``openapi_extra`` of a route with an ``image`` upload: documents the part's media types
IMAGE_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "content": {"multipart/form-data": {"encoding": {"image": {"contentType": IMAGE_MEDIA_TYPES}}}}
    }
}


class ErrorResponse(BaseModel):
    """Every 4xx/503 answer: FastAPI's ``{"detail": message}``."""

    detail: str = Field(description="what went wrong and what to do about it")


class ConfigResponse(BaseModel):
    """What the page needs to know about this server."""

    model: str
    demo_model: bool = Field(description="true when serving the small built-in demo model")
    notice: str | None = Field(description="message for the user (how to get real weights), or null")
    decoder_manifest: str | None = Field(description="URL of the decoder manifest, null if not served")
    embedding_dtype: str = Field(description="dtype of GET /api/embeddings/{id} by default")
    max_upload_bytes: int
    max_pixels: int
    checkpoint_sha256: str | None = Field(description="sha256 of the served checkpoint, null for random")
    detector: dict[str, Any] | None = Field(
        None,
        description='the text/exemplar detector: {"model": name, "text": true, "exemplars": true}, or null',
    )
    detector_hint: str | None = Field(
        None, description="why text and exemplar prompts are off and how to turn them on; null when on"
    )


class HealthResponse(BaseModel):
    status: str


class ReadyResponse(BaseModel):
    status: str = Field(description="'ready', 'loading' or (--engine ray) 'no encoder replica'")
    model: str | None
    encoder_backend: str | None = Field(description="'torch' or 'onnxruntime'")
    encoder_pending: int = Field(description="images being encoded or waiting for the encoder")
    encoder_capacity: int = Field(description="how many may be in progress before 503")
    cached_embeddings: int
    cache_bytes: int
    engine: dict[str, Any] | None = Field(
        None,
        description="--engine ray: encoder replicas running and targeted, and the model identity "
        "(model id, checkpoint and encoder weights sha256) every replica was checked against; null locally",
    )
