"""TinyViT image encoder of MobileSAM (``vit_t``).

A hierarchical encoder: a convolutional stem (stride 4), one stage of MBConv blocks, then stages of
windowed-attention blocks with a depthwise "local" convolution between attention and MLP, each stage
but the last ending in a convolutional patch merging. A neck maps the last stage to the 256-channel
image embedding SAM's prompt encoder and mask decoder expect.

Shapes for MobileSAM (``img_size=1024``, four stages)::

    image (B, 3, 1024, 1024), normalised, zero-padded (the resized-input frame)
    stem        -> (B, 64, 256, 256)     stride 4
    stage 0     -> (B, 128, 128, 128)    MBConv blocks, merge stride 2
    stage 1     -> (B, 160, 64, 64)      attention blocks (window 7), merge stride 2
    stage 2     -> (B, 320, 64, 64)      attention blocks (window 14), last merge keeps the resolution
    stage 3     -> (B, 320, 64, 64)      attention blocks (window 7)
    neck        -> (B, 256, 64, 64)      the image embedding, one cell per 16x16 input pixels

Parameter and buffer names follow the official MobileSAM module tree, so its checkpoints load with
``strict=True``. Between stages activations are ``(B, C, H, W)`` tensors kept in channels-last memory;
attention blocks view them as ``(B, H, W, C)`` without a copy, so the convolutions, the layer norms and
the linear layers all run on their preferred layout.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from .common import attention, neck

__all__ = [
    "Attention",
    "BasicLayer",
    "Conv2d_BN",
    "ConvLayer",
    "MBConv",
    "Mlp",
    "PatchEmbed",
    "PatchMerging",
    "TinyViT",
    "TinyViTBlock",
]


def _fused_ops_usable(x: torch.Tensor) -> bool:
    """Whether oneDNN's conv/linear + GELU kernels may run: CPU fp32 inference, no autograd, no tracing.

    Fusing the activation into the convolution or matmul saves a full memory pass over the largest
    activations of the model (the MBConv stage at 1/4 resolution, the MLP hidden layers); the result
    equals the unfused ``gelu(conv(x))`` to float rounding. The kernels have no autograd, so training and
    tracing take the plain path.
    """
    return (
        _MKLDNN_FUSED
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_grad_enabled()
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
    )


_MKLDNN_FUSED = (
    torch.backends.mkldnn.is_available()
    and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
    and hasattr(torch.ops.mkldnn, "_linear_pointwise")
)


class DropPath(nn.Module):
    """Stochastic depth: during training, zero a whole sample's residual branch with probability ``p``."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Conv2d_BN(nn.Sequential):  # noqa: N801 -- the official class name, kept for recognisability
    """A bias-free convolution ``c`` followed by BatchNorm ``bn`` (keys ``c.weight``, ``bn.*``).

    In eval mode the BatchNorm is folded into the convolution's weight and bias on every call (a few
    hundred multiplies), which saves a full pass over the activation and leaves nothing cached that
    could go stale when weights are loaded or the mode changes.
    """

    c: nn.Conv2d
    bn: nn.BatchNorm2d

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int = 0,
        *,
        groups: int = 1,
        bn_weight_init: float = 1.0,
    ) -> None:
        super().__init__()
        self.add_module(
            "c", nn.Conv2d(in_chans, out_chans, kernel_size, stride, padding, groups=groups, bias=False)
        )
        bn = nn.BatchNorm2d(out_chans)
        nn.init.constant_(bn.weight, bn_weight_init)
        nn.init.zeros_(bn.bias)
        self.add_module("bn", bn)

    def forward(self, x: torch.Tensor, *, gelu: bool = False) -> torch.Tensor:
        """``x``: (B, in, H, W) -> (B, out, H', W'); ``gelu=True`` also applies the GELU that follows."""
        conv, bn = self.c, self.bn
        if self.training or bn.running_var is None or bn.running_mean is None:
            y = bn(conv(x))
            return F.gelu(y) if gelu else y
        assert bn.weight is not None and bn.bias is not None
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)  # (out,)
        weight = conv.weight * scale[:, None, None, None]
        bias = bn.bias - bn.running_mean * scale
        if _fused_ops_usable(x):
            return torch.ops.mkldnn._convolution_pointwise(
                x,
                weight,
                bias,
                list(conv.padding),
                list(conv.stride),
                list(conv.dilation),
                conv.groups,
                "gelu" if gelu else "none",
                [None],
                "none",  # exact (erf) GELU, as nn.GELU()
            )
        y = F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
        return F.gelu(y) if gelu else y


