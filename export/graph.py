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

The two-way transformer itself and its attention algebra are :mod:`clicksam.model.two_way_forms`
(one loop, one form per choice above); this module adds the prompt encoding, the mask upscaler and
the output interfaces around it.

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
from clicksam.model.transformer import TwoWayTransformer
from clicksam.model.two_way_forms import (
    DenseImage,
    FoldedForm,
    PlainForm,
    PrecomputedForm,
    PrecomputedImage,
    PreparedImage,
    factored_product,
    prepare_image,
    run_two_way,
)


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
# .shape (see clicksam.model.two_way_forms).


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

    def finish(
        self, x: Tensor, hyper: Tensor, h: int, w: int, skips: tuple[Tensor, Tensor] | None = None
    ) -> Tensor:
        """(1, h*w, 4*C1) first-stage outputs (with bias), hyper (1, M, C/8) -> masks (1, M, 4h, 4w).

        ``skips`` (SAM 2.1): what is added before the first LayerNorm, (1, 4*h*w, C1) in rows
        (i, j, dy1, dx1), and what replaces the second stage's bias, (1, 16*h*w, C2) in rows
        (i, j, dy1, dx1, dy2, dx2) (the high-resolution features in these layouts, the second with
        the bias added: :func:`clicksam.export.sam2.high_res_skips`).
        """
        up = self.up
        conv1, conv2 = cast(nn.ConvTranspose2d, up[0]), cast(nn.ConvTranspose2d, up[3])
        norm, act1, act2 = cast(LayerNorm2d, up[1]), up[2], up[4]
        c1, c2 = conv1.weight.shape[1], conv2.weight.shape[1]
        w2 = conv2.weight.permute(0, 2, 3, 1).reshape(conv2.weight.shape[0], 4 * c2)  # columns (dy2, dx2, c2)
        x = x.reshape(1, h * w * 4, c1)  # rows (i, j, dy1, dx1)
        if skips is not None:
            x = x + skips[0]
        x = act1(F.layer_norm(x, (c1,), norm.weight, norm.bias, float(norm.eps)))
        bias2 = cast(Tensor, conv2.bias) if skips is None else skips[1]
        x = act2((x @ w2).reshape(1, h * w * 16, c2) + bias2)  # rows (i, j, dy1, dx1, dy2, dx2)
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
        self.transformer = cast(TwoWayTransformer, self.mask_decoder.transformer)
        self.form: FoldedForm | PlainForm = FoldedForm() if options.fold_attention else PlainForm()
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

    # ---- mask decoder ---------------------------------------------------------------------------
    def _prompt_tokens(self, sparse: Tensor) -> Tensor:
        """(1, N, C) sparse prompt -> (1, 1 + 4 + N, C): IoU token, mask tokens, prompt."""
        md = self.mask_decoder
        out_tokens = torch.cat([md.iou_token.weight, md.mask_tokens.weight], dim=0).unsqueeze(0)
        return torch.cat([out_tokens, sparse], dim=1)

    def _token_outputs(self, hs: Tensor) -> tuple[Tensor, Tensor]:
        """Transformer tokens (1, T, C) -> hypernetwork outputs (1, M, C/8), IoU predictions (1, M)."""
        md = self.mask_decoder
        n_masks = int(md.num_mask_tokens)
        mask_out = hs[:, 1 : 1 + n_masks, :]
        hyper = torch.stack(
            [mlp(mask_out[:, i, :]) for i, mlp in enumerate(md.output_hypernetworks_mlps)], dim=1
        )
        return hyper, md.iou_prediction_head(hs[:, 0, :])

    def _upscale(self, image: Tensor, hyper: Tensor) -> Tensor:
        """Transformer image tokens (1, h*w, C), hypernetwork outputs (1, M, C/8) -> (1, M, 4h, 4w)."""
        h, w = self.embedding_hw
        if self.options.matmul_upscaling:
            return cast(Tensor, self.upscaler(image, hyper, h, w))
        md = self.mask_decoder
        upscaled = md.output_upscaling(image.transpose(1, 2).reshape(1, -1, h, w))  # (1, C/8, 4h, 4w)
        _, c8, uh, uw = upscaled.shape
        return (hyper @ upscaled.reshape(1, c8, uh * uw)).reshape(1, hyper.shape[1], uh, uw)

    def _decode(self, image: Tensor, sparse: Tensor) -> tuple[Tensor, Tensor]:
        """image (1, h*w, C) tokens (embedding + dense prompt), sparse (1, N, C) prompt tokens
        -> low-res mask logits (1, 4, 256, 256), iou predictions (1, 4) for all mask tokens."""
        tokens = self._prompt_tokens(sparse)
        image_pe = self._dense_pe().flatten(2).transpose(1, 2)  # (1, h*w, C)
        hs, out = run_two_way(self.transformer, tokens, DenseImage(image, image_pe), self.form)
        hyper, iou = self._token_outputs(hs)
        return self._upscale(out.tokens, hyper), iou

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


