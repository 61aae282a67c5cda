"""SAM's ViT image encoder (``vit_b`` / ``vit_l`` / ``vit_h`` and the tiny ``vit_test`` preset).

Shapes for the official configs (``img_size=1024``, ``patch_size=16``)::

    image (B, 3, 1024, 1024), normalised, zero-padded (the resized-input frame)
    patch_embed -> (B, 64, 64, D)       one token per 16x16 pixels, channels last
    + pos_embed    (1, 64, 64, D)       absolute position, learned
    blocks      -> (B, 64, 64, D)       windowed (14x14, grid padded to 70x70) or global attention,
                                        both with decomposed relative positions
    neck        -> (B, 256, 64, 64)     conv 1x1 -> LN2d -> conv 3x3 -> LN2d: the image embedding

Attribute names follow the official module tree so official checkpoints load with ``strict=True``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .common import MLPBlock, attention, linear, neck

__all__ = [
    "Attention",
    "Block",
    "ImageEncoderViT",
    "PatchEmbed",
    "get_rel_pos",
    "rel_pos_bias",
    "rel_pos_terms",
    "window_partition",
    "window_unpartition",
]


def window_partition(x: torch.Tensor, window_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Cut a token grid into non-overlapping square windows, zero-padding the bottom/right edge.

    Args:
        x: (B, H, W, C) tokens.
        window_size: side of a window in tokens.

    Returns:
        windows (B * nWh * nWw, ws, ws, C) in row-major window order, and the padded grid size (Hp, Wp).
    """
    B, H, W, C = x.shape
    pad_h = (window_size - H % window_size) % window_size
    pad_w = (window_size - W % window_size) % window_size
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    Hp, Wp = H + pad_h, W + pad_w
    x = x.view(B, Hp // window_size, window_size, Wp // window_size, window_size, C)
    windows = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, C)
    return windows, (Hp, Wp)


def window_unpartition(
    windows: torch.Tensor, window_size: int, pad_hw: tuple[int, int], hw: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`window_partition`: reassemble windows and crop the padding.

    Args:
        windows: (B * nWh * nWw, ws, ws, C).
        window_size: side of a window in tokens.
        pad_hw: padded grid size (Hp, Wp).
        hw: original grid size (H, W).

    Returns:
        (B, H, W, C) tokens.
    """
    Hp, Wp = pad_hw
    H, W = hw
    B = windows.shape[0] // ((Hp // window_size) * (Wp // window_size))
    x = windows.view(B, Hp // window_size, Wp // window_size, window_size, window_size, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, -1)
    if Hp > H or Wp > W:
        x = x[:, :H, :W, :].contiguous()
    return x


def get_rel_pos(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """Relative-position embeddings for every (query, key) pair along one axis.

    The table has one row per relative offset. When its length does not fit the sizes asked for (a
    checkpoint trained at another resolution), it is resampled linearly; when query and key lengths
    differ, the coordinates are stretched so that both span the same extent.

    Args:
        q_size: number of query positions along the axis.
        k_size: number of key positions along the axis.
        rel_pos: (L, C) learned table, L = 2 * size - 1 at training time.

    Returns:
        (q_size, k_size, C) embeddings.
    """
    max_rel_dist = int(2 * max(q_size, k_size) - 1)
    if rel_pos.shape[0] != max_rel_dist:
        table = F.interpolate(
            rel_pos.reshape(1, rel_pos.shape[0], -1).permute(0, 2, 1), size=max_rel_dist, mode="linear"
        )
        table = table.reshape(-1, max_rel_dist).permute(1, 0)
    else:
        table = rel_pos
    q_stretch = max(k_size / q_size, 1.0)
    k_stretch = max(q_size / k_size, 1.0)
    q_coords = torch.arange(q_size, device=rel_pos.device)[:, None] * q_stretch
    k_coords = torch.arange(k_size, device=rel_pos.device)[None, :] * k_stretch
    relative = (q_coords - k_coords) + (k_size - 1) * k_stretch  # shift offsets to be >= 0
    return table[relative.long()]


def rel_pos_terms(
    q: torch.Tensor,
    rel_pos_h: torch.Tensor,
    rel_pos_w: torch.Tensor,
    q_size: tuple[int, int],
    k_size: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decomposed relative-position logits terms (MViTv2): one along the rows, one along the columns.

    ``logits[b, (qh, qw), (kh, kw)] += rel_h[b, qh, qw, kh] + rel_w[b, qh, qw, kw]`` with
    ``rel_h = <q[b, qh, qw], Rh[qh, kh]>`` and ``rel_w = <q[b, qh, qw], Rw[qw, kw]>``, q unscaled.

    Args:
        q: (B, q_h * q_w, C) queries (B counts batch x heads).
        rel_pos_h: (Lh, C) table along the height axis.
        rel_pos_w: (Lw, C) table along the width axis.
        q_size: query grid (q_h, q_w).
        k_size: key grid (k_h, k_w).

    Returns:
        rel_h (B, q_h, q_w, k_h) and rel_w (B, q_h, q_w, k_w).
    """
    q_h, q_w = q_size
    k_h, k_w = k_size
    Rh = get_rel_pos(q_h, k_h, rel_pos_h)  # (q_h, k_h, C)
    Rw = get_rel_pos(q_w, k_w, rel_pos_w)  # (q_w, k_w, C)
    B, _, C = q.shape
    r_q = q.reshape(B, q_h, q_w, C)
    rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, Rh)
    rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, Rw)
    return rel_h, rel_w


