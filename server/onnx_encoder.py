"""The optional ONNX Runtime image encoder: where its export lives and whether it may be used.

An export is used only when its sidecar ``encoder.json`` says it was verified against the PyTorch encoder
of exactly the served weights (same ``model_id``) with a max abs error within ``MAX_ABS_ERR``. Making and
verifying the export is the job of ``clicksam serve`` (``server/cli.py``); this module only reads.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from clicksam.server.encoder import OnnxImageEncoder
from clicksam.server.loading import ModelSpec

logger = logging.getLogger(__name__)

ENCODER_FILE = "encoder.onnx"
SIDECAR_FILE = "encoder.json"
SIDECAR_FORMAT = "clicksam-encoder"
#: largest accepted difference to the PyTorch encoder's float32 output
MAX_ABS_ERR = 1e-3
#: "auto" exports checkpoints of encoders below this many parameters: ViT-T (5.7M), where ONNX Runtime
#: measured ~1.6x faster than PyTorch here (bench/README.md). ViT-B/L/H (86M+) were not measured on this
#: shared machine and export slowly to large files, so they stay on PyTorch unless asked for
AUTO_MAX_PARAMS = 50_000_000


def encoder_dir(cache_dir: Path, spec: ModelSpec) -> Path:
    """``<cache_dir>/encoders/<model>-<hash12>/``: one folder per model and weights (never served)."""
    return cache_dir / "encoders" / f"{spec.name}-{spec.short_hash}"


def read_sidecar(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((directory / SIDECAR_FILE).read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def sidecar_problem(directory: Path, spec: ModelSpec) -> str | None:
    """Why the export in ``directory`` may not serve ``spec``, or None when it may."""
    sidecar = read_sidecar(directory)
    if sidecar is None or sidecar.get("format") != SIDECAR_FORMAT:
        return f"no verified ONNX encoder in {directory}"
    if sidecar.get("model_id") != spec.model_id:
        return f"the ONNX encoder in {directory} is for {sidecar.get('model_id')}, not {spec.model_id}"
    err = sidecar.get("max_abs_err")
    if not isinstance(err, int | float) or not err <= MAX_ABS_ERR:
        return f"the ONNX encoder in {directory} differs from PyTorch by {err} (> {MAX_ABS_ERR})"
    if not (directory / ENCODER_FILE).is_file():
        return f"{directory / ENCODER_FILE} is missing"
    return None


def write_sidecar(directory: Path, spec: ModelSpec, max_abs_err: float, seconds: dict[str, float]) -> None:
    doc = {
        "format": SIDECAR_FORMAT,
        "version": 1,
        "file": ENCODER_FILE,
        "model": spec.name,
        "model_id": spec.model_id,
        "checkpoint_sha256": spec.checkpoint_sha256,
        "max_abs_err": max_abs_err,
        "verify_seconds": seconds,
    }
    (directory / SIDECAR_FILE).write_text(json.dumps(doc, indent=2))


def load_onnx_encoder(directory: Path, spec: ModelSpec, *, threads: int) -> OnnxImageEncoder | None:
    """The verified ONNX Runtime encoder for ``spec`` in ``directory``, or None (reason logged)."""
    problem = sidecar_problem(directory, spec)
    if problem is not None:
        logger.info("%s: the PyTorch encoder is used", problem)
        return None
    try:
        encoder = OnnxImageEncoder(directory / ENCODER_FILE, threads=threads)
    except ImportError:
        logger.warning("onnxruntime is not installed: the PyTorch encoder is used")
        return None
    logger.info("image encoder: ONNX Runtime, %s (verified against PyTorch)", directory / ENCODER_FILE)
    return encoder
