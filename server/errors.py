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

from clicksam.errors import ClickSamError

logger = logging.getLogger(__name__)


class ServerError(ClickSamError):
    """Base of every error the server answers with a 4xx/503; ``status_code`` is the HTTP status.

    A subclass names its status in its bases: ``class X(ServerError, status=404)``.
    """

    status_code: int = 400

    def __init_subclass__(cls, *, status: int = 0, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.status_code = status or cls.status_code

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidImageError(ServerError, status=400):
    """The upload is empty, truncated or cannot be decoded although its type is supported."""


class UnsupportedImageTypeError(ServerError, status=415):
    """The upload's bytes are not a supported image format. Decided by sniffing, never by name."""


class UploadTooLargeError(ServerError, status=413):
    """The upload has more bytes than ``max_upload_bytes``."""


class ImageTooLargeError(ServerError, status=413):
    """The image header declares more pixels than ``max_pixels``: a decompression bomb guard."""


class MissingImageError(ServerError, status=422):
    """The multipart request has no ``image`` file field (422, as FastAPI's own validation)."""


class EmbeddingNotFoundError(ServerError, status=404):
    """No embedding with this id is cached."""


class EncoderBusyError(ServerError, status=503):
    """The encoder queue is full; the client should retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotReadyError(ServerError, status=503):
    """The model is not loaded (yet, or any more)."""


class DecoderMismatchError(ClickSamError, RuntimeError):
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
