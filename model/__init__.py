"""clicksam.model: a checkpoint-compatible Segment Anything (SAM ViT-B/L/H, MobileSAM ViT-T, SAM 2.1).

Names are resolved lazily (PEP 562) so that importing a light submodule (``clicksam.model.weights``
for ``clicksam weights``, or the CLI modules for ``clicksam --help``) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .automatic import SamAutomaticMaskGenerator
    from .build import (
        MODEL_CONFIGS,
        SAM2_CONFIGS,
        CheckpointError,
        CheckpointMismatchError,
        Sam2Config,
        SamConfig,
        UnknownModelError,
        build_sam,
        build_sam2,
        is_sam2_model,
    )
    from .predictor import ImageNotSetError, SamPredictor
    from .sam import Sam
    from .sam2 import Sam2, Sam2ImageFeatures

_EXPORTS = {
    "MODEL_CONFIGS": "build",
    "SAM2_CONFIGS": "build",
    "Sam2": "sam2",
    "Sam2Config": "build",
    "Sam2ImageFeatures": "sam2",
    "build_sam2": "build",
    "is_sam2_model": "build",
    "CheckpointError": "build",
    "CheckpointMismatchError": "build",
    "ImageNotSetError": "predictor",
    "Sam": "sam",
    "SamAutomaticMaskGenerator": "automatic",
    "SamConfig": "build",
    "SamPredictor": "predictor",
    "UnknownModelError": "build",
    "build_sam": "build",
}

__all__ = [
    "MODEL_CONFIGS",
    "SAM2_CONFIGS",
    "CheckpointError",
    "CheckpointMismatchError",
    "ImageNotSetError",
    "Sam",
    "Sam2",
    "Sam2Config",
    "Sam2ImageFeatures",
    "SamAutomaticMaskGenerator",
    "SamConfig",
    "SamPredictor",
    "UnknownModelError",
    "build_sam",
    "build_sam2",
    "is_sam2_model",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'clicksam.model' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
