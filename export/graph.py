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
  the 4096 image tokens is re-associated so that no (4096 x 256) x (256 x 128) projection is done.

Coordinate frames: ``point_coords`` are xy in the resized-input frame (the image resized so that
its long side is ``image_size`` = 1024, top-left aligned in the padded square); ``orig_im_size`` is
(H, W) of the original image in pixels; low-res masks are 256x256 over the padded 1024 frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

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
    """

    outputs: str = "official"
    single_mask: bool = False
    embedding_float16: bool = False
    pe_in_graph: bool = False
    fold_attention: bool = False
    matmul_upscaling: bool = False


def _split_heads(x: Tensor, num_heads: int) -> Tensor:
    """(B, N, C) -> (B, heads, N, C / heads)."""
    b, n, c = x.shape
    return x.reshape(b, n, num_heads, c // num_heads).transpose(1, 2)


def _merge_heads(x: Tensor) -> Tensor:
    """(B, heads, N, d) -> (B, N, heads * d)."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def attention_plain(attn: Attention, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """SAM's multi-head attention with down-projected heads, written out.

    Args:
        attn: a module with ``q_proj``/``k_proj``/``v_proj``/``out_proj`` (Linear) and ``num_heads``.
        q: (B, Nq, C) queries; k: (B, Nk, C) keys; v: (B, Nk, C) values.

    Returns:
        (B, Nq, C).
    """
    heads = int(attn.num_heads)
    qh = _split_heads(attn.q_proj(q), heads)  # (B, H, Nq, d)
    kh = _split_heads(attn.k_proj(k), heads)  # (B, H, Nk, d)
    vh = _split_heads(attn.v_proj(v), heads)  # (B, H, Nk, d)
    d = qh.shape[-1]
    weights = torch.softmax((qh @ kh.transpose(-1, -2)) / math.sqrt(d), dim=-1)  # (B, H, Nq, Nk)
    return attn.out_proj(_merge_heads(weights @ vh))


def _head_weights(linear: nn.Linear, heads: int) -> Tensor:
    """Linear weight (H*d, C) -> (H, d, C), one (d, C) block per head."""
    w = linear.weight
    return w.reshape(heads, w.shape[0] // heads, w.shape[1])


def attention_tokens_to_image(attn: Attention, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Few queries (prompt tokens) attending to many keys (image tokens), re-associated.

    Instead of projecting all L image tokens to keys and values ((L x C) @ (C x d*H) twice), the
    per-head query is mapped back into the C-dim input space (q_h @ Wk_h) and the softmax-weighted
    sum is taken over the raw image tokens before the value projection. The key bias adds the same
    number to every score of a query, so it cancels in the softmax; the value bias passes through
    because softmax rows sum to one. Equal to :func:`attention_plain` in exact arithmetic.

    Args:
        q: (B, T, C) prompt tokens (+ their PE); k: (B, L, C) image tokens + dense PE;
        v: (B, L, C) image tokens.

    Returns:
        (B, T, C).
    """
    heads = int(attn.num_heads)
    qh = _split_heads(attn.q_proj(q), heads)  # (B, H, T, d)
    b, _, t, d = qh.shape
    wk = _head_weights(attn.k_proj, heads)  # (H, d, C)
    q_in = ((qh @ wk) / math.sqrt(d)).reshape(b, heads * t, -1)  # (B, H*T, C): queries in input space
    # one (H*T x C) @ (C x L) product instead of a per-head batch: better GEMM shapes in the browser
    weights = torch.softmax(q_in @ k.transpose(1, 2), dim=-1)  # (B, H*T, L)
    pooled = (weights @ v).reshape(b, heads, t, -1)  # (B, H, T, C): attention-weighted raw image tokens
    wv = _head_weights(attn.v_proj, heads)  # (H, d, C)
    vh = pooled @ wv.transpose(-1, -2) + attn.v_proj.bias.reshape(heads, 1, d)  # (B, H, T, d)
    return attn.out_proj(_merge_heads(vh))


