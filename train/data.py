"""Training samples: one image with its instance masks, moved into the model's frames.

Sources (``ProceduralScenes``, ``CocoInstances``) give ``(image, masks)`` in the original frame. The
trainer needs the image in the resized-input frame (long side 1024, before padding) and the masks in
the 256x256 low-res frame over the padded square, which is where the decoder's logits live and the loss
is computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from clicksam.model.frames import get_preprocess_shape, resize_to_long_side

__all__ = ["FramedSample", "InstanceSource", "frame_sample", "masks_to_low_res"]


class _HasImageAndMasks(Protocol):
    image: np.ndarray
    masks: np.ndarray


class InstanceSource(Protocol):
    """Anything indexable that gives an object with ``image`` (H, W, 3) uint8 and ``masks`` (K, H, W)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> _HasImageAndMasks: ...


@dataclass
class FramedSample:
    """A sample in the model's frames.

    Attributes:
        image: (1, 3, h, w) float 0-255 RGB in the resized-input frame (max(h, w) == image_size).
        masks: (K, 1, L, L) float {0, 1} targets in the low-res frame (L = 4 * embedding grid = 256).
        valid: (L, L) bool, the part of the low-res frame covered by the image (not padding).
        original_masks: (K, H, W) bool in the original frame.
        original_size: (H, W).
        input_size: (h, w).
    """

    image: torch.Tensor
    masks: torch.Tensor
    valid: torch.Tensor
    original_masks: np.ndarray
    original_size: tuple[int, int]
    input_size: tuple[int, int]


def masks_to_low_res(
    masks: np.ndarray, original_size: tuple[int, int], image_size: int = 1024, low_res: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """Original-frame masks to the low-res frame over the padded square.

    Args:
        masks: (K, H, W) bool in the original frame.
        original_size: (H, W).
        image_size: side of the padded resized-input square (1024).
        low_res: side of the low-res frame (256).

    Returns:
        targets (K, 1, low_res, low_res) float {0, 1} and the valid region (low_res, low_res) bool.
    """
    h, w = get_preprocess_shape(original_size[0], original_size[1], image_size)
    scale = low_res / image_size
    lh, lw = max(1, round(h * scale)), max(1, round(w * scale))
    out = torch.zeros((masks.shape[0], 1, low_res, low_res))
    if masks.shape[0]:
        m = torch.from_numpy(masks.astype(np.float32))[:, None]
        if (masks.shape[1], masks.shape[2]) != (lh, lw):
            # area-weighted resize then majority vote: thin parts survive downscaling as well as they can
            m = (
                F.interpolate(m, (lh, lw), mode="bilinear", align_corners=False, antialias=True) > 0.5
            ).float()
        out[:, :, :lh, :lw] = m
    valid = torch.zeros((low_res, low_res), dtype=torch.bool)
    valid[:lh, :lw] = True
    return out, valid


def frame_sample(
    image: np.ndarray, masks: np.ndarray, image_size: int = 1024, low_res: int = 256
) -> FramedSample:
    """Move an original-frame sample into the model's frames (see :class:`FramedSample`)."""
    resized = resize_to_long_side(image, image_size)
    tensor = torch.from_numpy(resized).permute(2, 0, 1)[None].float()
    original_size = (int(image.shape[0]), int(image.shape[1]))
    targets, valid = masks_to_low_res(masks, original_size, image_size, low_res)
    return FramedSample(
        image=tensor,
        masks=targets,
        valid=valid,
        original_masks=masks.astype(bool),
        original_size=original_size,
        input_size=(int(resized.shape[0]), int(resized.shape[1])),
    )


def instance_codes(
    masks: np.ndarray,
    original_size: tuple[int, int],
    image_size: int,
    grid: int,
    rng: np.random.Generator,
    channels: int = 256,
    norm: float = 4.0,
) -> torch.Tensor:
    """A ground-truth image embedding: each instance (and the background) gets a random unit vector,
    each embedding cell the mix of the vectors of the instances that cover it, weighted by the share
    of the cell they cover (a part inside its whole is covered by both). Cells off the image are 0.

    A diagnostic stand-in for the image encoder: a decoder trained on these codes shows how fast SAM's
    decoder learns when the embedding already separates every object perfectly at cell resolution.

    Args:
        masks: (K, H, W) bool, all instances of the image in the original frame.
        original_size: (H, W).
        image_size: side of the padded resized-input square.
        grid: side of the embedding grid (image_size / 16).
        rng: draws the instance vectors.
        channels: embedding channels.
        norm: length of every on-image cell's vector (4: the scale of an aligned-init encoder).

    Returns:
        (1, channels, grid, grid) float32.
    """
    h, w = get_preprocess_shape(original_size[0], original_size[1], image_size)
    gh, gw = max(1, round(h * grid / image_size)), max(1, round(w * grid / image_size))
    objects = masks.astype(np.float32)
    background = 1.0 - (objects.max(axis=0) if len(objects) else np.zeros(original_size, np.float32))
    cover = torch.from_numpy(np.concatenate([objects, background[None]]))
    share = F.interpolate(cover[None], (gh, gw), mode="area")[0]  # (K + 1, gh, gw)
    vectors = torch.from_numpy(rng.standard_normal((share.shape[0], channels)).astype(np.float32))
    vectors = F.normalize(vectors, dim=1)
    cells = F.normalize(torch.einsum("khw,kc->chw", share, vectors), dim=0) * norm
    out = torch.zeros((1, channels, grid, grid))
    out[0, :, :gh, :gw] = cells
    return out
