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

Only the decoder's own arithmetic is used (:meth:`Sam2MaskDecoder.predict_all_masks`,
:meth:`Sam2MaskDecoder.dynamic_multimask_via_stability_select`); the prompts are embedded here by
label arithmetic (no boolean-mask assignment), so the number of points is a dynamic axis.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clicksam.export.errors import ExportError, ExportVerificationError
from clicksam.export.passes import compress_weights
from clicksam.export.trace import DEFAULT_OPSET
from clicksam.formats import Manifest, MaskTokens, TensorSpec, VariantEntry
from clicksam.model.sam2 import Sam2, Sam2ImageFeatures
from clicksam.model.weights import sha256_file

logger = logging.getLogger(__name__)

__all__ = ["SAM2_IMAGE_INPUTS", "Sam2DecoderGraph", "Sam2Options", "export_sam2_decoder"]

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
    """

    outputs: str = "official"
    single_mask: bool = False
    weights_float16: bool = False

    @property
    def features_float16(self) -> bool:
        """The page's graph takes the float16 wire tensors; the official one float32."""
        return self.outputs == "low_res"


DEFAULT_SAM2_VARIANTS: dict[str, Sam2Options] = {
    "official": Sam2Options("official"),
    "browser": Sam2Options("low_res", weights_float16=True),
}


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
        """Append SAM 2's padding point: always (official), or only when a box is there (the page's
        prompts already end in one otherwise)."""
        batch = coords[:, :1, :1] * 0.0  # (B, 1, 1) zeros, batch taken from the input
        pad_xy, pad_label = (batch.expand(-1, -1, 2)), batch[..., 0] - 1.0  # (B, 1, 2), (B, 1)
        if self.options.outputs == "low_res":
            has_box = ((labels == 2) | (labels == 3)).any().to(torch.int64)  # 0-d: 0 or 1 points
            pad_xy, pad_label = pad_xy[:, :has_box], pad_label[:, :has_box]
        return torch.cat([coords, pad_xy], dim=1), torch.cat([labels, pad_label], dim=1)

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
    sam: Sam2, options: Sam2Options, path: str | Path, *, opset: int = DEFAULT_OPSET
) -> None:
    """Trace the graph of ``options`` into one self-contained ONNX file (TorchScript exporter)."""
    graph = Sam2DecoderGraph(sam, options).eval()
    inputs = _dummy_inputs(sam, options)
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
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(
            graph,
            tuple(inputs.values()),
            str(path),
            input_names=list(inputs),
            output_names=outputs,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            dynamo=False,
        )


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
    features: dict[str, np.ndarray], probe: Sam2Probe, mask: np.ndarray | None, options: Sam2Options
) -> dict[str, np.ndarray]:
    coords, labels = probe.coords, probe.labels
    if options.outputs == "low_res" and not np.isin(labels, (2, 3)).any():  # the page's padding rule
        coords = np.concatenate([coords, np.zeros((1, 2), np.float32)])
        labels = np.concatenate([labels, np.array([-1], np.float32)])
    low = next(iter(features.values())).shape[-1] * 4
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
    sam: Sam2, path: str | Path, options: Sam2Options, *, seed: int = 0, enforce: bool = True
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
    report = Sam2VerifyReport()
    previous: Tensor | None = None
    with torch.no_grad():
        for probe in sam2_probes():
            mask = previous if probe.with_mask else None
            ref_low, ref_iou = reference_decode(sam, features, probe, mask)
            previous = torch.clamp(ref_low[:, :1], -LOGIT_CLAMP, LOGIT_CLAMP)
            feeds = _feeds(fed, probe, None if mask is None else mask.numpy(), options)
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


def _entry(path: Path, sam: Sam2, options: Sam2Options, report: Sam2VerifyReport | None) -> VariantEntry:
    verified: Any = None
    if report is not None:
        verified = {
            "max_abs_err": report.max_abs_err,
            "min_mask_iou": report.min_iou,
            "probes": report.probes,
        }
    low_res = options.outputs == "low_res"
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
        inputs=_input_specs(sam, options),
        outputs=_output_specs(sam, options),
        masks_frame="low_res" if low_res else "original",
        mask_tokens=MaskTokens(0, [1, 2, 3], "stability") if low_res else None,
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
        try:
            trace_sam2_graph(sam, options, tmp, opset=opset)
            if options.weights_float16:
                compress_weights(tmp, tmp, dtype="float16")
            report = verify_sam2_onnx(sam, tmp, options) if verify else None
        except Exception:
            tmp.unlink(missing_ok=True)
            raise
        shutil.move(tmp, out / file)
        entries[name] = _entry(out / file, sam, options, report)
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
