"""Interactive segmentation metrics: mIoU after 1/3/5 clicks, box mIoU, NoC@85/90.

The protocol of the interactive segmentation literature (e.g. RITM, SimpleClick), on top of the public
``SamPredictor`` API, so it measures exactly what a user of the page gets:

- every instance of every image is segmented separately; the image is encoded once;
- click 1 is placed at the object's innermost pixel (largest distance to its boundary); each further
  click at the innermost pixel of the larger error region, positive in a missed region, negative in a
  spilled one (``prompts.next_click(mode="center")``);
- click 1 asks for the three multimask candidates and keeps the one with the highest predicted IoU
  (what the page shows); later clicks use the single-mask output with the previous low-res logits as
  ``mask_input``;
- IoU is measured in the original image frame; NoC@t is the number of clicks until IoU >= t, counted as
  ``max_clicks`` when never reached;
- box mIoU: the tight ground-truth box, single-mask output;
- ``oracle@1``: the 1-click mIoU if the best of the three candidates were always shown first (SAM's
  "oracle" number). Its gap to ``miou@1`` is what a better ranking by the IoU head could win; the rest
  of the gap to 1.0 is mask quality.

The same metrics are also broken down by instance size (area as a fraction of the image, see
:data:`AREA_BUCKETS`): a model can look fine on average and fail on every large object.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from clicksam.model import Sam, SamPredictor
from clicksam.model.frames import apply_boxes_torch, apply_coords_torch

from .data import InstanceSource, instance_codes
from .prompts import mask_box, next_click

__all__ = [
    "AREA_BUCKETS",
    "HELD_OUT_SEED",
    "EvalConfig",
    "evaluate",
    "evaluate_image",
    "format_breakdown",
    "format_table",
]

logger = logging.getLogger(__name__)

#: seed of the held-out procedural set; training runs use small seeds (the demo model used 2)
HELD_OUT_SEED = 1_000_003

#: instance-size buckets of the breakdown: (name, low, high) of the mask area / image area
AREA_BUCKETS = (
    ("small (<0.5%)", 0.0, 0.005),
    ("medium (0.5-5%)", 0.005, 0.05),
    ("large (5-15%)", 0.05, 0.15),
    ("huge (>15%)", 0.15, 1.01),
)


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate on.

    Attributes:
        data: ``"scenes"`` or the path of a COCO instances JSON.
        image_dir: COCO image folder (default: the JSON's folder).
        seed: procedural set seed (``HELD_OUT_SEED`` for the reported numbers).
        images: how many images (the first N of the set).
        max_clicks: click budget for NoC.
        scene_long_side: long side of the procedural scenes.
        click_seed: seeds tie-breaking between equally deep click positions.
        oracle_embedding: a diagnostic for decoders trained with ``--oracle-embedding``: feed them
            ground-truth instance codes (:func:`~clicksam.train.data.instance_codes`) in place of
            the image encoder's embedding.
    """

    data: str = "scenes"
    image_dir: str | None = None
    seed: int = HELD_OUT_SEED
    images: int = 100
    max_clicks: int = 20
    scene_long_side: int = 256
    click_seed: int = 0
    oracle_embedding: bool = False


def _iou(pred: np.ndarray, gt: np.ndarray) -> float:
    union = np.logical_or(pred, gt).sum()
    return float(np.logical_and(pred, gt).sum() / union) if union else 1.0


