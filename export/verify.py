"""The post-export check: every exported decoder file against the PyTorch model.

:func:`verify_onnx` checks a file with ``onnx.checker``, runs it with ONNX Runtime (CPU) on a set of probe
prompts (:func:`default_probes`) and compares its outputs with :func:`reference_decode`, the model's
public API (``prompt_encoder``, ``mask_decoder``, ``postprocess_masks``). Float32 files must match the
logits within :data:`FP32_MAX_ABS_ERR`; lossy ones (float16 embedding, compressed or quantised
weights) the binarised masks within :data:`LOSSY_MIN_IOU`.

Frames: prompt coordinates are xy in the resized-input (1024) frame; low-res logits are 256x256 over
the padded 1024 frame; ``orig_hw`` is the original image (H, W) in pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from clicksam.export.errors import ExportVerificationError
from clicksam.export.graph import GraphOptions
from clicksam.model.frames import get_preprocess_shape
from clicksam.model.sam import Sam

# tolerances of the post-export check (float32 graphs vs PyTorch, and lossy variants vs float32 PyTorch)
FP32_MAX_ABS_ERR = 1e-3
FP32_MIN_IOU = 0.999
LOSSY_MIN_IOU = 0.98


@dataclass
class VerifyReport:
    """Result of comparing one exported file with PyTorch over the probe prompts."""

    max_abs_err: float = 0.0  # max |logit| difference (low-res, or full-size for the official masks)
    min_iou: float = 1.0  # min IoU of the binarised masks (logit > threshold) over all probes/tokens
    max_iou_pred_err: float = 0.0
    probes: int = 0
    details: list[dict[str, Any]] = field(default_factory=list)


# ---- prompts -------------------------------------------------------------------------------------
def prompt_feeds(
    coords: np.ndarray | None, labels: np.ndarray | None, box: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Clicks and/or a box (1024 frame) -> the decoder's ``point_coords`` (1, N, 2), ``point_labels`` (1, N).

    Box corners follow the clicks with labels 2 (top-left) and 3 (bottom-right); the padding point
    (0, 0) with label -1 is appended only when there is no box, as SAM's prompt encoder does.

    Args:
        coords: (K, 2) xy click positions in the resized-input (1024) frame, or None.
        labels: (K,) 1 foreground / 0 background, or None.
        box: (4,) x0, y0, x1, y1 in the 1024 frame, or None.
    """
    pts: list[np.ndarray] = []
    labs: list[np.ndarray] = []
    if coords is not None:
        if labels is None or len(labels) != len(coords):
            raise ValueError("every click needs a label (1 foreground, 0 background)")
        pts.append(np.asarray(coords, np.float32).reshape(-1, 2))
        labs.append(np.asarray(labels, np.float32).reshape(-1))
    if box is not None:
        pts.append(np.asarray(box, np.float32).reshape(2, 2))
        labs.append(np.array([2, 3], np.float32))
    else:
        pts.append(np.zeros((1, 2), np.float32))
        labs.append(np.array([-1], np.float32))
    return np.concatenate(pts)[None], np.concatenate(labs)[None]


@torch.no_grad()
def reference_decode(
    sam: Sam,
    embeddings: Tensor,
    coords: np.ndarray | None,
    labels: np.ndarray | None,
    box: np.ndarray | None,
    mask_input: np.ndarray | None,
) -> tuple[Tensor, Tensor]:
    """PyTorch reference through the model's public API: all 4 tokens, low-res.

    Returns:
        low-res logits (1, 4, 256, 256) over the padded 1024 frame and IoU predictions (1, 4);
        token 0 is the single-mask output, 1..3 the multimask candidates.
    """
    points = None
    if coords is not None and labels is not None:
        points = (
            torch.from_numpy(np.asarray(coords, np.float32))[None],
            torch.from_numpy(np.asarray(labels, np.float32))[None],
        )
    boxes = torch.from_numpy(np.asarray(box, np.float32)).reshape(1, 4) if box is not None else None
    masks = torch.from_numpy(np.asarray(mask_input, np.float32)) if mask_input is not None else None
    sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=masks)
    pe = sam.prompt_encoder.get_dense_pe()
    single, iou_s = sam.mask_decoder(embeddings, pe, sparse, dense, multimask_output=False)
    multi, iou_m = sam.mask_decoder(embeddings, pe, sparse, dense, multimask_output=True)
    return torch.cat([single, multi], dim=1), torch.cat([iou_s, iou_m], dim=1)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum() / union)


@dataclass(frozen=True)
class Probe:
    """One prompt used by the post-export check. Coordinates are in the 1024 frame."""

    coords: np.ndarray | None
    labels: np.ndarray | None
    box: np.ndarray | None
    with_mask: bool
    orig_hw: tuple[int, int]


def default_probes() -> list[Probe]:
    """A click, several clicks, a box, box + clicks, with/without mask input, over a few image sizes."""
    one = np.array([[400.0, 300.0]]), np.array([1.0])
    many = np.array([[400.0, 300.0], [620.0, 410.0], [100.0, 700.0]]), np.array([1.0, 0.0, 1.0])
    box = np.array([120.0, 90.0, 700.0, 560.0])
    return [
        Probe(*one, None, False, (768, 1024)),
        Probe(*many, None, True, (1024, 768)),
        Probe(None, None, box, False, (1080, 1920)),
        Probe(*one, box, True, (5, 7)),
    ]


def _feeds_for(
    probe: Probe, emb: np.ndarray, mask_input: np.ndarray, emb_dtype: np.dtype
) -> dict[str, np.ndarray]:
    pc, pl = prompt_feeds(probe.coords, probe.labels, probe.box)
    return {
        "image_embeddings": emb.astype(emb_dtype),
        "point_coords": pc,
        "point_labels": pl,
        "mask_input": mask_input if probe.with_mask else np.zeros_like(mask_input),
        "has_mask_input": np.array([1.0 if probe.with_mask else 0.0], np.float32),
        "orig_im_size": np.array(probe.orig_hw, np.float32),
    }


