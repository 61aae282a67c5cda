"""Tracing the decoder graph forms (:mod:`clicksam.export.graph`) into self-contained ONNX files.

The TorchScript exporter (``dynamo=False``) is chosen on purpose: it writes a single file with the
weights inside, handles the dynamic number of points via ``dynamic_axes`` and reproduces the official
graph structure (the dynamo exporter writes external data by default).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor

from clicksam.export.graph import GraphOptions, ImagePrepGraph, PrecomputedDecoderGraph, click_graph
from clicksam.export.passes import name_output_shapes
from clicksam.model.sam import Sam

DEFAULT_OPSET = 17


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
    """Trace the decoder graph of ``options`` into one self-contained ONNX file at ``path``.

    With ``options.precompute_image`` the per-image graph goes to ``prep_path`` (default
    :func:`prep_file` of ``path``) and ``path`` takes its outputs instead of ``image_embeddings``.
    """
    graph = click_graph(sam, options).eval()
    inputs = _dummy_inputs(sam, options)
    if isinstance(graph, PrecomputedDecoderGraph):
        prep = ImagePrepGraph(graph).eval()
        names = graph.prep_names
        embedding = inputs.pop("image_embeddings")
        trace_to_onnx(prep, {"image_embeddings": embedding}, prep_path or prep_file(path), names, {}, opset)
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
    trace_to_onnx(graph, inputs, path, outputs, dynamic_axes, opset)
    name_output_shapes(path, _output_shapes(sam, options))


def _output_shapes(sam: Sam, options: GraphOptions) -> dict[str, list[int | str]]:
    """The documented output shapes of a decoder graph."""
    n = 1 if options.single_mask else int(sam.mask_decoder.num_mask_tokens)
    low = 4 * int(sam.prompt_encoder.image_embedding_size[0])
    return {
        "masks": [1, n, "orig_height", "orig_width"],
        "iou_predictions": [1, n],
        "low_res_masks": [1, n, low, low],
    }


def trace_to_onnx(
    module: torch.nn.Module,
    inputs: dict[str, Tensor],
    path: str | Path,
    outputs: list[str],
    dynamic_axes: dict[str, dict[int, str]],
    opset: int,
) -> None:
    """Write ``module`` traced on ``inputs`` (named in order) to ``path`` with the TorchScript exporter."""
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
            dynamo=False,  # constant folding and weights in the file: the defaults
        )
