"""ONNX export of SAM's image encoder, verified against PyTorch before it is marked usable.

    sidecar = export_encoder(sam, directory, model="vit_t", model_id="vit_t:<sha>", checkpoint_sha256=sha)

writes ``directory/encoder.onnx`` (TorchScript-based ``torch.onnx.export``: one input, the preprocessed
image (1, 3, S, S) float32 as ``Sam.preprocess`` returns it; one output, the embedding (1, 256, 64, 64)),
runs it in ONNX Runtime on a seeded random image and compares with the PyTorch encoder. Only when the
largest difference is within ``ENCODER_MAX_ABS_ERR`` is the sidecar ``encoder.json``
(``clicksam.formats.EncoderSidecar``) written: the server uses an export only when its sidecar says so.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from clicksam.export.errors import ExportError
from clicksam.formats import ENCODER_FILE, ENCODER_MAX_ABS_ERR, SIDECAR_NAME, EncoderSidecar
from clicksam.model.sam import Sam
from clicksam.model.sam2 import Sam2

logger = logging.getLogger(__name__)


def export_encoder(
    sam: Sam | Sam2,
    directory: Path,
    *,
    model: str,
    model_id: str,
    checkpoint_sha256: str | None,
    threads: int = 1,
    opset: int = 17,
) -> EncoderSidecar:
    """Export ``sam.image_encoder`` to ``directory/encoder.onnx``, verify it, write its sidecar.

    Args:
        sam: the model (eval mode) whose encoder is exported.
        directory: created if missing; a previous sidecar is removed first, so a failed export never
            leaves an export marked usable.
        model, model_id, checkpoint_sha256: the weights' identity recorded in the sidecar (the server
            uses the export only for the same ``model_id``).
        threads: ONNX Runtime intra-op threads for the check.
        opset: ONNX opset.

    Returns:
        The sidecar that was written (with the measured error and the timings of one encode).

    Raises:
        ExportError: the export failed, or ONNX Runtime differs from PyTorch by more than
            ``ENCODER_MAX_ABS_ERR``; or ``sam`` is a SAM 2.1 model (its three-level Hiera encoder is
            not exported: the server runs it on PyTorch).
    """
    if not isinstance(sam, Sam):
        raise ExportError(
            f"the ONNX image encoder exists for SAM 1 / MobileSAM only, not {type(sam).__name__}: "
            "run it on PyTorch (--encoder torch)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / SIDECAR_NAME).unlink(missing_ok=True)
    path = directory / ENCODER_FILE
    size = int(sam.image_size)
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.integers(0, 256, (1, 3, size * 3 // 4, size), dtype=np.uint8))
    with torch.inference_mode():
        x = sam.preprocess(image.to(torch.float32))  # (1, 3, S, S) normalised, zero-padded
    start = time.perf_counter()
    try:
        with torch.no_grad():
            torch.onnx.export(
                sam.image_encoder, (x,), str(path), dynamo=False, opset_version=opset,
                input_names=["image"], output_names=["image_embeddings"],
            )  # fmt: skip
        export_s = time.perf_counter() - start
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feeds = {"image": x.numpy()}
        session.run(None, feeds)  # the first run holds ONNX Runtime's one-off allocations
        start = time.perf_counter()
        got = np.asarray(session.run(None, feeds)[0])
        onnx_s = time.perf_counter() - start
    except (RuntimeError, ValueError, OSError, ImportError) as exc:
        raise ExportError(f"ONNX export of the {model} image encoder failed: {exc!r}") from exc
    start = time.perf_counter()
    with torch.inference_mode():
        reference = sam.image_encoder(x).numpy()
    torch_s = time.perf_counter() - start
    err = float(np.abs(got - reference).max()) if got.shape == reference.shape else float("inf")
    if not err <= ENCODER_MAX_ABS_ERR:
        raise ExportError(
            f"the ONNX export of the {model} image encoder differs from PyTorch by {err:.3g} "
            f"(> {ENCODER_MAX_ABS_ERR})"
        )
    sidecar = EncoderSidecar(
        model=model,
        model_id=model_id,
        checkpoint_sha256=checkpoint_sha256,
        max_abs_err=err,
        verify_seconds={
            "export": round(export_s, 2),
            "torch": round(torch_s, 3),
            "onnxruntime": round(onnx_s, 3),
        },
    )
    sidecar.write(directory)
    logger.info(
        "ONNX encoder verified: max abs err %.2g; one encode %.2f s with PyTorch, %.2f s with ONNX Runtime",
        err, torch_s, onnx_s,
    )  # fmt: skip
    return sidecar
