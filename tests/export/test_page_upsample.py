"""The benchmark page's low-res -> original-size mask upsampling (bench/browser/page/upsample.js), run
with node, equals SAM's ``postprocess_masks`` + threshold for several image sizes."""

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

UPSAMPLE_JS = Path(__file__).resolve().parents[2] / "bench" / "browser" / "page" / "upsample.js"
SIZES = [(768, 1024), (1024, 768), (512, 512), (1080, 1920), (5, 7), (3000, 4000)]  # (H, W)
# (H, W) of the original, (h, w) of a smaller canvas drawn at display size
DISPLAY = [(3000, 4000, 960, 1280), (4000, 3000, 960, 720), (768, 1024, 384, 512)]

NODE_SCRIPT = """
import { makeUpsampler } from %s;
import { readFileSync, writeFileSync } from 'node:fs';
const [lowPath, outDir, sizesJson, displayJson] = process.argv.slice(2);
const b = readFileSync(lowPath);
const low = new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
for (const [H, W] of JSON.parse(sizesJson)) {
  const px = new Uint32Array(W * H);
  makeUpsampler(W, H, 1024, 256)(low, px, 1, 0.0);
  writeFileSync(`${outDir}/${W}x${H}.bin`, Uint8Array.from(px));
}
for (const [H, W, h, w] of JSON.parse(displayJson)) {
  const px = new Uint32Array(w * h);
  makeUpsampler(w, h, 1024, 256, W, H)(low, px, 1, 0.0);
  writeFileSync(`${outDir}/${W}x${H}@${w}x${h}.bin`, Uint8Array.from(px));
}
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (needed for bench/browser)")
@pytest.mark.parametrize("kind", ["smooth", "fragmented"])
def test_page_upsampling_matches_postprocess_masks(tmp_path: Path, kind: str) -> None:
    sam = build_sam("vit_test", seed=0)
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 1, 256, 256, generator=gen)
    # smooth: object-like blobs with long boundaries, where resampling errors would show (the
    # upsampler's per-segment path); fragmented: a boundary in every cell, as random decoder
    # weights draw (its dense per-row path)
    low = 6.0 * F.avg_pool2d(noise, 9, 1, 4) if kind == "smooth" else noise
    min_iou = 0.9999 if kind == "smooth" else 0.999
    low_path = tmp_path / "low.bin"
    low.numpy().astype("<f4").tofile(low_path)
    script = tmp_path / "run.mjs"
    script.write_text(NODE_SCRIPT % json.dumps(UPSAMPLE_JS.as_uri()))
    subprocess.run(
        ["node", str(script), str(low_path), str(tmp_path), json.dumps(SIZES), json.dumps(DISPLAY)],
        check=True,
        timeout=120,
    )
    for h, w in SIZES:
        s = 1024 / max(h, w)
        ref = sam.postprocess_masks(low, (int(h * s + 0.5), int(w * s + 0.5)), (h, w))[0, 0].numpy() > 0
        got = np.fromfile(tmp_path / f"{w}x{h}.bin", dtype=np.uint8).reshape(h, w) == 1
        assert 0.05 < ref.mean() < 0.95
        assert iou(got, ref) >= min_iou, (h, w)
    # a display-size canvas samples the same upsampled mask: SAM's postprocessing to that size
    for h, w, dh, dw in DISPLAY:
        s = 1024 / max(h, w)
        ref = sam.postprocess_masks(low, (int(h * s + 0.5), int(w * s + 0.5)), (dh, dw))[0, 0].numpy() > 0
        got = np.fromfile(tmp_path / f"{w}x{h}@{dw}x{dh}.bin", dtype=np.uint8).reshape(dh, dw) == 1
        assert iou(got, ref) >= min_iou, (h, w, dh, dw)
