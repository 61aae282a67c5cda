"""Export SAM's prompt encoder + mask decoder to ONNX, check every file, and write the manifest.

The export is configured by one mapping, variant name -> :class:`VariantConfig`;
:data:`DEFAULT_CONFIGS` are the two presets that ship:

* ``official`` -> ``decoder.onnx``: Meta's decoder interface (``orig_im_size`` input, full-size
  ``masks`` computed in the graph from that input, ``iou_predictions``, ``low_res_masks``), float32.
* ``browser`` -> ``decoder_browser.onnx`` + ``decoder_browser_prep.onnx``: what the page runs by
  default. The prep graph runs once per image on the float16 embedding; the click graph takes its
  outputs and returns all four mask tokens as 256x256 low-res logits + their IoU predictions; the
  page crops, upsamples and thresholds (see ``graph.PrecomputedDecoderGraph``).

Any other name goes to ``decoder_<name>.onnx``. Each variant is traced (:mod:`.trace`), passed through
the ONNX passes it asks for (:mod:`.passes`) and checked against PyTorch (:mod:`.verify`) before the
manifest (:mod:`.manifest`) lists it; a file that fails its check is never left behind.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from clicksam.export.errors import ExportError
from clicksam.export.graph import GraphOptions
from clicksam.export.passes import compress_weights, quantize_int8
from clicksam.export.trace import DEFAULT_OPSET, export_graph, prep_file
from clicksam.export.verify import VerifyReport, verify_onnx
from clicksam.formats import Manifest, MaskTokens, PrepEntry, TensorSpec, VariantEntry
from clicksam.model.sam import Sam
from clicksam.model.sam2 import Sam2
from clicksam.model.weights import sha256_file

logger = logging.getLogger(__name__)

VARIANT_FILES = {"official": "decoder.onnx", "browser": "decoder_browser.onnx"}
WEIGHT_STORAGE = ("float32", "float16", "int8")


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
            in the graph (folded at session creation); see
            :func:`~clicksam.export.passes.compress_weights`.
    """

    graph: GraphOptions
    quantize: bool = False
    quantize_scopes: tuple[str, ...] = ()
    optimize_before_quantize: bool = False
    weights_float16: bool = False
    weights_int8: bool = False

    def with_weights(self, storage: str) -> VariantConfig:
        """The same variant with its weights stored as ``"float32"``, ``"float16"`` or ``"int8"``."""
        if storage not in WEIGHT_STORAGE:
            raise ExportError(f"weights can be stored as {', '.join(WEIGHT_STORAGE)}, not {storage!r}")
        return replace(self, weights_float16=storage == "float16", weights_int8=storage == "int8")

    def with_single_mask(self) -> VariantConfig:
        """The same (official-interface) variant returning the one mask of the official rule."""
        return replace(self, graph=replace(self.graph, single_mask=True))


# The choices of the browser variant were measured with bench/browser (see bench/README.md).
_FAST = {"pe_in_graph": True, "fold_attention": True, "matmul_upscaling": True, "token_major_dense": True}
DEFAULT_CONFIGS: Mapping[str, VariantConfig] = MappingProxyType(
    {
        # same interface and float32 numbers as Meta's export; the exact graph rewrites only make it faster
        "official": VariantConfig(GraphOptions(outputs="official", **_FAST)),
        "browser": VariantConfig(
            GraphOptions(outputs="low_res", embedding_float16=True, precompute_image=True, **_FAST),
            weights_float16=True,
        ),
    }
)


