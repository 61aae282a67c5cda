"""Response models of the HTTP API (they are what ``/docs`` shows)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ErrorResponse(BaseModel):
    """Every 4xx/503 answer: FastAPI's ``{"detail": message}``."""

    detail: str = Field(description="what went wrong and what to do about it")


class EmbeddingMeta(BaseModel):
    """Metadata of one image embedding (``POST /api/embeddings`` and ``GET .../meta``)."""

    id: str = Field(description="content id: sha256 of the decoded RGB pixels, their shape and the model")
    model: str = Field(description="model preset that computed it (must match the decoder manifest)")
    original_size: list[int] = Field(description="[H, W] of the image in pixels, after EXIF orientation")
    input_size: list[int] = Field(description="[h, w] of the image resized into the model's input frame")
    shape: list[int] = Field(description="tensor shape, [1, 256, 64, 64]")
    dtype: str = Field(description="default wire dtype of GET url (float16; ?dtype=float32 on request)")
    url: str = Field(description="where to GET the raw little-endian tensor bytes")
    cached: bool = Field(description="true when no encode was needed for this request")
    encode_ms: float = Field(description="time the image encoder took for this image, in milliseconds")


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


class HealthResponse(BaseModel):
    status: str


class ReadyResponse(BaseModel):
    status: str = Field(description="'ready' or 'loading'")
    model: str | None
    encoder_backend: str | None = Field(description="'torch' or 'onnxruntime'")
    encoder_pending: int = Field(description="images being encoded or waiting for the encoder")
    encoder_capacity: int = Field(description="how many may be in progress before 503")
    cached_embeddings: int
    cache_bytes: int
