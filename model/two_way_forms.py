"""SAM's two-way transformer in the re-associated and factored forms that the exports and
segment-everything run, and the attention algebra behind them.

:class:`~clicksam.model.transformer.TwoWayTransformer` is the readable definition. This module states
its forward pass once more, as :func:`run_two_way`, over a *form*: an object that says how the two
token<->image cross-attentions of a block read the image tokens and how a block updates them. The
image tokens travel as an immutable state object that every block returns anew; nothing is kept on
the form between calls.

Forms (all equal to the reference in exact arithmetic; tests/model/test_two_way_forms.py):

* :class:`PlainForm`: the reference attention with static shapes (:func:`attention_plain`).
* :class:`FoldedForm`: the few prompt tokens against the L image tokens, re-associated: each head's
  query is mapped back into the C-dim input space (:func:`tokens_to_image`) and the image's queries
  are scored against the prompt keys mapped the same way (:func:`image_to_tokens`), so no
  (L x C) @ (C x d*H) projection of the image is made. The PE's projections depend on weights only
  (ONNX Runtime folds them once; segment-everything computes them once per image).
* :class:`PrecomputedForm`: the image tokens stay factored through every block
  (:class:`FactoredImage`) against the per-image projections of :func:`prepare_image`, so per prompt
  no product over the L image tokens is C wide (the browser's per-click graph).
* :class:`GridForm`: a batch of B single-prompt sets on one image (segment-everything): the first
  block reads the shared per-image projections of :func:`shared_image`, later blocks run the folded
  attention on each prompt set's own image tokens.

Shapes here come from the modules' sizes (Python ints) and -1, never from a tensor's ``.shape``: the
number of prompt tokens is a dynamic axis of the exported graphs, and every size read from a tensor
would be a chain of Shape / Gather / Cast / Concat nodes run on every click. The batch B is a Python
int of the form (1 in the exported graphs). Tokens are (B, T, C) (IoU token, mask tokens, sparse
prompts); image tokens (B, L, C) with L = h*w of the embedding grid; H heads of width d.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .transformer import Attention, TwoWayAttentionBlock, TwoWayTransformer

__all__ = [
    "BlockProjections",
    "DenseImage",
    "FactoredImage",
    "FoldedForm",
    "GridForm",
    "LayerNormStats",
    "PeTables",
    "PlainForm",
    "PrecomputedForm",
    "PrecomputedImage",
    "PreparedImage",
    "SharedImage",
    "TwoWayForm",
    "attention_plain",
    "factored_product",
    "image_to_tokens",
    "pe_tables",
    "prepare_image",
    "residual_output",
    "run_two_way",
    "shared_image",
    "tokens_to_image",
]

# ------------------------------------------------------------------------------- head algebra


def head_dims(attn: Attention) -> tuple[int, int]:
    """(heads, width of one head) of an attention module."""
    heads = int(attn.num_heads)
    return heads, int(attn.internal_dim) // heads


def split_heads(x: Tensor, heads: int, d: int, batch: int = 1) -> Tensor:
    """(B, N, heads * d) -> (B, heads, N, d)."""
    return x.reshape(batch, -1, heads, d).transpose(1, 2)


def merge_heads(x: Tensor, heads: int, d: int, batch: int = 1) -> Tensor:
    """(B, heads, N, d) -> (B, N, heads * d)."""
    return x.transpose(1, 2).reshape(batch, -1, heads * d)


def head_weights(linear: nn.Linear, heads: int) -> Tensor:
    """Linear weight (H*d, C) -> (H, d, C), one (d, C) block per head."""
    w = linear.weight
    return w.reshape(heads, w.shape[0] // heads, w.shape[1])


def values_through_out_proj(attn: Attention, vh: Tensor, batch: int = 1) -> Tensor:
    """(B, H, T, d) per-head values -> (B, H*T, C), each through its head's slice of ``out_proj``."""
    heads, d = head_dims(attn)
    wo = attn.out_proj.weight  # (C, H*d)
    wo_h = wo.reshape(wo.shape[0], heads, d).permute(1, 2, 0)  # (H, d, C)
    return (vh @ wo_h).reshape(batch, -1, wo.shape[0])


def _head_values_out(attn: Attention, vh: Tensor, batch: int) -> Tensor:
    """(B, H, T, d) per-head values without the value bias -> the attention output (B, T, C)."""
    heads, d = head_dims(attn)
    return attn.out_proj(merge_heads(vh + attn.v_proj.bias.reshape(heads, 1, d), heads, d, batch))


