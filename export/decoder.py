"""Export SAM's prompt encoder + mask decoder to ONNX, check every file, and write the manifest.

Two variants (see ``manifest.py`` for the manifest, ``graph.py`` for the traced module):

* ``official`` -> ``decoder.onnx``: Meta's decoder interface (``orig_im_size`` input, full-size
  ``masks`` computed in the graph from that input, ``iou_predictions``, ``low_res_masks``), float32.
* ``browser`` -> ``decoder_browser.onnx`` + ``decoder_browser_prep.onnx``: what the page runs by
  default. The prep graph runs once per image on the float16 embedding; the click graph takes its
  outputs and returns all four mask tokens as 256x256 low-res logits + their IoU predictions; the
  page crops, upsamples and thresholds (see ``graph.PrecomputedDecoderGraph``).

Every exported file is checked with ``onnx.checker``, run with ONNX Runtime (CPU) on a set of probe
prompts and compared with the PyTorch model through its public API (``prompt_encoder``,
``mask_decoder``, ``postprocess_masks``); :class:`ExportVerificationError` is raised when a file is
not equal within tolerance.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from clicksam.errors import ClickSamError
from clicksam.export.graph import GraphOptions, ImagePrepGraph, PrecomputedDecoderGraph, click_graph
from clicksam.export.manifest import Manifest, MaskTokens, PrepEntry, TensorSpec, VariantEntry, sha256_file
from clicksam.model.frames import get_preprocess_shape
from clicksam.model.sam import Sam

logger = logging.getLogger(__name__)

VARIANT_FILES = {"official": "decoder.onnx", "browser": "decoder_browser.onnx"}
DEFAULT_OPSET = 17

# tolerances of the post-export check (float32 graphs vs PyTorch, and lossy variants vs float32 PyTorch)
FP32_MAX_ABS_ERR = 1e-3
FP32_MIN_IOU = 0.999
LOSSY_MIN_IOU = 0.98


class ExportError(ClickSamError, RuntimeError):
    """The export could not be done as asked (bad option, unknown variant, ...)."""


class ExportVerificationError(ExportError):
    """An exported file does not reproduce the PyTorch model within tolerance."""


@dataclass(frozen=True)
class VariantConfig:
    """How one variant is built.

    Attributes:
        graph: what the traced graph computes (see :class:`GraphOptions`).
        quantize: int8 dynamic quantisation of the MatMul/Gemm weights (ONNX Runtime).
        quantize_scopes: with ``quantize``, only the nodes whose names start with one of these
            module scopes (e.g. ``"/upscaler/"``); empty quantises every MatMul/Gemm with a
            constant weight.
        optimize_before_quantize: run ONNX Runtime's basic graph optimisation and save the
            result before quantising (folds constants; it also folds an in-graph PE back into a
            constant, so it is off for the browser variant).
        weights_float16: store the large float32 weights as float16, each followed by a Cast to
            float32 that ONNX Runtime folds once at session creation (half the download, float32
            arithmetic).
        weights_int8: store the large weights as int8 with per-channel scales, restored to float32
            in the graph (folded at session creation); see :func:`compress_weights`.
    """

    graph: GraphOptions
    quantize: bool = False
    quantize_scopes: tuple[str, ...] = ()
    optimize_before_quantize: bool = False
    weights_float16: bool = False
    weights_int8: bool = False


# The choices of the browser variant were measured with bench/browser (see bench/README.md).
_FAST = {"pe_in_graph": True, "fold_attention": True, "matmul_upscaling": True, "token_major_dense": True}
DEFAULT_CONFIGS: dict[str, VariantConfig] = {
    # same interface and float32 numbers as Meta's export; the exact graph rewrites only make it faster
    "official": VariantConfig(GraphOptions(outputs="official", **_FAST)),
    "browser": VariantConfig(
        GraphOptions(outputs="low_res", embedding_float16=True, precompute_image=True, **_FAST),
        quantize=False,
        weights_float16=True,
    ),
}


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


# ---- export --------------------------------------------------------------------------------------
def _dummy_inputs(sam: Sam, options: GraphOptions) -> dict[str, Tensor]:
    emb_h, emb_w = sam.prompt_encoder.image_embedding_size
    embed_dim = int(sam.prompt_encoder.embed_dim)
    low = 4 * emb_h
    gen = torch.Generator().manual_seed(0)
    inputs = {
        "image_embeddings": torch.randn(1, embed_dim, emb_h, emb_w, generator=gen),
        # 5 points of every label so that no label path is dead while tracing
        "point_coords": torch.tensor(
            [[[10.0, 20.0], [300.0, 400.0], [50.0, 60.0], [700.0, 800.0], [0.0, 0.0]]]
        ),
        "point_labels": torch.tensor([[1.0, 0.0, 2.0, 3.0, -1.0]]),
        "mask_input": torch.randn(1, 1, low, 4 * emb_w, generator=gen),
        "has_mask_input": torch.tensor([1.0]),
    }
    if options.embedding_float16:
        inputs["image_embeddings"] = inputs["image_embeddings"].half()
    if options.outputs == "official":
        # deliberately not 4:3 / 16:9: a size baked into the graph would show in every test
        inputs["orig_im_size"] = torch.tensor([1500.0, 2250.0])
    return inputs


def prep_file(path: str | Path) -> Path:
    """Where the per-image graph of a ``precompute_image`` export goes: ``x.onnx`` -> ``x_prep.onnx``."""
    p = Path(path)
    return p.with_name(p.name.replace(".onnx", "_prep.onnx", 1))


def export_graph(
    sam: Sam,
    options: GraphOptions,
    path: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    prep_path: str | Path | None = None,
) -> None:
    """Trace the decoder with the TorchScript exporter into one self-contained ONNX file.

    The TorchScript exporter (``dynamo=False``) is chosen on purpose: it writes a single file with
    the weights inside, handles the dynamic number of points via ``dynamic_axes`` and reproduces
    the official graph structure (the dynamo exporter writes external data by default).

    With ``options.precompute_image`` the per-image graph goes to ``prep_path`` (default
    :func:`prep_file` of ``path``) and ``path`` takes its outputs instead of ``image_embeddings``.
    """
    graph = click_graph(sam, options).eval()
    inputs = _dummy_inputs(sam, options)
    if isinstance(graph, PrecomputedDecoderGraph):
        prep = ImagePrepGraph(graph).eval()
        names = graph.prep_names
        embedding = inputs.pop("image_embeddings")
        _trace(prep, {"image_embeddings": embedding}, prep_path or prep_file(path), names, {}, opset)
        with torch.no_grad():
            inputs = {**dict(zip(names, prep(embedding), strict=True)), **inputs}
    outputs = (
        ["masks", "iou_predictions", "low_res_masks"]
        if options.outputs == "official"
        else ["low_res_masks", "iou_predictions"]
    )
    dynamic_axes: dict[str, dict[int, str]] = {
        "point_coords": {1: "num_points"},
        "point_labels": {1: "num_points"},
    }
    if options.outputs == "official":
        dynamic_axes["masks"] = {2: "orig_height", 3: "orig_width"}
    _trace(graph, inputs, path, outputs, dynamic_axes, opset)
    _name_output_shapes(sam, options, path)


def _trace(
    module: torch.nn.Module,
    inputs: dict[str, Tensor],
    path: str | Path,
    outputs: list[str],
    dynamic_axes: dict[str, dict[int, str]],
    opset: int,
) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        # tracer warnings about Python ints are expected: shapes that matter come from tensors
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(
            module,
            tuple(inputs.values()),
            str(path),
            input_names=list(inputs),
            output_names=outputs,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
            export_params=True,
            dynamo=False,
        )


def _name_output_shapes(sam: Sam, options: GraphOptions, path: str | Path) -> None:
    """Replace the exporter's generated output dim names by the documented shapes."""
    import onnx

    n = 1 if options.single_mask else int(sam.mask_decoder.num_mask_tokens)
    low = 4 * int(sam.prompt_encoder.image_embedding_size[0])
    shapes: dict[str, list[int | str]] = {
        "masks": [1, n, "orig_height", "orig_width"],
        "iou_predictions": [1, n],
        "low_res_masks": [1, n, low, low],
    }
    model = onnx.load(str(path))
    for out in model.graph.output:
        dims = out.type.tensor_type.shape.dim
        for d, value in zip(dims, shapes[out.name], strict=True):
            if isinstance(value, str):
                d.dim_param = value
            else:
                d.dim_value = value
    onnx.save(model, str(path))


