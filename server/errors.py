"""Domain exceptions of the embedding server and their one mapping to HTTP.

Library code (decoding, cache, encoder) raises these; ``install_error_handlers`` turns each into FastAPI's
``{"detail": "<message>"}`` body with a stable status code. Nothing else in ``server/`` builds error
responses, so the messages and codes live in one place.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

from clicksam.errors import ClickSamError
from clicksam.server.schemas import ErrorResponse

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


#: what a missing or non-file ``image`` field is told
NO_IMAGE_MESSAGE = "no image: send the file as multipart/form-data in the field 'image'"
_VALIDATION_MODEL = "#/components/schemas/HTTPValidationError"
#: FastAPI's 400 for a body it cannot read at all (bytes that are not UTF-8 JSON, a broken multipart form)
_UNPARSABLE_BODY = "There was an error parsing the body"
_ERROR_BODY = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
_WHERE = {"query": "query parameter", "path": "path parameter", "header": "header", "cookie": "cookie"}


def validation_message(errors: Sequence[Any]) -> str:
    """One sentence for FastAPI's list of request-validation errors: which input, what is wrong with it.

    A missing ``image`` upload (or one sent as a plain text field) says how to send it; a body that
    is not JSON says so; anything else names each input and pydantic's
    own requirement ("Input should be greater than or equal to 1").
    """
    parts: list[str] = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        if loc[:2] == ["body", "image"]:
            message = NO_IMAGE_MESSAGE
        elif error.get("type") == "json_invalid":
            reason = error.get("ctx", {}).get("error", "malformed")
            message = f"the body is not valid JSON ({reason}); send a JSON document"
        elif loc and loc[0] == "body":
            field = ".".join(loc[1:])
            message = f"body field '{field}': {error.get('msg')}" if field else f"body: {error.get('msg')}"
        elif loc:
            name = ".".join(loc[1:])
            message = f"{_WHERE.get(loc[0], loc[0])} '{name}': {error.get('msg')}"
        else:
            message = str(error.get("msg"))
        if message not in parts:
            parts.append(message)
    return "; ".join(parts) or "the request does not match the API; see /docs"


def _http_message(request: Request, exc: StarletteHTTPException, allow: str) -> str:
    """The ``detail`` of an ``HTTPException``: Starlette's bare 404/405 phrases become directions."""
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if detail == _UNPARSABLE_BODY:
        return "the body could not be parsed: send UTF-8 JSON, or a well-formed multipart form for uploads"
    if detail != HTTPStatus(exc.status_code).phrase:
        return detail  # a specific message from a route
    path = request.url.path
    if exc.status_code == 404:
        return f"not found: {path} is no page, file or API route of this server; the API is at /docs"
    if exc.status_code == 405:
        return f"method {request.method} is not allowed on {path}; use {allow or 'another method'}"
    return detail


def _allowed_methods(request: Request) -> str:
    """The methods of every route whose path matches the request's, as an ``Allow`` value ("" if none)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods and route.matches(request.scope)[0] != Match.NONE:
            methods |= route.methods
    return ", ".join(sorted(methods))


def _document_error_bodies(app: FastAPI) -> None:
    """Make the OpenAPI document say what the handlers answer: every 422 is an ``ErrorResponse`` too.

    FastAPI documents its list-shaped ``HTTPValidationError`` for every route with parameters; the handler
    below answers ``{"detail": "<string>"}`` instead, so the document is rewritten once, where it is built.
    An operation with a body also gets FastAPI's 400 for a body it cannot parse.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        schemas.setdefault("ErrorResponse", ErrorResponse.model_json_schema())
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                response = operation.get("responses", {}).get("422", {})
                media = response.get("content", {}).get("application/json", {})
                if media.get("schema", {}).get("$ref") == _VALIDATION_MODEL:
                    response.update(description="a parameter or body field is missing or invalid")
                    response["content"] = _ERROR_BODY
                if "requestBody" in operation:
                    operation["responses"].setdefault(
                        "400", {"description": "the body could not be parsed", "content": _ERROR_BODY}
                    )
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error as ``{"detail": "<string>"}``, and document that shape in the OpenAPI document.

    ``ServerError`` gets its status and message; FastAPI's request-validation errors get 422 and one
    sentence (``validation_message``); Starlette's ``HTTPException`` (unknown route 404, 405 with its
    ``Allow`` header, a malformed multipart 400) keeps its status and headers; anything unexpected is a
    500 with a string detail (the traceback goes to the log).
    """

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServerError)
        headers: dict[str, str] = {}
        if isinstance(exc, EncoderBusyError):
            # Retry-After takes whole seconds; never 0, or clients would hammer the server
            headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        logger.info("%s %s -> %d: %s", request.method, request.url.path, exc.status_code, exc.message)
        return JSONResponse({"detail": exc.message}, status_code=exc.status_code, headers=headers)

    async def handle_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        message = validation_message(exc.errors())
        logger.info("%s %s -> 422: %s", request.method, request.url.path, message)
        return JSONResponse({"detail": message}, status_code=422)

    async def handle_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette's Allow names the methods of the first route that matched the path only; FastAPI
            # has one route per method (GET and DELETE /api/projects/{pid} are two), so list them all
            allowed = _allowed_methods(request) or headers.get("Allow")  # the static files set their own
            if allowed:
                headers["Allow"] = allowed
        if exc.status_code in (204, 304) or exc.status_code < 200:
            return Response(status_code=exc.status_code, headers=headers)
        detail = _http_message(request, exc, headers.get("Allow", ""))
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=headers)

    async def handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette's ServerErrorMiddleware calls this, then re-raises: the traceback is logged by uvicorn
        return JSONResponse(
            {"detail": "internal server error: this is a bug in clicksam; the server log has the details"},
            status_code=500,
        )

    app.add_exception_handler(ServerError, handle)
    app.add_exception_handler(RequestValidationError, handle_validation)
    app.add_exception_handler(StarletteHTTPException, handle_http)
    app.add_exception_handler(Exception, handle_unexpected)
    _document_error_bodies(app)
