"""SAM's training losses.

Mask loss = 20 * focal + 1 * dice on mask logits, and the IoU head is regressed with MSE onto the IoU
the predicted mask actually reaches (Kirillov et al., "Segment Anything", sec. 3 and appendix A).
All functions take logits and targets in the same frame (the trainer uses the 256x256 low-res frame)
and reduce over pixels, returning one value per mask so the trainer can pick the best of several
candidates before averaging.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "DICE_WEIGHT",
    "FOCAL_WEIGHT",
    "MaskLosses",
    "dice_loss",
    "grouping_loss",
    "leaf_labels",
    "mask_iou",
    "mask_losses",
    "sigmoid_focal_loss",
]

FOCAL_WEIGHT = 20.0
DICE_WEIGHT = 1.0


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Focal loss (Lin et al. 2017) on logits, averaged over the pixels of each mask.

    Args:
        logits: (..., H, W) mask logits.
        targets: (..., H, W) {0, 1} float targets, same shape.
        alpha: weight of the positive class (1 - alpha for the negatives); a negative value disables it.
        gamma: focusing exponent.

    Returns:
        (...) per-mask mean focal loss.
    """
    prob = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.flatten(-2).mean(-1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft dice loss ``1 - (2|P.T| + s) / (|P| + |T| + s)`` with P = sigmoid(logits).

    Args:
        logits: (..., H, W) mask logits.
        targets: (..., H, W) {0, 1} float targets.
        smooth: additive smoothing that keeps empty masks finite.

    Returns:
        (...) per-mask dice loss in [0, 1).
    """
    prob = torch.sigmoid(logits).flatten(-2)
    t = targets.flatten(-2)
    num = 2 * (prob * t).sum(-1) + smooth
    den = prob.sum(-1) + t.sum(-1) + smooth
    return 1 - num / den


def mask_iou(logits: torch.Tensor, targets: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """IoU of the binarised prediction ``logits > threshold`` with the targets (no gradient).

    Args:
        logits: (..., H, W) mask logits.
        targets: (..., H, W) {0, 1} targets.

    Returns:
        (...) IoU in [0, 1]; two empty masks count as IoU 1.
    """
    with torch.no_grad():
        pred = (logits > threshold).flatten(-2)
        t = targets.flatten(-2) > 0.5
        inter = (pred & t).sum(-1).float()
        union = (pred | t).sum(-1).float()
        return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


@dataclass
class MaskLosses:
    """Per-mask loss terms, each of shape (...)."""

    focal: torch.Tensor
    dice: torch.Tensor
    iou_mse: torch.Tensor
    iou: torch.Tensor  # actual IoU of the prediction, no gradient

    @property
    def mask(self) -> torch.Tensor:
        """The weighted mask loss ``20 * focal + dice``."""
        return FOCAL_WEIGHT * self.focal + DICE_WEIGHT * self.dice

    @property
    def total(self) -> torch.Tensor:
        """Mask loss plus the IoU-head MSE."""
        return self.mask + self.iou_mse


def mask_losses(logits: torch.Tensor, targets: torch.Tensor, iou_pred: torch.Tensor) -> MaskLosses:
    """All of SAM's loss terms for a batch of candidate masks.

    Args:
        logits: (B, C, H, W) mask logits, C candidates per prompt.
        targets: (B, 1, H, W) or (B, C, H, W) {0, 1} targets in the same frame.
        iou_pred: (B, C) predicted IoU from the IoU head.

    Returns:
        ``MaskLosses`` with (B, C) terms; the IoU target is detached so the IoU head does not push
        the masks.
    """
    if logits.dim() != 4 or iou_pred.shape != logits.shape[:2]:
        raise ValueError(
            f"expected logits (B, C, H, W) and iou_pred (B, C), got {tuple(logits.shape)} and "
            f"{tuple(iou_pred.shape)}"
        )
    t = targets.to(logits.dtype).expand_as(logits)
    iou = mask_iou(logits, t)
    return MaskLosses(
        focal=sigmoid_focal_loss(logits, t),
        dice=dice_loss(logits, t),
        iou_mse=(iou_pred - iou) ** 2,
        iou=iou,
    )


def leaf_labels(masks: np.ndarray) -> np.ndarray:
    """The finest instance under each pixel: (K, H, W) bool masks -> (H, W) int64, 0 for background.

    Where instances nest (a part inside its whole) the smallest one wins, so the label map is the
    scene's partition into leaf parts; label ``k + 1`` is instance ``k``.
    """
    k, h, w = masks.shape
    labels = np.zeros((h, w), dtype=np.int64)
    if k == 0:
        return labels
    areas = masks.reshape(k, -1).sum(1)
    # paint the largest first so smaller (nested) instances overwrite their parents
    for i in np.argsort(-areas, kind="stable"):
        labels[masks[i]] = i + 1
    return labels


def grouping_loss(
    embedding: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor, margin: float = 0.2
) -> torch.Tensor:
    """A pull/push loss on the image embedding: cells of one leaf part alike, of different parts apart.

    An auxiliary term for training an image encoder from scratch (not part of SAM's recipe): SAM's
    decoder selects pixels by a dot product between a prompt-derived vector and per-pixel features,
    which is easy to learn once the features of one object already point the same way. Cosine
    similarity of each pair of cells is pulled to 1 for pairs of the same part and pushed below
    ``margin`` for pairs of different parts; both sides are averaged separately so that a few large
    regions do not drown the rest.

    Args:
        embedding: (C, G, G) image embedding of one image.
        labels: (G, G) int64 leaf label of each cell.
        valid: (G, G) bool, cells that lie on the image and inside a single part.

    Returns:
        scalar loss (0 when there are fewer than two parts among the valid cells).
    """
    feats = embedding.flatten(1).T[valid.flatten()]  # (N, C)
    lab = labels.flatten()[valid.flatten()]
    if feats.shape[0] < 2 or int(lab.unique().numel()) < 2:
        return embedding.sum() * 0.0
    z = F.normalize(feats.float(), dim=1)
    sim = z @ z.T
    same = lab[:, None] == lab[None, :]
    eye = torch.eye(len(lab), dtype=torch.bool)
    pos = same & ~eye
    neg = ~same
    pull = (1 - sim)[pos].mean() if bool(pos.any()) else sim.new_zeros(())
    push = F.relu(sim - margin)[neg].mean()
    return pull + push