def optimize_basic(src: str | Path, dst: str | Path) -> None:
    """Save ONNX Runtime's basic-level optimisation of ``src`` (constant folding, redundant nodes)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])


def quantize_int8(
    src: str | Path, dst: str | Path, *, optimize: bool = False, scopes: Sequence[str] = ()
) -> None:
    """int8 dynamic quantisation of the weights of MatMul/Gemm nodes with a constant weight.

    Current ONNX Runtime has no ``quantize_dynamic(optimize_model=...)``: when ``optimize`` is set
    the graph is optimised first (:func:`optimize_basic`) and the result is quantised. ``scopes``
    limits it to the nodes whose names start with one of the given module scopes.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        model_in = Path(src)
        if optimize:
            model_in = Path(tmp) / "optimized.onnx"
            optimize_basic(src, model_in)
        nodes = None
        if scopes:
            nodes = [
                n.name
                for n in onnx.load(str(model_in)).graph.node
                if n.op_type in ("MatMul", "Gemm") and n.name.startswith(tuple(scopes))
            ]
            if not nodes:
                raise ExportError(f"no MatMul/Gemm node in the scopes {list(scopes)} of {src}")
        quantize_dynamic(
            model_in,
            Path(dst),
            weight_type=QuantType.QUInt8,
            op_types_to_quantize=["MatMul", "Gemm"],
            per_channel=False,
            nodes_to_quantize=nodes,
            # only weights: quantising attention scores x values (both activations) costs accuracy
            extra_options={"MatMulConstBOnly": True},
        )


