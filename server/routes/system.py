"""``/api/config``, ``/healthz``, ``/readyz``."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from clicksam.server.routes.deps import SettingsDep
from clicksam.server.schemas import ConfigResponse, HealthResponse, ReadyResponse

router = APIRouter()


@router.get("/api/config", response_model=ConfigResponse, tags=["config"])
async def get_config(request: Request, settings: SettingsDep) -> dict[str, Any]:
    """The served model, whether it is the demo model, and the limits and URLs the page needs."""
    spec = request.app.state.spec
    detection = getattr(request.app.state, "detection", None)
    return {
        "model": spec.name,
        "demo_model": spec.demo,
        "notice": spec.notice,
        "decoder_manifest": "/decoder/manifest.json" if request.app.state.decoder_dir else None,
        "embedding_dtype": "float16",
        "max_upload_bytes": settings.max_upload_bytes,
        "max_pixels": settings.max_pixels,
        "checkpoint_sha256": spec.checkpoint_sha256,
        "detector": detection.info if detection is not None else None,
        "detector_hint": None if detection is not None else getattr(request.app.state, "detector_hint", None),
    }


@router.get("/healthz", response_model=HealthResponse, tags=["health"])
async def healthz() -> dict[str, str]:
    """Liveness: the process serves HTTP."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    tags=["health"],
    responses={
        503: {
            "model": ReadyResponse,
            "description": "model not loaded yet, or (--engine ray) no encoder replica runs",
        }
    },
)
async def readyz(request: Request) -> JSONResponse:
    """Readiness: the model is loaded and the encoder takes work; with queue and cache figures."""
    service = getattr(request.app.state, "service", None)
    if service is None:
        body = ReadyResponse(
            status="loading",
            model=None,
            encoder_pending=0,
            encoder_capacity=0,
            cached_embeddings=0,
            cache_bytes=0,
        )
        return JSONResponse(body.model_dump(), status_code=503)
    ready, engine = True, None
    serving_engine = getattr(request.app.state, "engine", None)
    if serving_engine is not None:  # encoder replicas elsewhere: ready while one of them runs
        ready, engine = await anyio.to_thread.run_sync(serving_engine.readiness)
    body = ReadyResponse(
        status="ready" if ready else "no encoder replica",
        model=service.spec.name,
        encoder_backend="onnxruntime" if service.onnx_encoder is not None else "torch",
        encoder_pending=service.encoder.pending,
        encoder_capacity=service.encoder.queue_size + 1,
        cached_embeddings=len(service.cache),
        cache_bytes=service.cache.nbytes,
        engine=engine,
    )
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