def attention_image_to_tokens(attn: Attention, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Many queries (image tokens) attending to few keys (prompt tokens), re-associated.

    The key of each prompt token is mapped back into the C-dim input space (k_h @ Wq_h) so scores
    are a single (L x C) @ (C x H*T) product, and the output projection is applied to the T values
    of each head before the softmax-weighted sum, so no (L x d*H) tensor is ever formed.

    Args:
        q: (B, L, C) image tokens + dense PE; k: (B, T, C) prompt tokens + PE; v: (B, T, C).

    Returns:
        (B, L, C).
    """
    heads = int(attn.num_heads)
    kh = _split_heads(attn.k_proj(k), heads)  # (B, H, T, d)
    vh = _split_heads(attn.v_proj(v), heads)  # (B, H, T, d)
    b, _, t, d = kh.shape
    wq = _head_weights(attn.q_proj, heads)  # (H, d, C)
    k_in = ((kh @ wq) / math.sqrt(d)).reshape(b, heads * t, -1)  # (B, H*T, C)
    k_bias = ((kh @ attn.q_proj.bias.reshape(heads, d, 1)) / math.sqrt(d)).reshape(b, 1, heads * t)
    scores = q @ k_in.transpose(1, 2) + k_bias  # (B, L, H*T): one GEMM for all heads
    length = scores.shape[1]
    weights = torch.softmax(scores.reshape(b, length, heads, t), dim=-1).reshape(b, length, heads * t)
    wo = attn.out_proj.weight  # (C, H*d)
    wo_h = wo.reshape(wo.shape[0], heads, d).permute(1, 2, 0)  # (H, d, C)
    v_out = (vh @ wo_h).reshape(b, heads * t, -1)  # (B, H*T, C): values through their out_proj slice
    return weights @ v_out + attn.out_proj.bias


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

    def forward(self, image: Tensor, hyper: Tensor, h: int, w: int) -> Tensor:
        """image (1, h*w, C) tokens, hyper (1, M, C/8) -> masks (1, M, 4h, 4w)."""
        up = self.up
        conv1, conv2 = cast(nn.ConvTranspose2d, up[0]), cast(nn.ConvTranspose2d, up[3])
        norm, act1, act2 = cast(LayerNorm2d, up[1]), up[2], up[4]
        c1, c2 = conv1.weight.shape[1], conv2.weight.shape[1]  # ConvTranspose weight: (Cin, Cout, 2, 2)
        w1 = conv1.weight.permute(0, 2, 3, 1).reshape(conv1.weight.shape[0], 4 * c1)  # columns (dy1, dx1, c1)
        w2 = conv2.weight.permute(0, 2, 3, 1).reshape(conv2.weight.shape[0], 4 * c2)  # columns (dy2, dx2, c2)
        x = (image @ w1).reshape(1, h * w * 4, c1) + cast(Tensor, conv1.bias)  # rows (i, j, dy1, dx1)
        x = act1(F.layer_norm(x, (c1,), norm.weight, norm.bias, float(norm.eps)))
        x = act2(
            (x @ w2).reshape(1, h * w * 16, c2) + cast(Tensor, conv2.bias)
        )  # rows (i, j, dy1, dx1, dy2, dx2)
        masks = x @ hyper.transpose(1, 2)  # (1, h*w*16, M): transposes the tiny operand, not x
        n = hyper.shape[1]
        masks = masks.reshape(h, w, 2, 2, 2, 2, n)  # (i, j, dy1, dx1, dy2, dx2, m)
        # output row 4i + 2dy1 + dy2, column 4j + 2dx1 + dx2
        return masks.permute(6, 0, 2, 4, 1, 3, 5).reshape(1, n, 4 * h, 4 * w)


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

    # ---- two-way transformer --------------------------------------------------------------------
    def _cross_t2i(self, attn: Attention, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        if self.options.fold_attention:
            return attention_tokens_to_image(attn, q, k, v)
        return attention_plain(attn, q, k, v)

    def _cross_i2t(self, attn: Attention, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        if self.options.fold_attention:
            return attention_image_to_tokens(attn, q, k, v)
        return attention_plain(attn, q, k, v)

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
            k = keys + image_pe
            queries = layer.norm2(queries + self._cross_t2i(layer.cross_attn_token_to_image, q, k, keys))
            queries = layer.norm3(queries + layer.mlp(queries))
            q = queries + prompt
            k = keys + image_pe
            keys = layer.norm4(keys + self._cross_i2t(layer.cross_attn_image_to_token, k, q, queries))
        q = queries + prompt
        k = keys + image_pe
        queries = tr.norm_final_attn(queries + self._cross_t2i(tr.final_attn_token_to_image, q, k, keys))
        return queries, keys

    def _decode(self, embeddings: Tensor, sparse: Tensor, dense: Tensor) -> tuple[Tensor, Tensor]:
        """-> low-res mask logits (1, 4, 256, 256), iou predictions (1, 4) for all mask tokens."""
        md = self.mask_decoder
        out_tokens = torch.cat([md.iou_token.weight, md.mask_tokens.weight], dim=0).unsqueeze(0)
        tokens = torch.cat([out_tokens, sparse], dim=1)  # (1, 1 + 4 + N, C)
        src = embeddings + dense  # (1, C, h, w)
        _, c, h, w = src.shape
        image = src.flatten(2).transpose(1, 2)  # (1, h*w, C)
        image_pe = self._dense_pe().flatten(2).transpose(1, 2)  # (1, h*w, C)
        hs, image = self._transformer(image, image_pe, tokens)
        n_masks = int(md.num_mask_tokens)
        iou_out = hs[:, 0, :]
        mask_out = hs[:, 1 : 1 + n_masks, :]
        hyper = torch.stack(
            [mlp(mask_out[:, i, :]) for i, mlp in enumerate(md.output_hypernetworks_mlps)], dim=1
        )
        if self.options.matmul_upscaling:
            masks = self.upscaler(image, hyper, h, w)
        else:
            upscaled = md.output_upscaling(image.transpose(1, 2).reshape(1, c, h, w))  # (1, C/8, 4h, 4w)
            _, c8, uh, uw = upscaled.shape
            masks = (hyper @ upscaled.reshape(1, c8, uh * uw)).reshape(1, n_masks, uh, uw)
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
        dense = self._embed_mask(mask_input, has_mask_input)
        low_res, iou = self._decode(embeddings, sparse, dense)
        if self.options.outputs == "low_res":
            return low_res, iou
        if orig_im_size is None:
            raise ValueError("the official interface needs orig_im_size")
        if self.options.single_mask:
            # counted from the input tensor so that N stays a dynamic axis of the traced graph
            num_points = torch.ones_like(point_labels).sum()
            low_res, iou = self._select_single(low_res, iou, num_points)
        return self._to_original(low_res, orig_im_size), iou, low_res