def prep_output_names(depth: int) -> list[str]:
    """Outputs of :class:`ImagePrepGraph` (= the first inputs of :class:`PrecomputedDecoderGraph`)
    for a two-way transformer of ``depth`` blocks, in the order of :meth:`PreparedImage.flat`."""
    names = ["image_tokens"]
    for i in range(depth):
        names += [f"l{i}_t2i_keys", f"l{i}_t2i_values", f"l{i}_i2t_queries"]
    return [*names, "final_t2i_keys", "final_t2i_values", "upscale_base"]


class ImagePrepGraph(nn.Module):
    """The per-image part of the click decoder: :func:`~clicksam.model.two_way_forms.prepare_image`.

    Run once per image; the outputs are inputs of :class:`PrecomputedDecoderGraph` on every click.

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
        pe = g._dense_pe().reshape(c, length).t()  # (L, C)
        return prepare_image(g.transformer, tokens, pe, length, g.upscaler.stage1_weight()).flat()


class PrecomputedDecoderGraph(DecoderGraph):
    """The click part of the decoder when :class:`ImagePrepGraph` ran once per image.

    Same outputs as the ``low_res`` interface of :class:`DecoderGraph`; exact in real arithmetic.
    The image tokens stay factored through every block
    (:class:`~clicksam.model.two_way_forms.PrecomputedForm`), and the first stage of the mask
    upscaler reads them through the prepared ``upscale_base``.

    Inputs: :func:`prep_output_names`, then ``point_coords``, ``point_labels``, ``mask_input``,
    ``has_mask_input`` as in :class:`DecoderGraph`.
    """

    def __init__(self, sam: Sam, options: GraphOptions) -> None:
        if options.outputs != "low_res" or not options.matmul_upscaling or not options.precompute_image:
            raise ValueError("precompute_image needs the low_res interface with matmul_upscaling")
        super().__init__(sam, options)
        self.depth = len(self.transformer.layers)
        self.prep_names = prep_output_names(self.depth)
        h, w = self.embedding_hw
        self.precomputed = PrecomputedForm(h * w)

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:  # type: ignore[override]
        """Inputs in the order of ``prep_names`` + point_coords, point_labels, mask_input, has_mask_input."""
        n = len(self.prep_names)
        if len(inputs) != n + 4:
            raise TypeError(f"expected {n + 4} inputs ({', '.join(self.prep_names)} and the prompt)")
        point_coords, point_labels, mask_input, has_mask_input = inputs[n:]
        prep = PreparedImage.from_flat(inputs[:n], self.depth)
        lhs, rhs = self._dense_factors(mask_input, has_mask_input)
        sparse = self._embed_points(point_coords, point_labels)
        tokens = self._prompt_tokens(sparse)
        image_pe = self._dense_pe().flatten(2).transpose(1, 2)  # (1, h*w, C)
        # block 0 reads the image through the prep outputs and the dense factors only
        hs, image = run_two_way(
            self.transformer, tokens, PrecomputedImage(prep, lhs, rhs, image_pe), self.precomputed
        )
        hyper, iou = self._token_outputs(hs)
        x = factored_product(image, self.upscaler.stage1_weight(), self.upscaler.stage1_bias())
        h, w = self.embedding_hw
        return self.upscaler.finish(x, hyper, h, w), iou


def click_graph(sam: Sam, options: GraphOptions) -> DecoderGraph:
    """The per-click module for ``options`` (:class:`PrecomputedDecoderGraph` or :class:`DecoderGraph`)."""
    if options.precompute_image:
        return PrecomputedDecoderGraph(sam, options)
    return DecoderGraph(sam, options)
