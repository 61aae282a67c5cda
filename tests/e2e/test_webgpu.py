"""The WebGPU decoder path, run for real: the same clicks on WebGPU and on WASM give the same masks.

Debian Chromium exposes WebGPU through SwiftShader (Vulkan on the CPU) when started with
``--enable-unsafe-webgpu`` (web/e2e/backends.mjs, WEBGPU_ARGS); its adapter has no ``shader-f16``,
so the page's per-image graph (float16 input) runs on WASM there and the click graph on WebGPU.
``?backend=webgpu`` forces the backend: no silent fall back to WASM, so a WebGPU failure fails here.
SwiftShader is slow (5-40 s per decode on the shared 2-core box), so it is two clicks: a click
(three candidates, the best chosen by predicted IoU) and a right click on the background that
refines it (a second point, a background label and the mask input, single-mask token). Served
model: the built-in demo model (trained weights, masks shaped like real ones; random weights draw
boundaries in nearly every low-res cell, where float rounding decides).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from loopback import clicksam_serve
from PIL import Image, ImageDraw

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "web"
ARTIFACTS = REPO / "artifacts" / "webgpu"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCENE = (640, 480)  # (W, H)
DISC = (80, 70, 300, 250)  # x0 y0 x1 y1
CLICKS: list[dict[str, int | str]] = [
    {"x": 190, "y": 160, "button": "left"},
    {"x": 50, "y": 160, "button": "right"},
]


def _scene(path: Path) -> None:
    rng = np.random.default_rng(3)
    base = np.linspace(70, 150, SCENE[0], dtype=np.float32)[None, :, None]
    noisy = base + rng.normal(0, 6, (SCENE[1], SCENE[0], 3))
    im = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    draw.ellipse(DISC, fill=(210, 50, 40))
    draw.rectangle((380, 250, 560, 420), fill=(40, 190, 80))
    im.save(path)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tools = {CHROMIUM: Path(CHROMIUM).exists(), "web/dist": (WEB / "dist" / "index.html").is_file()}
    tools["node"] = shutil.which("node") is not None
    missing = [name for name, ok in tools.items() if not ok]
    if missing:
        pytest.fail(f"the WebGPU test needs {', '.join(missing)} (make web browser-deps)")
    tmp = tmp_path_factory.mktemp("webgpu")
    image, clicks = tmp / "scene.png", tmp / "clicks.json"
    _scene(image)
    clicks.write_text(json.dumps(CLICKS))
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    serve = ["--model", "demo", "--web-dir", str(WEB / "dist"), "--cache-dir", str(tmp / "cache")]
    serve += ["--torch-threads", "1"]
    with clicksam_serve(serve, ARTIFACTS / "server.log", REPO) as url:
        proc = subprocess.run(
            ["node", str(WEB / "e2e" / "backends.mjs"), "--url", url, "--image", str(image),
             "--clicks", str(clicks), "--out", str(ARTIFACTS)],
            cwd=WEB, capture_output=True, text=True, timeout=1500, env={**os.environ, "CHROMIUM": CHROMIUM},
        )  # fmt: skip
    out = ARTIFACTS / "backends.json"
    results: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    if not results.get("ok"):
        detail = f"{results.get('error')}\n{proc.stderr[-2000:]}"
        pytest.fail(f"backends.mjs failed (exit {proc.returncode}): {detail}")
    return results


def _mask(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L")) > 127


def test_webgpu_runs_every_click_on_swiftshader(run: dict[str, Any]) -> None:
    gpu = run["runs"]["webgpu"]
    assert gpu["adapter"] is not None and gpu["adapter"]["architecture"] == "swiftshader", gpu["adapter"]
    assert gpu["ready"]["backend"] == "WebGPU"
    assert [c["backend"] for c in gpu["clicks"]] == ["WebGPU"] * len(CLICKS)
    assert gpu["error"] is None
    # the warm-up ran on WebGPU too (it compiles the shaders), without an error
    (warm,) = gpu["warmUp"]
    assert warm["runs"] >= 1 and warm["error"] is None
    assert run["runs"]["wasm"]["ready"]["backend"].startswith("WASM")


def test_webgpu_and_wasm_masks_agree(run: dict[str, Any]) -> None:
    wasm, gpu = run["runs"]["wasm"]["clicks"], run["runs"]["webgpu"]["clicks"]
    assert len(wasm) == len(gpu) == len(CLICKS)
    for i, (a, b) in enumerate(zip(wasm, gpu, strict=True), start=1):
        assert a["token"] == b["token"], f"click {i}: chosen token {a['token']} (WASM), {b['token']} (WebGPU)"
        assert a["ranked"] == b["ranked"], f"click {i}"
        np.testing.assert_allclose(b["iou"], a["iou"], atol=1e-3, err_msg=f"click {i}: predicted IoUs")
        ma, mb = _mask(a["file"]), _mask(b["file"])
        assert ma.shape == mb.shape == (SCENE[1], SCENE[0])
        assert ma.sum() > 0, f"click {i}: empty mask"
        iou = (ma & mb).sum() / (ma | mb).sum()
        assert iou >= 0.99, f"click {i}: mask IoU WebGPU vs WASM {iou:.4f}"
    # the first click is inside the disc: its mask covers the click
    assert _mask(wasm[0]["file"])[160, 190]


def test_forced_webgpu_without_an_adapter_says_so_on_the_page(run: dict[str, Any]) -> None:
    missing = run["noAdapter"]
    assert missing["state"]["decoderReady"] is False
    assert "WebGPU was asked for (?backend=webgpu)" in missing["error"]
    assert "without ?backend=webgpu" in missing["error"]
