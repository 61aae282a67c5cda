"""Stand-ins for the torchvision names the official SAM packages import.

The official packages (test-time referees only) import torchvision, which does not load next to the CPU
torch here. :func:`install_torchvision_stub` puts a small ``torchvision`` into ``sys.modules`` with
exactly the names they use: ``transforms.functional.resize`` / ``to_pil_image`` (Pillow bilinear, as
torchvision does for PIL images) and ``ops.boxes.batched_nms`` / ``box_area`` (plain torch).
"""

from __future__ import annotations

import sys
import types
from typing import Any

import numpy as np
import torch
from PIL import Image


def _module(name: str) -> types.ModuleType:
    mod = sys.modules.get(name)
    if mod is None:
        mod = types.ModuleType(name)
        sys.modules[name] = mod
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(_module(parent), child, mod)
    return mod


def _to_pil_image(pic: Any) -> Image.Image:
    arr = np.asarray(pic)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise TypeError(f"stub to_pil_image takes HxWx3 uint8, got {arr.shape} {arr.dtype}")
    return Image.fromarray(arr, mode="RGB")


def _resize(img: Image.Image, size: list[int] | tuple[int, int]) -> Image.Image:
    h, w = size
    return img.resize((w, h), Image.Resampling.BILINEAR)


def _box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """Greedy NMS per category (torchvision semantics: keep indices sorted by decreasing score)."""
    order = torch.argsort(scores, descending=True)
    keep: list[int] = []
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    area = _box_area(boxes)
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        lt = torch.maximum(boxes[i, :2], boxes[:, :2])
        rb = torch.minimum(boxes[i, 2:], boxes[:, 2:])
        inter = (rb - lt).clamp(min=0).prod(dim=1)
        iou = inter / (area[i] + area - inter)
        suppressed |= (iou > iou_threshold) & (idxs == idxs[i])
    return torch.tensor(keep, dtype=torch.long)


def install_torchvision_stub() -> None:
    """Provide the torchvision names the official SAM packages import (no-op for names already there)."""
    functional = _module("torchvision.transforms.functional")
    if not hasattr(functional, "resize"):
        functional.resize = _resize  # type: ignore[attr-defined]
        functional.to_pil_image = _to_pil_image  # type: ignore[attr-defined]
    boxes = _module("torchvision.ops.boxes")
    if not hasattr(boxes, "batched_nms"):
        boxes.batched_nms = _batched_nms  # type: ignore[attr-defined]
        boxes.box_area = _box_area  # type: ignore[attr-defined]