def attention_plain(attn: Attention, q: Tensor, k: Tensor, v: Tensor, batch: int = 1) -> Tensor:
    """SAM's multi-head attention with down-projected heads, written out.

    Args:
        attn: a module with ``q_proj``/``k_proj``/``v_proj``/``out_proj`` (Linear) and ``num_heads``.
        q: (B, Nq, C) queries; k: (B, Nk, C) keys; v: (B, Nk, C) values.
        batch: B.

    Returns:
        (B, Nq, C).
    """
    heads, d = head_dims(attn)
    qh = split_heads(attn.q_proj(q), heads, d, batch)  # (B, H, Nq, d)
    kh = split_heads(attn.k_proj(k), heads, d, batch)  # (B, H, Nk, d)
    vh = split_heads(attn.v_proj(v), heads, d, batch)  # (B, H, Nk, d)
    weights = torch.softmax((qh @ kh.transpose(-1, -2)) / math.sqrt(d), dim=-1)  # (B, H, Nq, Nk)
    return attn.out_proj(merge_heads(weights @ vh, heads, d, batch))


# ---------------------------------------------------------------- re-associated cross-attentions


def _pe_key_scores(qs: Tensor, wk: Tensor, pe: Tensor, table: Tensor | None, batch: int) -> Tensor:
    """Scores of scaled head queries qs (B, H, T, d) against the PE's keys pe @ Wk_h^T, as
    (B, H*T, L); the table ``wk @ pe.t()`` (H, d, L) depends on weights only (folded once)."""
    return (qs @ (wk @ pe.t() if table is None else table)).reshape(batch, -1, pe.shape[0])


def _pe_query_scores(pe: Tensor, wq: Tensor, kt: Tensor, table: Tensor | None, batch: int) -> Tensor:
    """Scores of the PE's queries pe @ Wq_h^T against scaled head keys kt (B, H, d, T), as
    (B, L, H*T); the table ``pe @ wq^T`` (H, L, d) is a constant of the weights."""
    queries = pe @ wq.transpose(-1, -2) if table is None else table
    return (queries @ kt).transpose(1, 2).reshape(batch, pe.shape[0], -1)


def tokens_to_image(
    attn: Attention, q: Tensor, image: Tensor, pe: Tensor, *, table: Tensor | None, batch: int
) -> Tensor:
    """Few queries (prompt tokens) attending to many keys (image tokens), re-associated.

    Instead of projecting all L image tokens to keys and values ((L x C) @ (C x d*H) twice), the
    per-head query is mapped back into the C-dim input space (q_h @ Wk_h) and the softmax-weighted
    sum is taken over the raw image tokens before the value projection. The key bias adds the same
    number to every score of a query, so it cancels in the softmax; the value bias passes through
    because softmax rows sum to one. Equal to :func:`attention_plain` in exact arithmetic.

    Args:
        q: (B, T, C) prompt tokens (+ their PE).
        image: (B, L, C) image tokens, the values; the keys are image + pe.
        pe: (L, C) dense PE: its key projection (a constant of the weights) is scored against the
            d-wide head queries, instead of adding the PE to all L x C keys.
        table: the PE's keys ``Wk_h @ pe^T`` (H, d, L) if already computed (None: computed here).
        batch: B.

    Returns:
        (B, T, C).
    """
    heads, d = head_dims(attn)
    c = int(attn.embedding_dim)
    qh = split_heads(attn.q_proj(q), heads, d, batch)  # (B, H, T, d)
    wk = head_weights(attn.k_proj, heads)  # (H, d, C)
    q_in = ((qh @ wk) / math.sqrt(d)).reshape(batch, -1, c)  # (B, H*T, C): queries in input space
    # one (H*T x C) @ (C x L) product instead of a per-head batch: better GEMM shapes in the browser
    scores = q_in @ image.transpose(1, 2)  # (B, H*T, L)
    scores = scores + _pe_key_scores(qh / math.sqrt(d), wk, pe, table, batch)
    weights = torch.softmax(scores, dim=-1)
    pooled = (weights @ image).reshape(batch, heads, -1, c)  # (B, H, T, C): weighted raw image tokens
    wv = head_weights(attn.v_proj, heads)  # (H, d, C)
    return _head_values_out(attn, pooled @ wv.transpose(-1, -2), batch)  # values (B, H, T, d)


