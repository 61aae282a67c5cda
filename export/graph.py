"""Export-only wrapper around SAM's prompt encoder + mask decoder (the click path of the page).

The wrapper reads the weights of a ``clicksam.model.Sam`` through the official attribute names
(``prompt_encoder.pe_layer``, ``point_embeddings``, ``mask_decoder.transformer.layers[i]...``) and
re-states the forward pass in a form that traces into a clean, branch-free ONNX graph:

* points and box corners are embedded by label arithmetic instead of boolean-mask assignment, so the
  number of prompt points is a dynamic axis and labels 2/3 (box corners) and -1 (padding) need no
  control flow;
* the full-size output (``official`` interface) crops the 1024 frame to the resized image size
  computed *in the graph* from ``orig_im_size`` (never from the dummy size used while tracing);
* the ``browser`` interface stops at the 256x256 low-res logits of all four mask tokens;
* optional: the dense positional encoding is computed in the graph from the (2, 128) Gaussian matrix
  instead of being stored as a (1, 256, 64, 64) constant (ONNX Runtime folds it once at session
  creation), the embedding input is float16, and the attention between the few prompt tokens and
  the 4096 image tokens is re-associated so that no (4096 x 256) x (256 x 128) projection is done;
* ``precompute_image`` (the page's default): the decoder is split into a per-image graph
  (:class:`ImagePrepGraph`, run once when the embedding arrives) and a per-click graph
  (:class:`PrecomputedDecoderGraph`) in which the image tokens stay factored through every block,
  so no product over the 4096 tokens is 256 wide on a click.

Coordinate frames: ``point_coords`` are xy in the resized-input frame (the image resized so that
its long side is ``image_size`` = 1024, top-left aligned in the padded square); ``orig_im_size`` is
(H, W) of the original image in pixels; low-res masks are 256x256 over the padded 1024 frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clicksam.model.common import LayerNorm2d
from clicksam.model.mask_decoder import MaskDecoder
from clicksam.model.prompt_encoder import PromptEncoder
from clicksam.model.sam import Sam
from clicksam.model.transformer import Attention, TwoWayAttentionBlock, TwoWayTransformer


@dataclass(frozen=True)
class GraphOptions:
    """What the exported graph computes and how.

    Attributes:
        outputs: ``"official"`` -> ``masks`` (1, C, H, W) at ``orig_im_size``, ``iou_predictions``
            (1, C), ``low_res_masks`` (1, C, 256, 256); ``"low_res"`` -> ``low_res_masks``
            (1, 4, 256, 256) and ``iou_predictions`` (1, 4) only (no ``orig_im_size`` input).
        single_mask: official interface only: return one mask chosen by the official rule (best of
            the three multimask tokens when the prompt has at most 2 points counting padding and box
            corners, else token 0) instead of all four tokens.
        embedding_float16: the ``image_embeddings`` input is float16 and cast to float32 in the graph.
        pe_in_graph: compute the dense positional encoding from the Gaussian matrix in the graph.
        fold_attention: re-associate the token<->image cross attentions (exact in real arithmetic).
        matmul_upscaling: run the two stride-2 transposed convolutions of the mask upscaler as
            matrix products on the token-major image (no overlap, so exact) with a fused channel
            LayerNorm, and un-shuffle only the final 4 masks instead of the 64/32-channel maps.
        token_major_dense: compute the dense (mask) prompt directly in the token-major layout of
            the transformer: the two 2x2 stride-2 convolutions of ``mask_downscaling`` become
            matrix products on a sub-pixel shuffle of the (small) mask input, and its final 1x1
            convolution, the no-mask embedding and the embedding are added in one Gemm, so no
            (C, 64, 64) tensor is built, transposed or blended. Exact.
        precompute_image: (``low_res`` with ``matmul_upscaling`` only) split the decoder into a
            per-image graph (:class:`ImagePrepGraph`, run once when the embedding arrives) and a
            per-click graph (:class:`PrecomputedDecoderGraph`) that takes its outputs instead of
            ``image_embeddings``. Exact.
    """

    outputs: str = "official"
    single_mask: bool = False
    embedding_float16: bool = False
    pe_in_graph: bool = False
    fold_attention: bool = False
    matmul_upscaling: bool = False
    token_major_dense: bool = False
    precompute_image: bool = False


def _bias(conv: nn.Conv2d) -> Tensor:
    if conv.bias is None:
        raise ValueError("SAM's mask downscaling convolutions have biases")
    return conv.bias


# Shapes in this module come from the modules' sizes (Python ints) and -1, never from a tensor's
# .shape: the number of prompt tokens is a dynamic axis, and every size read from it would be a
# chain of Shape / Gather / Cast / Concat nodes run on every click.


def _dims(attn: Attention) -> tuple[int, int]:
    """(heads, width of one head) of an attention module."""
    heads = int(attn.num_heads)
    return heads, int(attn.internal_dim) // heads


def _split_heads(x: Tensor, heads: int, d: int) -> Tensor:
    """(1, N, heads * d) -> (1, heads, N, d)."""
    return x.reshape(1, -1, heads, d).transpose(1, 2)


def _merge_heads(x: Tensor, heads: int, d: int) -> Tensor:
    """(1, heads, N, d) -> (1, N, heads * d)."""
    return x.transpose(1, 2).reshape(1, -1, heads * d)


def attention_plain(attn: Attention, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """SAM's multi-head attention with down-projected heads, written out.

    Args:
        attn: a module with ``q_proj``/``k_proj``/``v_proj``/``out_proj`` (Linear) and ``num_heads``.
        q: (B, Nq, C) queries; k: (B, Nk, C) keys; v: (B, Nk, C) values.

    Returns:
        (B, Nq, C).
    """
    heads, d = _dims(attn)
    qh = _split_heads(attn.q_proj(q), heads, d)  # (1, H, Nq, d)
    kh = _split_heads(attn.k_proj(k), heads, d)  # (1, H, Nk, d)
    vh = _split_heads(attn.v_proj(v), heads, d)  # (1, H, Nk, d)
    weights = torch.softmax((qh @ kh.transpose(-1, -2)) / math.sqrt(d), dim=-1)  # (1, H, Nq, Nk)
    return attn.out_proj(_merge_heads(weights @ vh, heads, d))


def _head_weights(linear: nn.Linear, heads: int) -> Tensor:
    """Linear weight (H*d, C) -> (H, d, C), one (d, C) block per head."""
    w = linear.weight
    return w.reshape(heads, w.shape[0] // heads, w.shape[1])


def _pe_key_scores(qs: Tensor, wk: Tensor, pe: Tensor) -> Tensor:
    """Scores of scaled head queries qs (1, H, T, d) against the PE's keys pe @ Wk_h^T, as
    (1, H*T, L); ``wk @ pe.t()`` depends on weights only and is folded once by ONNX Runtime."""
    return (qs @ (wk @ pe.t())).reshape(1, -1, pe.shape[0])


def _pe_query_scores(pe: Tensor, wq: Tensor, kt: Tensor) -> Tensor:
    """Scores of the PE's queries pe @ Wq_h^T against scaled head keys kt (1, H, d, T), as
    (1, L, H*T); ``pe @ wq^T`` is a folded constant."""
    return ((pe @ wq.transpose(-1, -2)) @ kt).transpose(1, 2).reshape(1, pe.shape[0], -1)


def attention_tokens_to_image(attn: Attention, q: Tensor, image: Tensor, pe: Tensor) -> Tensor:
    """Few queries (prompt tokens) attending to many keys (image tokens), re-associated.

    Instead of projecting all L image tokens to keys and values ((L x C) @ (C x d*H) twice), the
    per-head query is mapped back into the C-dim input space (q_h @ Wk_h) and the softmax-weighted
    sum is taken over the raw image tokens before the value projection. The key bias adds the same
    number to every score of a query, so it cancels in the softmax; the value bias passes through
    because softmax rows sum to one. Equal to :func:`attention_plain` in exact arithmetic.

    Args:
        q: (1, T, C) prompt tokens (+ their PE).
        image: (1, L, C) image tokens, the values; the keys are image + pe.
        pe: (L, C) dense PE: its key projection (a constant of the weights, folded once by ONNX
            Runtime) is scored against the d-wide head queries, instead of adding the PE to all
            L x C keys on every click.

    Returns:
        (1, T, C).
    """
    heads, d = _dims(attn)
    c = int(attn.embedding_dim)
    qh = _split_heads(attn.q_proj(q), heads, d)  # (1, H, T, d)
    wk = _head_weights(attn.k_proj, heads)  # (H, d, C)
    q_in = ((qh @ wk) / math.sqrt(d)).reshape(1, -1, c)  # (1, H*T, C): queries in input space
    # one (H*T x C) @ (C x L) product instead of a per-head batch: better GEMM shapes in the browser
    scores = q_in @ image.transpose(1, 2)  # (1, H*T, L)
    scores = scores + _pe_key_scores(qh / math.sqrt(d), wk, pe)
    weights = torch.softmax(scores, dim=-1)
    pooled = (weights @ image).reshape(1, heads, -1, c)  # (1, H, T, C): attention-weighted raw image tokens
    wv = _head_weights(attn.v_proj, heads)  # (H, d, C)
    vh = pooled @ wv.transpose(-1, -2) + attn.v_proj.bias.reshape(heads, 1, d)  # (1, H, T, d)
    return attn.out_proj(_merge_heads(vh, heads, d))


def image_to_tokens_factors(
    attn: Attention, image: Tensor, k: Tensor, v: Tensor, pe: Tensor
) -> tuple[Tensor, Tensor]:
    """Many queries (image tokens) attending to few keys (prompt tokens), re-associated, as two
    factors: the attention output is ``weights @ values + b_out``.

    The key of each prompt token is mapped back into the C-dim input space (k_h @ Wq_h) so scores
    are a single (L x C) @ (C x H*T) product, and the output projection is applied to the T values
    of each head before the softmax-weighted sum, so no (L x d*H) tensor is ever formed.

    Args:
        image: (1, L, C) image tokens; the queries are image + pe.
        k: (1, T, C) prompt tokens + their PE; v: (1, T, C) prompt tokens.
        pe: (L, C) dense PE (its query projection is a folded constant, see
            :func:`attention_tokens_to_image`).

    Returns:
        weights (1, L, H*T): the per-head softmax weights of every image token over the T prompt
        tokens; values (1, H*T, C): each head's values of the T prompt tokens through its slice of
        the output projection.
    """
    heads, d = _dims(attn)
    kh = _split_heads(attn.k_proj(k), heads, d)  # (1, H, T, d)
    vh = _split_heads(attn.v_proj(v), heads, d)  # (1, H, T, d)
    wq = _head_weights(attn.q_proj, heads)  # (H, d, C)
    k_in = ((kh @ wq) / math.sqrt(d)).reshape(1, -1, int(attn.embedding_dim))  # (1, H*T, C)
    k_bias = ((kh @ attn.q_proj.bias.reshape(heads, d, 1)) / math.sqrt(d)).reshape(1, 1, -1)
    scores = image @ k_in.transpose(1, 2) + k_bias  # (1, L, H*T): one GEMM for all heads
    length = pe.shape[0]  # the image tokens: a static axis
    scores = scores + _pe_query_scores(pe, wq, (kh / math.sqrt(d)).transpose(-1, -2))
    weights = torch.softmax(scores.reshape(1, length, heads, -1), dim=-1).reshape(1, length, -1)
    return weights, _values_through_out_proj(attn, vh)


def _values_through_out_proj(attn: Attention, vh: Tensor) -> Tensor:
    """(B, H, T, d) per-head values -> (B, H*T, C), each through its head's slice of ``out_proj``."""
    heads, d = _dims(attn)
    wo = attn.out_proj.weight  # (C, H*d)
    wo_h = wo.reshape(wo.shape[0], heads, d).permute(1, 2, 0)  # (H, d, C)
    return (vh @ wo_h).reshape(1, -1, wo.shape[0])


