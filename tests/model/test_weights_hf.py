"""Hugging Face model folders (``clicksam weights download owlv2-base``) against a local HTTP server.

The server serves a tiny random OWLv2 folder under ``/<repo>/resolve/<revision>/<file>`` with HTTP Range
support and drops the first transfer of the weights half-way: the download resumes, checks the pinned
file's sha256, leaves the unpinned files unused until accepted, and the result loads as a detector.
"""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from detector_testlib import make_tiny_owlv2

from clicksam.cli import main
from clicksam.model import weights, weights_hf
from clicksam.model.weights_hf import HfFile, HfModel

REVISION = "0123456789abcdef0123456789abcdef01234567"
REPO = "test/owlv2-tiny"


class _Files:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[tuple[str, str | None]] = []
        self.drop_once = {"model.safetensors"}


def _handler(state: _Files) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            prefix = f"/{REPO}/resolve/{REVISION}/"
            name = self.path[len(prefix) :] if self.path.startswith(prefix) else ""
            state.requests.append((self.path, self.headers.get("Range")))
            body = state.files.get(name)
            if body is None:
                self.send_error(404)
                return
            start = 0
            header = self.headers.get("Range")
            if header:
                start = int(header.removeprefix("bytes=").split("-")[0])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            if name in state.drop_once:  # cut the first transfer short: the client must resume
                state.drop_once.discard(name)
                self.wfile.write(body[start : start + len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body[start:])

    return Handler


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[_Files, HfModel]]:
    folder = make_tiny_owlv2(tmp_path / "source")
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    weights_bytes = files["model.safetensors"]
    model = HfModel(
        name="owlv2-test",
        repo=REPO,
        revision=REVISION,
        files=(
            *(HfFile(name) for name in sorted(files) if name != "model.safetensors"),
            HfFile("model.safetensors", len(weights_bytes), hashlib.sha256(weights_bytes).hexdigest()),
        ),
        card="https://example.invalid",
    )
    state = _Files(files)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setitem(weights_hf.HF_MODELS, model.name, model)
    monkeypatch.setenv(weights_hf.HF_ENDPOINT_ENV, f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv(weights.CACHE_DIR_ENV, str(tmp_path / "cache"))
    try:
        yield state, model
    finally:
        server.shutdown()
        server.server_close()


def test_download_resumes_pins_and_waits_for_acceptance(hub: tuple[_Files, HfModel]) -> None:
    state, model = hub
    with pytest.raises(weights.WeightsUnpinnedError) as caught:
        weights_hf.download_model(model.name, progress=False)
    message = str(caught.value)
    assert "--accept-unpinned" in message and "config.json sha256 " in message
    assert "model.safetensors" not in message  # pinned: verified, nothing to accept
    assert weights_hf.find_model(model.name) is None  # unaccepted files are not used
    ranged = [r for p, r in state.requests if p.endswith("/model.safetensors") and r]
    assert ranged, "the cut transfer was resumed with a Range request"
    assert all(f"/resolve/{REVISION}/" in p for p, _ in state.requests)

    folder = weights_hf.download_model(model.name, progress=False, accept_unpinned=True)
    assert folder == weights_hf.model_dir(model) and folder.name == f"owlv2-test-{REVISION[:12]}"
    assert weights_hf.find_model(model.name) == folder

    from clicksam.model.detection import load_detector

    assert load_detector(folder, name=model.name).name == "owlv2-test"


def test_a_corrupt_pinned_file_is_refused(hub: tuple[_Files, HfModel]) -> None:
    state, model = hub
    state.files["model.safetensors"] = b"x" + state.files["model.safetensors"][1:]
    with pytest.raises(weights.WeightsVerificationError):
        weights_hf.download_model(model.name, progress=False, accept_unpinned=True)
    assert weights_hf.find_model(model.name) is None


def test_cli_download_and_list(hub: tuple[_Files, HfModel], capsys: pytest.CaptureFixture[str]) -> None:
    _, model = hub
    assert main(["weights", "download", model.name, "--accept-unpinned", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert str(weights_hf.model_dir(model)) in out
    assert "model.safetensors: sha256 " in out and "(pinned)" in out and "(accepted, not pinned)" in out
    assert main(["weights", "list"]) == 0
    listing = capsys.readouterr().out
    assert f"owlv2-test       {REPO} @ {REVISION[:12]}  ok" in listing
    assert "owlv2-base       google/owlv2-base-patch16-ensemble @ cfd3195ba4ea  not downloaded" in listing