def image_to_tokens(
    attn: Attention, image: Tensor, k: Tensor, v: Tensor, pe: Tensor, *, table: Tensor | None, batch: int
) -> tuple[Tensor, Tensor]:
    """Many queries (image tokens) attending to few keys (prompt tokens), re-associated, as two
    factors: the attention output is ``weights @ values + b_out``.

    The key of each prompt token is mapped back into the C-dim input space (k_h @ Wq_h) so scores
    are a single (L x C) @ (C x H*T) product, and the output projection is applied to the T values
    of each head before the softmax-weighted sum, so no (L x d*H) tensor is ever formed.

    Args:
        image: (B, L, C) image tokens; the queries are image + pe.
        k: (B, T, C) prompt tokens + their PE; v: (B, T, C) prompt tokens.
        pe: (L, C) dense PE (its query projection is a constant, see :func:`tokens_to_image`).
        table: the PE's queries ``pe @ Wq_h^T`` (H, L, d) if already computed (None: computed here).
        batch: B.

    Returns:
        weights (B, L, H*T): the per-head softmax weights of every image token over the T prompt
        tokens; values (B, H*T, C): each head's values of the T prompt tokens through its slice of
        the output projection.
    """
    heads, d = head_dims(attn)
    kh = split_heads(attn.k_proj(k), heads, d, batch)  # (B, H, T, d)
    vh = split_heads(attn.v_proj(v), heads, d, batch)  # (B, H, T, d)
    wq = head_weights(attn.q_proj, heads)  # (H, d, C)
    k_in = ((kh @ wq) / math.sqrt(d)).reshape(batch, -1, int(attn.embedding_dim))  # (B, H*T, C)
    k_bias = ((kh @ attn.q_proj.bias.reshape(heads, d, 1)) / math.sqrt(d)).reshape(batch, 1, -1)
    scores = image @ k_in.transpose(1, 2) + k_bias  # (B, L, H*T): one GEMM for all heads
    length = pe.shape[0]  # the image tokens: a static axis
    scores = scores + _pe_query_scores(pe, wq, (kh / math.sqrt(d)).transpose(-1, -2), table, batch)
    weights = torch.softmax(scores.reshape(batch, length, heads, -1), dim=-1).reshape(batch, length, -1)
    return weights, values_through_out_proj(attn, vh, batch)


def residual_output(
    attn: Attention, residual: Tensor, weights: Tensor, values: Tensor, batch: int = 1
) -> Tensor:
    """``residual + weights @ values + b_out`` as one Gemm: every row of ``weights`` sums to the
    number of heads (one softmax per head), so the output bias rides along in the values.

    ``residual`` is (B, L, C), or (1, L, C) shared by a batch."""
    bias = attn.out_proj.bias / int(attn.num_heads)
    if batch == 1:
        return torch.addmm(residual[0], weights[0], values[0] + bias).unsqueeze(0)
    return torch.baddbmm(residual, weights, values + bias)


@dataclass(frozen=True)
class PeTables:
    """The PE's projections by the attention weights, per attention index (blocks 0.., the final
    one at ``depth``): ``keys[i]`` (H, d, L) for the token->image attentions, ``queries[i]``
    (H, L, d) for the image->token ones. Constants of the weights and the PE."""

    keys: dict[int, Tensor]
    queries: dict[int, Tensor]


def pe_tables(transformer: TwoWayTransformer, pe: Tensor, first: int = 0) -> PeTables:
    """The :class:`PeTables` of attention indices ``first``.. for ``pe`` (L, C)."""
    blocks = [cast(TwoWayAttentionBlock, b) for b in transformer.layers]
    t2i = [b.cross_attn_token_to_image for b in blocks] + [transformer.final_attn_token_to_image]
    keys = {i: head_weights(a.k_proj, a.num_heads) @ pe.t() for i, a in enumerate(t2i) if i >= first}
    queries = {
        i: pe
        @ head_weights(b.cross_attn_image_to_token.q_proj, b.cross_attn_image_to_token.num_heads).transpose(
            -1, -2
        )
        for i, b in enumerate(blocks)
        if i >= first
    }
    return PeTables(keys, queries)


# --------------------------------------------------------------------------------- the one loop

ImageT = TypeVar("ImageT")


