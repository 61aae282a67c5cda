"""Typed dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request, UploadFile

from clicksam.server.errors import NotReadyError, UploadTooLargeError
from clicksam.server.everything import EverythingService
from clicksam.server.schemas import ErrorResponse
from clicksam.server.service import EmbeddingService
from clicksam.server.settings import Settings


def get_service(request: Request) -> EmbeddingService:
    """The app's embedding service; 503 while the model is not loaded."""
    service: EmbeddingService | None = getattr(request.app.state, "service", None)
    if service is None:
        raise NotReadyError("the model is still loading; retry in a few seconds")
    return service


def get_everything(request: Request) -> EverythingService:
    """The app's segment-everything service; 503 while the model is not loaded."""
    everything: EverythingService | None = getattr(request.app.state, "everything", None)
    if everything is None:
        raise NotReadyError("the model is still loading; retry in a few seconds")
    return everything


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def upload_errors(unprocessable: str) -> dict[int | str, dict[str, Any]]:
    """The documented answers besides 200 of a route that takes an image upload; ``unprocessable``
    says when it answers 422."""
    described = {
        400: "empty, truncated or undecodable image",
        413: "upload bytes or declared pixel count over the limit",
        415: "not a supported image type (decided from the bytes)",
        422: unprocessable,
        503: "busy (see Retry-After) or model loading",
    }
    return {code: {"model": ErrorResponse, "description": text} for code, text in described.items()}


def upload_too_large_message(limit: int) -> str:
    return f"upload too large: the limit is {limit:,} bytes; send a smaller or more compressed image"


async def read_upload(image: UploadFile, settings: Settings) -> bytes:
    """The bytes of the multipart ``image`` field (FastAPI's validation answers a missing one).

    Raises:
        UploadTooLargeError: it has more than ``settings.max_upload_bytes`` bytes.
    """
    if image.size is not None and image.size > settings.max_upload_bytes:
        raise UploadTooLargeError(upload_too_large_message(settings.max_upload_bytes))
    data = await image.read()
    if len(data) > settings.max_upload_bytes:
        raise UploadTooLargeError(upload_too_large_message(settings.max_upload_bytes))
    return data


ServiceDep = Annotated[EmbeddingService, Depends(get_service)]
EverythingDep = Annotated[EverythingService, Depends(get_everything)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