class PatchEmbed(nn.Module):
    """Convolutional stem: two stride-2 3x3 convolutions, ``(B, in, H, W) -> (B, embed_dim, H/4, W/4)``."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.embed_dim = embed_dim
        self.seq = nn.Sequential(
            Conv2d_BN(in_chans, embed_dim // 2, 3, 2, 1),
            nn.GELU(),
            Conv2d_BN(embed_dim // 2, embed_dim, 3, 2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv0, conv1 = self.seq[0], self.seq[2]
        assert isinstance(conv0, Conv2d_BN) and isinstance(conv1, Conv2d_BN)
        return conv1(conv0(x, gelu=True))


class MBConv(nn.Module):
    """Inverted residual block (1x1 expand, 3x3 depthwise, 1x1 project) on ``(B, C, H, W)``."""

    def __init__(self, dim: int, *, expand_ratio: float, drop_path: float = 0.0) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = Conv2d_BN(dim, hidden)
        self.act1 = nn.GELU()
        self.conv2 = Conv2d_BN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act2 = nn.GELU()
        # zero-initialised last BN: each block starts as the identity (plus the final GELU)
        self.conv3 = Conv2d_BN(hidden, dim, bn_weight_init=0.0)
        self.act3 = nn.GELU()
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # act1/act2 are fused into the convolutions (same exact GELU as the modules)
        y = self.conv2(self.conv1(x, gelu=True), gelu=True)
        y = self.drop_path(self.conv3(y))
        return self.act3(x + y)


class PatchMerging(nn.Module):
    """Channel change + optional downsampling between stages, ``(B, dim, H, W) -> (B, out_dim, H', W')``.

    ``H' = ceil(H / stride)``; the stride sits on the depthwise 3x3 convolution.
    """

    def __init__(self, dim: int, out_dim: int, *, stride: int = 2) -> None:
        super().__init__()
        self.dim = dim
        self.out_dim = out_dim
        self.stride = stride
        self.act = nn.GELU()
        self.conv1 = Conv2d_BN(dim, out_dim)
        self.conv2 = Conv2d_BN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = Conv2d_BN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(self.conv1(x, gelu=True), gelu=True)  # `act` fused into the convolutions
        return self.conv3(x)


class _Stage(nn.Module):
    """A stage: its blocks (gradient-checkpointed in training when asked), then an optional merging.

    Subclasses build the blocks; the attribute names (``blocks``, ``downsample``) are the official ones.
    """

    def __init__(
        self, dim: int, blocks: list[nn.Module], downsample: PatchMerging | None, use_checkpoint: bool
    ) -> None:
        super().__init__()
        self.dim = dim
        self.depth = len(blocks)
        self.use_checkpoint = use_checkpoint
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, dim, H, W) -> (B, out_dim, H', W')."""
        x = self._run_blocks(x)
        return x if self.downsample is None else self.downsample(x)

    def _run_blocks(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = _maybe_checkpoint(blk, x, self.use_checkpoint and self.training)
        return x


class ConvLayer(_Stage):
    """The first stage: ``depth`` MBConv blocks, then an optional :class:`PatchMerging`."""

    def __init__(
        self,
        dim: int,
        depth: int,
        *,
        expand_ratio: float = 4.0,
        drop_path: Sequence[float] | float = 0.0,
        downsample: PatchMerging | None = None,
        use_checkpoint: bool = False,
    ) -> None:
        blocks: list[nn.Module] = [
            MBConv(dim, expand_ratio=expand_ratio, drop_path=rate) for rate in _per_block(drop_path, depth)
        ]
        super().__init__(dim, blocks, downsample, use_checkpoint)


class Mlp(nn.Module):
    """Pre-norm MLP on the last dimension: LayerNorm, Linear, GELU, Linear (with dropout)."""

    def __init__(self, in_features: int, hidden_features: int, *, drop: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_features)
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        if _fused_ops_usable(x):
            # fc1 + exact GELU in one oneDNN kernel
            x = torch.ops.mkldnn._linear_pointwise(x, self.fc1.weight, self.fc1.bias, "gelu", [None], "none")
        else:
            x = self.act(self.fc1(x))
        return self.drop(self.fc2(self.drop(x)))


def _relative_offset_index(h: int, w: int) -> torch.Tensor:
    """``(h*w, h*w)`` int64 index of the offset ``(|dy|, |dx|)`` between two cells of an ``h x w`` window.

    The official code numbers offsets in order of first appearance while scanning pairs of cells in
    row-major order; the first cell (0, 0) already meets every offset, in row-major order, so offset
    ``(dy, dx)`` gets number ``dy * w + dx`` and there are ``h * w`` of them.
    """
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy = (ys[:, None] - ys[None, :]).abs()
    dx = (xs[:, None] - xs[None, :]).abs()
    return dy * w + dx


class Attention(nn.Module):
    """Pre-norm multi-head self-attention over the tokens of one window, with a learned bias per head
    and relative offset (LeViT style).

    ``attention_biases`` (heads, h*w) is the parameter the checkpoint holds; ``attention_bias_idxs``
    (h*w, h*w) is a non-persistent buffer rebuilt from the window size. The gathered bias
    ``attention_biases[:, attention_bias_idxs]`` is recomputed in every forward call (a small gather),
    never cached, so it always reflects the current parameter.
    """

    attention_bias_idxs: torch.Tensor

    def __init__(
        self,
        dim: int,
        key_dim: int,
        *,
        num_heads: int = 8,
        attn_ratio: float = 4.0,
        resolution: tuple[int, int] = (14, 14),
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.scale = key_dim**-0.5
        self.d = int(attn_ratio * key_dim)
        self.dh = self.d * num_heads
        self.resolution = resolution
        self.norm = nn.LayerNorm(dim)
        # per head, the output channels are laid out [q (key_dim), k (key_dim), v (d)]
        self.qkv = nn.Linear(dim, self.dh + 2 * key_dim * num_heads)
        self.proj = nn.Linear(self.dh, dim)
        h, w = resolution
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, h * w))
        self.register_buffer("attention_bias_idxs", _relative_offset_index(h, w), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, N, dim) tokens of B windows, N = h*w -> (B, N, dim)."""
        B, N, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(B, N, self.num_heads, -1)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.d], dim=3)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, heads, N, d)
        bias = self.attention_biases[:, self.attention_bias_idxs]  # (heads, N, N)
        # a 4-D bias (1, heads, N, N): SDPA's CPU flash kernel takes 2-D or 4-D masks only and silently
        # falls back to its slower math path for a 3-D one. The path (SDPA or plain) follows
        # common.attention_path; q's last dim is key_dim, so its default scale is self.scale.
        out = attention(q, k, v, bias.to(q.dtype).unsqueeze(0))
        out = out.transpose(1, 2).reshape(B, N, self.dh)
        return self.proj(out)


class TinyViTBlock(nn.Module):
    """Windowed attention, a depthwise "local" convolution, then an MLP; on ``(B, H, W, C)`` tensors.

    Windows are ``window_size`` squares; the map is zero-padded at the bottom/right up to a multiple
    of the window size (padded cells take part in attention as keys, as in the official model, since
    they pass through the attention's LayerNorm and are not masked).
    """

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        drop_path: float = 0.0,
        local_conv_size: int = 3,
    ) -> None:
        super().__init__()
        if window_size <= 0:
            raise ValueError(f"window_size must be positive, got {window_size}")
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.window_size = window_size
        self.mlp_ratio = mlp_ratio
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.attn = Attention(
            dim, dim // num_heads, num_heads=num_heads, attn_ratio=1.0, resolution=(window_size, window_size)
        )
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.local_conv = Conv2d_BN(dim, dim, local_conv_size, 1, local_conv_size // 2, groups=dim)

    def _window_attention(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        ws = self.window_size
        if (ws, ws) == (H, W):
            return self.attn(x.reshape(B, H * W, C)).view(B, H, W, C)
        pad_b, pad_r = (ws - H % ws) % ws, (ws - W % ws) % ws
        if pad_b or pad_r:
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        pH, pW = H + pad_b, W + pad_r
        nH, nW = pH // ws, pW // ws
        x = x.view(B, nH, ws, nW, ws, C).transpose(2, 3).reshape(B * nH * nW, ws * ws, C)
        x = self.attn(x)  # (B*nH*nW, ws*ws, C)
        x = x.view(B, nH, nW, ws, ws, C).transpose(2, 3).reshape(B, pH, pW, C)
        if pad_b or pad_r:
            x = x[:, :H, :W]
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, H, W, dim) -> (B, H, W, dim)."""
        x = x + self.drop_path(self._window_attention(x))
        # the depthwise conv runs on a channels-last view; its output is channels-last again, so the
        # permute back to (B, H, W, C) is free
        x = self.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + self.drop_path(self.mlp(x))

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, num_heads={self.num_heads}, window_size={self.window_size}, "
            f"mlp_ratio={self.mlp_ratio}"
        )


