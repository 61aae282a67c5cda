"""Helpers of the export tests: a PyTorch reference written against the model's public API only
(prompt encoder, mask decoder, postprocess_masks), independent of the export code."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from clicksam.export.decoder import DEFAULT_CONFIGS
from clicksam.formats import Manifest
from clicksam.model import Sam

# fp32 low-res variant: the browser interface without the lossy choices, held to the fp32 tolerances
BROWSER_FP32 = replace(
    DEFAULT_CONFIGS["browser"],
    graph=replace(DEFAULT_CONFIGS["browser"].graph, embedding_float16=False),
    weights_float16=False,
)


@dataclass(frozen=True)
class Exported:
    """A session-wide export of the perturbed test model (see the ``exported`` fixture)."""

    sam: Sam
    out_dir: Path
    manifest: Manifest


@torch.no_grad()
def torch_reference(
    sam: Sam,
    embedding: torch.Tensor,
    clicks: np.ndarray | None,
    labels: np.ndarray | None,
    box: np.ndarray | None,
    mask_input: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """All four mask tokens from the PyTorch model: low-res logits (1, 4, 256, 256), IoU (1, 4)."""
    points = None
    if clicks is not None and labels is not None:
        points = (
            torch.tensor(clicks, dtype=torch.float32)[None],
            torch.tensor(labels, dtype=torch.float32)[None],
        )
    boxes = torch.tensor(box, dtype=torch.float32)[None] if box is not None else None
    masks = torch.tensor(mask_input) if mask_input is not None else None
    sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=masks)
    pe = sam.prompt_encoder.get_dense_pe()
    single, iou_single = sam.mask_decoder(embedding, pe, sparse, dense, multimask_output=False)
    multi, iou_multi = sam.mask_decoder(embedding, pe, sparse, dense, multimask_output=True)
    low = torch.cat([single, multi], dim=1).numpy()
    iou = torch.cat([iou_single, iou_multi], dim=1).numpy()
    return low, iou


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)