class TwoWayForm(Protocol[ImageT]):
    """How the blocks of :func:`run_two_way` read and update the image tokens of state ``ImageT``."""

    @property
    def batch(self) -> int:
        """B, the number of prompt sets run together."""
        ...

    def tokens_to_image(self, index: int, attn: Attention, q: Tensor, image: ImageT) -> Tensor:
        """Token->image attention ``index`` (blocks 0.., the final one at ``depth``): (B, T, C)."""
        ...

    def update_image(
        self, index: int, block: TwoWayAttentionBlock, q: Tensor, queries: Tensor, image: ImageT
    ) -> ImageT:
        """``norm4(image + image->token attention)`` of block ``index``; q = queries + PE."""
        ...


def run_two_way(
    transformer: TwoWayTransformer, tokens: Tensor, image: ImageT, form: TwoWayForm[ImageT]
) -> tuple[Tensor, ImageT]:
    """SAM's two-way transformer over ``form``: :meth:`TwoWayTransformer.forward`, re-stated.

    Args:
        transformer: the reference module (its weights are read through the official names).
        tokens: (B, T, C) output tokens + sparse prompts, also their own PE.
        image: the form's image state (image tokens = embedding + dense prompt, and the grid's PE).
        form: see :class:`TwoWayForm`.

    Returns:
        tokens (B, T, C) and the final image state.
    """
    batch = form.batch
    queries = tokens
    for i, module in enumerate(transformer.layers):
        block = cast(TwoWayAttentionBlock, module)
        if block.skip_first_layer_pe:  # the first block's tokens are their own PE (as trained)
            attended = attention_plain(block.self_attn, queries, queries, queries, batch)
        else:
            q = queries + tokens
            attended = queries + attention_plain(block.self_attn, q, q, queries, batch)
        queries = block.norm1(attended)
        cross = form.tokens_to_image(i, block.cross_attn_token_to_image, queries + tokens, image)
        queries = block.norm2(queries + cross)
        queries = block.norm3(queries + block.mlp(queries))
        image = form.update_image(i, block, queries + tokens, queries, image)
    final = form.tokens_to_image(
        len(transformer.layers), transformer.final_attn_token_to_image, queries + tokens, image
    )
    return transformer.norm_final_attn(queries + final), image


# ------------------------------------------------------------------------- plain and folded forms


@dataclass(frozen=True)
class DenseImage:
    """Image tokens as one tensor: ``tokens`` (B, L, C); ``pe`` (1, L, C) the grid's PE (the
    attentions' image keys and queries are tokens + pe)."""

    tokens: Tensor
    pe: Tensor


class PlainForm:
    """The reference attention, written out with static shapes (batch 1)."""

    batch = 1

    def tokens_to_image(self, index: int, attn: Attention, q: Tensor, image: DenseImage) -> Tensor:
        return attention_plain(attn, q, image.tokens + image.pe, image.tokens)

    def update_image(
        self, index: int, block: TwoWayAttentionBlock, q: Tensor, queries: Tensor, image: DenseImage
    ) -> DenseImage:
        keys = image.tokens
        x = keys + attention_plain(block.cross_attn_image_to_token, keys + image.pe, q, queries)
        return DenseImage(cast(Tensor, block.norm4(x)), image.pe)


class FoldedForm:
    """Both cross-attentions re-associated (:func:`tokens_to_image`, :func:`image_to_tokens`).

    Args:
        batch: B.
        tables: the PE's projections if computed once for many calls (else computed in each call,
            which ONNX Runtime folds into constants).
    """

    def __init__(self, batch: int = 1, tables: PeTables | None = None) -> None:
        self.batch = batch
        self.tables = tables

    def tokens_to_image(self, index: int, attn: Attention, q: Tensor, image: DenseImage) -> Tensor:
        table = self.tables.keys[index] if self.tables is not None else None
        return tokens_to_image(attn, q, image.tokens, image.pe[0], table=table, batch=self.batch)

    def update_image(
        self, index: int, block: TwoWayAttentionBlock, q: Tensor, queries: Tensor, image: DenseImage
    ) -> DenseImage:
        attn = block.cross_attn_image_to_token
        table = self.tables.queries[index] if self.tables is not None else None
        weights, values = image_to_tokens(
            attn, image.tokens, q, queries, image.pe[0], table=table, batch=self.batch
        )
        x = residual_output(attn, image.tokens, weights, values, self.batch)
        return DenseImage(cast(Tensor, block.norm4(x)), image.pe)


