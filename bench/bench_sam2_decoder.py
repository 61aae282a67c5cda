"""SAM 2.1's exported decoders against SAM 1's in native ONNX Runtime (CPU, Python): file sizes,
per-click time (interleaved, same process, same thread count) and the per-image bytes on the wire.

    .venv/bin/python bench/bench_sam2_decoder.py                      # exports both into a temp dir
    .venv/bin/python bench/bench_sam2_decoder.py --out /tmp/b --runs 60 --threads 1
    .venv/bin/python bench/bench_sam2_decoder.py --out /tmp/b --skip-export   # re-time those files

Both models have their real decoder sizes: ``vit_test`` (seeded) has exactly SAM 1's prompt encoder
+ mask decoder (the same for vit_b/l/h/t), ``sam2_tiny`` exactly SAM 2.1's (the same for every Hiera
size); the image encoder does not enter a click. A click is one positive point (+ the padding point
the page adds), no mask input, as the page sends it; each model's per-image graph (SAM 1's and, since
issue 18's split, SAM 2.1's) runs once before (as in the page), and is timed on its own. Prints the
ratio SAM 2.1 / SAM 1 of the per-click p50.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from clicksam.export.decoder import export_decoder
from clicksam.formats import Manifest, TensorSpec
from clicksam.model import build_sam


def _session(path: Path, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _random(spec: TensorSpec, rng: np.random.Generator) -> np.ndarray:
    shape = [int(d) for d in spec.shape]
    return rng.standard_normal(shape).astype(np.float16 if spec.dtype == "float16" else np.float32)


def _click_feeds(
    manifest: Manifest, image: dict[str, np.ndarray], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    xy = rng.uniform(0, manifest.image_size, (1, 1, 2)).astype(np.float32)
    low = manifest.low_res_size
    return {
        **image,
        "point_coords": np.concatenate([xy, np.zeros((1, 1, 2), np.float32)], axis=1),
        "point_labels": np.array([[1.0, -1.0]], np.float32),
        "mask_input": np.zeros((1, 1, low, low), np.float32),
        "has_mask_input": np.zeros(1, np.float32),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="export folder (default: a temp dir)")
    parser.add_argument("--skip-export", action="store_true", help="time the files already in --out")
    parser.add_argument("--runs", type=int, default=40, help="clicks per model")
    parser.add_argument("--threads", type=int, default=1, help="ORT intra-op threads")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_sam2_"))
    dirs = {"sam1": out / "sam1", "sam2": out / "sam2"}
    if not args.skip_export:
        for key, name in (("sam1", "vit_test"), ("sam2", "sam2_tiny")):
            t0 = time.perf_counter()
            export_decoder(
                build_sam(name, seed=0), dirs[key], model_name=name, checkpoint_sha256=None, seed=0
            )
            print(f"exported {name} in {time.perf_counter() - t0:.0f} s")
    rng = np.random.default_rng(0)
    runs: dict[str, tuple[ort.InferenceSession, Manifest, dict[str, np.ndarray]]] = {}
    print(f"{'model':<6} {'variant':<9} {'file':<28} {'bytes':>12}")
    for key, d in dirs.items():
        manifest = Manifest.read(d)
        for vname, entry in manifest.variants.items():
            for f in entry.files():
                print(f"{key:<6} {vname:<9} {f:<28} {(d / f).stat().st_size:>12}")
        wire = sum(int(np.prod([int(x) for x in t.shape])) * 2 for t in manifest.image_inputs)
        print(f"{key:<6} per-image tensors on the wire (float16): {wire} bytes ({wire / 2**20:.2f} MiB)")
        browser = manifest.variants["browser"]
        image = {t.name: _random(t, rng) for t in manifest.image_inputs}
        if browser.prep is not None:
            prep = _session(d / browser.prep.file, args.threads)
            t0 = time.perf_counter()
            outs = prep.run(None, image)
            print(f"{key:<6} per-image graph: {1e3 * (time.perf_counter() - t0):.1f} ms (once per image)")
            image = dict(zip([o.name for o in prep.get_outputs()], outs, strict=True))
        runs[key] = (_session(d / browser.file, args.threads), manifest, image)
    times: dict[str, list[float]] = {key: [] for key in runs}
    for i in range(args.runs + 3):  # interleaved, the first 3 of each are warm-up
        for key, (session, manifest, image) in runs.items():
            feeds = _click_feeds(manifest, image, rng)
            t0 = time.perf_counter()
            session.run(None, feeds)
            if i >= 3:
                times[key].append(1e3 * (time.perf_counter() - t0))
    p50 = {key: statistics.median(v) for key, v in times.items()}
    for key, v in times.items():
        print(
            f"{key:<6} per click: p50 {p50[key]:.2f} ms, p90 {np.percentile(v, 90):.2f} ms ({len(v)} clicks)"
        )
    print(f"ratio SAM 2.1 / SAM 1 per-click p50: {p50['sam2'] / p50['sam1']:.2f}")


if __name__ == "__main__":
    main()