def verify_onnx(
    sam: Sam,
    path: str | Path,
    options: GraphOptions,
    *,
    lossy: bool,
    probes: Sequence[Probe] | None = None,
    seed: int = 0,
    enforce: bool = True,
    prep_path: str | Path | None = None,
) -> VerifyReport:
    """Check ``path`` with ``onnx.checker``, run it with ONNX Runtime (CPU) and compare with PyTorch.

    Args:
        sam: the model that was exported (eval mode).
        path: the ONNX file.
        options: the graph options it was exported with (tells the interface apart).
        lossy: the file is quantised or takes a float16 embedding: require mask IoU >= 0.98 against
            the float32 PyTorch model instead of logits within 1e-3 and IoU >= 0.999.
        probes: prompts to check (default :func:`default_probes`).
        seed: seed of the random embedding / mask input.
        enforce: raise when a tolerance is exceeded (False: only measure).
        prep_path: the per-image graph of a ``precompute_image`` export (run once on the
            embedding; its outputs are fed to ``path`` with the prompts).

    Raises:
        ExportVerificationError: the checker fails or outputs differ beyond tolerance.
    """
    import onnx
    import onnxruntime as ort

    if options.precompute_image and prep_path is None:
        raise ValueError("a precompute_image export is verified with its prep graph (prep_path)")
    files = [path] if prep_path is None else [prep_path, path]
    for file in files:
        try:
            onnx.checker.check_model(str(file), full_check=True)
        except onnx.checker.ValidationError as exc:
            raise ExportVerificationError(f"onnx.checker rejected {file}: {exc}") from exc
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_names = {i.name for i in session.get_inputs()}
    output_names = [o.name for o in session.get_outputs()]
    gen = torch.Generator().manual_seed(seed)
    embed_dim = int(sam.prompt_encoder.embed_dim)
    emb_t = torch.randn(1, embed_dim, *sam.prompt_encoder.image_embedding_size, generator=gen)
    mask_np = (torch.randn(1, 1, 256, 256, generator=gen) * 4.0).numpy()
    emb_dtype = np.dtype(np.float16) if options.embedding_float16 else np.dtype(np.float32)
    threshold = float(getattr(sam, "mask_threshold", 0.0))
    image_size = int(sam.image_size)
    report = VerifyReport()
    image_feeds: dict[str, np.ndarray] = {}
    if prep_path is not None:
        prep = ort.InferenceSession(str(prep_path), providers=["CPUExecutionProvider"])
        prep_out = prep.run(None, {"image_embeddings": emb_t.numpy().astype(emb_dtype)})
        image_feeds = dict(zip([o.name for o in prep.get_outputs()], prep_out, strict=True))
    for probe in probes if probes is not None else default_probes():
        feeds = {**_feeds_for(probe, emb_t.numpy(), mask_np, emb_dtype), **image_feeds}
        outs = dict(
            zip(
                output_names,
                session.run(None, {k: v for k, v in feeds.items() if k in input_names}),
                strict=True,
            )
        )
        ref_low, ref_iou = reference_decode(
            sam, emb_t, probe.coords, probe.labels, probe.box, mask_np if probe.with_mask else None
        )
        if options.outputs == "low_res":
            got, ref = outs["low_res_masks"], ref_low.numpy()
            got_iou, ref_iou_np = outs["iou_predictions"], ref_iou.numpy()
        else:
            ref_full = sam.postprocess_masks(
                ref_low, get_preprocess_shape(*probe.orig_hw, image_size), probe.orig_hw
            )
            if options.single_mask:
                n_points = feeds["point_coords"].shape[1]
                idx = 0 if n_points > 2 else 1 + int(ref_iou[0, 1:].argmax())
                ref_full, ref_iou = ref_full[:, idx : idx + 1], ref_iou[:, idx : idx + 1]
            got, ref = outs["masks"], ref_full.numpy()
            got_iou, ref_iou_np = outs["iou_predictions"], ref_iou.numpy()
            if got.shape != ref.shape:
                raise ExportVerificationError(
                    f"{path}: masks shape {got.shape} != expected {ref.shape} "
                    f"for orig_im_size {probe.orig_hw}"
                )
        err = float(np.abs(got.astype(np.float32) - ref).max())
        ious = [mask_iou(got[0, c] > threshold, ref[0, c] > threshold) for c in range(ref.shape[1])]
        iou_err = float(np.abs(got_iou - ref_iou_np).max())
        report.details.append({"orig_hw": probe.orig_hw, "max_abs_err": err, "min_iou": min(ious)})
        report.max_abs_err = max(report.max_abs_err, err)
        report.min_iou = min(report.min_iou, *ious)
        report.max_iou_pred_err = max(report.max_iou_pred_err, iou_err)
        report.probes += 1
    if not enforce:
        return report
    if lossy:
        if report.min_iou < LOSSY_MIN_IOU:
            raise ExportVerificationError(
                f"{path}: mask IoU {report.min_iou:.4f} < {LOSSY_MIN_IOU} against PyTorch; "
                "export without quantisation / float16 embedding"
            )
    elif report.max_abs_err > FP32_MAX_ABS_ERR or report.min_iou < FP32_MIN_IOU:
        raise ExportVerificationError(
            f"{path}: max |logit error| {report.max_abs_err:.3g} (limit {FP32_MAX_ABS_ERR}), "
            f"mask IoU {report.min_iou:.5f} (limit {FP32_MIN_IOU}) against PyTorch"
        )
    return report