@torch.no_grad()
def evaluate_image(
    predictor: SamPredictor,
    image: np.ndarray,
    gts: np.ndarray,
    max_clicks: int,
    rng: np.random.Generator,
    oracle_embedding: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Click and box IoUs for every instance of one image.

    Args:
        predictor: a predictor over the model to evaluate.
        image: (H, W, 3) uint8 RGB, original frame.
        gts: (K, H, W) bool ground-truth masks, original frame.
        max_clicks: clicks per instance (clicking stops early once an instance has had 5 clicks and
            reached 90% IoU; later entries then repeat its last IoU).
        rng: breaks ties between equally deep click positions (and draws the oracle codes).
        oracle_embedding: replace the image embedding by ground-truth instance codes of ``gts``.

    Returns:
        click IoUs (K, max_clicks) (entry c is the IoU after c + 1 clicks), box IoUs (K,) and the
        best first-click candidate's IoU (K,).
    """
    model = predictor.model
    predictor.set_image(image)
    k = gts.shape[0]
    original_size = (int(image.shape[0]), int(image.shape[1]))
    long_side = model.image_size
    if oracle_embedding:
        grid = model.prompt_encoder.image_embedding_size[0]
        predictor.features = instance_codes(gts, original_size, long_side, grid, rng)

    boxes_np = np.array([mask_box(g) for g in gts], dtype=np.float32)  # (K, 4) xyxy, original frame
    boxes = apply_boxes_torch(torch.from_numpy(boxes_np), original_size, long_side)
    box_masks, _, _ = predictor.predict_torch(None, None, boxes=boxes, multimask_output=False)
    box_ious = np.array([_iou(box_masks[i, 0].numpy(), gts[i]) for i in range(k)])

    ious = np.zeros((k, max_clicks))
    preds = np.zeros_like(gts)
    coords = np.zeros((k, 0, 2), dtype=np.float32)  # original frame
    labels = np.zeros((k, 0), dtype=np.int64)
    prev_logits = torch.zeros((k, 1, *model.prompt_encoder.mask_input_size))
    active = np.ones(k, dtype=bool)
    oracle = np.zeros(k)
    for c in range(max_clicks):
        new = np.zeros((k, 1, 2), dtype=np.float32)
        new_label = np.full((k, 1), -1, dtype=np.int64)  # padding when the mask is already exact
        for i in np.flatnonzero(active):
            click = next_click(rng, preds[i], gts[i], mode="center")
            if click is not None:
                new[i, 0] = (click.x, click.y)
                new_label[i, 0] = click.label
        coords = np.concatenate([coords, new], axis=1)
        labels = np.concatenate([labels, new_label], axis=1)
        idx = np.flatnonzero(active)
        pts = apply_coords_torch(torch.from_numpy(coords[idx]), original_size, long_side)
        masks, scores, low_res = predictor.predict_torch(
            pts,
            torch.from_numpy(labels[idx]).int(),
            mask_input=None if c == 0 else prev_logits[idx],
            multimask_output=c == 0,
        )
        if c == 0:
            oracle = np.array([max(_iou(m.numpy(), gts[i]) for m in masks[j]) for j, i in enumerate(idx)])
        best = scores.argmax(dim=1)
        pick = torch.arange(len(idx))
        prev_logits[idx] = low_res[pick, best][:, None]
        chosen = masks[pick, best].numpy()
        for j, i in enumerate(idx):
            preds[i] = chosen[j]
            ious[i, c] = _iou(chosen[j], gts[i])
        for i in np.flatnonzero(~active):
            ious[i, c] = ious[i, c - 1]
        if c + 1 >= 5:
            active &= ious[:, c] < 0.9
        if not active.any():
            ious[:, c + 1 :] = ious[:, c : c + 1]
            break
    return ious, box_ious, oracle


def _noc(ious: np.ndarray, threshold: float, max_clicks: int) -> float:
    reached = ious >= threshold
    first = np.where(reached.any(axis=1), reached.argmax(axis=1) + 1, max_clicks)
    return float(first.mean())


def _summary(
    ious: np.ndarray, box: np.ndarray, oracle: np.ndarray, max_clicks: int
) -> dict[str, float | int]:
    """The metrics of a set of instances: per-click IoUs (N, max_clicks), box IoUs (N,) and the best
    first-click candidates' IoUs (N,)."""
    return {
        "instances": int(ious.shape[0]),
        "miou@1": float(ious[:, 0].mean()),
        "oracle@1": float(oracle.mean()),
        "miou@3": float(ious[:, min(2, max_clicks - 1)].mean()),
        "miou@5": float(ious[:, min(4, max_clicks - 1)].mean()),
        "box_miou": float(box.mean()),
        "noc@85": _noc(ious, 0.85, max_clicks),
        "noc@90": _noc(ious, 0.90, max_clicks),
    }


def evaluate(
    model: Sam, cfg: EvalConfig | None = None, source: InstanceSource | None = None, progress: bool = False
) -> dict[str, Any]:
    """Run the protocol over ``cfg.images`` images; returns the metrics table as a dict."""
    from tqdm import tqdm

    cfg = cfg or EvalConfig()
    if source is None:
        if cfg.data == "scenes":
            from .scenes import ProceduralScenes, SceneConfig

            source = ProceduralScenes(cfg.seed, SceneConfig(long_side=cfg.scene_long_side))
        else:
            from .coco import CocoInstances

            source = CocoInstances(cfg.data, cfg.image_dir)
    n = min(cfg.images, len(source))
    if n < 1:
        raise ValueError("evaluation needs at least one image")
    model.eval()
    predictor = SamPredictor(model)
    rng = np.random.default_rng(cfg.click_seed)
    all_clicks: list[np.ndarray] = []
    all_boxes: list[np.ndarray] = []
    all_oracle: list[np.ndarray] = []
    all_areas: list[np.ndarray] = []
    # images without a usable instance are skipped; look further (bounded) so that n images count
    index, limit = 0, min(len(source), 10 * n)
    with tqdm(total=n, disable=not progress, desc="eval", mininterval=5) as bar:
        while len(all_clicks) < n and index < limit:
            item = source[index]
            index += 1
            if item.masks.shape[0] == 0:
                continue
            clicks, boxes, oracle = evaluate_image(
                predictor, item.image, item.masks.astype(bool), cfg.max_clicks, rng, cfg.oracle_embedding
            )
            all_clicks.append(clicks)
            all_boxes.append(boxes)
            all_oracle.append(oracle)
            all_areas.append(item.masks.astype(bool).mean(axis=(1, 2)))
            bar.update(1)
    if not all_clicks:
        raise ValueError(f"none of the first {limit} images has an instance to evaluate")
    n = len(all_clicks)
    ious = np.concatenate(all_clicks)
    box = np.concatenate(all_boxes)
    best = np.concatenate(all_oracle)
    areas = np.concatenate(all_areas)
    by_area = {}
    for name, low, high in AREA_BUCKETS:
        sel = (areas >= low) & (areas < high)
        if sel.any():
            by_area[name] = _summary(ious[sel], box[sel], best[sel], cfg.max_clicks)
    return {
        "data": cfg.data
        if cfg.data != "scenes"
        else f"scenes(seed={cfg.seed}, long_side={cfg.scene_long_side})",
        "images": n,
        **({"oracle_embedding": True} if cfg.oracle_embedding else {}),
        **_summary(ious, box, best, cfg.max_clicks),
        "max_clicks": cfg.max_clicks,
        "by_area": by_area,
    }


def format_table(metrics: dict[str, Any]) -> str:
    """The metrics as a Markdown table."""
    keys = ["miou@1", "miou@3", "miou@5", "box_miou", "noc@85", "noc@90", "oracle@1"]
    head = "| " + " | ".join(["data", "images", "instances", *keys]) + " |"
    sep = "|" + "---|" * (3 + len(keys))
    vals = [str(metrics["data"]), str(metrics["images"]), str(metrics["instances"])]
    vals += [
        f"{float(metrics[k]):.3f}" if k.startswith(("miou", "box", "oracle")) else f"{float(metrics[k]):.2f}"
        for k in keys
    ]
    return "\n".join([head, sep, "| " + " | ".join(vals) + " |"])


def format_breakdown(metrics: dict[str, Any]) -> str:
    """The per-size metrics (``metrics["by_area"]``) as a Markdown table."""
    head = "| instance area | instances | miou@1 | miou@5 | box_miou | noc@90 | oracle@1 |"
    rows = [head, "|" + "---|" * 7]
    for name, m in metrics.get("by_area", {}).items():
        rows.append(
            f"| {name} | {m['instances']} | {m['miou@1']:.3f} | {m['miou@5']:.3f} | "
            f"{m['box_miou']:.3f} | {m['noc@90']:.2f} | {m['oracle@1']:.3f} |"
        )
    return "\n".join(rows)
