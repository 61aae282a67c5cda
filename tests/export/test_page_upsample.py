"""The page's low-res -> original-size mask postprocessing (``logitsToMask`` in the shipped
web/src/mask.ts, bundled with web/'s rolldown and run with node) equals SAM's ``postprocess_masks``
+ threshold for several image sizes, and at display size. The browser bench runs the same code."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from export_testlib import iou

from clicksam.model import build_sam

WEB = Path(__file__).resolve().parents[2] / "web"
ROLLDOWN = WEB / "node_modules" / "rolldown" / "bin" / "cli.mjs"
SIZES = [(768, 1024), (1024, 768), (512, 512), (1080, 1920), (5, 7), (3000, 4000)]  # (H, W)
# (H, W) of the original, (h, w) of a smaller canvas drawn at display size
DISPLAY = [(3000, 4000, 960, 1280), (4000, 3000, 960, 720), (768, 1024, 384, 512)]

# bundled with the page's modules; argv: the low-res plane, the output dir, [[H, W, h, w], ...]
NODE_SCRIPT = """
import { readFileSync, writeFileSync } from 'node:fs';
import { makeGeometry } from %(frames)s;
import { logitsToMask } from %(mask)s;
const [lowPath, outDir, grids] = process.argv.slice(2);
const b = readFileSync(lowPath);
const low = new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
for (const [H, W, h, w] of JSON.parse(grids)) {
  const geom = makeGeometry({ w: W, h: H }, 1024, 256);
  writeFileSync(`${outDir}/${W}x${H}@${w}x${h}.bin`, logitsToMask(low, 0, geom, { w, h }, 0.0));
}
"""


def page_masks(tmp_path: Path, low: torch.Tensor, grids: list[tuple[int, int, int, int]]) -> list[np.ndarray]:
    """The page's 0/1 masks of ``low`` (1, 1, 256, 256) for each (H, W) original drawn on an (h, w) grid."""
    low_path = tmp_path / "low.bin"
    low.numpy().astype("<f4").tofile(low_path)
    src = {"frames": WEB / "src" / "frames.ts", "mask": WEB / "src" / "mask.ts"}
    script = tmp_path / "run.ts"
    script.write_text(NODE_SCRIPT % {k: json.dumps(str(v)) for k, v in src.items()})
    bundle = tmp_path / "run.mjs"
    cmd = ["node", str(ROLLDOWN), str(script), "-f", "esm", "-p", "node", "-o", str(bundle)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    subprocess.run(
        ["node", str(bundle), str(low_path), str(tmp_path), json.dumps(grids)], check=True, timeout=120
    )
    return [
        np.fromfile(tmp_path / f"{w}x{h}@{dw}x{dh}.bin", dtype=np.uint8).reshape(dh, dw) == 1
        for h, w, dh, dw in grids
    ]


@pytest.mark.skipif(
    shutil.which("node") is None or not ROLLDOWN.exists(),
    reason="needs node and web/node_modules (cd web && npm ci)",
)
@pytest.mark.parametrize("kind", ["smooth", "fragmented"])
def test_page_upsampling_matches_postprocess_masks(tmp_path: Path, kind: str) -> None:
    sam = build_sam("vit_test", seed=0)
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 1, 256, 256, generator=gen)
    # smooth: object-like blobs with long boundaries, where resampling errors would show (the
    # per-segment path of logitsToMask); fragmented: a boundary in every cell, as random decoder
    # weights draw (its dense per-row path)
    low = 6.0 * F.avg_pool2d(noise, 9, 1, 4) if kind == "smooth" else noise
    min_iou = 0.9999 if kind == "smooth" else 0.999
    # the original size, then a display-size canvas, which samples the same upsampled mask: SAM's
    # postprocessing to that size
    grids = [(h, w, h, w) for h, w in SIZES] + DISPLAY
    for (h, w, dh, dw), got in zip(grids, page_masks(tmp_path, low, grids), strict=True):
        s = 1024 / max(h, w)
        ref = sam.postprocess_masks(low, (int(h * s + 0.5), int(w * s + 0.5)), (dh, dw))[0, 0].numpy() > 0
        if (dh, dw) == (h, w):
            assert 0.05 < ref.mean() < 0.95
        assert iou(got, ref) >= min_iou, (h, w, dh, dw)