def _residual_output(attn: Attention, residual: Tensor, weights: Tensor, values: Tensor) -> Tensor:
    """``residual + weights @ values + b_out`` as one Gemm: every row of ``weights`` sums to the
    number of heads (one softmax per head), so the output bias rides along in the values."""
    heads = int(attn.num_heads)
    return torch.addmm(residual[0], weights[0], values[0] + attn.out_proj.bias / heads).unsqueeze(0)


class MatmulUpscaler(nn.Module):
    """SAM's mask upscaler + hypernetwork product as matrix products on the token-major image.

    A 2x2 stride-2 transposed convolution writes each input pixel to its own 2x2 output block, so
    it is a (pixels x Cin) @ (Cin x 4*Cout) product whose columns are (dy, dx, cout). Both stages
    and the mask product stay in that sub-pixel order; only the (M, 4h*4w) masks are rearranged
    into the image layout at the end. Exact; reads the weights of ``decoder.output_upscaling``.
    """

    def __init__(self, decoder: MaskDecoder) -> None:
        super().__init__()
        self.up = decoder.output_upscaling
        self.num_masks = int(decoder.num_mask_tokens)

    def stage1_weight(self) -> Tensor:
        """The first transposed convolution as a (Cin, 4 * C1) matrix, columns (dy1, dx1, c1)."""
        conv1 = cast(nn.ConvTranspose2d, self.up[0])  # ConvTranspose weight: (Cin, Cout, 2, 2)
        return conv1.weight.permute(0, 2, 3, 1).reshape(conv1.weight.shape[0], -1)

    def stage1_bias(self) -> Tensor:
        """The first transposed convolution's bias for the columns (dy1, dx1, c1)."""
        return cast(Tensor, cast(nn.ConvTranspose2d, self.up[0]).bias).repeat(4)

    def forward(self, image: Tensor, hyper: Tensor, h: int, w: int) -> Tensor:
        """image (1, h*w, C) tokens, hyper (1, M, C/8) -> masks (1, M, 4h, 4w)."""
        x = torch.addmm(self.stage1_bias(), image[0], self.stage1_weight())  # one Gemm with its bias
        return self.finish(x.unsqueeze(0), hyper, h, w)

    def finish(self, x: Tensor, hyper: Tensor, h: int, w: int) -> Tensor:
        """(1, h*w, 4*C1) first-stage outputs (with bias), hyper (1, M, C/8) -> masks (1, M, 4h, 4w)."""
        up = self.up
        conv1, conv2 = cast(nn.ConvTranspose2d, up[0]), cast(nn.ConvTranspose2d, up[3])
        norm, act1, act2 = cast(LayerNorm2d, up[1]), up[2], up[4]
        c1, c2 = conv1.weight.shape[1], conv2.weight.shape[1]
        w2 = conv2.weight.permute(0, 2, 3, 1).reshape(conv2.weight.shape[0], 4 * c2)  # columns (dy2, dx2, c2)
        x = x.reshape(1, h * w * 4, c1)  # rows (i, j, dy1, dx1)
        x = act1(F.layer_norm(x, (c1,), norm.weight, norm.bias, float(norm.eps)))
        x = act2(
            (x @ w2).reshape(1, h * w * 16, c2) + cast(Tensor, conv2.bias)
        )  # rows (i, j, dy1, dx1, dy2, dx2)
        n = self.num_masks
        # mask-major product (x is read transposed by the GEMM, never copied): (1, M, h*w*16)
        masks = hyper @ x.transpose(1, 2)
        masks = masks.reshape(n, h, w, 2, 2, 2, 2)  # (m, i, j, dy1, dx1, dy2, dx2)
        # output row 4i + 2dy1 + dy2, column 4j + 2dx1 + dx2; dx2 stays the innermost axis
        return masks.permute(0, 1, 3, 5, 2, 4, 6).reshape(1, n, 4 * h, 4 * w)


