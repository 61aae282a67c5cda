"""SAM 2.1's prompt encoder + mask decoder as ONNX: the official interface and the page's graph.

Two graph forms over a :class:`clicksam.model.sam2.Sam2` (read through its official attribute names):

* ``official`` -> ``decoder.onnx``, the interface SAM 2 ONNX users expect (samexporter, ONNX-SAM2):
  inputs ``image_embed`` (1, 256, 64, 64), ``high_res_feats_0`` (1, 32, 256, 256),
  ``high_res_feats_1`` (1, 64, 128, 128), ``point_coords`` (num_labels, num_points, 2),
  ``point_labels`` (num_labels, num_points), ``mask_input`` (num_labels, 1, 256, 256),
  ``has_mask_input`` (num_labels,), ``orig_im_size`` (2,) = (H, W), all float32; outputs ``masks``
  (num_labels, 3, H, W) logits in the original frame (bilinear straight from 256x256, as the official
  predictor), ``iou_predictions`` (num_labels, 3), ``low_res_masks`` (num_labels, 3, 256, 256) clamped
  to [-32, 32] (ready to be fed back as ``mask_input``). With ``single_mask`` the one mask chosen by
  SAM 2's dynamic rule instead of three. Points are the caller's real points (box corners as labels
  2 / 3, then clicks), xy in the 1024x1024 square-input frame ``(x / W, y / H) * 1024``; the graph
  appends the padding point itself, as SAM 2's predictor always does.
* ``low_res`` (the page's ``browser`` variant) -> ``decoder_browser.onnx``: the same three image
  inputs in float16 (the wire dtype, cast in the graph), batch 1, and SAM 1's page conventions for
  the prompt: the caller appends the padding point only when there is no box (the graph appends the
  missing one when a box is there, so the result is SAM 2's "always pad" rule). Outputs
  ``low_res_masks`` (1, 4, 256, 256) and ``iou_predictions`` (1, 4): channel 0 is the single-mask
  answer chosen by SAM 2's dynamic rule *in the graph* (the single-mask token where its stability
  score >= 0.98, else the best-scoring candidate), channels 1-3 the three candidates; the page
  upsamples the 256x256 logits straight to the original size (manifest ``resize``: ``stretch``).
  The page's variant is split as SAM 1's (``precompute_image``): ``decoder_browser_prep.onnx``
  (:class:`Sam2PrepGraph`) runs once per image on the three wire tensors and returns the prompt-free
  projections of the two-way transformer (:func:`~clicksam.model.two_way_forms.prepare_image`), the
  upscaler's first-stage product and the high-resolution features in the upscaler's row layouts;
  ``decoder_browser.onnx`` (:class:`Sam2ClickGraph`) takes those instead of the three tensors
  (manifest ``prep``). Exact in real arithmetic.

Only the decoder's own arithmetic is used (:meth:`Sam2MaskDecoder.predict_all_masks`,
:meth:`Sam2MaskDecoder.dynamic_multimask_via_stability_select`); the prompts are embedded here by
label arithmetic (no boolean-mask assignment), so the number of points is a dynamic axis.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clicksam.export.errors import ExportError, ExportVerificationError
from clicksam.export.graph import GraphOptions, MatmulUpscaler, PrecomputedDecoderGraph, prep_output_names
from clicksam.export.passes import compress_weights
from clicksam.export.trace import DEFAULT_OPSET, prep_file, trace_to_onnx
from clicksam.formats import Manifest, MaskTokens, PrepEntry, TensorSpec, VariantEntry
from clicksam.model.sam import Sam
from clicksam.model.sam2 import Sam2, Sam2ImageFeatures
from clicksam.model.two_way_forms import (
    PrecomputedImage,
    PreparedImage,
    factored_product,
    prepare_image,
    run_two_way,
)
from clicksam.model.weights import sha256_file

logger = logging.getLogger(__name__)

__all__ = [
    "SAM2_IMAGE_INPUTS",
    "Sam2ClickGraph",
    "Sam2DecoderGraph",
    "Sam2Options",
    "Sam2PrepGraph",
    "export_sam2_decoder",
    "high_res_skips",
]

#: the per-image inputs in wire order (the order of :class:`Sam2ImageFeatures`)
SAM2_IMAGE_INPUTS = ("image_embed", "high_res_feats_0", "high_res_feats_1")
LOGIT_CLAMP = 32.0  # the official predictor clamps the low-res logits it returns to +-32
# post-export check: float32 graph vs PyTorch; float16 features and weights vs float32 PyTorch
FP32_MAX_ABS_ERR = 1e-3
FP32_MIN_IOU = 0.999
LOSSY_MIN_IOU = 0.98


@dataclass(frozen=True)
class Sam2Options:
    """One SAM 2.1 decoder variant.

    Attributes:
        outputs: ``"official"`` or ``"low_res"`` (see the module docstring).
        single_mask: official only: one dynamically selected mask instead of the three candidates.
        weights_float16: store the large weights as float16 (restored to float32 in the graph).
        precompute_image: low_res only: split into a per-image graph (:class:`Sam2PrepGraph`, run
            once per image on the three wire tensors) and a click graph (:class:`Sam2ClickGraph`)
            that takes its outputs, as SAM 1's browser variant. Exact in real arithmetic.
    """

    outputs: str = "official"
    single_mask: bool = False
    weights_float16: bool = False
    precompute_image: bool = False

    @property
    def features_float16(self) -> bool:
        """The page's graph takes the float16 wire tensors; the official one float32."""
        return self.outputs == "low_res"


