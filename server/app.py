"""``create_app(settings)``: the FastAPI app that serves the API, the decoder files and the page.

The model is loaded once, in ``lifespan`` (never at import); the decoder export is checked against the
served model when the app is created, so a server never hands the page a decoder for other weights.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Scope

from clicksam import __version__
from clicksam.server.cache import EmbeddingCache
from clicksam.server.decoder_files import check_decoder_dir
from clicksam.server.detection import DetectionService, load_detection
from clicksam.server.encoder import Encoder
from clicksam.server.errors import install_error_handlers
from clicksam.server.everything import EverythingService
from clicksam.server.loading import ModelSpec, load_model, resolve_model
from clicksam.server.middleware import (
    IsolationHeadersMiddleware,
    SelectiveGZipMiddleware,
    UploadLimitMiddleware,
)
from clicksam.server.onnx_encoder import encoder_dir, load_onnx_encoder
from clicksam.server.projects.runtime import ProjectsConfig
from clicksam.server.routes import detect, embeddings, everything, system
from clicksam.server.routes.deps import upload_too_large_message
from clicksam.server.routes.projects import (
    REQUEST_FILES,
    install_projects,
    is_image_upload,
    request_too_large_message,
)
from clicksam.server.service import EmbeddingService
from clicksam.server.settings import Settings

if TYPE_CHECKING:
    from clicksam.model import Sam

logger = logging.getLogger(__name__)

#: the repository's built page (an editable install runs from the repo)
DEFAULT_WEB_DIR = Path(__file__).resolve().parent.parent / "web" / "dist"
#: room for the multipart framing around the file in an upload
MULTIPART_SLACK_BYTES = 64 * 1024
#: Vite names built assets ``name-<hash>.ext``: those never change under the same URL
_HASHED_ASSET = re.compile(r"(^|/)assets/.+-[A-Za-z0-9_-]{8,}\.\w+$")
_TENSOR_PATH = re.compile(r"^/api/embeddings/[^/]+$")

NOT_BUILT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>clicksam</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>clicksam server is running</h1>
<p>The web page is not built yet. Run <code>make web</code>
(or <code>cd web &amp;&amp; npm ci &amp;&amp;
npm run build</code>) and reload, or start the server with <code>--web-dir</code>
pointing at a built page.</p>
<p>The API is up: see <a href="/docs">/docs</a>.</p>
</body></html>
"""


def _register_mime_types() -> None:
    # the platform's mime.types may lack these; onnxruntime-web streams .wasm only as application/wasm
    mimetypes.add_type("application/wasm", ".wasm")
    mimetypes.add_type("text/javascript", ".mjs")
    mimetypes.add_type("text/javascript", ".js")
    mimetypes.add_type("application/octet-stream", ".onnx")
    mimetypes.add_type("application/json", ".json")