class DecoderGraph(nn.Module):
    """Prompt encoder + mask decoder (+ optional upsampling to the original size) for ONNX export.

    Inputs (all float; batch of one image):
        image_embeddings: (1, 256, 64, 64) float32 (float16 if ``embedding_float16``).
        point_coords: (1, N, 2) xy in the resized-input (1024) frame; box corners included.
        point_labels: (1, N) 1 fg, 0 bg, 2 box top-left, 3 box bottom-right, -1 padding.
        mask_input: (1, 1, 256, 256) low-res logits of a previous prediction.
        has_mask_input: (1,) 1.0 to use ``mask_input``, 0.0 to ignore it.
        orig_im_size: (2,) original image (H, W) in pixels (``outputs == "official"`` only).

    Outputs: see :class:`GraphOptions`.
    """

    dense_pe: Tensor  # (1, C, h, w) constant positional encoding (used unless ``pe_in_graph``)

    def __init__(self, sam: Sam, options: GraphOptions) -> None:
        super().__init__()
        if options.outputs not in ("official", "low_res"):
            raise ValueError(f"outputs must be 'official' or 'low_res', not {options.outputs!r}")
        if options.single_mask and options.outputs != "official":
            raise ValueError("single_mask applies to the official interface only")
        self.options = options
        self.prompt_encoder: PromptEncoder = sam.prompt_encoder
        self.mask_decoder: MaskDecoder = sam.mask_decoder
        self.image_size = int(sam.image_size)
        emb_h, emb_w = self.prompt_encoder.image_embedding_size
        self.embedding_hw = (int(emb_h), int(emb_w))
        # a submodule so that its nodes are named /upscaler/... (selectable for quantisation)
        self.upscaler = MatmulUpscaler(self.mask_decoder)
        # the constant PE (used when not computing it in the graph): (1, C, h, w)
        self.register_buffer(
            "dense_pe", self.prompt_encoder.get_dense_pe().detach().clone(), persistent=False
        )

    # ---- prompt encoding -------------------------------------------------------------------------
    def _fourier(self, coords01: Tensor) -> Tensor:
        """Random Fourier features of points in [0, 1]^2: (..., 2) -> (..., C)."""
        gauss = self.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix  # (2, C/2)
        proj = (2.0 * math.pi) * ((2.0 * coords01 - 1.0) @ gauss)
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)

    def _dense_pe(self) -> Tensor:
        """(1, C, h, w) positional encoding of the centres of the embedding grid cells."""
        if not self.options.pe_in_graph:
            return self.dense_pe
        h, w = self.embedding_hw
        gauss = self.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix
        # arange-based grid: a tiny subgraph instead of a (C, h, w) constant in the file
        ys = (torch.arange(h, dtype=gauss.dtype) + 0.5) / h
        xs = (torch.arange(w, dtype=gauss.dtype) + 0.5) / w
        grid = torch.stack([xs.unsqueeze(0).expand(h, w), ys.unsqueeze(1).expand(h, w)], dim=-1)
        return self._fourier(grid).permute(2, 0, 1).unsqueeze(0)

    def _embed_points(self, coords: Tensor, labels: Tensor) -> Tensor:
        """(1, N, 2) xy in the 1024 frame + (1, N) labels -> (1, N, C) sparse prompt tokens."""
        pe = self.prompt_encoder
        in_h, in_w = pe.input_image_size
        scale = torch.tensor([1.0 / float(in_w), 1.0 / float(in_h)], dtype=coords.dtype)
        feats = self._fourier((coords + 0.5) * scale)  # pixel centres, normalised to [0, 1]
        lab = labels.unsqueeze(-1)  # (1, N, 1)
        # padding points carry only the "not a point" embedding; every other label adds its own
        tokens = feats * (lab != -1).to(feats.dtype) + pe.not_a_point_embed.weight * (lab == -1).to(
            feats.dtype
        )
        for i, emb in enumerate(pe.point_embeddings):
            tokens = tokens + emb.weight * (lab == i).to(feats.dtype)
        return tokens

    def _embed_mask(self, mask_input: Tensor, has_mask_input: Tensor) -> Tensor:
        """(1, 1, 256, 256) logits + (1,) flag -> (1, C, 64, 64) dense prompt embedding."""
        pe = self.prompt_encoder
        flag = has_mask_input.reshape(1, 1, 1, 1)
        no_mask = pe.no_mask_embed.weight.reshape(1, -1, 1, 1)
        return flag * pe.mask_downscaling(mask_input) + (1.0 - flag) * no_mask

    def _dense_factors(self, mask_input: Tensor, has_mask_input: Tensor) -> tuple[Tensor, Tensor]:
        """The dense prompt in token-major layout as a product ``lhs @ rhs``: lhs (h*w, C2 + 1),
        rhs (C2 + 1, C).

        The two 2x2 stride-2 convolutions of ``mask_downscaling`` are matrix products on a
        sub-pixel shuffle of the (small) mask input; its final 1x1 convolution, the flag blend and
        the no-mask embedding become ``rhs`` (the last column of ``lhs`` is ones).
        """
        md = self.prompt_encoder.mask_downscaling
        conv1, norm1, act1 = cast(nn.Conv2d, md[0]), cast(LayerNorm2d, md[1]), md[2]
        conv2, norm2, act2 = cast(nn.Conv2d, md[3]), cast(LayerNorm2d, md[4]), md[5]
        conv3 = cast(nn.Conv2d, md[6])
        h, w = self.embedding_hw
        # (1, 1, 4h, 4w): row 4i + 2dy1 + dy2 -> rows (i, j, dy1, dx1), columns (dy2, dx2)
        x = mask_input.reshape(h, 2, 2, w, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(h * w * 4, 4)
        w1 = conv1.weight.reshape(conv1.weight.shape[0], 4)  # (C1, dy*2 + dx), one input channel
        x = act1(F.layer_norm(x @ w1.t() + _bias(conv1), (w1.shape[0],), norm1.weight, norm1.bias, norm1.eps))
        c1 = w1.shape[0]
        w2 = conv2.weight.permute(0, 2, 3, 1).reshape(conv2.weight.shape[0], 4 * c1)  # (C2, (dy, dx, c1))
        x = x.reshape(h * w, 4 * c1) @ w2.t() + _bias(conv2)  # (h*w, C2) token-major
        x = act2(F.layer_norm(x, (w2.shape[0],), norm2.weight, norm2.bias, norm2.eps))
        flag = has_mask_input.reshape(1, 1)
        w3 = conv3.weight.reshape(conv3.weight.shape[0], -1)  # (C, C2)
        # flag * (x @ w3.T + b3) + (1 - flag) * no_mask
        const = flag * _bias(conv3).reshape(1, -1) + (1.0 - flag) * self.prompt_encoder.no_mask_embed.weight
        lhs = torch.cat([flag * x, torch.ones(h * w, 1, dtype=x.dtype)], dim=1)  # (h*w, C2 + 1)
        rhs = torch.cat([w3.t(), const], dim=0)  # (C2 + 1, C)
        return lhs, rhs

    def _image_tokens(self, embeddings: Tensor, mask_input: Tensor, has_mask_input: Tensor) -> Tensor:
        """Embedding + dense prompt as (1, h*w, C) image tokens."""
        if not self.options.token_major_dense:
            src = embeddings + self._embed_mask(mask_input, has_mask_input)  # (1, C, h, w)
            return src.flatten(2).transpose(1, 2)
        lhs, rhs = self._dense_factors(mask_input, has_mask_input)
        h, w = self.embedding_hw
        image = embeddings.reshape(embeddings.shape[1], h * w).t()  # (h*w, C)
        return torch.addmm(image, lhs, rhs).unsqueeze(0)  # embedding + dense prompt in one Gemm

    # ---- two-way transformer --------------------------------------------------------------------
    def _layer_t2i(self, layer: int, attn: Attention, q: Tensor, keys: Tensor, image_pe: Tensor) -> Tensor:
        """Token -> image attention of two-way block ``layer`` (the final attention: ``depth``);
        keys + PE are the attention keys."""
        if self.options.fold_attention:
            return attention_tokens_to_image(attn, q, keys, image_pe[0])
        return attention_plain(attn, q, keys + image_pe, keys)

    def _i2t_residual(
        self, layer: int, attn: Attention, keys: Tensor, image_pe: Tensor, q: Tensor, queries: Tensor
    ) -> Tensor:
        """keys + the image -> token attention of two-way block ``layer`` (its LayerNorm's input)."""
        if self.options.fold_attention:
            weights, values = image_to_tokens_factors(attn, keys, q, queries, image_pe[0])
            return _residual_output(attn, keys, weights, values)
        return keys + attention_plain(attn, keys + image_pe, q, queries)

    def _norm4(self, layer: int, norm: nn.LayerNorm, x: Tensor) -> Tensor:
        """The LayerNorm that ends two-way block ``layer`` on the image tokens."""
        return cast(Tensor, norm(x))

    def _upscale(self, image: Tensor, hyper: Tensor) -> Tensor:
        """Transformer image tokens (1, h*w, C), hypernetwork outputs (1, M, C/8) -> (1, M, 4h, 4w)."""
        h, w = self.embedding_hw
        if self.options.matmul_upscaling:
            return cast(Tensor, self.upscaler(image, hyper, h, w))
        md = self.mask_decoder
        upscaled = md.output_upscaling(image.transpose(1, 2).reshape(1, -1, h, w))  # (1, C/8, 4h, 4w)
        _, c8, uh, uw = upscaled.shape
        return (hyper @ upscaled.reshape(1, c8, uh * uw)).reshape(1, hyper.shape[1], uh, uw)

    def _transformer(self, image: Tensor, image_pe: Tensor, prompt: Tensor) -> tuple[Tensor, Tensor]:
        """image, image_pe: (1, L, C) tokens of the 64x64 grid; prompt: (1, T, C) -> (tokens, image)."""
        tr = cast(TwoWayTransformer, self.mask_decoder.transformer)
        queries, keys = prompt, image
        for i, block in enumerate(tr.layers):
            layer = cast(TwoWayAttentionBlock, block)
            if i == 0:  # the first layer skips the query PE in self-attention (as trained)
                queries = attention_plain(layer.self_attn, queries, queries, queries)
            else:
                q = queries + prompt
                queries = queries + attention_plain(layer.self_attn, q, q, queries)
            queries = layer.norm1(queries)
            q = queries + prompt
            queries = layer.norm2(
                queries + self._layer_t2i(i, layer.cross_attn_token_to_image, q, keys, image_pe)
            )
            queries = layer.norm3(queries + layer.mlp(queries))
            q = queries + prompt
            keys = self._norm4(
                i,
                layer.norm4,
                self._i2t_residual(i, layer.cross_attn_image_to_token, keys, image_pe, q, queries),
            )
        q = queries + prompt
        final = self._layer_t2i(len(tr.layers), tr.final_attn_token_to_image, q, keys, image_pe)
        queries = tr.norm_final_attn(queries + final)
        return queries, keys

    def _decode(self, image: Tensor, sparse: Tensor) -> tuple[Tensor, Tensor]:
        """image (1, h*w, C) tokens (embedding + dense prompt), sparse (1, N, C) prompt tokens
        -> low-res mask logits (1, 4, 256, 256), iou predictions (1, 4) for all mask tokens."""
        md = self.mask_decoder
        out_tokens = torch.cat([md.iou_token.weight, md.mask_tokens.weight], dim=0).unsqueeze(0)
        tokens = torch.cat([out_tokens, sparse], dim=1)  # (1, 1 + 4 + N, C)
        image_pe = self._dense_pe().flatten(2).transpose(1, 2)  # (1, h*w, C)
        hs, image = self._transformer(image, image_pe, tokens)
        n_masks = int(md.num_mask_tokens)
        iou_out = hs[:, 0, :]
        mask_out = hs[:, 1 : 1 + n_masks, :]
        hyper = torch.stack(
            [mlp(mask_out[:, i, :]) for i, mlp in enumerate(md.output_hypernetworks_mlps)], dim=1
        )
        masks = self._upscale(image, hyper)
        return masks, md.iou_prediction_head(iou_out)

    # ---- official full-size output ----------------------------------------------------------------
    def _select_single(self, masks: Tensor, iou: Tensor, num_points: Tensor) -> tuple[Tensor, Tensor]:
        """The official single-mask rule without control flow: token 0 when > 2 points, else best of 1..3."""
        n_masks = masks.shape[1]
        penalty = torch.zeros(1, n_masks, dtype=iou.dtype)
        penalty[0, 0] = 1000.0
        score = iou + (num_points - 2.5) * penalty
        best = torch.argmax(score, dim=1)  # (1,)
        return masks[:, best], iou[:, best]

    def _to_original(self, masks: Tensor, orig_im_size: Tensor) -> Tensor:
        """(1, C, 256, 256) low-res logits -> (1, C, H, W) with (H, W) = orig_im_size, all in-graph."""
        side = self.image_size
        up = F.interpolate(masks, size=(side, side), mode="bilinear", align_corners=False)
        size = orig_im_size.to(torch.float32)
        # resized size as the predictor computes it (clicksam.model.frames.get_preprocess_shape):
        # int(x * side / max + 0.5), at least 1, from the input tensor (never the tracing size)
        resized = torch.clamp(torch.floor(size * (side / torch.max(size)) + 0.5), min=1.0).to(torch.int64)
        up = up[:, :, : resized[0], : resized[1]]
        hw = orig_im_size.to(torch.int64)
        # tensor sizes on purpose: the tracer records them as graph values, so (H, W) stays dynamic
        return F.interpolate(up, size=(hw[0], hw[1]), mode="bilinear", align_corners=False)  # type: ignore[arg-type]

    def forward(
        self,
        image_embeddings: Tensor,
        point_coords: Tensor,
        point_labels: Tensor,
        mask_input: Tensor,
        has_mask_input: Tensor,
        orig_im_size: Tensor | None = None,
    ) -> tuple[Tensor, ...]:
        embeddings = image_embeddings.to(torch.float32)
        sparse = self._embed_points(point_coords, point_labels)
        image = self._image_tokens(embeddings, mask_input, has_mask_input)
        low_res, iou = self._decode(image, sparse)
        if self.options.outputs == "low_res":
            return low_res, iou
        if orig_im_size is None:
            raise ValueError("the official interface needs orig_im_size")
        if self.options.single_mask:
            # counted from the input tensor so that N stays a dynamic axis of the traced graph
            num_points = torch.ones_like(point_labels).sum()
            low_res, iou = self._select_single(low_res, iou, num_points)
        return self._to_original(low_res, orig_im_size), iou, low_res


class _LayerNormStats(torch.autograd.Function):
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


def prep_output_names(depth: int) -> list[str]:
    """Outputs of :class:`ImagePrepGraph` (= the first inputs of :class:`PrecomputedDecoderGraph`)
    for a two-way transformer of ``depth`` blocks."""
    names = ["image_tokens"]
    for i in range(depth):
        names += [f"l{i}_t2i_keys", f"l{i}_t2i_values", f"l{i}_i2t_queries"]
    return [*names, "final_t2i_keys", "final_t2i_values", "upscale_base"]


class ImagePrepGraph(nn.Module):
    """The per-image part of the click decoder: the products that depend on the embedding alone.

    Run once per image; the outputs are inputs of :class:`PrecomputedDecoderGraph` on every click.
    Every attention of the two-way transformer reads the image tokens through d-wide per-head
    projections, and the mask upscaler through its first-stage matrix. After block ``i`` the
    image tokens are ``s * (E * g_i) + (low-rank part)`` (``s`` per token, ``g_i`` the product of
    the blocks' image-token LayerNorm weights, see :class:`PrecomputedDecoderGraph`), so the
    projections of ``E * g_i`` are computed here once, and the click graph adds the low-rank parts.

    Input ``image_embeddings`` (1, C, h, w) (float16 if ``embedding_float16``). Outputs (float32,
    L = h*w tokens, H heads of width d, projections without biases), see :func:`prep_output_names`:
        image_tokens: (1, L, C) the embedding E token-major (lossless for a float16 input: a
            per-click cast of 1M halves costs more in WASM than copying twice the bytes);
        l{i}_t2i_keys (1, H, d, L), l{i}_t2i_values (1, H, L, d), l{i}_i2t_queries (1, H, L, d):
            block i's token->image key and value and image->token query projections of E * g_{i-1}
            (block 0: of E, keys and queries of E + PE);
        final_t2i_keys, final_t2i_values: the same for the final token->image attention;
        upscale_base: (1, L, 4*C1) E * g_last times the upscaler's first-stage matrix.
    """

    def __init__(self, graph: PrecomputedDecoderGraph) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, image_embeddings: Tensor) -> tuple[Tensor, ...]:
        g = self.graph
        c = image_embeddings.shape[1]
        h, w = g.embedding_hw
        length = h * w
        tokens = image_embeddings.to(torch.float32).reshape(1, c, length).transpose(1, 2)  # (1, L, C)
        image = tokens[0]
        transformer = cast(TwoWayTransformer, g.mask_decoder.transformer)

        def keys_t(attn: Attention, x: Tensor) -> Tensor:  # (L, C) -> (1, H, d, L)
            return (attn.k_proj.weight @ x.t()).reshape(1, int(attn.num_heads), -1, length)

        def per_head(attn: Attention, linear: nn.Linear, x: Tensor) -> Tensor:  # (L, C) -> (1, H, L, d)
            return (
                (x @ linear.weight.t()).reshape(length, int(attn.num_heads), -1).transpose(0, 1).unsqueeze(0)
            )

        outs = [tokens]
        scaled = image  # E * g
        for i, block in enumerate(cast(TwoWayAttentionBlock, b) for b in transformer.layers):
            t2i, i2t = block.cross_attn_token_to_image, block.cross_attn_image_to_token
            keyed = image + g._dense_pe().reshape(c, length).t() if i == 0 else scaled
            outs += [keys_t(t2i, keyed), per_head(t2i, t2i.v_proj, scaled), per_head(i2t, i2t.q_proj, keyed)]
            scaled = scaled * block.norm4.weight
        final = transformer.final_attn_token_to_image
        outs += [keys_t(final, scaled), per_head(final, final.v_proj, scaled)]
        outs.append((scaled @ g.upscaler.stage1_weight()).unsqueeze(0))
        return tuple(outs)


