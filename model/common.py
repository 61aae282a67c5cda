"""Building blocks shared by SAM's image encoder, prompt encoder and mask decoder.

``attention`` is the one place where scaled dot-product attention is computed. It has two paths that
give the same numbers: a fast one through ``torch.nn.functional.scaled_dot_product_attention`` (fused
kernel, no materialised probability matrix) and a plain one written out with matmul + softmax, which
is the readable reference and the path that traces into the simplest ONNX graph. The fast path is the
default; :func:`attention_path` switches paths for a block of code (tests, export).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LayerNorm2d", "MLPBlock", "attention", "attention_path", "get_attention_path"]

AttentionPath = Literal["fast", "plain"]

_ATTENTION_PATH: AttentionPath = "fast"


def get_attention_path() -> AttentionPath:
    """The attention path currently in force (``"fast"`` or ``"plain"``)."""
    return _ATTENTION_PATH


@contextlib.contextmanager
def attention_path(path: AttentionPath) -> Iterator[None]:
    """Run the enclosed code with the given attention path, restoring the previous one afterwards.

    Args:
        path: ``"fast"`` (``scaled_dot_product_attention``) or ``"plain"`` (matmul + softmax).
    """
    global _ATTENTION_PATH
    if path not in ("fast", "plain"):
        raise ValueError(f"attention path must be 'fast' or 'plain', got {path!r}")
    previous = _ATTENTION_PATH
    _ATTENTION_PATH = path
    try:
        yield
    finally:
        _ATTENTION_PATH = previous


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    path: AttentionPath | None = None,
) -> torch.Tensor:
    """Softmax attention ``softmax(q k^T / sqrt(d) + bias) v``.

    Args:
        q: (B, heads, Nq, d) queries.
        k: (B, heads, Nk, d) keys.
        v: (B, heads, Nk, dv) values.
        bias: additive logits bias broadcastable to (B, heads, Nq, Nk), e.g. SAM's decomposed
            relative-position term, or None.
        path: force a path; None uses the one set by :func:`attention_path` (default ``"fast"``).

    Returns:
        (B, heads, Nq, dv) attended values.
    """
    chosen = path or _ATTENTION_PATH
    if chosen == "fast":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    scale = 1.0 / math.sqrt(q.shape[-1])
    logits = (q * scale) @ k.transpose(-2, -1)  # (B, heads, Nq, Nk)
    if bias is not None:
        logits = logits + bias
    return logits.softmax(dim=-1) @ v


class LayerNorm2d(nn.Module):
    """Layer norm over the channel axis of a (B, C, H, W) tensor (eps 1e-6, per-channel affine)."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W), each pixel's channel vector normalised."""
        mean = x.mean(1, keepdim=True)
        centred = x - mean
        var = centred.pow(2).mean(1, keepdim=True)
        x = centred / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class MLPBlock(nn.Module):
    """Two-layer perceptron ``lin2(act(lin1(x)))`` on the last axis: (..., D) -> (..., D)."""

    def __init__(self, embedding_dim: int, mlp_dim: int, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(x)))
