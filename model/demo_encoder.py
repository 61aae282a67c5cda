"""A light image encoder for the embedded demo model: convolutions, then two global attention blocks.

It keeps SAM's interface, so the standard prompt encoder, mask decoder, ONNX export and page work
unchanged: input (B, 3, 1024, 1024) normalised and zero-padded (the resized-input frame), output the
(B, 256, 64, 64) image embedding (one cell per 16x16 input pixels). It is small enough to train from
scratch on two CPU cores in about two hours: a patchify stem to the 256x256 grid, ConvNeXt-style
blocks (depthwise 7x7 conv, LayerNorm, pointwise MLP) at 128x128 and 64x64, a few of them dilated,
then two transformer blocks with global self-attention on the 64x64 grid, so a cell in the middle of
a large object can be tied to the object's far edge (the convolutions alone see a few dozen cells),
and a cheap neck to 256 channels (1x1, LayerNorm, depthwise 3x3, 1x1, LayerNorm) in place of SAM's
dense 3x3 neck.

Unlike a ViT, a convolutional stack is translation-equivariant and so tells the decoder nothing about
where a feature is. SAM's decoder only adds positional encodings to attention queries and keys, so it
would have to learn to align them before a click could select anything. Like a ViT's absolute position
embedding, the stride-16 features here get Fourier features of their normalised position in the padded
input square (CoordConv-style, parameter-free and independent of the input size) through a learned 1x1
projection, which makes click-to-mask localisation learnable in a CPU-sized training budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .common import LayerNorm2d

__all__ = ["ConvBlock", "DemoEncoder", "DemoEncoderConfig", "GlobalBlock"]


@dataclass(frozen=True)
class DemoEncoderConfig:
    """Hyper-parameters of :class:`DemoEncoder`.

    Attributes:
        stem_dim: channels after the stride-4 stem (256x256 grid for a 1024 input).
        dims: channels of the stride-8 and stride-16 stages (128x128 and 64x64 grids).
        depths: ConvNeXt blocks per stage.
        dilations: dilation of each stride-16 block's depthwise conv (len == depths[1]).
        mlp_ratio: hidden width of each block's pointwise MLP, relative to its channels.
        coord_freqs: number of octaves of the positional Fourier features (sin and cos of x and y at
            frequencies 1, 2, 4, ... cycles per input side).
        global_depth: transformer blocks (global self-attention + MLP) after the stride-16 conv
            blocks, so every cell can see the whole image (0: a purely local, convolutional encoder).
        global_heads: attention heads of those blocks.
        out_chans: embedding channels (256, what the prompt encoder and mask decoder expect).
    """

    stem_dim: int = 32
    dims: tuple[int, int] = (64, 128)
    depths: tuple[int, int] = (2, 4)
    dilations: tuple[int, ...] = (1, 2, 1, 3)
    mlp_ratio: float = 2.0
    coord_freqs: int = 6
    global_depth: int = 2
    global_heads: int = 4
    out_chans: int = 256


class ConvBlock(nn.Module):
    """ConvNeXt block: depthwise 7x7 (optionally dilated) -> LayerNorm -> 1x1 MLP, residual.

    (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, dim: int, mlp_ratio: float = 2.0, dilation: int = 1) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3 * dilation, dilation=dilation, groups=dim)
        self.norm = LayerNorm2d(dim)
        hidden = int(dim * mlp_ratio)
        self.pwconv1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.pwconv2 = nn.Conv2d(hidden, dim, 1)
        # a small learnable residual scale keeps the randomly initialised stack close to identity
        self.gamma = nn.Parameter(torch.full((dim, 1, 1), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pwconv2(self.act(self.pwconv1(self.norm(self.dwconv(x)))))
        return x + self.gamma * y


class GlobalBlock(nn.Module):
    """Pre-norm transformer block over all cells of the grid: LayerNorm -> multi-head
    self-attention -> residual, LayerNorm -> MLP -> residual (both residuals scaled by a learnable
    per-channel factor that starts at 0.1, like :class:`ConvBlock`).

    (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"{dim} channels do not split into {num_heads} heads")
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.gamma1 = nn.Parameter(torch.full((dim,), 0.1))
        self.gamma2 = nn.Parameter(torch.full((dim,), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        q, k, v = self.qkv(self.norm1(t)).view(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        a = nn.functional.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, C / heads)
        t = t + self.gamma1 * self.proj(a.transpose(1, 2).reshape(b, h * w, c))
        t = t + self.gamma2 * self.mlp(self.norm2(t))
        return t.transpose(1, 2).reshape(b, c, h, w)


class DemoEncoder(nn.Module):
    """(B, 3, 1024, 1024) normalised resized-input frame -> (B, out_chans, 64, 64) embedding."""

    def __init__(self, config: DemoEncoderConfig | None = None, img_size: int = 1024) -> None:
        super().__init__()
        cfg = config or DemoEncoderConfig()
        if len(cfg.dilations) != cfg.depths[1]:
            raise ValueError(
                f"need one dilation per stride-16 block: {cfg.dilations} vs depth {cfg.depths[1]}"
            )
        self.img_size = img_size
        d1, d2 = cfg.dims
        # stride 4: the 1024 input of a 256-px scene is a 4x upsampling, so nothing is lost here
        self.stem = nn.Sequential(nn.Conv2d(3, cfg.stem_dim, 4, stride=4), LayerNorm2d(cfg.stem_dim))
        self.down1 = nn.Sequential(nn.Conv2d(cfg.stem_dim, d1, 2, stride=2), LayerNorm2d(d1))
        self.stage1 = nn.Sequential(*(ConvBlock(d1, cfg.mlp_ratio) for _ in range(cfg.depths[0])))
        self.down2 = nn.Sequential(nn.Conv2d(d1, d2, 2, stride=2), LayerNorm2d(d2))
        self.coord_freqs = cfg.coord_freqs
        self.coord_proj = nn.Conv2d(4 * cfg.coord_freqs, d2, 1)
        self.stage2 = nn.Sequential(*(ConvBlock(d2, cfg.mlp_ratio, dilation=d) for d in cfg.dilations))
        self.global_blocks = nn.Sequential(
            *(GlobalBlock(d2, cfg.global_heads, cfg.mlp_ratio) for _ in range(cfg.global_depth))
        )
        self.neck = nn.Sequential(
            nn.Conv2d(d2, cfg.out_chans, 1, bias=False),
            LayerNorm2d(cfg.out_chans),
            nn.Conv2d(cfg.out_chans, cfg.out_chans, 3, padding=1, groups=cfg.out_chans, bias=False),
            nn.Conv2d(cfg.out_chans, cfg.out_chans, 1, bias=False),
            LayerNorm2d(cfg.out_chans),
        )

    def coord_features(self, h: int, w: int, side: int, like: torch.Tensor) -> torch.Tensor:
        """(1, 4 * coord_freqs, h, w) sin/cos Fourier features of each cell centre's position.

        Positions are normalised by ``side``, the padded input square's side in cells, so a cell
        means the same place of the input at every input size.
        """
        ys = (torch.arange(h, device=like.device, dtype=torch.float32) + 0.5) / side
        xs = (torch.arange(w, device=like.device, dtype=torch.float32) + 0.5) / side
        freqs = (2.0 ** torch.arange(self.coord_freqs, device=like.device, dtype=torch.float32)) * math.pi
        fy = ys[:, None] * freqs[None]  # (h, F)
        fx = xs[:, None] * freqs[None]  # (w, F)
        feats = [
            torch.sin(fy).T[:, :, None].expand(-1, h, w),
            torch.cos(fy).T[:, :, None].expand(-1, h, w),
            torch.sin(fx).T[:, None, :].expand(-1, h, w),
            torch.cos(fx).T[:, None, :].expand(-1, h, w),
        ]
        return torch.cat(feats, dim=0)[None].to(like.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        side = x.shape[-1] // 16  # input side in stride-16 cells (64 for a 1024 input)
        x = self.stem(x)  # (B, stem_dim, 256, 256)
        x = self.stage1(self.down1(x))  # (B, d1, 128, 128)
        x = self.down2(x)  # (B, d2, 64, 64)
        x = x + self.coord_proj(self.coord_features(x.shape[-2], x.shape[-1], side, x))
        x = self.global_blocks(self.stage2(x))  # (B, d2, 64, 64)
        return self.neck(x)  # (B, out_chans, 64, 64)
