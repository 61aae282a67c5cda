"""Benchmark: "segment everything" on a 1024x768 image on CPU, ours vs the official generator.

Both generators run in this process on the same model weights and the same precomputed image embedding:
the image encoder is run once up front (timed and reported separately) and excluded from both timings
(the official predictor's ``set_image`` is replaced by one that installs that embedding). What is timed
is everything after the embedding: decoding the point grid, filtering, upsampling, NMS, RLE and records.

Weights: the model with seeded random weights (no checkpoint can be downloaded here), with the prompt
encoder and mask decoder perturbed and the hypernetwork outputs scaled (``sharpened_state`` of
tests/referee_stubs.py, as in tests/model/test_automatic.py) so that a realistic share of the masks pass
SAM's filters. The decoder has the same
size for every SAM variant, so ``--model vit_test`` (tiny encoder) times the generator just the same and
only makes the one-off embedding cheaper.

``--model demo`` uses the shipped demo model's trained weights instead (no perturbation): many
masks of the block image, so the mask-by-mask comparison (each official mask's best IoU among ours)
covers more than the one or two masks random weights keep.

``--model sam2.1_hiera_t`` (or ``_s``, ``_b+``, ``_l``) times SAM 2.1's generator against the official
``SAM2AutomaticMaskGenerator`` (``sam2==1.1.0``, a referee only) on the same three precomputed feature
levels (the official predictor's ``set_image`` installs them), with the weights of
tests/model/test_sam2_automatic.py: every tensor perturbed, the hypernetworks' last layers scaled by -100
and the IoU head's bias raised by 2, so that masks pass the official defaults.

Usage:
    .venv/bin/python bench/bench_everything.py [--model vit_b] [--points-per-side 32] [--threads 1]
    .venv/bin/python bench/bench_everything.py --model demo --points-per-side 16
    .venv/bin/python bench/bench_everything.py --model sam2.1_hiera_t --points-per-side 16

Prints one line per setting: seconds for ours and official, their ratio, peak RSS increase during each
run (sampled every 5 ms from /proc/self/statm), and the number of masks each returned.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


class PeakRSS:
    """Peak resident set size above the level at start, sampled in a thread while the block runs."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.peak = 0
        self._stop = threading.Event()

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self.base = self._rss()
        self.peak = self.base
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mib(self) -> float:
        return (self.peak - self.base) / 2**20


def _timed(fn: Callable[[], list[dict[str, Any]]]) -> tuple[float, float, list[dict[str, Any]]]:
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
    return dt, mem.mib, out


def _image(h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[:] = (90, 120, 150)
    for _ in range(12):
        y0, x0 = rng.integers(0, h - 50), rng.integers(0, w - 50)
        img[y0 : y0 + rng.integers(40, h // 2), x0 : x0 + rng.integers(40, w // 2)] = rng.integers(0, 255, 3)
    noise = rng.integers(-15, 15, size=img.shape)
    return np.clip(img.astype(np.int64) + noise, 0, 255).astype(np.uint8)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="vit_b")
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--width", type=int, default=1024)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    sys.path.insert(0, str(ROOT / "tests"))
    if args.model.startswith("sam2"):
        return _sam2(args)
    # the referee's stand-ins and the weights tests/model/test_automatic.py uses
    from referee_stubs import install_torchvision_stub, reference_sam, sharpened_state

    install_torchvision_stub()
    from segment_anything import automatic_mask_generator as official_amg
    from segment_anything import modeling

    from clicksam.model import SamAutomaticMaskGenerator, SamPredictor, build_sam

    if args.model == "demo":  # the shipped trained weights: masks like a real model's, no sharpening
        sam = build_sam("demo").eval()
    else:
        sam = build_sam(args.model, seed=0).eval()
        sam.load_state_dict(sharpened_state(sam))
    official = reference_sam(modeling, sam.image_encoder, sam.prompt_encoder.image_embedding_size)
    official.load_state_dict(sam.state_dict(), strict=True)

    image = _image(args.height, args.width)
    predictor = SamPredictor(sam)
    t0 = time.perf_counter()
    predictor.set_image(image)
    encode_s = time.perf_counter() - t0
    embedding = predictor.features
    assert embedding is not None
    print(
        f"model={args.model} image={args.width}x{args.height} points={args.points_per_side}^2 "
        f"threads={args.threads} encoder (once, excluded) {encode_s:.1f}s"
    )

    def official_set_image(self: Any, img: np.ndarray, image_format: str = "RGB") -> None:
        # the embedding computed above, installed as the official predictor's state
        self.reset_image()
        self.original_size = img.shape[:2]
        self.input_size = tuple(self.transform.get_preprocess_shape(img.shape[0], img.shape[1], 1024))
        self.features = embedding
        self.is_image_set = True

    official_amg.SamPredictor.set_image = official_set_image

    settings: list[tuple[str, dict[str, Any]]] = [
        ("defaults", {}),
        (
            "lowered thresholds (iou 0.5, stability 0.8)",
            {"pred_iou_thresh": 0.5, "stability_score_thresh": 0.8},
        ),
        # every candidate survives to NMS: the most masks to compare one by one
        ("no quality filters (iou 0, stability 0)", {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}),
    ]
    for name, opts in settings:
        opts = {"points_per_side": args.points_per_side, **opts}
        ours_gen = SamAutomaticMaskGenerator(sam, **opts)
        ref_gen = official_amg.SamAutomaticMaskGenerator(official, **opts)
        with torch.no_grad():
            t_ours, m_ours, ours = _timed(partial(ours_gen.generate, image, image_embedding=embedding))
            t_ref, m_ref, ref = _timed(partial(ref_gen.generate, image))
        print(
            f"{name}: ours {t_ours:.1f}s (peak +{m_ours:.0f} MiB, {len(ours)} masks; {ours_gen.stats}) | "
            f"official {t_ref:.1f}s (peak +{m_ref:.0f} MiB, {len(ref)} masks) | speedup x{t_ref / t_ours:.2f}"
        )
        print(f"  masks: {_match_masks(ours, ref)}")
        sys.stdout.flush()
    return 0


def _sam2(args: argparse.Namespace) -> int:
    """The SAM 2.1 row: ours and the official generator on the same features (see the docstring)."""
    from referee_stubs import (
        SAM2_OFFICIAL_CONFIGS,
        install_sam2_torchvision_stub,
        perturbed_state,
        reference_sam2,
    )

    install_sam2_torchvision_stub()
    from sam2 import automatic_mask_generator as official_amg

    from clicksam.model import build_sam
    from clicksam.model.build import is_video_only_key
    from clicksam.model.sam2_automatic import SAM2AutomaticMaskGenerator

    official = reference_sam2(SAM2_OFFICIAL_CONFIGS[args.model])
    state = perturbed_state(official, seed=3)
    for key in state:
        if key.startswith("sam_mask_decoder.output_hypernetworks_mlps") and ".layers.2." in key:
            state[key] = state[key] * -100.0
    state["sam_mask_decoder.iou_prediction_head.layers.2.bias"] += 2.0
    official.load_state_dict(state, strict=True)
    model = build_sam(args.model, seed=0).eval()
    model.load_state_dict({k: v for k, v in state.items() if not is_video_only_key(k)}, strict=True)

    image = _image(args.height, args.width)
    t0 = time.perf_counter()
    with torch.no_grad():
        features = model.encode_image(model.preprocess(image))
    encode_s = time.perf_counter() - t0
    print(
        f"model={args.model} image={args.width}x{args.height} points={args.points_per_side}^2 "
        f"threads={args.threads} encoder (once, excluded) {encode_s:.1f}s"
    )

    def official_set_image(self: Any, img: np.ndarray) -> None:
        # the features computed above, installed as the official predictor's state
        self.reset_predictor()
        self._orig_hw = [img.shape[:2]]
        self._features = {"image_embed": features.image_embed, "high_res_feats": features.high_res_feats}
        self._is_image_set = True

    official_amg.SAM2ImagePredictor.set_image = official_set_image
    for name, opts in [("defaults", {}), ("use_m2m", {"use_m2m": True})]:
        opts = {"points_per_side": args.points_per_side, **opts}
        ours_gen = SAM2AutomaticMaskGenerator(model, **opts)
        ref_gen = official_amg.SAM2AutomaticMaskGenerator(official, **opts)
        with torch.no_grad():
            t_ours, m_ours, ours = _timed(partial(ours_gen.generate, image, image_embedding=features))
            t_ref, m_ref, ref = _timed(partial(ref_gen.generate, image))
        print(
            f"{name}: ours {t_ours:.1f}s (peak +{m_ours:.0f} MiB, {len(ours)} masks; {ours_gen.stats}) | "
            f"official {t_ref:.1f}s (peak +{m_ref:.0f} MiB, {len(ref)} masks) | speedup x{t_ref / t_ours:.2f}"
        )
        print(f"  masks: {_match_masks(ours, ref)}")
        sys.stdout.flush()
    return 0


def _match_masks(ours: list[dict[str, Any]], ref: list[dict[str, Any]]) -> str:
    """Every official mask against its best match among ours (IoU), as one line."""
    if not ref:
        return "the official generator found none"
    a = np.stack([m["segmentation"] for m in ours]).reshape(len(ours), -1) if ours else None
    best = []
    for m in ref:
        b = m["segmentation"].reshape(-1)
        if a is None:
            best.append(0.0)
            continue
        inter = (a & b).sum(1)
        union = (a | b).sum(1)
        best.append(float((inter / np.maximum(union, 1)).max()))
    ious = np.array(best)
    return (
        f"{int((ious >= 0.99).sum())}/{len(ref)} official masks have a match with IoU >= 0.99 "
        f"(min {ious.min():.4f}, mean {ious.mean():.4f})"
    )


if __name__ == "__main__":
    raise SystemExit(main())
