"""The OpenAPI document is the contract: a schemathesis run checks a real uvicorn against its own document.

The app is served as ``clicksam serve`` builds it (the API, the projects API behind a bearer token, and a
page at ``/``) on 127.0.0.1 with the seeded ``vit_test`` model. Schemathesis's command line reads the
server's ``/openapi.json`` and runs ALL its checks (no 5xx; documented status codes, content types,
headers and response schemas; schema-valid requests accepted and invalid ones rejected; 405s with a true
``Allow``; the token enforced; ...) over its example, coverage, fuzzing and stateful phases, in its
deterministic mode with a bounded number of examples per operation, so a run is the same every time.
Any failure fails the test (with schemathesis's report), and so does any 5xx the server answered.
``contract_hooks.py`` gives the ``image`` uploads real images and keeps segment-everything runs small;
``contract_schemathesis.toml`` lists the rules beyond the schema that three projects operations answer
with a 422.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image
from server_helpers import StatusRecorder, png_bytes, run_uvicorn

from clicksam.model import Sam
from clicksam.server.app import create_app
from clicksam.server.loading import ModelSpec
from clicksam.server.settings import Settings

#: test cases per operation and phase; the run's length and count are in the test's output
MAX_EXAMPLES = 20
TOKEN = "contract-test-token"
HOOKS = Path(__file__).with_name("contract_hooks.py")
CONFIG = Path(__file__).with_name("contract_schemathesis.toml")


@pytest.mark.slow
def test_the_server_keeps_its_openapi_contract(sam: Sam, spec: ModelSpec, tmp_path: Path) -> None:
    web = tmp_path / "web"
    web.mkdir()
    (web / "index.html").write_text("<!doctype html><title>clicksam</title>")
    settings = Settings(
        model="vit_test", cache_dir=tmp_path / "cache", web_dir=web, data_dir=tmp_path / "data", token=TOKEN
    )
    app = create_app(settings, spec=spec, sam=sam)
    statuses: list[int] = []
    app.add_middleware(StatusRecorder, statuses=statuses)
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run"),
        *("--checks", "all", "--max-examples", str(MAX_EXAMPLES), "--generation-deterministic"),
        *("--workers", "1", "--request-timeout", "120", "--no-color"),
        # Hypothesis's only clock-based health check: generation speed depends on the machine's load
        *("--suppress-health-check", "too_slow"),
        *("--header", f"Authorization: Bearer {TOKEN}"),
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)}
    with run_uvicorn(app) as url:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            # the ids contract_schemathesis.toml gives the project operations
            for pid, name in [(1, "contract"), (2, "to-delete")]:
                made = client.post("/api/projects", json={"name": name, "categories": ["a", "b"]})
                assert made.status_code == 201 and made.json()["id"] == pid, made.text
            files = {"image": ("one.png", png_bytes(Image.new("RGB", (12, 10), "red")), "image/png")}
            added = client.post("/api/projects/1/images", files=files)
            assert added.status_code == 201 and added.json()["images"][0]["id"] == 1, added.text
        start = time.perf_counter()
        run = subprocess.run(
            [*command, f"{url}/openapi.json"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=600,
        )
        seconds = time.perf_counter() - start
    report = tmp_path / "schemathesis.txt"
    report.write_text(run.stdout + run.stderr)
    summary = run.stdout[run.stdout.rfind("SUMMARY") :]
    print(f"schemathesis: {seconds:.0f} s, {len(statuses)} requests, report {report}\n{summary}")
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-5_000:]
    server_errors = [status for status in statuses if status >= 500]
    assert not server_errors, f"server errors: {server_errors}"
