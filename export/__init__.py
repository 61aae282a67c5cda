"""clicksam.export: SAM's prompt encoder + mask decoder as ONNX for the browser, plus its manifest.

    from clicksam.export import export_decoder
    manifest = export_decoder(sam, "out/", model_name="vit_b", checkpoint_sha256=sha)

One file per step: ``graph`` (the traced forms), ``trace`` (module -> ONNX file), ``passes`` (ONNX
file -> ONNX file), ``verify`` (ONNX Runtime vs PyTorch), ``decoder`` (the variants, orchestration),
``errors``; ``cli`` is ``clicksam export``.

Names are resolved lazily so that importing the package (e.g. for ``clicksam --help``) does not
import torch or onnx.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "export_decoder": "clicksam.export.decoder",
    "export_variant": "clicksam.export.decoder",
    "verify_onnx": "clicksam.export.verify",
    "prompt_feeds": "clicksam.export.verify",
    "ExportError": "clicksam.export.errors",
    "ExportVerificationError": "clicksam.export.errors",
    "VariantConfig": "clicksam.export.decoder",
    "DEFAULT_CONFIGS": "clicksam.export.decoder",
    "GraphOptions": "clicksam.export.graph",
    "Manifest": "clicksam.formats",
    "ManifestError": "clicksam.formats",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'clicksam.export' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