class BasicLayer(_Stage):
    """An attention stage: ``depth`` :class:`TinyViTBlock`, then an optional :class:`PatchMerging`."""

    def __init__(
        self,
        dim: int,
        depth: int,
        *,
        num_heads: int,
        window_size: int,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        drop_path: Sequence[float] | float = 0.0,
        downsample: PatchMerging | None = None,
        use_checkpoint: bool = False,
        local_conv_size: int = 3,
    ) -> None:
        blocks: list[nn.Module] = [
            TinyViTBlock(
                dim,
                num_heads=num_heads,
                window_size=window_size,
                mlp_ratio=mlp_ratio,
                drop=drop,
                drop_path=rate,
                local_conv_size=local_conv_size,
            )
            for rate in _per_block(drop_path, depth)
        ]
        super().__init__(dim, blocks, downsample, use_checkpoint)

    def _run_blocks(self, x: torch.Tensor) -> torch.Tensor:
        # the blocks work on (B, H, W, C): a free view of the channels-last (B, C, H, W) input
        return super()._run_blocks(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class TinyViT(nn.Module):
    """TinyViT backbone with MobileSAM's neck: ``(B, in_chans, S, S)`` image -> ``(B, 256, S/16, S/16)``.

    The constructor takes the official arguments (MobileSAM passes ``img_size=1024``, ``embed_dims=
    [64, 128, 160, 320]``, ``depths=[2, 2, 6, 2]``, ``num_heads=[2, 4, 5, 10]``, ``window_sizes=
    [7, 7, 14, 7]``, ``layer_lr_decay=0.8``). Every patch merging halves the resolution except the last,
    which keeps it, so with four stages the output stride is 16 (the official code decides this by the
    channel count, 320/448/576, which is the same for its four-stage models). Unlike the official model
    the spatial sizes are taken from the input, not fixed by ``img_size``.

    The classifier ``norm_head``/``head`` are unused by SAM but part of MobileSAM's checkpoint, so they
    are kept for a strict load. ``layer_lr_decay`` only concerns training: :meth:`layer_lr_scales`
    returns the per-parameter learning-rate factors it implies.
    """

    def __init__(
        self,
        img_size: int = 1024,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dims: Sequence[int] = (64, 128, 160, 320),
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (2, 4, 5, 10),
        window_sizes: Sequence[int] = (7, 7, 14, 7),
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        use_checkpoint: bool = False,
        mbconv_expand_ratio: float = 4.0,
        local_conv_size: int = 3,
        layer_lr_decay: float = 0.8,
        *,
        out_chans: int = 256,
    ) -> None:
        super().__init__()
        n = len(depths)
        if n < 2 or not (len(embed_dims) == len(num_heads) == len(window_sizes) == n):
            raise ValueError(
                "TinyViT needs at least 2 stages and embed_dims, depths, num_heads, window_sizes of equal "
                f"length; got {len(embed_dims)}, {n}, {len(num_heads)}, {len(window_sizes)}"
            )
        self.img_size = img_size
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.depths = list(depths)
        self.num_layers = n
        self.mlp_ratio = mlp_ratio
        self.layer_lr_decay = layer_lr_decay

        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        # stochastic depth rate grows linearly over all blocks
        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.layers = nn.ModuleList()
        for i in range(n):
            rates = dpr[sum(depths[:i]) : sum(depths[: i + 1])]
            downsample = None
            if i < n - 1:
                stride = 2 if i < n - 2 else 1
                downsample = PatchMerging(embed_dims[i], embed_dims[i + 1], stride=stride)
            layer: nn.Module
            if i == 0:
                layer = ConvLayer(
                    embed_dims[0],
                    depths[0],
                    expand_ratio=mbconv_expand_ratio,
                    drop_path=rates,
                    downsample=downsample,
                    use_checkpoint=use_checkpoint,
                )
            else:
                layer = BasicLayer(
                    embed_dims[i],
                    depths[i],
                    num_heads=num_heads[i],
                    window_size=window_sizes[i],
                    mlp_ratio=mlp_ratio,
                    drop=drop_rate,
                    drop_path=rates,
                    downsample=downsample,
                    use_checkpoint=use_checkpoint,
                    local_conv_size=local_conv_size,
                )
            self.layers.append(layer)

        self.norm_head = nn.LayerNorm(embed_dims[-1])
        self.head: nn.Module = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.apply(_init_weights)
        # created after the init above so its convolutions keep PyTorch's default init, as the official
        self.neck = neck(embed_dims[-1], out_chans)

    def layer_lr_scales(self) -> dict[str, float]:
        """Learning-rate factor per parameter name for layer-wise decay (``layer_lr_decay``).

        Block ``i`` of ``D`` (counted over all stages) gets ``decay ** (D - 1 - i)``; the stem gets the
        first block's factor, a patch merging its stage's last block's, the classifier and neck 1.0.
        """
        total = sum(self.depths)
        scales = [self.layer_lr_decay ** (total - 1 - i) for i in range(total)]
        out = {f"patch_embed.{k}": scales[0] for k, _ in self.patch_embed.named_parameters()}
        i = 0
        for li, layer in enumerate(self.layers):
            assert isinstance(layer, _Stage)
            for bi, blk in enumerate(layer.blocks):
                out.update({f"layers.{li}.blocks.{bi}.{k}": scales[i] for k, _ in blk.named_parameters()})
                i += 1
            if layer.downsample is not None:
                prefix = f"layers.{li}.downsample."
                out.update({prefix + k: scales[i - 1] for k, _ in layer.downsample.named_parameters()})
        for k, _ in self.named_parameters():
            out.setdefault(k, 1.0)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode images.

        Args:
            x: (B, in_chans, S, S) float, normalised and zero-padded in the resized-input frame
                (S = ``img_size``, 1024 for MobileSAM; other sizes work, a multiple of 64 keeps every
                window tiling exact).

        Returns:
            (B, out_chans, S/16, S/16) image embedding (for four stages).
        """
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"expected images of shape (B, {self.in_chans}, H, W), got {tuple(x.shape)}")
        # channels-last throughout: the depthwise convolutions are faster on it and the attention
        # blocks get their (B, H, W, C) view without copying
        x = x.contiguous(memory_format=torch.channels_last)
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.neck(x)


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def _per_block(rate: Sequence[float] | float, depth: int) -> list[float]:
    if isinstance(rate, int | float):
        return [float(rate)] * depth
    rates = [float(r) for r in rate]
    if len(rates) != depth:
        raise ValueError(f"expected {depth} drop-path rates, got {len(rates)}")
    return rates


def _maybe_checkpoint(blk: nn.Module, x: torch.Tensor, enabled: bool) -> torch.Tensor:
    if enabled:
        out: torch.Tensor = torch.utils.checkpoint.checkpoint(blk, x, use_reentrant=False)
        return out
    y: torch.Tensor = blk(x)
    return y