def rel_pos_bias(
    q: torch.Tensor,
    rel_pos_h: torch.Tensor,
    rel_pos_w: torch.Tensor,
    q_size: tuple[int, int],
    k_size: tuple[int, int],
) -> torch.Tensor:
    """The dense (B, q_h * q_w, k_h * k_w) bias of :func:`rel_pos_terms` (for reference and tests)."""
    rel_h, rel_w = rel_pos_terms(q, rel_pos_h, rel_pos_w, q_size, k_size)
    bias = rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]  # (B, q_h, q_w, k_h, k_w)
    return bias.reshape(q.shape[0], q_size[0] * q_size[1], k_size[0] * k_size[1])


class PatchEmbed(nn.Module):
    """Non-overlapping patches to tokens: (B, 3, H, W) -> (B, H/p, W/p, D), channels last."""

    def __init__(
        self,
        *,
        kernel_size: tuple[int, int] = (16, 16),
        stride: tuple[int, int] = (16, 16),
        padding: tuple[int, int] = (0, 0),
        in_chans: int = 3,
        embed_dim: int = 768,
    ) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=kernel_size, stride=stride, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class Attention(nn.Module):
    """Multi-head self-attention over a token grid with optional decomposed relative positions."""

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        qkv_bias: bool = True,
        use_rel_pos: bool = False,
        input_size: tuple[int, int] | None = None,
    ) -> None:
        """
        Args:
            dim: channels per token.
            num_heads: attention heads (``dim`` must be divisible by it).
            qkv_bias: whether the fused q/k/v projection has a bias.
            use_rel_pos: add the decomposed relative-position bias.
            input_size: (H, W) grid the relative-position tables are sized for (the window, or the
                whole grid for global attention); required with ``use_rel_pos``.
        """
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            if input_size is None:
                raise ValueError("Attention(use_rel_pos=True) needs input_size=(H, W) for its tables")
            # zero-initialised like the official model; checkpoints fill them
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        return linear(self.attend(linear(x, self.qkv)), self.proj)

    def attend(self, qkv: torch.Tensor) -> torch.Tensor:
        """Attention from projected tokens, before the output projection.

        Args:
            qkv: (B, H, W, 3C) output of ``self.qkv``.

        Returns:
            (B, H, W, C) attended values (``self.proj`` not applied).
        """
        B, H, W, C3 = qkv.shape
        C, nh = C3 // 3, self.num_heads
        q, k, v = qkv.reshape(B, H * W, 3, nh, C // nh).permute(2, 0, 3, 1, 4).unbind(0)  # (B, nh, N, hd)
        rel_pos = None
        if self.use_rel_pos:
            rel_h, rel_w = rel_pos_terms(
                q.reshape(B * nh, H * W, -1), self.rel_pos_h, self.rel_pos_w, (H, W), (H, W)
            )
            rel_pos = (rel_h.view(B, nh, H, W, H), rel_w.view(B, nh, H, W, W))
        out = attention(q, k, v, rel_pos=rel_pos)  # (B, nh, N, hd)
        return out.transpose(1, 2).reshape(B, H, W, C)


class Block(nn.Module):
    """Pre-norm transformer block; windowed attention when ``window_size > 0``, else global."""

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        use_rel_pos: bool = False,
        window_size: int = 0,
        input_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(
            dim,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            use_rel_pos=use_rel_pos,
            input_size=input_size if window_size == 0 else (window_size, window_size),
        )
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(embedding_dim=dim, mlp_dim=int(dim * mlp_ratio), act=nn.GELU)
        self.window_size = window_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        shortcut = x
        x = self.norm1(x)
        x = self._windowed_attention(x) if self.window_size > 0 else self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))

    def _windowed_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Attention within windows of the normalised tokens: (B, H, W, C) -> (B, H, W, C).

        Equal to partitioning the zero-padded tokens and running ``self.attn`` per window, but the
        per-token projections run on the H*W real tokens only (ViT-B: 4096 rather than 4900): the q/k/v
        projection of a zero padding token is the projection's bias, so the padding is filled with it.
        """
        B, H, W, _ = x.shape
        ws = self.window_size
        qkv = linear(x, self.attn.qkv)  # (B, H, W, 3C)
        pad_h, pad_w = (ws - H % ws) % ws, (ws - W % ws) % ws
        if pad_h or pad_w:
            bias = self.attn.qkv.bias
            fill = bias if bias is not None else qkv.new_zeros(qkv.shape[-1])
            padded = fill.expand(B, H + pad_h, W + pad_w, -1).clone()
            padded[:, :H, :W] = qkv
            qkv = padded
        windows, pad_hw = window_partition(qkv, ws)  # (B * nW, ws, ws, 3C)
        out = window_unpartition(self.attn.attend(windows), ws, pad_hw, (H, W))
        return linear(out, self.attn.proj)


class ImageEncoderViT(nn.Module):
    """SAM's ViT backbone + neck: a normalised, padded image to the (B, out_chans, H/16, W/16) embedding."""

    def __init__(
        self,
        *,
        img_size: int = 1024,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        out_chans: int = 256,
        qkv_bias: bool = True,
        use_abs_pos: bool = True,
        use_rel_pos: bool = True,
        window_size: int = 14,
        global_attn_indexes: Sequence[int] = (),
    ) -> None:
        """
        Args:
            img_size: side of the square (padded) input in pixels.
            patch_size: side of a patch in pixels; the token grid is img_size / patch_size.
            in_chans: input channels.
            embed_dim: token width D.
            depth: number of blocks.
            num_heads: attention heads per block.
            mlp_ratio: MLP hidden width / D.
            out_chans: channels of the output embedding.
            qkv_bias: bias in the fused q/k/v projection.
            use_abs_pos: add a learned absolute position embedding (zero-initialised).
            use_rel_pos: add decomposed relative positions in attention (tables zero-initialised).
            window_size: window side in tokens for the non-global blocks.
            global_attn_indexes: indices of the blocks that attend over the whole grid.
        """
        super().__init__()
        self.img_size = img_size
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(
            kernel_size=(patch_size, patch_size),
            stride=(patch_size, patch_size),
            in_chans=in_chans,
            embed_dim=embed_dim,
        )
        self.pos_embed: nn.Parameter | None = None
        if use_abs_pos:
            self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim))
        self.blocks = nn.ModuleList(
            Block(
                embed_dim,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                use_rel_pos=use_rel_pos,
                window_size=0 if i in global_attn_indexes else window_size,
                input_size=(grid, grid),
            )
            for i in range(depth)
        )
        self.neck = neck(embed_dim, out_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, img_size, img_size) normalised image -> (B, out_chans, grid, grid) embedding."""
        x = self.patch_embed(x)  # (B, grid, grid, D)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))  # (B, out_chans, grid, grid)
