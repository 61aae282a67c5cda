"""Hiera, SAM 2.1's image trunk: a four-stage multi-scale transformer with query pooling.

Input (B, 3, S, S) normalised RGB (S = 1024 for the official models); a 7x7 stride-4 patch embedding
gives a (B, S/4, S/4, C) token grid, and each later stage halves the grid (2x2 max pooling of the
queries in its first block) and doubles the width. Blocks attend inside non-overlapping windows
(padded at the bottom/right when the grid is not a multiple of the window) or, for the blocks listed
in ``global_att_blocks``, over the whole grid. Outputs: one (B, C_i, S/(4*2^i), S/(4*2^i)) map per
stage, highest resolution first.

Attribute names are the official ones (``sam2.modeling.backbones.hieradet``), so the keys of an
official checkpoint's ``image_encoder.trunk.*`` load unchanged. Tokens travel channels-last,
(B, H, W, C), as in the official code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .common import attention, linear

__all__ = [
    "Hiera",
    "HieraConfig",
    "MultiScaleAttention",
    "MultiScaleBlock",
    "PatchEmbed",
    "window_partition",
    "window_unpartition",
]


@dataclass(frozen=True)
class HieraConfig:
    """Hiera hyper-parameters, named after the official constructor's arguments."""

    embed_dim: int = 96
    num_heads: int = 1
    stages: tuple[int, ...] = (2, 3, 16, 3)
    global_att_blocks: tuple[int, ...] = (12, 16, 20)
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (14, 14)
    window_spec: tuple[int, ...] = (8, 4, 14, 7)
    q_pool: int = 3
    q_stride: tuple[int, int] = (2, 2)
    dim_mul: float = 2.0
    head_mul: float = 2.0

    @property
    def channel_list(self) -> tuple[int, ...]:
        """Widths of the stage outputs, lowest resolution first (the FPN neck's order)."""
        dims = [self.embed_dim]
        for _ in self.stages[1:]:
            dims.append(int(dims[-1] * self.dim_mul))
        return tuple(reversed(dims))


def window_partition(x: torch.Tensor, window_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, H, W, C) -> (B * nW, ws, ws, C) windows, zero-padding H and W up to multiples of ``ws``.

    Returns the windows and the padded size (Hp, Wp).
    """
    b, h, w, c = x.shape
    pad_h = (window_size - h % window_size) % window_size
    pad_w = (window_size - w % window_size) % window_size
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window_size, window_size, wp // window_size, window_size, c)
    windows = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, c)
    return windows, (hp, wp)


def window_unpartition(
    windows: torch.Tensor, window_size: int, pad_hw: tuple[int, int], hw: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * nW, ws, ws, C) -> (B, H, W, C), padding dropped."""
    hp, wp = pad_hw
    h, w = hw
    b = windows.shape[0] // (hp * wp // window_size // window_size)
    x = windows.reshape(b, hp // window_size, wp // window_size, window_size, window_size, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    if hp > h or wp > w:
        x = x[:, :h, :w, :]
    return x


def _pool(x: torch.Tensor, stride: tuple[int, int] | None) -> torch.Tensor:
    """2D max pooling of a channels-last (B, H, W, C) map by ``stride`` (no-op for None)."""
    if stride is None:
        return x
    pooled = F.max_pool2d(x.permute(0, 3, 1, 2), kernel_size=stride, stride=stride)
    return pooled.permute(0, 2, 3, 1)


class PatchEmbed(nn.Module):
    """7x7 stride-4 convolution: (B, 3, S, S) -> (B, S/4, S/4, C) channels-last tokens."""

    def __init__(self, *, embed_dim: int, in_chans: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class MultiScaleAttention(nn.Module):
    """Multi-head self-attention whose queries may be max-pooled (the first block of a stage)."""

    def __init__(self, dim: int, dim_out: int, num_heads: int, q_stride: tuple[int, int] | None) -> None:
        """
        Args:
            dim: input width; dim_out: output width (and width of q, k, v).
            num_heads: heads; q_stride: pooling of the query grid, or None.
        """
        super().__init__()
        self.dim = dim
        self.dim_out = dim_out
        self.num_heads = num_heads
        self.q_stride = q_stride
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, dim) -> (B, H', W', dim_out); H' = H / q_stride (or H)."""
        b, h, w, _ = x.shape
        heads = self.num_heads
        qkv = linear(x, self.qkv).reshape(b, h * w, 3, heads, -1)  # (B, HW, 3, heads, d)
        q, k, v = qkv.unbind(2)
        if self.q_stride is not None:
            q = _pool(q.reshape(b, h, w, -1), self.q_stride)
            h, w = q.shape[1], q.shape[2]
            q = q.reshape(b, h * w, heads, -1)
        out = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))  # (B, heads, H'W', d)
        out = out.transpose(1, 2).reshape(b, h, w, -1)
        return linear(out, self.proj)


