"""Typed dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from clicksam.server.errors import NotReadyError
from clicksam.server.service import EmbeddingService
from clicksam.server.settings import Settings


def get_service(request: Request) -> EmbeddingService:
    """The app's embedding service; 503 while the model is not loaded."""
    service: EmbeddingService | None = getattr(request.app.state, "service", None)
    if service is None:
        raise NotReadyError("the model is still loading; retry in a few seconds")
    return service


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


ServiceDep = Annotated[EmbeddingService, Depends(get_service)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