class PrecomputedDecoderGraph(DecoderGraph):
    """The click part of the decoder when :class:`ImagePrepGraph` ran once per image.

    Same outputs as the ``low_res`` interface of :class:`DecoderGraph`; exact in real arithmetic.

    The image tokens after block i are kept in factored form next to their values:
    ``keys_i = s_i * (E * g_i) + Z_i @ R_i + c_i`` with ``s_i`` (L, 1) the product of the blocks'
    LayerNorm 1/std (they come out of the LayerNormalization nodes), ``g_i`` the product of their
    weights, ``Z_i`` (L, k) / ``R_i`` (k, C) the dense prompt, the image->token attention outputs
    (rank H*T each) and the LayerNorm means, and ``c_i`` the last LayerNorm bias. Every product
    over the L image tokens then takes the precomputed d-wide projections of ``E * g_i`` plus a
    (k x L) product, instead of a 256-wide product per click: the attentions of blocks 1.. and
    the final one, and the first stage of the mask upscaler. Block 0 uses the projections of E
    (+ PE) and the dense prompt's factors.

    Inputs: :func:`prep_output_names`, then ``point_coords``, ``point_labels``, ``mask_input``,
    ``has_mask_input`` as in :class:`DecoderGraph`.
    """

    def __init__(self, sam: Sam, options: GraphOptions) -> None:
        if options.outputs != "low_res" or not options.matmul_upscaling or not options.precompute_image:
            raise ValueError("precompute_image needs the low_res interface with matmul_upscaling")
        super().__init__(sam, options)
        self.depth = len(cast(TwoWayTransformer, self.mask_decoder.transformer).layers)
        self.prep_names = prep_output_names(self.depth)
        self._pre: dict[str, Tensor] | None = None
        self._dense: tuple[Tensor, Tensor] | None = None
        # factored image tokens (see the class doc): s (1, L, 1) or None (ones), Z (1, L, k),
        # R (1, k, C), c (C,) or None; and the residual factors of the block being run
        self._keys: dict[str, Tensor | None] = {}
        self._residual: tuple[Tensor, Tensor] | None = None

    def _state(self) -> tuple[dict[str, Tensor], tuple[Tensor, Tensor]]:
        if self._pre is None or self._dense is None:
            raise RuntimeError("PrecomputedDecoderGraph is run through forward() only")
        return self._pre, self._dense

    def _factored(self) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        s, z, r, c = (self._keys.get(k) for k in ("s", "z", "r", "c"))
        if s is None or z is None or r is None:
            raise RuntimeError("the image tokens are factored after block 0 only")
        return s, z, r, c

    def _layer_t2i(self, layer: int, attn: Attention, q: Tensor, keys: Tensor, image_pe: Tensor) -> Tensor:
        pre, (lhs, rhs) = self._state()
        heads, d = _dims(attn)
        qh = _split_heads(attn.q_proj(q), heads, d)  # (1, H, T, d)
        h, w = self.embedding_hw
        length, c_dim = h * w, int(attn.embedding_dim)
        wk = _head_weights(attn.k_proj, heads)  # (H, d, C)
        wv = _head_weights(attn.v_proj, heads)  # (H, d, C)
        name = f"l{layer}" if layer < self.depth else "final"
        pre_keys, pre_values = pre[f"{name}_t2i_keys"], pre[f"{name}_t2i_values"]
        qs = qh / math.sqrt(d)
        if layer == 0:
            # keys = (E + PE + lhs @ rhs) Wk^T + bk; the bias adds one number per query row and
            # cancels in the softmax over the image tokens
            scores = qs @ pre_keys + (qs @ (wk @ rhs.t())) @ lhs.t()  # (1, H, T, L)
            weights = torch.softmax(scores, dim=-1)
            vh = weights @ pre_values + (weights @ lhs) @ (rhs @ wv.transpose(-1, -2))  # (1, H, T, d)
        else:
            s, z, r, c = self._factored()
            q_in = (qs @ wk).reshape(1, -1, c_dim)  # (1, H*T, C): queries in input space
            # keys = s (E g) + Z R + c + PE; c adds one number per query row (cancels)
            scores = (qs @ pre_keys).reshape(1, -1, length) * s.transpose(1, 2)
            scores = scores + (q_in @ r.transpose(1, 2)) @ z.transpose(1, 2)
            scores = scores + _pe_key_scores(qs, wk, image_pe[0])
            weights = torch.softmax(scores, dim=-1)  # (1, H*T, L)
            vh = (weights * s.transpose(1, 2)).reshape(1, heads, -1, length) @ pre_values
            vh = vh + (weights @ z).reshape(1, heads, -1, z.shape[2]) @ (r @ wv.transpose(-1, -2))
            if c is not None:  # softmax rows sum to one
                vh = vh + (c @ wv.transpose(-1, -2)).reshape(heads, 1, d)
        vh = vh + attn.v_proj.bias.reshape(heads, 1, d)
        return attn.out_proj(_merge_heads(vh, heads, d))

    def _i2t_residual(
        self, layer: int, attn: Attention, keys: Tensor, image_pe: Tensor, q: Tensor, queries: Tensor
    ) -> Tensor:
        pre, (lhs, rhs) = self._state()
        heads, d = _dims(attn)
        kh = _split_heads(attn.k_proj(q), heads, d)  # (1, H, T, d)
        vh = _split_heads(attn.v_proj(queries), heads, d)  # (1, H, T, d)
        wq = _head_weights(attn.q_proj, heads)  # (H, d, C)
        kt = kh.transpose(-1, -2) / math.sqrt(d)  # (1, H, d, T)
        pre_queries = pre[f"l{layer}_i2t_queries"]  # (1, H, L, d)
        h, w = self.embedding_hw
        length = h * w
        # image queries = keys Wq^T + bq (block 0: keys = E + PE + lhs @ rhs)
        scores = (pre_queries @ kt).transpose(1, 2).reshape(1, length, -1)  # (1, L, H*T)
        k_in = (
            (wq.transpose(-1, -2) @ kt).permute(0, 2, 1, 3).reshape(1, int(attn.embedding_dim), -1)
        )  # (1, C, H*T)
        k_bias = (attn.q_proj.bias.reshape(heads, 1, d) @ kt).reshape(1, 1, -1)
        if layer == 0:
            scores = scores + lhs @ (rhs @ k_in) + k_bias
        else:
            s, z, r, c = self._factored()
            scores = scores * s + z @ (r @ k_in) + _pe_query_scores(image_pe[0], wq, kt) + k_bias
            if c is not None:
                scores = scores + c @ k_in
        weights = torch.softmax(scores.reshape(1, length, heads, -1), dim=-1).reshape(1, length, -1)
        # every row of weights sums to H (one softmax per head): the output bias rides in the values
        values = _values_through_out_proj(attn, vh) + attn.out_proj.bias / heads  # (1, H*T, C)
        if layer == 0:  # keys are E alone (see forward): the dense prompt joins in the same Gemm
            z0, r0 = (
                torch.cat([lhs.unsqueeze(0), weights], dim=2),
                torch.cat([rhs.unsqueeze(0), values], dim=1),
            )
            self._residual = (z0, r0)
            return torch.addmm(keys[0], z0[0], r0[0]).unsqueeze(0)
        self._residual = (weights, values)
        return torch.addmm(keys[0], weights[0], values[0]).unsqueeze(0)

    def _norm4(self, layer: int, norm: nn.LayerNorm, x: Tensor) -> Tensor:
        y, mean, inv_std = _LayerNormStats.apply(x, norm.weight, norm.bias, float(norm.eps))
        if self._residual is None:
            raise RuntimeError("_norm4 follows _i2t_residual")
        z_new, r_new = self._residual
        gain, bias = norm.weight.reshape(1, 1, -1), norm.bias
        # LN(keys + Z R) = inv_std * (s (E g) + Zk Rk + c + Z R - mean) * gain + bias
        s, z, r, c = (self._keys.get(k) for k in ("s", "z", "r", "c"))
        zs, rs = [], []
        if z is not None and r is not None:
            zs.append(inv_std * z)
            rs.append(r * gain)
        zs.append(inv_std * z_new)
        rs.append(r_new * gain)
        if c is not None:
            zs.append(inv_std)
            rs.append(c.reshape(1, 1, -1) * gain)
        zs.append(inv_std * mean)
        rs.append(-gain)
        self._keys = {
            "s": inv_std if s is None else inv_std * s,
            "z": torch.cat(zs, dim=2),
            "r": torch.cat(rs, dim=1),
            "c": bias,
        }
        return cast(Tensor, y)

    def _upscale(self, image: Tensor, hyper: Tensor) -> Tensor:
        pre, _ = self._state()
        s, z, r, c = self._factored()
        h, w = self.embedding_hw
        weight = self.upscaler.stage1_weight()  # (C, 4*C1)
        const = self.upscaler.stage1_bias() if c is None else c @ weight + self.upscaler.stage1_bias()
        x = s * pre["upscale_base"] + z @ (r @ weight) + const
        return self.upscaler.finish(x, hyper, h, w)

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:  # type: ignore[override]
        """Inputs in the order of ``prep_names`` + point_coords, point_labels, mask_input, has_mask_input."""
        n = len(self.prep_names)
        if len(inputs) != n + 4:
            raise TypeError(f"expected {n + 4} inputs ({', '.join(self.prep_names)} and the prompt)")
        point_coords, point_labels, mask_input, has_mask_input = inputs[n:]
        self._pre = dict(zip(self.prep_names, inputs[:n], strict=True))
        self._dense = self._dense_factors(mask_input, has_mask_input)
        self._keys, self._residual = {}, None
        try:
            sparse = self._embed_points(point_coords, point_labels)
            # block 0 reads the image tokens through the prep outputs and the dense factors only;
            # its residual adds embedding, dense prompt and attention output in one Gemm
            return self._decode(self._pre["image_tokens"], sparse)
        finally:
            self._pre, self._dense, self._keys, self._residual = None, None, {}, None


def click_graph(sam: Sam, options: GraphOptions) -> DecoderGraph:
    """The per-click module for ``options`` (:class:`PrecomputedDecoderGraph` or :class:`DecoderGraph`)."""
    if options.precompute_image:
        return PrecomputedDecoderGraph(sam, options)
    return DecoderGraph(sam, options)
