"""Interactive prompt simulation: first prompts from the ground truth, corrective clicks from the errors.

All coordinates here are pixel indices (x, y) in the frame of the masks they are computed from (the
original image frame for evaluation, the 256x256 low-res frame for training). Callers scale them to
the resized 1024 frame the prompt encoder expects with ``clicksam.model.frames.apply_coords`` (or an
equivalent multiplication by ``1024 / long_side``), exactly as a user's click in the page is scaled.

Following SAM's training recipe: the first prompt is a point drawn uniformly from the object or its
bounding box with noise (std 10% of the side, at most 20 px in the 1024 frame); each further click is
placed in the error region of the previous prediction, foreground where the object was missed (false
negative) and background where too much was taken (false positive). For evaluation the standard
protocol of the interactive segmentation literature is used instead: the click goes to the point of
the larger error region that is farthest from that region's boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "Click",
    "ClickMode",
    "distance_to_boundary",
    "mask_box",
    "next_click",
    "noisy_box",
    "sample_point",
]

ClickMode = Literal["sample", "center"]
# squared distance standing in for "no outside pixel in this column"; larger than any real one
_FAR = np.float32(1e12)


@dataclass(frozen=True)
class Click:
    """A simulated click: pixel (x, y) in the mask frame, and whether it is foreground."""

    x: int
    y: int
    positive: bool

    @property
    def label(self) -> int:
        """SAM's point label: 1 foreground, 0 background."""
        return 1 if self.positive else 0


def distance_to_boundary(mask: np.ndarray) -> np.ndarray:
    """Exact Euclidean distance from each pixel of ``mask`` to the nearest pixel outside it.

    Pixels beyond the image border count as outside, so a region touching the border has small
    distances there (the convention of the interactive segmentation benchmarks).

    Args:
        mask: (H, W) bool.

    Returns:
        (H, W) float32; 0 outside the mask, >= 1 inside.
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    m = np.pad(mask.astype(bool), 1)
    h, w = m.shape
    # pass 1, along columns: distance to the nearest outside pixel in the same column (two sweeps)
    g = np.where(m, _FAR, 0).astype(np.float32)
    for y in range(1, h):
        g[y] = np.minimum(g[y], g[y - 1] + 1)
    for y in range(h - 2, -1, -1):
        g[y] = np.minimum(g[y], g[y + 1] + 1)
    g2 = np.minimum(g, 1e6) ** 2
    # pass 2, along rows: d2[y, x] = min_x' g2[y, x'] + (x - x')^2; brute force in row chunks keeps it
    # exact and vectorised (O(H W^2) but fine for masks of a few hundred pixels a side)
    xs = np.arange(w, dtype=np.float32)
    sq = (xs[:, None] - xs[None, :]) ** 2  # (W, W)
    d2 = np.empty_like(g2)
    chunk = max(1, 4_000_000 // (w * w))
    for y0 in range(0, h, chunk):
        block = g2[y0 : y0 + chunk]  # (c, W)
        d2[y0 : y0 + chunk] = (block[:, None, :] + sq[None]).min(-1)
    return np.sqrt(d2[1:-1, 1:-1]).astype(np.float32) * mask


def sample_point(rng: np.random.Generator, mask: np.ndarray) -> tuple[int, int] | None:
    """A pixel (x, y) drawn uniformly from ``mask`` (H, W) bool, or None if it is empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    i = int(rng.integers(len(xs)))
    return int(xs[i]), int(ys[i])


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight box (x0, y0, x1, y1) of ``mask`` with inclusive pixel indices, or None if empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def noisy_box(
    rng: np.random.Generator, mask: np.ndarray, frame_scale: float = 1.0, max_noise_px: float = 20.0
) -> np.ndarray | None:
    """The mask's box with SAM's corner noise: std 10% of the side, capped at ``max_noise_px``.

    Args:
        rng: random generator.
        mask: (H, W) bool in the mask frame.
        frame_scale: how many 1024-frame pixels one mask pixel spans (``1024 / long_side``); the cap
            ``max_noise_px`` is in the 1024 frame, as in SAM.
        max_noise_px: noise cap in 1024-frame pixels.

    Returns:
        (4,) float32 x0, y0, x1, y1 in the mask frame, clipped to the image; None for an empty mask.
    """
    box = mask_box(mask)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    h, w = mask.shape
    cap = max_noise_px / frame_scale
    sx = min(0.1 * (x1 - x0 + 1), cap)
    sy = min(0.1 * (y1 - y0 + 1), cap)
    noise = rng.normal(0.0, 1.0, size=4) * np.array([sx, sy, sx, sy])
    noise = np.clip(noise, -2 * cap, 2 * cap)
    out = np.array([x0, y0, x1, y1], dtype=np.float32) + noise.astype(np.float32)
    out[[0, 2]] = np.clip(np.sort(out[[0, 2]]), 0, w - 1)
    out[[1, 3]] = np.clip(np.sort(out[[1, 3]]), 0, h - 1)
    return out


def next_click(
    rng: np.random.Generator, pred: np.ndarray, gt: np.ndarray, mode: ClickMode = "sample"
) -> Click | None:
    """The next corrective click for prediction ``pred`` against ground truth ``gt``.

    Args:
        rng: random generator (used by ``mode="sample"`` and to break exact ties).
        pred: (H, W) bool predicted mask.
        gt: (H, W) bool ground-truth mask, same frame.
        mode: ``"sample"`` draws uniformly from the whole error region (SAM's training recipe);
            ``"center"`` takes the larger error region (by distance to its boundary) and clicks its
            innermost pixel (the NoC evaluation protocol).

    Returns:
        A ``Click``: positive inside a false-negative region, negative inside a false-positive region;
        None when the prediction is already exact.
    """
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt must have the same shape, got {pred.shape} and {gt.shape}")
    fn = gt & ~pred
    fp = pred & ~gt
    if mode == "sample":
        error = fn | fp
        point = sample_point(rng, error)
        if point is None:
            return None
        x, y = point
        return Click(x=x, y=y, positive=bool(fn[y, x]))
    if mode != "center":
        raise ValueError(f"unknown click mode {mode!r}; use 'sample' or 'center'")
    if not (fn.any() or fp.any()):
        return None
    dist_fn = distance_to_boundary(fn)
    dist_fp = distance_to_boundary(fp)
    positive = bool(dist_fn.max() >= dist_fp.max())
    dist = dist_fn if positive else dist_fp
    ys, xs = np.nonzero(dist == dist.max())
    i = int(rng.integers(len(xs))) if len(xs) > 1 else 0
    return Click(x=int(xs[i]), y=int(ys[i]), positive=positive)
