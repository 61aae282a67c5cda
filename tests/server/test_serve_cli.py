"""``clicksam serve``: flags from the settings, and the real command serving the exported decoder."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from server_helpers import free_port


def test_serve_help_lists_flags_with_their_environment_variables() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "clicksam.cli", "serve", "--help"], check=True, capture_output=True, text=True
    ).stdout
    for flag, env in [
        ("--model NAME", "CLICKSAM_MODEL"),
        ("--checkpoint PATH", "CLICKSAM_CHECKPOINT"),
        ("--decoder-dir DIR", "CLICKSAM_DECODER_DIR"),
        ("--web-dir DIR", "CLICKSAM_WEB_DIR"),
        ("--max-upload-bytes", "CLICKSAM_MAX_UPLOAD_BYTES"),
        ("--queue-size", "CLICKSAM_QUEUE_SIZE"),
    ]:
        assert flag in out and env in out.replace("\n", " ").replace("  ", " "), flag


def test_serve_rejects_bad_settings() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "clicksam.cli", "serve", "--port", "not-a-port"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "invalid settings" in proc.stderr and "port" in proc.stderr


def _serve(tmp_path: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKSAM_")}
    command = [
        sys.executable, "-m", "clicksam.cli", "serve", "--model", "vit_test", "--port", str(port),
        "--cache-dir", str(tmp_path / "cache"), "--web-dir", str(tmp_path / "no-web"), "--encoder", "torch",
    ]  # fmt: skip
    return subprocess.Popen(command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "clicksam serve exited"
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("clicksam serve did not become ready")


@pytest.mark.slow
def test_serve_exports_the_decoder_once_and_serves_it(tmp_path: Path) -> None:
    for run in (1, 2):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = tmp_path / f"serve{run}.log"
        proc = _serve(tmp_path, port, log)
        try:
            _wait_ready(url, proc)
            manifest = httpx.get(f"{url}/decoder/manifest.json").json()
            assert manifest["model"] == "vit_test"
            assert manifest["checkpoint_sha256"] is None and manifest["seed"] == 0
            browser = manifest["variants"][manifest["default_variant"]]
            onnx = httpx.get(f"{url}/decoder/{browser['file']}")
            assert onnx.status_code == 200 and len(onnx.content) == browser["bytes"]
            assert onnx.headers["cross-origin-embedder-policy"] == "require-corp"
            config = httpx.get(f"{url}/api/config").json()
            assert config["model"] == "vit_test" and config["demo_model"] is True
            assert config["decoder_manifest"] == "/decoder/manifest.json"
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        text = log.read_text()
        assert "loaded model vit_test on device cpu" in text or run == 2
        exported = "exporting the decoder of vit_test" in text
        assert exported == (run == 1), text[-2000:]
    decoders = list((tmp_path / "cache" / "decoders").iterdir())
    assert len(decoders) == 1 and decoders[0].name.startswith("vit_test-")