# --------------------------------------------------------------------- per-image projections


@dataclass(frozen=True)
class BlockProjections:
    """Per-image projections (without biases) of one attention block's image tokens:
    ``t2i_keys`` (1, H, d, L), ``t2i_values`` (1, H, L, d) of the token->image attention and
    ``i2t_queries`` (1, H, L, d) of the image->token one (None for the final attention)."""

    t2i_keys: Tensor
    t2i_values: Tensor
    i2t_queries: Tensor | None


@dataclass(frozen=True)
class PreparedImage:
    """The products of the click decoder that depend on the embedding alone (:func:`prepare_image`).

    Attributes:
        tokens: (1, L, C) the embedding E token-major.
        blocks: depth + 1 :class:`BlockProjections`: block 0 of E (keys and queries of E + PE),
            block i of E * g_{i-1}, the last one (the final attention) of E * g_last, where g_i is the
            product of the blocks' image LayerNorm weights up to block i.
        upscale_base: (1, L, K) E * g_last times the upscaler's first-stage matrix, or None.
    """

    tokens: Tensor
    blocks: tuple[BlockProjections, ...]
    upscale_base: Tensor | None

    def flat(self) -> tuple[Tensor, ...]:
        """tokens, then per block keys, values (, queries), then upscale_base (if any)."""
        out = [self.tokens]
        for b in self.blocks:
            out += [b.t2i_keys, b.t2i_values] + ([b.i2t_queries] if b.i2t_queries is not None else [])
        return (*out, *([self.upscale_base] if self.upscale_base is not None else []))

    @classmethod
    def from_flat(cls, tensors: tuple[Tensor, ...], depth: int) -> PreparedImage:
        """Inverse of :meth:`flat` for a transformer of ``depth`` blocks and an upscale base."""
        if len(tensors) != 3 * depth + 4:
            raise ValueError(
                f"a prepared image of {depth} blocks is {3 * depth + 4} tensors, got {len(tensors)}"
            )
        blocks = [BlockProjections(*tensors[1 + 3 * i : 4 + 3 * i]) for i in range(depth)]
        blocks.append(BlockProjections(tensors[3 * depth + 1], tensors[3 * depth + 2], None))
        return cls(tensors[0], tuple(blocks), tensors[-1])


def _block_projections(
    t2i: Attention, i2t: Attention | None, keyed: Tensor, scaled: Tensor, length: int
) -> BlockProjections:
    """Projections of (L, C) image tokens: keys (and image queries) of ``keyed``, values of ``scaled``."""

    def per_head(attn: Attention, linear: nn.Linear, x: Tensor) -> Tensor:  # (L, C) -> (1, H, L, d)
        return (x @ linear.weight.t()).reshape(length, int(attn.num_heads), -1).transpose(0, 1).unsqueeze(0)

    keys = (t2i.k_proj.weight @ keyed.t()).reshape(1, int(t2i.num_heads), -1, length)  # (1, H, d, L)
    queries = per_head(i2t, i2t.q_proj, keyed) if i2t is not None else None
    return BlockProjections(keys, per_head(t2i, t2i.v_proj, scaled), queries)


def prepare_image(
    transformer: TwoWayTransformer, tokens: Tensor, pe: Tensor, length: int, upscale_weight: Tensor | None
) -> PreparedImage:
    """The per-image part of :class:`PrecomputedForm`: every projection of the image tokens that
    does not depend on the prompt.

    After block i the image tokens are ``s * (E * g_i) + (low-rank part)`` (see
    :class:`FactoredImage`), so the projections of ``E * g_i`` are computed here once and a click
    adds the low-rank parts.

    Args:
        tokens: (1, L, C) embedding E, token-major.
        pe: (L, C) the grid's PE.
        length: L.
        upscale_weight: (C, K) matrix the final image tokens are read through (the upscaler's first
            stage), or None.
    """
    image = tokens[0]
    blocks, scaled = [], image  # E * g
    for i, module in enumerate(transformer.layers):
        block = cast(TwoWayAttentionBlock, module)
        keyed = image + pe if i == 0 else scaled
        t2i, i2t = block.cross_attn_token_to_image, block.cross_attn_image_to_token
        blocks.append(_block_projections(t2i, i2t, keyed, scaled, length))
        scaled = scaled * block.norm4.weight
    blocks.append(_block_projections(transformer.final_attn_token_to_image, None, scaled, scaled, length))
    base = (scaled @ upscale_weight).unsqueeze(0) if upscale_weight is not None else None
    return PreparedImage(tokens, tuple(blocks), base)


# ------------------------------------------------------------------------------ factored form


class LayerNormStats(torch.autograd.Function):
    """LayerNorm over the last axis that also returns the row mean and 1/std (ONNX
    LayerNormalization's optional outputs), so later products can be split without a second pass."""

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, weight: Tensor, bias: Tensor, eps: float
    ) -> tuple[Tensor, Tensor, Tensor]:
        mean = x.mean(dim=-1, keepdim=True)
        inv_std = torch.rsqrt(x.var(dim=-1, unbiased=False, keepdim=True) + eps)
        return F.layer_norm(x, (x.shape[-1],), weight, bias, eps), mean, inv_std

    @staticmethod
    def symbolic(g: Any, x: Any, weight: Any, bias: Any, eps: float) -> Any:
        return g.op("LayerNormalization", x, weight, bias, axis_i=-1, epsilon_f=eps, outputs=3)


@dataclass(frozen=True)
class PrecomputedImage:
    """Block 0's image tokens ``E + lhs @ rhs`` for :class:`PrecomputedForm`: the prepared
    embedding (keys and queries E + PE) plus the dense prompt as a product, lhs (L, k0), rhs (k0, C);
    ``pe`` (1, L, C)."""

    prep: PreparedImage
    lhs: Tensor
    rhs: Tensor
    pe: Tensor


@dataclass(frozen=True)
class FactoredImage:
    """Image tokens after a block, factored: ``tokens = scale * (E * g) + z @ r + shift``.

    Attributes:
        tokens: (1, L, C) the same tokens as a tensor (the next LayerNorm's input: it needs the row
            statistics).
        prep: the per-image projections of ``E * g_i``.
        pe: (1, L, C) the grid's PE.
        scale: (1, L, 1) the product of the blocks' LayerNorm 1/std.
        z, r: (1, L, k) and (1, k, C): the dense prompt, the image->token attention outputs (rank
            H*T each) and the LayerNorm means.
        shift: (C,) the last LayerNorm's bias.
    """

    tokens: Tensor
    prep: PreparedImage
    pe: Tensor
    scale: Tensor
    z: Tensor
    r: Tensor
    shift: Tensor


def factored_product(image: FactoredImage, weight: Tensor, bias: Tensor) -> Tensor:
    """``tokens @ weight + bias`` (1, L, K) from the factors; ``weight`` (C, K) is the matrix of
    ``image.prep.upscale_base``."""
    if image.prep.upscale_base is None:
        raise ValueError("the image was prepared without an upscale matrix")
    const = image.shift @ weight + bias
    return image.scale * image.prep.upscale_base + image.z @ (image.r @ weight) + const


_Precomputed = PrecomputedImage | FactoredImage


