"""SAM's two-way transformer: prompt tokens and image tokens attend to each other.

Tokens are (B, N_tokens, C) (the IoU token, the mask tokens, then the sparse prompt embeddings); the
image is the (B, C, H, W) embedding (64x64 grid for the official models), flattened to (B, H*W, C).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .common import MLPBlock, attention

__all__ = ["Attention", "TwoWayAttentionBlock", "TwoWayTransformer"]


class Attention(nn.Module):
    """Multi-head attention with separate q/k/v projections into an optionally narrower space."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        """
        Args:
            embedding_dim: token width C of queries, keys and values.
            num_heads: attention heads.
            downsample_rate: the internal width is ``embedding_dim // downsample_rate``.
        """
        super().__init__()
        self.embedding_dim = embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads != 0:
            raise ValueError(f"num_heads={num_heads} must divide the internal width {self.internal_dim}")
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.v_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def _separate_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)  # (B, heads, N, c/h)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q (B, Nq, C), k and v (B, Nk, C) -> (B, Nq, C)."""
        q = self._separate_heads(self.q_proj(q))
        k = self._separate_heads(self.k_proj(k))
        v = self._separate_heads(self.v_proj(v))
        out = attention(q, k, v)  # (B, heads, Nq, c/h)
        b, h, n, d = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * d))


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token->image cross-attention, token MLP, image->token cross-attention."""

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int = 2048,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
        mlp_block: Callable[[int, int], nn.Module] | None = None,
    ) -> None:
        """
        Args:
            embedding_dim: token width C.
            num_heads: attention heads.
            mlp_dim: hidden width of the token MLP.
            activation: MLP activation.
            attention_downsample_rate: internal width reduction of the two cross-attentions.
            skip_first_layer_pe: the first block's self-attention sees the raw tokens (which already are
                the positional prompt embeddings) and replaces rather than updates them.
            mlp_block: builds the token MLP from (embedding_dim, mlp_dim); None is SAM 1's
                :class:`MLPBlock` (keys ``mlp.lin1/lin2``). SAM 2 passes its ``layers.0/1`` MLP.
        """
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = (
            MLPBlock(embedding_dim, mlp_dim, activation)
            if mlp_block is None
            else mlp_block(embedding_dim, mlp_dim)
        )
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor, key_pe: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """queries/query_pe (B, N_tokens, C), keys/key_pe (B, H*W, C) -> updated (queries, keys)."""
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        q = queries + query_pe
        k = keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))

        queries = self.norm3(queries + self.mlp(queries))

        q = queries + query_pe
        k = keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """``depth`` two-way blocks and a final token->image attention."""

    def __init__(
        self,
        *,
        depth: int,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
        mlp_block: Callable[[int, int], nn.Module] | None = None,
    ) -> None:
        """
        Args:
            depth: two-way blocks; embedding_dim: token width C; num_heads: attention heads.
            mlp_dim: hidden width of the token MLPs; activation: their activation (SAM 1 MLP only).
            attention_downsample_rate: internal width reduction of the cross-attentions.
            mlp_block: see :class:`TwoWayAttentionBlock` (None: SAM 1's keys).
        """
        super().__init__()
        self.depth = depth
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim=embedding_dim,
                num_heads=num_heads,
                mlp_dim=mlp_dim,
                activation=activation,
                attention_downsample_rate=attention_downsample_rate,
                skip_first_layer_pe=(i == 0),
                mlp_block=mlp_block,
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self, image_embedding: torch.Tensor, image_pe: torch.Tensor, point_embedding: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            image_embedding: (B, C, H, W) image embedding (plus dense prompt).
            image_pe: (B, C, H, W) positional encoding of the grid.
            point_embedding: (B, N_tokens, C) output tokens + sparse prompts, also used as their PE.

        Returns:
            tokens (B, N_tokens, C) and image tokens (B, H*W, C).
        """
        image_embedding = image_embedding.flatten(2).permute(0, 2, 1)  # (B, H*W, C)
        image_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries, keys = point_embedding, image_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, image_pe)
        q = queries + point_embedding
        k = keys + image_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q, k, keys))
        return queries, keys