class HieraMLP(nn.Module):
    """Two linear layers with exact GELU between: (..., dim) -> (..., dim); keys ``layers.0/1``."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(dim, hidden_dim), nn.Linear(hidden_dim, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = self.layers
        assert isinstance(first, nn.Linear) and isinstance(second, nn.Linear)
        return linear(linear(x, first, "gelu"), second)


class MultiScaleBlock(nn.Module):
    """Pre-norm transformer block on (B, H, W, C): (pooled) windowed or global attention, then MLP."""

    def __init__(
        self,
        *,
        dim: int,
        dim_out: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        q_stride: tuple[int, int] | None = None,
        window_size: int = 0,
    ) -> None:
        """
        Args:
            dim: input width; dim_out: output width (differs in a stage's first block).
            num_heads: attention heads.
            mlp_ratio: MLP hidden width over dim_out.
            q_stride: query pooling (a stage's first block), or None.
            window_size: attention window side before pooling; 0 means global attention.
        """
        super().__init__()
        self.dim = dim
        self.dim_out = dim_out
        self.window_size = window_size
        self.q_stride = q_stride
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiScaleAttention(dim, dim_out, num_heads=num_heads, q_stride=q_stride)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = HieraMLP(dim_out, int(dim_out * mlp_ratio))
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, dim) -> (B, H', W', dim_out)."""
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:
            shortcut = _pool(linear(x, self.proj), self.q_stride)

        window_size = self.window_size
        h, w = x.shape[1], x.shape[2]
        pad_hw = (h, w)
        if window_size > 0:
            x, pad_hw = window_partition(x, window_size)
        x = self.attn(x)
        if self.q_stride is not None:
            # the windows shrank with the pooled queries
            window_size = self.window_size // self.q_stride[0]
            h, w = shortcut.shape[1], shortcut.shape[2]
            if window_size > 0:
                pad_hw = (
                    h + (window_size - h % window_size) % window_size,
                    w + (window_size - w % window_size) % window_size,
                )
        if self.window_size > 0:
            x = window_unpartition(x, window_size, pad_hw, (h, w))

        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class Hiera(nn.Module):
    """The Hiera trunk (https://arxiv.org/abs/2306.00989) with windowed absolute position embeddings."""

    def __init__(self, config: HieraConfig) -> None:
        super().__init__()
        if len(config.stages) != len(config.window_spec):
            raise ValueError("HieraConfig.stages and window_spec must have one entry per stage")
        self.config = config
        self.window_spec = config.window_spec
        depth = sum(config.stages)
        self.stage_ends = [sum(config.stages[:i]) - 1 for i in range(1, len(config.stages) + 1)]
        self.q_pool_blocks = [end + 1 for end in self.stage_ends[:-1]][: config.q_pool]
        self.global_att_blocks = config.global_att_blocks

        self.patch_embed = PatchEmbed(embed_dim=config.embed_dim)
        self.pos_embed = nn.Parameter(
            torch.zeros(1, config.embed_dim, *config.window_pos_embed_bkg_spatial_size)
        )
        self.pos_embed_window = nn.Parameter(
            torch.zeros(1, config.embed_dim, config.window_spec[0], config.window_spec[0])
        )

        embed_dim, num_heads, cur_stage = config.embed_dim, config.num_heads, 1
        self.blocks = nn.ModuleList()
        for i in range(depth):
            dim_out = embed_dim
            # the window lags a block: a stage's first block partitions with the previous stage's window
            window_size = 0 if i in config.global_att_blocks else config.window_spec[cur_stage - 1]
            if i - 1 in self.stage_ends:
                dim_out = int(embed_dim * config.dim_mul)
                num_heads = int(num_heads * config.head_mul)
                cur_stage += 1
            self.blocks.append(
                MultiScaleBlock(
                    dim=embed_dim,
                    dim_out=dim_out,
                    num_heads=num_heads,
                    q_stride=config.q_stride if i in self.q_pool_blocks else None,
                    window_size=window_size,
                )
            )
            embed_dim = dim_out
        self.channel_list = list(config.channel_list)
        # (key, table) of the last position embedding computed without autograd; see _get_pos_embed
        self._pos_cache: tuple[tuple[object, ...], torch.Tensor] | None = None

    def _get_pos_embed(self, hw: tuple[int, int]) -> torch.Tensor:
        """(1, h, w, C): the background embedding resized (bicubic) to the grid + the tiled window one.

        Without autograd the result is kept for the next call with the same grid and the same weights
        (the key holds both parameters' version counters and storages, so loading or editing the
        weights computes it anew: never a stale table).
        """
        h, w = hw
        cacheable = not (torch.is_grad_enabled() and self.pos_embed.requires_grad)
        key = (
            h,
            w,
            self.pos_embed.device,
            self.pos_embed.dtype,
            self.pos_embed._version,
            self.pos_embed_window._version,
            self.pos_embed.data_ptr(),
            self.pos_embed_window.data_ptr(),
        )
        if cacheable and self._pos_cache is not None and self._pos_cache[0] == key:
            return self._pos_cache[1]
        pos_embed = F.interpolate(self.pos_embed, size=(h, w), mode="bicubic")
        window = self.pos_embed_window
        reps = [a // b for a, b in zip(pos_embed.shape, window.shape, strict=True)]
        pos_embed = (pos_embed + window.tile(reps)).permute(0, 2, 3, 1)
        if cacheable and not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export():
            self._pos_cache = (key, pos_embed.detach())
        return pos_embed

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, S, S) -> one (B, C_i, H_i, W_i) map per stage, highest resolution first."""
        x = self.patch_embed(x)  # (B, S/4, S/4, C)
        x = x + self._get_pos_embed((x.shape[1], x.shape[2]))
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.stage_ends:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs
