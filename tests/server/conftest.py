"""Fixtures for the server tests: a seeded tiny model (``vit_test``), apps built on it, a real uvicorn."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from server_helpers import StatusRecorder

from clicksam.model import Sam, build_sam
from clicksam.server.app import create_app
from clicksam.server.loading import ModelSpec, resolve_model
from clicksam.server.settings import Settings


@pytest.fixture(scope="session")
def sam() -> Sam:
    """The tiny seeded model every server test serves (built once: it is read-only in the server)."""
    return build_sam("vit_test", seed=0).eval()


@pytest.fixture(scope="session")
def spec() -> ModelSpec:
    return resolve_model("vit_test", None, 0)


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings for a test app: vit_test, a temporary cache folder, no page, no decoder unless given."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "model": "vit_test",
            "cache_dir": tmp_path / "cache",
            "data_dir": tmp_path / "data",
            "web_dir": tmp_path / "no-web",
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def make_client(
    sam: Sam, spec: ModelSpec, make_settings: Callable[..., Settings]
) -> Iterator[Callable[..., TestClient]]:
    """Start TestClients (lifespan run) over apps with the given settings; all closed at the end.

    Every response status is recorded: a test fails if any was a 5xx other than the intended 503.
    """
    clients: list[TestClient] = []
    statuses: list[int] = []

    def make(**overrides: Any) -> TestClient:
        app = create_app(make_settings(**overrides), spec=spec, sam=sam)
        app.add_middleware(StatusRecorder, statuses=statuses)
        client = TestClient(app, raise_server_exceptions=True)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)
    assert statuses, "no request was made"
    server_errors = [status for status in statuses if status >= 500 and status != 503]
    assert not server_errors, f"server errors: {server_errors}"


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()