def variant_file(name: str) -> str:
    """The file name of variant ``name``."""
    return VARIANT_FILES.get(name, f"decoder_{name}.onnx")


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
    sam: Sam | Sam2,
    out_dir: str | Path,
    *,
    model_name: str,
    checkpoint_sha256: str | None,
    seed: int | None = None,
    variants: Mapping[str, VariantConfig] = DEFAULT_CONFIGS,
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
) -> Manifest:
    """Export the decoder variants of ``sam`` into ``out_dir`` and write ``manifest.json``.

    A SAM 2.1 model (:class:`~clicksam.model.sam2.Sam2`) is exported by :mod:`clicksam.export.sam2`
    (its own graphs; the variant names chosen here, and ``single_mask`` of ``official``, carry over).

    Args:
        sam: a ``clicksam.model.Sam`` (any module with SAM's attribute names), or a ``Sam2``.
        out_dir: created if missing; existing files of the same names are replaced.
        model_name: config name recorded in the manifest (``vit_b``, ...).
        checkpoint_sha256: sha256 of the checkpoint file, or None for seeded random weights.
        seed: the seed of random weights (recorded so a server can check that it matches).
        variants: name -> config of every variant to write, in order (default :data:`DEFAULT_CONFIGS`);
            e.g. ``{"browser": DEFAULT_CONFIGS["browser"].with_weights("int8")}``.
        opset: ONNX opset.
        verify: run the post-export check (always on in the CLI).

    Returns:
        The manifest that was written.

    Raises:
        ExportError: no variant, or a bad option.
        ExportVerificationError: a file does not reproduce the PyTorch model (nothing is written).
    """
    if not variants:
        raise ExportError(f"no variant to export: pass at least one of {', '.join(DEFAULT_CONFIGS)}")
    if isinstance(sam, Sam2):
        return _export_sam2(sam, out_dir, model_name, checkpoint_sha256, seed, variants, opset, verify)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sam = sam.eval()
    entries: dict[str, VariantEntry] = {}
    for name, cfg in variants.items():
        file = variant_file(name)
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
    manifest = Manifest(
        model=model_name,
        checkpoint_sha256=checkpoint_sha256,
        seed=seed if checkpoint_sha256 is None else None,
        image_size=int(sam.image_size),
        low_res_size=4 * int(emb_h),
        mask_threshold=float(getattr(sam, "mask_threshold", 0.0)),
        opset=opset,
        image_inputs=[
            TensorSpec(
                "image_embeddings", "float16", [1, int(sam.prompt_encoder.embed_dim), int(emb_h), int(emb_w)]
            )
        ],
        default_variant=default,
        variants=entries,
    )
    manifest.write(out)
    return manifest


def _export_sam2(
    sam: Sam2,
    out_dir: str | Path,
    model_name: str,
    checkpoint_sha256: str | None,
    seed: int | None,
    variants: Mapping[str, VariantConfig],
    opset: int,
    verify: bool,
) -> Manifest:
    """SAM 2.1: the variants of the same names from :mod:`clicksam.export.sam2`."""
    from clicksam.export.sam2 import DEFAULT_SAM2_VARIANTS, export_sam2_decoder

    unknown = [name for name in variants if name not in DEFAULT_SAM2_VARIANTS]
    if unknown:
        choices = ", ".join(DEFAULT_SAM2_VARIANTS)
        raise ExportError(f"SAM 2.1 has no decoder variant {', '.join(unknown)}; choose from {choices}")
    if "browser" in variants and variants["browser"] != DEFAULT_CONFIGS["browser"]:
        raise ExportError(
            "SAM 2.1's browser variant has one form (float16 weights): --quantize and --browser-weights "
            "apply to SAM 1 only"
        )
    chosen = {name: DEFAULT_SAM2_VARIANTS[name] for name in variants}
    if "official" in variants and variants["official"].graph.single_mask:
        chosen["official"] = replace(chosen["official"], single_mask=True)
    return export_sam2_decoder(
        sam,
        out_dir,
        model_name=model_name,
        checkpoint_sha256=checkpoint_sha256,
        seed=seed,
        variants=chosen,
        opset=opset,
        verify=verify,
    )


def _tensor_specs(values: Sequence[Any]) -> list[TensorSpec]:
    from onnx import helper

    specs: list[TensorSpec] = []
    for v in values:
        t = v.type.tensor_type
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)).name
        shape: list[int | str] = [d.dim_param if d.dim_param else int(d.dim_value) for d in t.shape.dim]
        specs.append(TensorSpec(v.name, dtype, shape))
    return specs


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
