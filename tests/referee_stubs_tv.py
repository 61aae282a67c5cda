"""Scriptable stand-ins for torchvision's tensor ``Resize`` and ``Normalize`` (the sam2 referee scripts
them with ``torch.jit.script``). No ``from __future__ import annotations`` here: TorchScript reads the
annotations at run time."""

import torch
import torch.nn.functional as F
from torch import nn


class Resize(nn.Module):
    """torchvision ``Resize(size)`` applied to a (C, H, W) or (B, C, H, W) float tensor: bilinear,
    ``align_corners=False``, antialiased (torchvision's default for tensors since 0.17)."""

    def __init__(self, size: list[int]) -> None:
        super().__init__()
        self.size: list[int] = [int(size[0]), int(size[1])]

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        batched = img.dim() == 4
        x = img if batched else img.unsqueeze(0)
        out = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        return out if batched else out.squeeze(0)


class Normalize(nn.Module):
    """torchvision ``Normalize(mean, std)``: ``(x - mean) / std`` per channel of a (C, H, W) tensor."""

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.mean: list[float] = [float(m) for m in mean]
        self.std: list[float] = [float(s) for s in std]

    def forward(self, tensor: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
        return (tensor - mean) / std
