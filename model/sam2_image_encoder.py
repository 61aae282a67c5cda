"""SAM 2.1's image encoder: the Hiera trunk plus the FPN neck that maps its stages to 256 channels.

For an (B, 3, 1024, 1024) input the trunk gives four maps (strides 4, 8, 16, 32); the neck projects
each to ``d_model`` (256) channels with a 1x1 convolution and adds the nearest-upsampled coarser level
to the levels in ``fpn_top_down_levels`` (the two coarsest). ``scalp=1`` then drops the stride-32
level, leaving three: (B, 256, 256, 256), (B, 256, 128, 128), (B, 256, 64, 64), highest resolution
first. The neck's sine position encodings only feed the video memory and are not computed here.

Attribute names are the official ones (``image_encoder.trunk.*``, ``image_encoder.neck.convs.N.conv.*``).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .hiera import Hiera

__all__ = ["FpnNeck", "ImageEncoder"]


class FpnNeck(nn.Module):
    """SAM 2's feature pyramid: lateral 1x1 convolutions + top-down sums on the coarse levels."""

    def __init__(
        self,
        *,
        d_model: int,
        backbone_channel_list: list[int],
        fpn_top_down_levels: tuple[int, ...] = (2, 3),
        fpn_interp_model: str = "nearest",
    ) -> None:
        """
        Args:
            d_model: output channels of every level (256).
            backbone_channel_list: the trunk's stage widths, lowest resolution first.
            fpn_top_down_levels: levels (0 = highest resolution) that also get the coarser level added.
            fpn_interp_model: upsampling mode of the top-down path (SAM 2.1: nearest).
        """
        super().__init__()
        self.d_model = d_model
        self.backbone_channel_list = list(backbone_channel_list)
        self.convs = nn.ModuleList(
            nn.Sequential(OrderedDict(conv=nn.Conv2d(dim, d_model, kernel_size=1)))
            for dim in backbone_channel_list
        )
        self.fpn_top_down_levels = tuple(fpn_top_down_levels)
        self.fpn_interp_model = fpn_interp_model

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Trunk maps (highest resolution first) -> the same number of (B, d_model, H_i, W_i) maps."""
        n = len(self.convs) - 1
        if len(xs) != n + 1:
            raise ValueError(f"the neck takes {n + 1} trunk levels, got {len(xs)}")
        out: list[torch.Tensor] = [xs[0]] * (n + 1)
        prev: torch.Tensor | None = None
        for i in range(n, -1, -1):  # coarse to fine
            lateral = self.convs[n - i](xs[i])
            if i in self.fpn_top_down_levels and prev is not None:
                align = None if self.fpn_interp_model == "nearest" else False
                top_down = F.interpolate(
                    prev.to(torch.float32), scale_factor=2.0, mode=self.fpn_interp_model, align_corners=align
                )
                prev = lateral + top_down
            else:
                prev = lateral
            out[i] = prev
        return out


class ImageEncoder(nn.Module):
    """Trunk + neck, minus the ``scalp`` coarsest levels: (B, 3, S, S) -> list of (B, 256, h, w)."""

    def __init__(self, *, trunk: Hiera, neck: FpnNeck, scalp: int = 1) -> None:
        super().__init__()
        if trunk.channel_list != neck.backbone_channel_list:
            raise ValueError(
                f"trunk widths {trunk.channel_list} differ from the neck's {neck.backbone_channel_list}"
            )
        self.trunk = trunk
        self.neck = neck
        self.scalp = scalp

    def forward(self, sample: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, S, S) normalised RGB -> [(B, 256, S/4, S/4), (B, 256, S/8, S/8), (B, 256, S/16, S/16)]."""
        features = self.neck(self.trunk(sample))
        return features[: len(features) - self.scalp] if self.scalp > 0 else features
