"""The optional ONNX Runtime image encoder: where its export lives and whether it may be used.

An export is used only when its sidecar ``encoder.json`` (``clicksam.formats.EncoderSidecar``) says it was
verified against the PyTorch encoder of exactly the served weights (same ``model_id``) with a max abs
error within ``ENCODER_MAX_ABS_ERR``. Making and verifying the export is the job of ``clicksam serve``'s
composition root (``clicksam.serve``, with ``clicksam.export.encoder``); this module only reads.
"""

from __future__ import annotations

import logging
from pathlib import Path

from clicksam.formats import ENCODER_MAX_ABS_ERR, EncoderSidecar, FormatError
from clicksam.server.encoder import OnnxImageEncoder
from clicksam.server.loading import ModelSpec

logger = logging.getLogger(__name__)


def encoder_dir(cache_dir: Path, spec: ModelSpec) -> Path:
    """``<cache_dir>/encoders/<model>-<hash12>/``: one folder per model and weights (never served)."""
    return cache_dir / "encoders" / f"{spec.name}-{spec.short_hash}"


def sidecar_problem(directory: Path, spec: ModelSpec) -> str | None:
    """Why the export in ``directory`` may not serve ``spec``, or None when it may."""
    try:
        sidecar = EncoderSidecar.read(directory)
    except FormatError:
        return f"no verified ONNX encoder in {directory}"
    if sidecar.model_id != spec.model_id:
        return f"the ONNX encoder in {directory} is for {sidecar.model_id}, not {spec.model_id}"
    if not sidecar.max_abs_err <= ENCODER_MAX_ABS_ERR:
        err = sidecar.max_abs_err
        return f"the ONNX encoder in {directory} differs from PyTorch by {err} (> {ENCODER_MAX_ABS_ERR})"
    if Path(sidecar.file).name != sidecar.file or not (directory / sidecar.file).is_file():
        return f"{directory / sidecar.file} is missing"
    return None


def load_onnx_encoder(directory: Path, spec: ModelSpec, *, threads: int) -> OnnxImageEncoder | None:
    """The verified ONNX Runtime encoder for ``spec`` in ``directory``, or None (reason logged)."""
    problem = sidecar_problem(directory, spec)
    if problem is not None:
        logger.info("%s: the PyTorch encoder is used", problem)
        return None
    path = directory / EncoderSidecar.read(directory).file
    try:
        encoder = OnnxImageEncoder(path, threads=threads)
    except ImportError:
        logger.warning("onnxruntime is not installed: the PyTorch encoder is used")
        return None
    logger.info("image encoder: ONNX Runtime, %s (verified against PyTorch)", path)
    return encoder
