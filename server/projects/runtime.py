"""Wiring of the projects feature into the app: its config, start-up checks, lifespan and dependencies.

``install_projects(app, config)`` (called by ``create_app``) refuses a config that would open the
projects to the network without a token, and adds the router, whose lifespan opens the database, runs
the migrations and puts a ``Repository`` on ``app.state.projects``.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import anyio
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from clicksam.server.errors import NotReadyError
from clicksam.server.projects.db import create_db_engine, default_url, upgrade
from clicksam.server.projects.errors import AuthConfigError
from clicksam.server.projects.repository import Repository
from clicksam.server.projects.storage import BlobStore
from clicksam.server.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProjectsConfig:
    """What the projects feature needs from the server settings.

    Attributes:
        data_dir: where the SQLite file (by default) and the image blobs (``images/``) live.
        database_url: any SQLAlchemy URL; None for the SQLite file in ``data_dir``.
        token: the bearer token every project request must carry; None for none.
        host: the address the server listens on (decides whether a token is required).
        no_auth: serve the projects beyond loopback without a token (explicit opt-out).
    """

    data_dir: Path
    database_url: str | None = None
    token: str | None = None
    host: str = "127.0.0.1"
    no_auth: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> ProjectsConfig:
        return cls(
            data_dir=settings.data_dir,
            database_url=settings.database_url,
            token=settings.token.get_secret_value() if settings.token is not None else None,
            host=settings.host,
            no_auth=settings.no_auth,
        )


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_auth(config: ProjectsConfig) -> None:
    """Refuse to serve projects beyond loopback with no token, unless ``no_auth`` says so (logged).

    Raises:
        AuthConfigError: ``host`` is not loopback, no token is set and ``no_auth`` is false.
    """
    if config.token or is_loopback(config.host):
        return
    if not config.no_auth:
        raise AuthConfigError(
            f"refusing to listen on {config.host} with the projects open to anyone: set CLICKSAM_TOKEN "
            "(clients send it as 'Authorization: Bearer <token>'), or pass --no-auth to allow it"
        )
    logger.warning("--no-auth: anyone who can reach %s can read and change every project", config.host)


@dataclass(frozen=True)
class ProjectsState:
    repository: Repository
    token: str | None


@asynccontextmanager
async def projects_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the database, migrate it, and hand a ``Repository`` to the routes until shutdown."""
    config: ProjectsConfig = app.state.projects_config
    url = config.database_url or default_url(config.data_dir)
    engine = await anyio.to_thread.run_sync(create_db_engine, url)
    try:
        await anyio.to_thread.run_sync(upgrade, engine)
        repository = Repository(engine, BlobStore(config.data_dir / "images"))
        app.state.projects = ProjectsState(repository, config.token)
        yield
    finally:
        app.state.projects = None
        engine.dispose()


def _state(request: Request) -> ProjectsState:
    state: ProjectsState | None = getattr(request.app.state, "projects", None)
    if state is None:
        raise NotReadyError("the projects database is not open yet; retry in a few seconds")
    return state


_bearer = HTTPBearer(auto_error=False, description="CLICKSAM_TOKEN, when the server has one")


def require_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """401 unless the request carries the server's token (a server without one lets everyone in)."""
    token = _state(request).token
    if token is None:
        return
    if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
        raise HTTPException(
            status_code=401,
            detail="this server needs its token: send 'Authorization: Bearer <CLICKSAM_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


def get_repository(request: Request) -> Repository:
    return _state(request).repository


RepositoryDep = Annotated[Repository, Depends(get_repository)]
