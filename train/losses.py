"""SAM's training losses.

Mask loss = 20 * focal + 1 * dice on mask logits, and the IoU head is regressed with MSE onto the IoU
the predicted mask actually reaches (Kirillov et al., "Segment Anything", sec. 3 and appendix A).
All functions take logits and targets in the same frame (the trainer uses the 256x256 low-res frame)
and reduce over pixels, returning one value per mask so the trainer can pick the best of several
candidates before averaging.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "DICE_WEIGHT",
    "FOCAL_WEIGHT",
    "MaskLosses",
    "dice_loss",
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