class CachingStaticFiles(StaticFiles):
    """StaticFiles with cache headers: hashed build assets are immutable, everything else revalidates.

    ``immutable_hashed``: whether ``assets/name-<hash>.ext`` files get a one-year immutable lifetime (the
    page); the decoder files keep fixed names, so they always revalidate (ETag / Last-Modified).
    """

    def __init__(self, *args: Any, immutable_hashed: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.immutable_hashed = immutable_hashed

    async def get_response(self, path: str, scope: Scope) -> Response:
        if scope["method"] not in ("GET", "HEAD"):  # Starlette's own 405 here has no Allow header
            raise HTTPException(status_code=405, headers={"Allow": "GET, HEAD"})
        return await super().get_response(path, scope)

    def file_response(
        self, full_path: Any, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        if self.immutable_hashed and _HASHED_ASSET.search(str(full_path).replace(os.sep, "/")):
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        else:
            response.headers["Cache-Control"] = "no-cache"
        return response


class ServingEngine(Protocol):
    """Where the encodes run and the embeddings are kept when not in this process (``--engine ray``:
    ``clicksam.server.scale.serving.RayEngine``); the app, its routes and services stay the same."""

    def make_encoder(self, settings: Settings, threads: int) -> Encoder: ...

    def make_cache(self, settings: Settings, spec: ModelSpec) -> EmbeddingCache: ...

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, what ``/readyz`` adds about the engine)."""
        ...


def _skip_gzip(scope: Scope) -> bool:
    path: str = scope.get("path", "")
    return bool(_TENSOR_PATH.match(path)) or path.endswith(".onnx")


def create_app(
    settings: Settings,
    *,
    spec: ModelSpec | None = None,
    sam: Sam | None = None,
    engine: ServingEngine | None = None,
) -> FastAPI:
    """Build the app.

    Args:
        settings: server settings; ``decoder_dir`` None serves no decoder (API-only, e.g. tests).
        spec: the resolved model (``resolve_model``); resolved from ``settings`` when None.
        sam: an already built model for ``spec`` (the CLI has one when it just exported the decoder);
            loaded in ``lifespan`` when None.
        engine: encoder and cache from elsewhere (Ray replicas, Redis); None: this process's own.

    Raises:
        DecoderMismatchError: ``settings.decoder_dir`` has no export for the served model.
    """
    _register_mime_types()
    if spec is None:
        spec = resolve_model(
            settings.model, settings.checkpoint, settings.seed, random_weights=settings.random_weights
        )
    decoder_dir = settings.decoder_dir
    if decoder_dir is not None:
        check_decoder_dir(decoder_dir, spec)  # refuse to start rather than serve a mismatched decoder
    else:
        logger.warning("no decoder dir: /decoder is not served, the page cannot segment")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        model = sam if sam is not None else await anyio.to_thread.run_sync(load_model, spec)
        threads = settings.resolved_torch_threads()
        if engine is not None:
            encoder = engine.make_encoder(settings, threads)
        else:
            encoder = Encoder(queue_size=settings.queue_size, threads=threads)
        onnx_encoder = None
        if settings.encoder != "torch":
            onnx_encoder = await anyio.to_thread.run_sync(
                lambda: load_onnx_encoder(encoder_dir(settings.cache_dir, spec), spec, threads=threads)
            )
            if onnx_encoder is None and settings.encoder == "onnxruntime":
                logger.warning("no usable ONNX Runtime encoder for %s: falling back to PyTorch", spec.name)
        disk_dir = settings.cache_dir / "embeddings" / f"{spec.name}-{spec.short_hash}"
        if engine is not None:
            cache = await anyio.to_thread.run_sync(engine.make_cache, settings, spec)
        else:
            cache = EmbeddingCache(settings.cache_bytes, disk_dir if settings.disk_cache else None)
        service = EmbeddingService(
            model, spec, cache, encoder, max_pixels=settings.max_pixels, onnx_encoder=onnx_encoder
        )
        app.state.service = service
        app.state.everything = EverythingService(service)
        detector, app.state.detector_hint = await anyio.to_thread.run_sync(
            load_detection, settings.text_model
        )
        if detector is not None:
            detection = DetectionService(detector, encoder, settings.detector_cache_bytes)
            detection.watch(service)
            app.state.detection = detection
        logger.info(
            "serving %s%s: %s encoder, %d threads, encoder queue %d, memory cache %d MiB%s",
            spec.name,
            " (demo model)" if spec.demo else "",
            "ONNX Runtime" if onnx_encoder is not None else "PyTorch",
            encoder.threads,
            settings.queue_size,
            settings.cache_bytes // (1024 * 1024),
            f", disk cache {disk_dir}" if settings.disk_cache else "",
        )
        try:
            yield
        finally:
            app.state.service = app.state.everything = app.state.detection = None
            encoder.shutdown()

    app = FastAPI(
        title="clicksam",
        version=__version__,
        summary="Segment Anything in the browser: the server computes image embeddings once per image.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.spec = spec
    app.state.decoder_dir = decoder_dir
    app.state.engine = engine
    app.state.service = app.state.everything = app.state.detection = None
    app.state.detector_hint = None
    install_error_handlers(app)
    app.include_router(system.router)
    app.include_router(embeddings.router)
    app.include_router(everything.router)
    app.include_router(detect.router)
    install_projects(app, ProjectsConfig.from_settings(settings))  # AuthConfigError: open beyond loopback

    if decoder_dir is not None:
        app.mount(
            "/decoder", CachingStaticFiles(directory=decoder_dir, immutable_hashed=False), name="decoder"
        )
    web_dir = settings.web_dir or DEFAULT_WEB_DIR
    if (web_dir / "index.html").is_file():
        # the router's fallback, not a mount at "/": a mount would take DELETE /healthz from the route that
        # answers it (405 with Allow: GET) and give it to the files
        app.router.default = CachingStaticFiles(directory=web_dir, html=True, immutable_hashed=True)
    else:
        logger.warning("no built page in %s: / explains how to build it (make web)", web_dir)

        @app.get("/", response_class=HTMLResponse, include_in_schema=False)
        async def page_not_built() -> HTMLResponse:
            return HTMLResponse(NOT_BUILT_PAGE, headers={"Cache-Control": "no-cache"})

    # outermost last: isolation headers go on everything, including 413s from the upload limit
    app.add_middleware(SelectiveGZipMiddleware, minimum_size=1024, compresslevel=6, skip=_skip_gzip)
    app.add_middleware(
        UploadLimitMiddleware,
        max_body_bytes=settings.max_upload_bytes + MULTIPART_SLACK_BYTES,
        message=upload_too_large_message(settings.max_upload_bytes),
        drain_bytes=4 * settings.max_upload_bytes,
        skip=is_image_upload,
    )
    # images added to a project come several to a request, each checked on its own against the limit
    project_limit = REQUEST_FILES * settings.max_upload_bytes
    app.add_middleware(
        UploadLimitMiddleware,
        max_body_bytes=project_limit + MULTIPART_SLACK_BYTES,
        message=request_too_large_message(project_limit),
        drain_bytes=4 * settings.max_upload_bytes,
        skip=lambda scope: not is_image_upload(scope),
    )
    app.add_middleware(IsolationHeadersMiddleware)
    return app


def app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory clicksam.server.app:app_from_env`` (settings from CLICKSAM_*).

    Unlike ``clicksam serve`` it exports nothing: without ``CLICKSAM_DECODER_DIR`` it serves the API only.
    Useful for uvicorn's own flags (``--workers``, ``--loop``, ``--http``) and for the benchmark.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return create_app(Settings())
