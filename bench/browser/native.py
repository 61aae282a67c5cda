"""CPU time of ``session.run`` with native ONNX Runtime (1 thread) for the files a browser run exported.

    .venv/bin/python bench/browser/native.py /tmp/bench-out [--runs 20] [--profile]

Complements ``run.py`` on the shared machine: process CPU time of a single-threaded session is far
less sensitive to other processes than browser wall-clock times (it does not measure the browser;
native MLAS kernels differ from the WASM ones). ``--profile`` prints per-op shares from ORT's profiler.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

SIZES = [(768, 1024), (3000, 4000)]  # (H, W)


def feeds_for(
    session: ort.InferenceSession,
    orig_hw: tuple[int, int],
    rng: np.random.Generator,
    prep: Path | None = None,
) -> dict[str, np.ndarray]:
    """Click feeds; with ``prep`` (the per-image graph) its outputs on the embedding (run once, untimed)."""
    emb = rng.uniform(-1, 1, (1, 256, 64, 64)).astype(np.float32)
    image: dict[str, np.ndarray] = {}
    if prep is not None:
        prep_session = ort.InferenceSession(str(prep), providers=["CPUExecutionProvider"])
        emb_type = prep_session.get_inputs()[0].type
        out = prep_session.run(
            None, {"image_embeddings": emb.astype(np.float16) if "16" in emb_type else emb}
        )
        image = dict(zip([o.name for o in prep_session.get_outputs()], out, strict=True))
    types = {i.name: i.type for i in session.get_inputs()}
    scale = 1024 / max(orig_hw)
    feeds = {
        **image,
        "image_embeddings": emb.astype(np.float16)
        if types.get("image_embeddings") == "tensor(float16)"
        else emb,
        "point_coords": np.array(
            [[[orig_hw[1] * 0.4 * scale, orig_hw[0] * 0.6 * scale], [0, 0]]], np.float32
        ),
        "point_labels": np.array([[1, -1]], np.float32),
        "mask_input": np.zeros((1, 1, 256, 256), np.float32),
        "has_mask_input": np.zeros(1, np.float32),
        "orig_im_size": np.array(orig_hw, np.float32),
    }
    return {k: v for k, v in feeds.items() if k in types}


def cpu_ms(
    path: Path, orig_hw: tuple[int, int], runs: int, profile_dir: str | None = None
) -> tuple[float, str | None]:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    if profile_dir:
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(profile_dir) / path.stem)
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    prep = path.with_name(path.stem + "_prep.onnx")
    feeds = feeds_for(session, orig_hw, np.random.default_rng(0), prep if prep.exists() else None)
    for _ in range(3):
        session.run(None, feeds)
    times = []
    for _ in range(runs):
        t0 = time.process_time()
        session.run(None, feeds)
        times.append(1000 * (time.process_time() - t0))
    prof = session.end_profiling() if profile_dir else None
    return float(np.median(times)), prof


def op_shares(profile_json: str, top: int = 8) -> str:
    by_op: dict[str, float] = {}
    for ev in json.loads(Path(profile_json).read_text()):
        if ev.get("cat") == "Node" and ev["name"].endswith("_kernel_time"):
            by_op[ev["args"]["op_name"]] = by_op.get(ev["args"]["op_name"], 0.0) + ev["dur"]
    total = sum(by_op.values()) or 1.0
    return ", ".join(
        f"{op} {100 * us / total:.0f}%" for op, us in sorted(by_op.items(), key=lambda kv: -kv[1])[:top]
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", type=Path, help="--out-dir of a bench/browser/run.py run")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args(argv)
    files = {  # the baseline first: the others print their ratio to it
        "meta_fp32": "meta_decoder.onnx",
        "meta_int8": "meta_decoder_quant.onnx",
        "ours_official": "decoder.onnx",
        "ours_browser": "decoder_browser.onnx",
    }
    with tempfile.TemporaryDirectory() as tmp:
        for h, w in SIZES:
            base = None
            for name, file in files.items():
                path = args.out_dir / file
                if not path.exists():
                    continue
                ms, prof = cpu_ms(path, (h, w), args.runs, tmp if args.profile else None)
                base = ms if name == "meta_fp32" else base
                ratio = f"  x{ms / base:.2f} of meta_fp32" if base and name != "meta_fp32" else ""
                print(f"{w}x{h} {name:14s} session.run CPU time p50 {ms:7.1f} ms{ratio}")
                if prof:
                    print(f"    ops: {op_shares(prof)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
