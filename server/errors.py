"""Domain exceptions of the embedding server and their one mapping to HTTP.

Library code (decoding, cache, encoder) raises these; ``install_error_handlers`` turns each into FastAPI's
``{"detail": "<message>"}`` body with a stable status code. Nothing else in ``server/`` builds error
responses, so the messages and codes live in one place.
"""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

logger = logging.getLogger(__name__)


class ServerError(Exception):
    """Base of every error the server answers with a 4xx/503; ``status_code`` is the HTTP status."""

    status_code: int = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidImageError(ServerError):
    """The upload is empty, truncated or cannot be decoded although its type is supported (400)."""

    status_code = 400


class UnsupportedImageTypeError(ServerError):
    """The upload's bytes are not a supported image format (415). Decided by sniffing, never by name."""

    status_code = 415


class UploadTooLargeError(ServerError):
    """The upload has more bytes than ``max_upload_bytes`` (413)."""

    status_code = 413


class ImageTooLargeError(ServerError):
    """The image header declares more pixels than ``max_pixels`` (413): a decompression bomb guard."""

    status_code = 413


class MissingImageError(ServerError):
    """The multipart request has no ``image`` file field (422, as FastAPI's own validation)."""

    status_code = 422


class EmbeddingNotFoundError(ServerError):
    """No embedding with this id is cached (404)."""

    status_code = 404


class EncoderBusyError(ServerError):
    """The encoder queue is full (503); the client should retry after ``retry_after`` seconds."""

    status_code = 503

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotReadyError(ServerError):
    """The model is not loaded (yet, or any more): 503."""

    status_code = 503


class DecoderMismatchError(RuntimeError):
    """The decoder export in the decoder dir does not belong to the loaded model (start-up refuses)."""


def install_error_handlers(app: FastAPI) -> None:
    """Map every ``ServerError`` to its status code and ``{"detail": message}`` body."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServerError)
        headers: dict[str, str] = {}
        if isinstance(exc, EncoderBusyError):
            # Retry-After takes whole seconds; never 0, or clients would hammer the server
            headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        logger.info("%s %s -> %d: %s", request.method, request.url.path, exc.status_code, exc.message)
        return JSONResponse({"detail": exc.message}, status_code=exc.status_code, headers=headers)

    app.add_exception_handler(ServerError, handle)