def compress_weights(src: str | Path, dst: str | Path, *, dtype: str, min_elements: int = 4096) -> int:
    """Store the large float32 initializers compactly; the graph restores float32 weights in-graph.

    ``dtype="float16"``: each weight becomes float16 + ``Cast(to=float)``. ``dtype="int8"``: symmetric
    int8 with one float32 scale per output channel (the last axis, or axis 0 when the last axis is
    shorter than 8) + ``Cast`` and ``Mul``. Both subgraphs have only constant inputs, so ONNX Runtime
    folds them into float32 weights once at session creation: a smaller download and float32
    arithmetic at run time (unlike ``quantize_dynamic``, which also quantises activations).

    Returns:
        The number of initializers converted.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if dtype not in ("float16", "int8"):
        raise ExportError(f"weights can be stored as float16 or int8, not {dtype!r}")
    model = onnx.load(str(src))
    graph = model.graph
    kept, restore, converted = [], [], 0
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < min_elements:
            kept.append(init)
            continue
        arr = numpy_helper.to_array(init)
        if dtype == "float16":
            if np.abs(arr).max() > 6.0e4:  # outside float16 range: keep exact
                kept.append(init)
                continue
            kept.append(numpy_helper.from_array(arr.astype(np.float16), init.name + "__fp16"))
            restore.append(
                helper.make_node("Cast", [init.name + "__fp16"], [init.name], to=TensorProto.FLOAT)
            )
        else:
            axis = arr.ndim - 1 if arr.shape[-1] >= 8 else 0
            reduce_axes = tuple(a for a in range(arr.ndim) if a != axis)
            scale = np.abs(arr).max(axis=reduce_axes, keepdims=True) / 127.0
            scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
            q = np.clip(np.rint(arr / scale), -127, 127).astype(np.int8)
            kept.append(numpy_helper.from_array(q, init.name + "__int8"))
            kept.append(numpy_helper.from_array(scale, init.name + "__scale"))
            restore.append(
                helper.make_node("Cast", [init.name + "__int8"], [init.name + "__f"], to=TensorProto.FLOAT)
            )
            restore.append(helper.make_node("Mul", [init.name + "__f", init.name + "__scale"], [init.name]))
        converted += 1
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(restore + nodes)  # restoring nodes first: the graph stays topologically sorted
    onnx.save(model, str(dst))
    return converted


def _tensor_specs(values: Sequence[Any]) -> list[TensorSpec]:
    from onnx import helper

    specs: list[TensorSpec] = []
    for v in values:
        t = v.type.tensor_type
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)).name
        shape: list[int | str] = [d.dim_param if d.dim_param else int(d.dim_value) for d in t.shape.dim]
        specs.append(TensorSpec(v.name, dtype, shape))
    return specs


def export_variant(
    sam: Sam,
    path: str | Path,
    config: VariantConfig,
    *,
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
    prep_path: str | Path | None = None,
) -> VerifyReport | None:
    """Export one variant to ``path`` (quantising if asked) and verify it. Returns the check report.

    A ``precompute_image`` variant also writes its per-image graph to ``prep_path`` (default
    :func:`prep_file` of ``path``).
    """
    path = Path(path)
    prep = (Path(prep_path) if prep_path else prep_file(path)) if config.graph.precompute_image else None
    if config.quantize:
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = Path(tmp) / "fp32.onnx"
            export_graph(sam, config.graph, fp32, opset=opset, prep_path=prep)
            if verify:
                verify_onnx(sam, fp32, config.graph, lossy=config.graph.embedding_float16, prep_path=prep)
            quantize_int8(fp32, path, optimize=config.optimize_before_quantize, scopes=config.quantize_scopes)
    else:
        export_graph(sam, config.graph, path, opset=opset, prep_path=prep)
    if config.weights_float16 or config.weights_int8:
        for file in [path] if prep is None else [path, prep]:
            compress_weights(file, file, dtype="int8" if config.weights_int8 else "float16")
    if not verify:
        return None
    lossy = config.quantize or config.graph.embedding_float16 or config.weights_float16 or config.weights_int8
    report = verify_onnx(sam, path, config.graph, lossy=lossy, prep_path=prep)
    logger.info(
        "verified %s: max |logit err| %.3g, min mask IoU %.5f over %d probes",
        path.name,
        report.max_abs_err,
        report.min_iou,
        report.probes,
    )
    return report


def export_decoder(
    sam: Sam,
    out_dir: str | Path,
    *,
    model_name: str,
    checkpoint_sha256: str | None,
    seed: int | None = None,
    variants: Sequence[str] = ("official", "browser"),
    opset: int = DEFAULT_OPSET,
    quantize: bool | None = None,
    browser_weights: str | None = None,
    single_mask: bool = False,
    configs: dict[str, VariantConfig] | None = None,
    verify: bool = True,
) -> Manifest:
    """Export the decoder variants of ``sam`` into ``out_dir`` and write ``manifest.json``.

    Args:
        sam: a ``clicksam.model.Sam`` (any module with SAM's attribute names).
        out_dir: created if missing; existing files of the same names are replaced.
        model_name: config name recorded in the manifest (``vit_b``, ...).
        checkpoint_sha256: sha256 of the checkpoint file, or None for seeded random weights.
        seed: the seed of random weights (recorded so a server can check that it matches).
        variants: subset of ``("official", "browser")``.
        opset: ONNX opset.
        quantize: override int8 dynamic quantisation (``quantize_dynamic``) of the browser variant
            (None: its default, off).
        browser_weights: override how the browser variant stores its weights: ``"float32"``,
            ``"float16"`` (default) or ``"int8"`` (see :func:`compress_weights`).
        single_mask: official variant returns the one mask of the official single-mask rule.
        configs: override the per-variant configs (benchmarks use this to try options).
        verify: run the post-export check (always on in the CLI).

    Returns:
        The manifest that was written.
    """
    if not variants:
        raise ExportError("no variant to export: pass at least one of official, browser")
    cfgs = dict(DEFAULT_CONFIGS)
    if configs:
        cfgs.update(configs)
    unknown = [v for v in variants if v not in cfgs]
    if unknown:
        raise ExportError(f"unknown decoder variant(s) {unknown}; choose from {sorted(cfgs)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sam = sam.eval()
    entries: dict[str, VariantEntry] = {}
    for name in variants:
        cfg = cfgs[name]
        if name == "browser" and quantize is not None:
            cfg = replace(cfg, quantize=quantize)
        if name == "browser" and browser_weights is not None:
            if browser_weights not in ("float32", "float16", "int8"):
                raise ExportError(
                    f"browser weights must be float32, float16 or int8, not {browser_weights!r}"
                )
            cfg = replace(
                cfg, weights_float16=browser_weights == "float16", weights_int8=browser_weights == "int8"
            )
        if name == "official" and single_mask:
            cfg = replace(cfg, graph=replace(cfg.graph, single_mask=True))
        file = VARIANT_FILES.get(name, f"decoder_{name}.onnx")
        tmp_path, tmp_prep = out / (file + ".tmp"), prep_file(out / file).with_suffix(".onnx.tmp")
        try:
            report = export_variant(sam, tmp_path, cfg, opset=opset, verify=verify, prep_path=tmp_prep)
        except Exception:
            tmp_path.unlink(missing_ok=True)  # never leave a file that failed its check
            tmp_prep.unlink(missing_ok=True)
            raise
        shutil.move(tmp_path, out / file)
        prep = None
        if cfg.graph.precompute_image:
            prep = prep_file(out / file)
            shutil.move(tmp_prep, prep)
        entries[name] = _entry(out / file, cfg, report, prep)
        logger.info("exported %s (%d bytes)", out / file, entries[name].bytes)
    default = "browser" if "browser" in entries else next(iter(entries))
    emb_h, emb_w = sam.prompt_encoder.image_embedding_size
    image_size = int(sam.image_size)
    manifest = Manifest(
        model=model_name,
        checkpoint_sha256=checkpoint_sha256,
        seed=seed if checkpoint_sha256 is None else None,
        image_size=image_size,
        low_res_size=4 * int(emb_h),
        mask_threshold=float(getattr(sam, "mask_threshold", 0.0)),
        opset=opset,
        embedding_shape=[1, int(sam.prompt_encoder.embed_dim), int(emb_h), int(emb_w)],
        default_variant=default,
        variants=entries,
    )
    manifest.write(out)
    return manifest


def _entry(path: Path, cfg: VariantConfig, report: VerifyReport | None, prep: Path | None) -> VariantEntry:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    prep_entry = None
    if prep is not None:
        prep_model = onnx.load(str(prep), load_external_data=False)
        prep_entry = PrepEntry(
            file=prep.name,
            bytes=prep.stat().st_size,
            sha256=sha256_file(prep),
            inputs=_tensor_specs(prep_model.graph.input),
            outputs=_tensor_specs(prep_model.graph.output),
        )
    options: dict[str, Any] = asdict(cfg.graph)
    options.update(
        quantize=cfg.quantize,
        optimize_before_quantize=cfg.optimize_before_quantize,
        weights_float16=cfg.weights_float16,
        weights_int8=cfg.weights_int8,
    )
    options["embedding_dtype"] = (
        "float16" if cfg.graph.embedding_float16 else "float32"
    )  # of the prep graph if any
    options["quantization"] = "int8-dynamic-weights(MatMul,Gemm)" if cfg.quantize else None
    if report is not None:
        options["verified"] = {
            "max_abs_err": report.max_abs_err,
            "min_mask_iou": report.min_iou,
            "probes": report.probes,
        }
    low_res = cfg.graph.outputs == "low_res"
    return VariantEntry(
        file=path.name,
        bytes=path.stat().st_size,
        sha256=sha256_file(path),
        options=options,
        inputs=_tensor_specs(model.graph.input),
        outputs=_tensor_specs(model.graph.output),
        masks_frame="low_res" if low_res else "original",
        mask_tokens=MaskTokens(single=0, multi=[1, 2, 3]) if low_res or not cfg.graph.single_mask else None,
        prep=prep_entry,
    )