class PrecomputedForm:
    """The click part when :func:`prepare_image` ran once per image (batch 1).

    Every product over the L image tokens takes the prepared d-wide projections of ``E * g_i`` plus
    a (k x L) product with the low-rank factors, instead of a C-wide product per click. Block 0
    reads the projections of E (+ PE) and the dense prompt's factors; its residual adds embedding,
    dense prompt and attention output in one Gemm.

    Args:
        length: L, the number of image tokens.
    """

    batch = 1

    def __init__(self, length: int) -> None:
        self.length = length

    def tokens_to_image(self, index: int, attn: Attention, q: Tensor, image: _Precomputed) -> Tensor:
        heads, d = head_dims(attn)
        qh = split_heads(attn.q_proj(q), heads, d)  # (1, H, T, d)
        length, c_dim = self.length, int(attn.embedding_dim)
        wk = head_weights(attn.k_proj, heads)  # (H, d, C)
        wv = head_weights(attn.v_proj, heads)  # (H, d, C)
        proj = image.prep.blocks[index]
        qs = qh / math.sqrt(d)
        if isinstance(image, PrecomputedImage):
            lhs, rhs = image.lhs, image.rhs
            # keys = (E + PE + lhs @ rhs) Wk^T + bk; the bias adds one number per query row and
            # cancels in the softmax over the image tokens
            scores = qs @ proj.t2i_keys + (qs @ (wk @ rhs.t())) @ lhs.t()  # (1, H, T, L)
            weights = torch.softmax(scores, dim=-1)
            vh = weights @ proj.t2i_values + (weights @ lhs) @ (rhs @ wv.transpose(-1, -2))  # (1, H, T, d)
        else:
            s, z, r = image.scale, image.z, image.r
            q_in = (qs @ wk).reshape(1, -1, c_dim)  # (1, H*T, C): queries in input space
            # keys = s (E g) + Z R + c + PE; c adds one number per query row (cancels)
            scores = (qs @ proj.t2i_keys).reshape(1, -1, length) * s.transpose(1, 2)
            scores = scores + (q_in @ r.transpose(1, 2)) @ z.transpose(1, 2)
            scores = scores + _pe_key_scores(qs, wk, image.pe[0], None, 1)
            weights = torch.softmax(scores, dim=-1)  # (1, H*T, L)
            vh = (weights * s.transpose(1, 2)).reshape(1, heads, -1, length) @ proj.t2i_values
            vh = vh + (weights @ z).reshape(1, heads, -1, z.shape[2]) @ (r @ wv.transpose(-1, -2))
            vh = vh + (image.shift @ wv.transpose(-1, -2)).reshape(heads, 1, d)  # softmax rows sum to one
        return _head_values_out(attn, vh, 1)

    def update_image(
        self, index: int, block: TwoWayAttentionBlock, q: Tensor, queries: Tensor, image: _Precomputed
    ) -> FactoredImage:
        attn = block.cross_attn_image_to_token
        heads, d = head_dims(attn)
        kh = split_heads(attn.k_proj(q), heads, d)  # (1, H, T, d)
        vh = split_heads(attn.v_proj(queries), heads, d)  # (1, H, T, d)
        wq = head_weights(attn.q_proj, heads)  # (H, d, C)
        kt = kh.transpose(-1, -2) / math.sqrt(d)  # (1, H, d, T)
        pre_queries = cast(Tensor, image.prep.blocks[index].i2t_queries)  # (1, H, L, d)
        length = self.length
        # image queries = keys Wq^T + bq (block 0: keys = E + PE + lhs @ rhs)
        scores = (pre_queries @ kt).transpose(1, 2).reshape(1, length, -1)  # (1, L, H*T)
        k_in = (
            (wq.transpose(-1, -2) @ kt).permute(0, 2, 1, 3).reshape(1, int(attn.embedding_dim), -1)
        )  # (1, C, H*T)
        k_bias = (attn.q_proj.bias.reshape(heads, 1, d) @ kt).reshape(1, 1, -1)
        if isinstance(image, PrecomputedImage):
            scores = scores + image.lhs @ (image.rhs @ k_in) + k_bias
        else:
            s, z, r = image.scale, image.z, image.r
            scores = scores * s + z @ (r @ k_in) + _pe_query_scores(image.pe[0], wq, kt, None, 1) + k_bias
            scores = scores + image.shift @ k_in
        weights = torch.softmax(scores.reshape(1, length, heads, -1), dim=-1).reshape(1, length, -1)
        # every row of weights sums to H (one softmax per head): the output bias rides in the values
        values = values_through_out_proj(attn, vh) + attn.out_proj.bias / heads  # (1, H*T, C)
        if isinstance(image, PrecomputedImage):  # block 0's keys are E alone: the dense prompt joins the Gemm
            z_new = torch.cat([image.lhs.unsqueeze(0), weights], dim=2)
            r_new = torch.cat([image.rhs.unsqueeze(0), values], dim=1)
            x = torch.addmm(image.prep.tokens[0], z_new[0], r_new[0]).unsqueeze(0)
        else:
            z_new, r_new = weights, values
            x = torch.addmm(image.tokens[0], weights[0], values[0]).unsqueeze(0)
        return self._norm4(block.norm4, x, z_new, r_new, image)

    @staticmethod
    def _norm4(
        norm: nn.LayerNorm, x: Tensor, z_new: Tensor, r_new: Tensor, image: _Precomputed
    ) -> FactoredImage:
        """LayerNorm of x = (previous tokens) + z_new @ r_new, kept factored."""
        y, mean, inv_std = LayerNormStats.apply(x, norm.weight, norm.bias, float(norm.eps))
        gain, bias = norm.weight.reshape(1, 1, -1), norm.bias
        # LN(keys + Z R) = inv_std * (s (E g) + Zk Rk + c + Z R - mean) * gain + bias
        zs, rs = [], []
        prior = image if isinstance(image, FactoredImage) else None
        if prior is not None:
            zs.append(inv_std * prior.z)
            rs.append(prior.r * gain)
        zs.append(inv_std * z_new)
        rs.append(r_new * gain)
        if prior is not None:
            zs.append(inv_std)
            rs.append(prior.shift.reshape(1, 1, -1) * gain)
        zs.append(inv_std * mean)
        rs.append(-gain)
        scale = inv_std if prior is None else inv_std * prior.scale
        return FactoredImage(
            tokens=cast(Tensor, y),
            prep=image.prep,
            pe=image.pe,
            scale=scale,
            z=torch.cat(zs, dim=2),
            r=torch.cat(rs, dim=1),
            shift=bias,
        )