DEFAULT_SAM2_VARIANTS: dict[str, Sam2Options] = {
    "official": Sam2Options("official"),
    "browser": Sam2Options("low_res", weights_float16=True, precompute_image=True),
}


def pad_points(coords: Tensor, labels: Tensor, *, always: bool) -> tuple[Tensor, Tensor]:
    """Append SAM 2's padding point to (B, N, 2) coords and (B, N) labels: ``always`` (official), or
    only when a box is there (the page's prompts already end in one otherwise)."""
    batch = coords[:, :1, :1] * 0.0  # (B, 1, 1) zeros, batch taken from the input
    pad_xy, pad_label = (batch.expand(-1, -1, 2)), batch[..., 0] - 1.0  # (B, 1, 2), (B, 1)
    if not always:
        has_box = ((labels == 2) | (labels == 3)).any().to(torch.int64)  # 0-d: 0 or 1 points
        pad_xy, pad_label = pad_xy[:, :has_box], pad_label[:, :has_box]
    return torch.cat([coords, pad_xy], dim=1), torch.cat([labels, pad_label], dim=1)


class Sam2DecoderGraph(nn.Module):
    """Prompt encoder + SAM 2.1 mask decoder in a traceable, branch-free form (see the module docstring)."""

    def __init__(self, sam: Sam2, options: Sam2Options) -> None:
        super().__init__()
        if options.outputs not in ("official", "low_res"):
            raise ExportError(f"outputs must be 'official' or 'low_res', not {options.outputs!r}")
        self.options = options
        self.prompt = sam.sam_prompt_encoder
        self.decoder = sam.sam_mask_decoder
        self.image_size = int(sam.image_size)

    def _embed_points(self, coords: Tensor, labels: Tensor) -> Tensor:
        """(B, N, 2) xy in the square-input frame, (B, N) labels -> (B, N, C) sparse embeddings."""
        pe = self.prompt.pe_layer._pe_encoding((coords + 0.5) / self.image_size)  # (B, N, C)
        lab = labels.unsqueeze(-1)
        emb = pe * (lab != -1).to(pe.dtype) + self.prompt.not_a_point_embed.weight * (lab == -1).to(pe.dtype)
        for i in range(self.prompt.num_point_embeddings):
            emb = emb + self.prompt.point_embeddings[i].weight * (lab == i).to(pe.dtype)
        return emb

    def _pad(self, coords: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        return pad_points(coords, labels, always=self.options.outputs != "low_res")

    def _dense(self, mask_input: Tensor, has_mask_input: Tensor) -> Tensor:
        """(B, 1, 256, 256) logits, (B,) 0/1 -> (B, C, 64, 64) dense prompt embedding."""
        has = has_mask_input.reshape(-1, 1, 1, 1)
        no_mask = self.prompt.no_mask_embed.weight.reshape(1, -1, 1, 1)
        return has * self.prompt.mask_downscaling(mask_input) + (1.0 - has) * no_mask

    def forward(
        self,
        image_embed: Tensor,
        high_res_feats_0: Tensor,
        high_res_feats_1: Tensor,
        point_coords: Tensor,
        point_labels: Tensor,
        mask_input: Tensor,
        has_mask_input: Tensor,
        orig_im_size: Tensor | None = None,
    ) -> tuple[Tensor, ...]:
        """See the module docstring for shapes, frames and outputs."""
        image_embed = image_embed.to(torch.float32)
        hr0, hr1 = high_res_feats_0.to(torch.float32), high_res_feats_1.to(torch.float32)
        coords, labels = self._pad(point_coords, point_labels)
        sparse = self._embed_points(coords, labels)
        dense = self._dense(mask_input, has_mask_input)
        masks, iou = self.decoder.predict_all_masks(
            image_embed,
            self.prompt.get_dense_pe(),
            sparse,
            dense,
            repeat_image=False,  # (1, C, h, w) features broadcast over the prompt sets
            high_res_features=[hr0, hr1],
        )  # (B, 4, 256, 256), (B, 4)
        if self.options.outputs == "low_res":
            single, single_iou = self.decoder.dynamic_multimask_via_stability_select(masks, iou)
            return torch.cat([single, masks[:, 1:]], dim=1), torch.cat([single_iou, iou[:, 1:]], dim=1)
        if self.options.single_mask:
            masks, iou = self.decoder.dynamic_multimask_via_stability_select(masks, iou)
        else:
            masks, iou = masks[:, 1:], iou[:, 1:]
        if orig_im_size is None:
            raise ExportError("the official interface needs orig_im_size")
        hw = orig_im_size.to(torch.int64)
        # tensor sizes on purpose: the tracer records them as graph values, so (H, W) stays dynamic
        full = F.interpolate(masks, size=(hw[0], hw[1]), mode="bilinear", align_corners=False)  # type: ignore[arg-type]
        return full, iou, torch.clamp(masks, -LOGIT_CLAMP, LOGIT_CLAMP)


# ---- the page's graph split into a per-image and a click part ------------------------------------

#: names of the two extra per-image outputs of :class:`Sam2PrepGraph` (after SAM 1's prep outputs)
SKIP_NAMES = ("high_res_skip_1", "high_res_skip_0")


def high_res_skips(
    upscaler: MatmulUpscaler, hr0: Tensor, hr1: Tensor, h: int, w: int
) -> tuple[Tensor, Tensor]:
    """SAM 2.1's high-resolution features in the sub-pixel row layouts of :meth:`MatmulUpscaler.finish`.

    Args:
        hr0: (1, C2, 4h, 4w) ``high_res_feats_0`` (added after the second transposed convolution).
        hr1: (1, C1, 2h, 2w) ``high_res_feats_1`` (added after the first one).

    Returns:
        (1, 4*h*w, C1) rows (i, j, dy1, dx1) = hr1 at pixel (2i + dy1, 2j + dx1); (1, 16*h*w, C2)
        rows (i, j, dy1, dx1, dy2, dx2) = hr0 at (4i + 2dy1 + dy2, 4j + 2dx1 + dx2) plus the second
        convolution's bias.
    """
    conv1, conv2 = cast(nn.ConvTranspose2d, upscaler.up[0]), cast(nn.ConvTranspose2d, upscaler.up[3])
    c1, c2 = int(conv1.weight.shape[1]), int(conv2.weight.shape[1])
    skip1 = hr1.reshape(c1, h, 2, w, 2).permute(1, 3, 2, 4, 0).reshape(1, 4 * h * w, c1)
    skip0 = hr0.reshape(c2, h, 2, 2, w, 2, 2).permute(1, 4, 2, 5, 3, 6, 0).reshape(1, 16 * h * w, c2)
    return skip1, skip0 + cast(Tensor, conv2.bias)


class Sam2ClickGraph(PrecomputedDecoderGraph):
    """The click part of SAM 2.1's page graph when :class:`Sam2PrepGraph` ran once per image.

    SAM 1's factored click decoder (:class:`~clicksam.export.graph.PrecomputedDecoderGraph`: the
    image tokens stay factored through the two-way transformer, the upscaler's first stage reads
    the prepared ``upscale_base``) with SAM 2.1's differences: the object-score token before the
    IoU token, the high-resolution features added in the upscaler (prepared as
    :func:`high_res_skips`), SAM 2's padding rule and dynamic single-mask choice in channel 0.

    Inputs: :attr:`prep_names` (SAM 1's prep outputs + :data:`SKIP_NAMES`), then ``point_coords``
    (1, N, 2), ``point_labels`` (1, N), ``mask_input`` (1, 1, 256, 256), ``has_mask_input`` (1,).
    Outputs as the ``low_res`` :class:`Sam2DecoderGraph`: (1, 4, 256, 256) logits, (1, 4) IoU.
    """

    def __init__(self, sam: Sam2) -> None:
        # SAM 1's graph reads prompt_encoder / mask_decoder / image_size: the same modules in SAM 2.1
        view = SimpleNamespace(
            prompt_encoder=sam.sam_prompt_encoder,
            mask_decoder=sam.sam_mask_decoder,
            image_size=sam.image_size,
        )
        options = GraphOptions(
            outputs="low_res",
            pe_in_graph=True,
            fold_attention=True,
            matmul_upscaling=True,
            token_major_dense=True,
            precompute_image=True,
        )
        super().__init__(cast(Sam, view), options)
        self.sam2_decoder = sam.sam_mask_decoder
        self.prep_names = [*prep_output_names(self.depth), *SKIP_NAMES]

    def _prompt_tokens(self, sparse: Tensor) -> Tensor:
        """(1, N, C) sparse prompt -> (1, 2 + 4 + N, C): object-score, IoU and mask tokens, prompt."""
        md = self.sam2_decoder
        out_tokens = torch.cat([md.obj_score_token.weight, md.iou_token.weight, md.mask_tokens.weight], dim=0)
        return torch.cat([out_tokens.unsqueeze(0), sparse], dim=1)

    def _token_outputs(self, hs: Tensor) -> tuple[Tensor, Tensor]:
        """Transformer tokens (1, T, C) -> hypernetwork outputs (1, M, C/8), IoU predictions (1, M)."""
        md = self.sam2_decoder
        n_masks = int(md.num_mask_tokens)
        mask_out = hs[:, 2 : 2 + n_masks, :]
        hyper = torch.stack(
            [mlp(mask_out[:, i, :]) for i, mlp in enumerate(md.output_hypernetworks_mlps)], dim=1
        )
        return hyper, md.iou_prediction_head(hs[:, 1, :])

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        """Inputs in the order of ``prep_names`` + point_coords, point_labels, mask_input, has_mask_input."""
        n = len(self.prep_names)
        if len(inputs) != n + 4:
            raise TypeError(f"expected {n + 4} inputs ({', '.join(self.prep_names)} and the prompt)")
        point_coords, point_labels, mask_input, has_mask_input = inputs[n:]
        prep = PreparedImage.from_flat(inputs[: n - 2], self.depth)
        skips = (inputs[n - 2], inputs[n - 1])
        coords, labels = pad_points(point_coords, point_labels, always=False)
        lhs, rhs = self._dense_factors(mask_input, has_mask_input)
        tokens = self._prompt_tokens(self._embed_points(coords, labels))
        image_pe = self._dense_pe().flatten(2).transpose(1, 2)  # (1, h*w, C)
        hs, image = run_two_way(
            self.transformer, tokens, PrecomputedImage(prep, lhs, rhs, image_pe), self.precomputed
        )
        hyper, iou = self._token_outputs(hs)
        x = factored_product(image, self.upscaler.stage1_weight(), self.upscaler.stage1_bias())
        h, w = self.embedding_hw
        masks = self.upscaler.finish(x, hyper, h, w, skips)  # (1, 4, 4h, 4w)
        single, single_iou = self.sam2_decoder.dynamic_multimask_via_stability_select(masks, iou)
        return torch.cat([single, masks[:, 1:]], dim=1), torch.cat([single_iou, iou[:, 1:]], dim=1)


class Sam2PrepGraph(nn.Module):
    """The per-image part of SAM 2.1's page graph, run once when the three wire tensors arrive.

    Inputs ``image_embed`` (1, C, h, w), ``high_res_feats_0`` (1, C/8, 4h, 4w), ``high_res_feats_1``
    (1, C/4, 2h, 2w), float16 (the wire dtype). Outputs (float32) :attr:`Sam2ClickGraph.prep_names`:
    SAM 1's prepared projections of the embedding (:class:`~clicksam.export.graph.ImagePrepGraph`)
    and the two :func:`high_res_skips`.
    """

    def __init__(self, click: Sam2ClickGraph) -> None:
        super().__init__()
        self.click = click

    def forward(
        self, image_embed: Tensor, high_res_feats_0: Tensor, high_res_feats_1: Tensor
    ) -> tuple[Tensor, ...]:
        g = self.click
        h, w = g.embedding_hw
        c, length = int(g.prompt_encoder.embed_dim), h * w
        tokens = image_embed.to(torch.float32).reshape(1, c, length).transpose(1, 2)  # (1, L, C)
        pe = g._dense_pe().reshape(c, length).t()  # (L, C)
        prepared = prepare_image(g.transformer, tokens, pe, length, g.upscaler.stage1_weight()).flat()
        skips = high_res_skips(
            g.upscaler, high_res_feats_0.to(torch.float32), high_res_feats_1.to(torch.float32), h, w
        )
        return (*prepared, *skips)


def _input_specs(sam: Sam2, options: Sam2Options) -> list[TensorSpec]:
    side = sam.image_embedding_size
    c = int(sam.sam_prompt_encoder.embed_dim)
    low = sam.low_res_size
    feats = "float16" if options.features_float16 else "float32"
    n = 1 if options.outputs == "low_res" else "num_labels"
    specs = [
        TensorSpec("image_embed", feats, [1, c, side, side]),
        TensorSpec("high_res_feats_0", feats, [1, c // 8, 4 * side, 4 * side]),
        TensorSpec("high_res_feats_1", feats, [1, c // 4, 2 * side, 2 * side]),
        TensorSpec("point_coords", "float32", [n, "num_points", 2]),
        TensorSpec("point_labels", "float32", [n, "num_points"]),
        TensorSpec("mask_input", "float32", [n, 1, low, low]),
        TensorSpec("has_mask_input", "float32", [n]),
    ]
    if options.outputs == "official":
        specs.append(TensorSpec("orig_im_size", "float32", [2]))
    return specs


def _output_specs(sam: Sam2, options: Sam2Options) -> list[TensorSpec]:
    low = sam.low_res_size
    if options.outputs == "low_res":
        return [
            TensorSpec("low_res_masks", "float32", [1, 4, low, low]),
            TensorSpec("iou_predictions", "float32", [1, 4]),
        ]
    m = 1 if options.single_mask else 3
    return [
        TensorSpec("masks", "float32", ["num_labels", m, "orig_height", "orig_width"]),
        TensorSpec("iou_predictions", "float32", ["num_labels", m]),
        TensorSpec("low_res_masks", "float32", ["num_labels", m, low, low]),
    ]


def _dummy_inputs(sam: Sam2, options: Sam2Options) -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(0)
    inputs: dict[str, Tensor] = {}
    for spec in _input_specs(sam, options)[:3]:
        shape = [int(d) for d in spec.shape]
        t = torch.randn(*shape, generator=gen)
        inputs[spec.name] = t.half() if spec.dtype == "float16" else t
    low = sam.low_res_size
    # 2 prompt sets of 5 points of every label, so no label path is dead while tracing
    batch = 1 if options.outputs == "low_res" else 2
    coords = torch.tensor([[[10.0, 20.0], [300.0, 400.0], [50.0, 60.0], [700.0, 800.0], [0.0, 0.0]]])
    inputs["point_coords"] = coords.expand(batch, -1, -1).contiguous()
    inputs["point_labels"] = torch.tensor([[2.0, 3.0, 1.0, 0.0, -1.0]]).expand(batch, -1).contiguous()
    inputs["mask_input"] = torch.randn(batch, 1, low, low, generator=gen)
    inputs["has_mask_input"] = torch.ones(batch)
    if options.outputs == "official":
        inputs["orig_im_size"] = torch.tensor([1500.0, 2250.0])  # not 4:3 / 16:9 / square on purpose
    return inputs


def trace_sam2_graph(
    sam: Sam2,
    options: Sam2Options,
    path: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    prep_path: str | Path | None = None,
) -> None:
    """Trace the graph of ``options`` into one self-contained ONNX file (TorchScript exporter).

    With ``options.precompute_image`` the per-image graph goes to ``prep_path`` (default
    :func:`~clicksam.export.trace.prep_file` of ``path``) and ``path`` takes its outputs instead of
    the three image inputs.
    """
    if options.precompute_image and options.outputs != "low_res":
        raise ExportError("precompute_image needs the low_res interface")
    graph: nn.Module = (
        Sam2ClickGraph(sam).eval() if options.precompute_image else Sam2DecoderGraph(sam, options).eval()
    )
    inputs = _dummy_inputs(sam, options)
    if isinstance(graph, Sam2ClickGraph):
        prep = Sam2PrepGraph(graph).eval()
        image = {name: inputs.pop(name) for name in SAM2_IMAGE_INPUTS}
        trace_to_onnx(prep, image, prep_path or prep_file(path), graph.prep_names, {}, opset)
        with torch.no_grad():
            inputs = {**dict(zip(graph.prep_names, prep(*image.values()), strict=True)), **inputs}
    outputs = [s.name for s in _output_specs(sam, options)]
    batch = {} if options.outputs == "low_res" else {0: "num_labels"}
    dynamic_axes: dict[str, dict[int, str]] = {
        "point_coords": {**batch, 1: "num_points"},
        "point_labels": {**batch, 1: "num_points"},
    }
    if options.outputs == "official":
        dynamic_axes.update(
            mask_input={0: "num_labels"},
            has_mask_input={0: "num_labels"},
            masks={0: "num_labels", 2: "orig_height", 3: "orig_width"},
            iou_predictions={0: "num_labels"},
            low_res_masks={0: "num_labels"},
        )
    trace_to_onnx(graph, inputs, path, outputs, dynamic_axes, opset)


# ---- the post-export check ------------------------------------------------------------------------


@dataclass(frozen=True)
class Sam2Probe:
    """One prompt of the check: points (N, 2) in the 1024 frame (box corners first), labels (N,)."""

    coords: np.ndarray
    labels: np.ndarray
    with_mask: bool
    orig_hw: tuple[int, int]


def sam2_probes() -> list[Sam2Probe]:
    """Click, clicks, box, box + clicks, and a click with a previous mask; several aspect ratios."""
    f = np.float32
    return [
        Sam2Probe(np.array([[500, 375]], f), np.array([1], f), False, (768, 1024)),
        Sam2Probe(
            np.array([[200, 300], [700, 650], [420, 100]], f), np.array([1, 0, 1], f), False, (1024, 768)
        ),
        Sam2Probe(np.array([[100, 150], [800, 900]], f), np.array([2, 3], f), False, (1080, 1920)),
        Sam2Probe(
            np.array([[90, 80], [600, 700], [300, 400], [50, 900]], f),
            np.array([2, 3, 1, 0], f),
            False,
            (33, 47),
        ),
        Sam2Probe(np.array([[512, 512], [128, 900]], f), np.array([1, 0], f), True, (1000, 1000)),
    ]


def reference_decode(
    sam: Sam2, features: Sam2ImageFeatures, probe: Sam2Probe, mask_input: Tensor | None
) -> tuple[Tensor, Tensor]:
    """PyTorch: all four tokens (B=1) as [dynamic single, 3 candidates] low-res logits and IoU."""
    coords = torch.from_numpy(probe.coords)[None]
    labels = torch.from_numpy(probe.labels).to(torch.int64)[None]
    single, iou_s = sam.decode(features, coords, labels, mask_input, multimask_output=False)
    multi, iou_m = sam.decode(features, coords, labels, mask_input, multimask_output=True)
    return torch.cat([single, multi], dim=1), torch.cat([iou_s, iou_m], dim=1)


def _feeds(
    features: dict[str, np.ndarray], probe: Sam2Probe, mask: np.ndarray | None, options: Sam2Options, low: int
) -> dict[str, np.ndarray]:
    coords, labels = probe.coords, probe.labels
    if options.outputs == "low_res" and not np.isin(labels, (2, 3)).any():  # the page's padding rule
        coords = np.concatenate([coords, np.zeros((1, 2), np.float32)])
        labels = np.concatenate([labels, np.array([-1], np.float32)])
    feeds = {
        **features,
        "point_coords": coords[None].astype(np.float32),
        "point_labels": labels[None].astype(np.float32),
        "mask_input": (mask if mask is not None else np.zeros((1, 1, low, low))).astype(np.float32),
        "has_mask_input": np.array([1.0 if mask is not None else 0.0], np.float32),
    }
    if options.outputs == "official":
        feeds["orig_im_size"] = np.array(probe.orig_hw, np.float32)
    return feeds


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


@dataclass
class Sam2VerifyReport:
    """How one exported file compares with PyTorch over :func:`sam2_probes`."""

    max_abs_err: float = 0.0  # low-res logits (and IoU predictions)
    min_iou: float = 1.0  # binarised masks, every token / candidate, every probe
    probes: int = 0


def verify_sam2_onnx(
    sam: Sam2,
    path: str | Path,
    options: Sam2Options,
    *,
    seed: int = 0,
    enforce: bool = True,
    prep_path: str | Path | None = None,
) -> Sam2VerifyReport:
    """Check an exported file: ``onnx.checker``, then ONNX Runtime against PyTorch on random features.

    float32 graphs must match within 1e-3 on the logits and IoU >= 0.999 on the masks; graphs with
    float16 features or weights IoU >= 0.98 against float32 PyTorch.

    Raises:
        ExportVerificationError: the checker fails or a tolerance is exceeded (when ``enforce``).
    """
    import onnx
    import onnxruntime as ort

    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:
        raise ExportVerificationError(f"{path} fails onnx.checker: {exc}") from exc
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    prep = None
    if prep_path is not None:
        try:
            onnx.checker.check_model(str(prep_path))
        except onnx.checker.ValidationError as exc:
            raise ExportVerificationError(f"{prep_path} fails onnx.checker: {exc}") from exc
        prep = ort.InferenceSession(str(prep_path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(seed)
    side = sam.image_embedding_size
    c = int(sam.sam_prompt_encoder.embed_dim)
    features = Sam2ImageFeatures(
        torch.randn(1, c, side, side, generator=gen),
        torch.randn(1, c // 8, 4 * side, 4 * side, generator=gen),
        torch.randn(1, c // 4, 2 * side, 2 * side, generator=gen),
    )
    lossy = options.features_float16 or options.weights_float16
    if options.features_float16:  # the page gets float16 features: so does the reference's input
        levels = (features.image_embed, features.high_res_feats_0, features.high_res_feats_1)
        features = Sam2ImageFeatures(*(t.half().float() for t in levels))
    fed = {
        name: t.numpy().astype(np.float16 if options.features_float16 else np.float32)
        for name, t in zip(SAM2_IMAGE_INPUTS, (features.image_embed, *features.high_res_feats), strict=True)
    }
    if prep is not None:  # the click graph takes the per-image graph's outputs, run once
        outs = prep.run(None, fed)
        fed = dict(zip([o.name for o in prep.get_outputs()], outs, strict=True))
    report = Sam2VerifyReport()
    previous: Tensor | None = None
    with torch.no_grad():
        for probe in sam2_probes():
            mask = previous if probe.with_mask else None
            ref_low, ref_iou = reference_decode(sam, features, probe, mask)
            previous = torch.clamp(ref_low[:, :1], -LOGIT_CLAMP, LOGIT_CLAMP)
            feeds = _feeds(fed, probe, None if mask is None else mask.numpy(), options, sam.low_res_size)
            names = [o.name for o in session.get_outputs()]
            out = dict(zip(names, session.run(None, feeds), strict=True))
            if options.outputs == "low_res":
                want_iou = ref_iou.numpy()
                pairs = [(out["low_res_masks"], ref_low.numpy())]
            else:
                idx = slice(0, 1) if options.single_mask else slice(1, 4)
                low = ref_low[:, idx]
                full = sam.postprocess_masks(low, probe.orig_hw).numpy()
                clamped = np.clip(low.numpy(), -LOGIT_CLAMP, LOGIT_CLAMP)
                pairs = [(out["low_res_masks"], clamped), (out["masks"], full)]
                want_iou = ref_iou[:, idx].numpy()
            report.max_abs_err = max(
                report.max_abs_err, float(np.abs(out["iou_predictions"] - want_iou).max())
            )
            for got, want in pairs:
                report.max_abs_err = max(report.max_abs_err, float(np.abs(got - want).max()))
                for k in range(got.shape[1]):
                    report.min_iou = min(report.min_iou, _mask_iou(got[0, k] > 0, want[0, k] > 0))
            report.probes += 1
    bad = report.min_iou < (LOSSY_MIN_IOU if lossy else FP32_MIN_IOU) or (
        not lossy and report.max_abs_err > FP32_MAX_ABS_ERR
    )
    if enforce and bad:
        raise ExportVerificationError(
            f"{path} does not reproduce PyTorch: max abs err {report.max_abs_err:.2e}, min mask IoU "
            f"{report.min_iou:.4f} over {report.probes} prompts"
        )
    return report


# ---- orchestration -------------------------------------------------------------------------------


def _onnx_specs(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Inputs and outputs of an ONNX file as the manifest states them (dtype names, symbolic axes)."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path), load_external_data=False)

    def specs(values: Any) -> list[TensorSpec]:
        out = []
        for v in values:
            t = v.type.tensor_type
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)).name
            shape: list[int | str] = [d.dim_param if d.dim_param else int(d.dim_value) for d in t.shape.dim]
            out.append(TensorSpec(v.name, dtype, shape))
        return out

    return specs(model.graph.input), specs(model.graph.output)


def _entry(
    path: Path, sam: Sam2, options: Sam2Options, report: Sam2VerifyReport | None, prep: Path | None = None
) -> VariantEntry:
    verified: Any = None
    if report is not None:
        verified = {
            "max_abs_err": report.max_abs_err,
            "min_mask_iou": report.min_iou,
            "probes": report.probes,
        }
    low_res = options.outputs == "low_res"
    inputs = _input_specs(sam, options)
    prep_entry = None
    if prep is not None:  # the click graph's image inputs are the per-image graph's outputs
        prep_inputs, prep_outputs = _onnx_specs(prep)
        prep_entry = PrepEntry(
            file=prep.name,
            bytes=prep.stat().st_size,
            sha256=sha256_file(prep),
            inputs=prep_inputs,
            outputs=prep_outputs,
        )
        inputs = _onnx_specs(path)[0]
    return VariantEntry(
        file=path.name,
        bytes=path.stat().st_size,
        sha256=sha256_file(path),
        options={
            "outputs": options.outputs,
            "single_mask": options.single_mask,
            "weights_float16": options.weights_float16,
            "embedding_dtype": "float16" if options.features_float16 else "float32",
            "padding": "with_box" if low_res else "always",
            "verified": verified,
        },
        inputs=inputs,
        outputs=_output_specs(sam, options),
        masks_frame="low_res" if low_res else "original",
        mask_tokens=MaskTokens(0, [1, 2, 3], "stability") if low_res else None,
        prep=prep_entry,
    )


def export_sam2_decoder(
    sam: Sam2,
    out_dir: str | Path,
    *,
    model_name: str,
    checkpoint_sha256: str | None,
    seed: int | None = None,
    variants: dict[str, Sam2Options] | None = None,
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
) -> Manifest:
    """Export SAM 2.1 decoder variants into ``out_dir``, check each, and write ``manifest.json``.

    Args:
        sam: a :class:`Sam2` (put in eval mode: SAM 2's dynamic selection only runs in eval mode).
        variants: name -> options (default: ``official`` -> ``decoder.onnx``, ``browser`` ->
            ``decoder_browser.onnx``); other names go to ``decoder_<name>.onnx``.

    Raises:
        ExportVerificationError: a file does not reproduce PyTorch (it is not kept).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sam = sam.eval()
    entries: dict[str, VariantEntry] = {}
    for name, options in (variants or DEFAULT_SAM2_VARIANTS).items():
        file = "decoder.onnx" if name == "official" else f"decoder_{name}.onnx"
        tmp = out / (file + ".tmp")
        tmp_prep = prep_file(out / file).with_suffix(".onnx.tmp") if options.precompute_image else None
        try:
            trace_sam2_graph(sam, options, tmp, opset=opset, prep_path=tmp_prep)
            if options.weights_float16:
                for f in [tmp] if tmp_prep is None else [tmp, tmp_prep]:
                    compress_weights(f, f, dtype="float16")
            report = verify_sam2_onnx(sam, tmp, options, prep_path=tmp_prep) if verify else None
        except Exception:
            tmp.unlink(missing_ok=True)
            if tmp_prep is not None:
                tmp_prep.unlink(missing_ok=True)
            raise
        shutil.move(tmp, out / file)
        prep = None
        if tmp_prep is not None:
            prep = prep_file(out / file)
            shutil.move(tmp_prep, prep)
        entries[name] = _entry(out / file, sam, options, report, prep)
        logger.info("exported %s (%d bytes)", out / file, entries[name].bytes)
    c, side = int(sam.sam_prompt_encoder.embed_dim), sam.image_embedding_size
    manifest = Manifest(
        model=model_name,
        checkpoint_sha256=checkpoint_sha256,
        seed=seed if checkpoint_sha256 is None else None,
        image_size=int(sam.image_size),
        resize="stretch",
        low_res_size=sam.low_res_size,
        mask_threshold=float(sam.mask_threshold),
        opset=opset,
        image_inputs=[
            TensorSpec("image_embed", "float16", [1, c, side, side]),
            TensorSpec("high_res_feats_0", "float16", [1, c // 8, 4 * side, 4 * side]),
            TensorSpec("high_res_feats_1", "float16", [1, c // 4, 2 * side, 2 * side]),
        ],
        default_variant="browser" if "browser" in entries else next(iter(entries)),
        variants=entries,
    )
    manifest.write(out)
    return manifest
