"""Fixtures of the projects tests: a real uvicorn serving the app with projects, on SQLite and PostgreSQL.

``database`` is parametrised: every test that uses it runs once on the SQLite file in the data folder and
once on the PostgreSQL at ``CLICKSAM_TEST_POSTGRES_URL`` (default: the project machines' one), in a schema
of its own that is dropped afterwards. Without a reachable PostgreSQL those runs are skipped and say why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from projects_helpers import POSTGRES_URL, postgres_reachable, postgres_schema
from server_helpers import StatusRecorder, run_uvicorn

from clicksam.model import Sam
from clicksam.server.app import create_app
from clicksam.server.loading import ModelSpec
from clicksam.server.settings import Settings


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None (the default SQLite file) or a PostgreSQL URL with a schema of this test's own."""
    if request.param == "sqlite":
        yield None
        return
    problem = postgres_reachable(POSTGRES_URL)
    if problem is not None:
        pytest.skip(
            f"no PostgreSQL at {POSTGRES_URL} ({problem}); set CLICKSAM_TEST_POSTGRES_URL to run these"
        )
    with postgres_schema(POSTGRES_URL) as url:
        yield url


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def start_server(
    sam: Sam, spec: ModelSpec, make_settings: Callable[..., Settings], data_dir: Path
) -> Iterator[Callable[..., httpx.Client]]:
    """Start a real uvicorn with projects on ``database_url``; returns an httpx client for it.

    Every response status is recorded: the test fails on any 5xx other than an intended 503.
    """
    stack = ExitStack()
    statuses: list[int] = []

    def start(database_url: str | None, *, token: str | None = None, **settings: Any) -> httpx.Client:
        config = make_settings(data_dir=data_dir, database_url=database_url, token=token, **settings)
        app = create_app(config, spec=spec, sam=sam)
        app.add_middleware(StatusRecorder, statuses=statuses)
        base = stack.enter_context(run_uvicorn(app))
        return stack.enter_context(httpx.Client(base_url=base, timeout=60))

    with stack:
        yield start
    server_errors = [status for status in statuses if status >= 500 and status != 503]
    assert not server_errors, f"server errors: {server_errors}"


@pytest.fixture
def client(start_server: Callable[..., httpx.Client], database: str | None) -> httpx.Client:
    return start_server(database)