# --------------------------------------------------------------------------------- grid form


@dataclass(frozen=True)
class SharedImage:
    """Block 0's image tokens, the same for every prompt set of a batch: ``tokens`` (1, L, C)
    (embedding + the no-mask dense prompt), ``pe`` (1, L, C), and their block-0 projections."""

    tokens: Tensor
    pe: Tensor
    first: BlockProjections


def shared_image(transformer: TwoWayTransformer, tokens: Tensor, pe: Tensor) -> SharedImage:
    """The :class:`SharedImage` of (1, L, C) image tokens and their (1, L, C) PE."""
    block = cast(TwoWayAttentionBlock, transformer.layers[0])
    length = int(tokens.shape[1])
    first = _block_projections(
        block.cross_attn_token_to_image, block.cross_attn_image_to_token, tokens[0] + pe[0], tokens[0], length
    )
    return SharedImage(tokens, pe, first)


_Grid = SharedImage | DenseImage


class GridForm(FoldedForm):
    """A batch of B prompt sets on one image (segment-everything).

    Block 0 attends to :class:`SharedImage` projections with every prompt set's tokens of a head side
    by side (one (B*T x d) @ (d x L) product per head, no per-set copy of the image); its update gives
    each set its own :class:`DenseImage`, which later blocks read like :class:`FoldedForm`.

    Args:
        batch: B.
        tables: :func:`pe_tables` of attention indices 1.. (computed once per image).
    """

    def tokens_to_image(self, index: int, attn: Attention, q: Tensor, image: _Grid) -> Tensor:
        if isinstance(image, DenseImage):
            return super().tokens_to_image(index, attn, q, image)
        heads, d = head_dims(attn)
        b = self.batch
        qh = split_heads(attn.q_proj(q), heads, d, b) / math.sqrt(d)  # (B, H, T, d)
        qf = qh.transpose(0, 1).reshape(heads, -1, d)  # (H, B*T, d)
        weights = torch.softmax(qf @ image.first.t2i_keys[0], dim=-1)  # (H, B*T, L); key bias cancels
        vh = (weights @ image.first.t2i_values[0]).reshape(heads, b, -1, d).transpose(0, 1)  # (B, H, T, d)
        return _head_values_out(attn, vh, b)

    def update_image(
        self, index: int, block: TwoWayAttentionBlock, q: Tensor, queries: Tensor, image: _Grid
    ) -> DenseImage:
        if isinstance(image, DenseImage):
            return super().update_image(index, block, q, queries, image)
        attn = block.cross_attn_image_to_token
        heads, d = head_dims(attn)
        b = self.batch
        kh = split_heads(attn.k_proj(q), heads, d, b) / math.sqrt(d)  # (B, H, T, d)
        vh = split_heads(attn.v_proj(queries), heads, d, b)
        kf = kh.permute(1, 3, 0, 2).reshape(heads, d, -1)  # (H, d, B*T): every set's keys side by side
        queries_pre = cast(Tensor, image.first.i2t_queries)[0]  # (H, L, d)
        length = queries_pre.shape[1]
        scores = (queries_pre @ kf).reshape(heads, length, b, -1).permute(2, 1, 0, 3)  # (B, L, H, T)
        # the query bias varies along the softmax axis: bq . k_t
        bias = attn.q_proj.bias.reshape(heads, 1, d) @ kh.transpose(-1, -2)  # (B, H, 1, T)
        weights = torch.softmax(scores + bias.transpose(1, 2), dim=-1).reshape(b, length, -1)
        values = values_through_out_proj(attn, vh, b)
        x = residual_output(attn, image.tokens, weights, values, b)
        return DenseImage(cast(Tensor, block.norm4(x)), image.pe)
