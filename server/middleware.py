"""Pure ASGI middlewares: cross-origin isolation headers, the streaming upload limit, selective gzip.

Pure ASGI (not ``BaseHTTPMiddleware``) so they add no per-request task and do not buffer bodies: the
cached-embedding fetch is the hot path.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from starlette.datastructures import MutableHeaders
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

#: onnxruntime-web needs SharedArrayBuffer for its WASM threads, which needs cross-origin isolation
ISOLATION_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-embedder-policy", b"require-corp"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"x-content-type-options", b"nosniff"),
)


class IsolationHeadersMiddleware:
    """Adds COOP/COEP/CORP (and nosniff) to every HTTP response: page, decoder, API and errors alike."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in ISOLATION_HEADERS:
                    headers.append(name.decode(), value.decode())
            await send(message)

        await self.app(scope, receive, send_with_headers)


class UploadLimitMiddleware:
    """Answers 413 as soon as a request body passes ``max_body_bytes``, while it streams in.

    A declared ``Content-Length`` over the limit is refused before reading anything; a chunked or lying
    body is counted as it arrives. Either way the app never holds more than the limit: once over it, the
    app sees a client disconnect, the 413 goes out, and the rest of the body is read and dropped (up to
    ``drain_bytes``) so the client gets to read the answer instead of a reset connection.

    Args:
        app: the wrapped app.
        max_body_bytes: largest request body (the upload limit plus room for the multipart framing).
        message: the ``detail`` of the 413.
        drain_bytes: most bytes to read and drop after the limit before giving up on the connection.
        skip: requests this instance leaves alone (another instance with its own limit takes them).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        message: str,
        drain_bytes: int,
        skip: Callable[[Scope], bool] = lambda scope: False,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body = json.dumps({"detail": message}).encode()
        self.drain_bytes = drain_bytes
        self.skip = skip

    async def _send_413(self, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(self.body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": self.body})

    async def _drain(self, receive: Receive) -> None:
        drained = 0
        while drained <= self.drain_bytes:
            message = await receive()
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH") or self.skip(scope):
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_body_bytes:
                    logger.info("refused a %d-byte body (limit %d)", declared, self.max_body_bytes)
                    await self._send_413(send)
                    await self._drain(receive)
                    return

        received = 0
        over = False
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    over = True
                    logger.info(
                        "refused a streamed body at %d bytes (limit %d)", received, self.max_body_bytes
                    )
                    if not response_started:
                        await self._send_413(send)
                    if message.get("more_body", False):
                        await self._drain(receive)
                    # the app stops reading here (Starlette raises ClientDisconnect)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if over:
                return  # the 413 is already out; whatever the app says after is dropped
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)


class SelectiveGZipMiddleware:
    """Starlette's gzip for responses where it pays, skipped where ``skip(scope)`` says it does not.

    Skipped: the embedding tensors (float16 activations compress by a few percent at a large CPU cost,
    measured in bench/README.md) and the ONNX decoder files (float weights, idem).
    """

    def __init__(
        self, app: ASGIApp, *, minimum_size: int, compresslevel: int, skip: Callable[[Scope], bool]
    ) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=minimum_size, compresslevel=compresslevel)
        self.skip = skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.skip(scope):
            await self.gzip(scope, receive, send)
        else:
            await self.app(scope, receive, send)
