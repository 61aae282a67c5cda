"""ONNX file-to-file passes of the export: output shape names, ONNX Runtime's basic optimisation,
int8 dynamic quantisation and compact weight storage.

Each pass reads an ONNX file and writes one (possibly the same path); none knows about SAM.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from clicksam.export.errors import ExportError


def name_output_shapes(path: str | Path, shapes: dict[str, list[int | str]]) -> None:
    """Replace the exporter's generated output dims of ``path`` by ``shapes`` (name -> dims: a str is
    a named dynamic axis, an int a fixed size)."""
    import onnx

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
