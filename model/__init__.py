"""clicksam.model: a checkpoint-compatible Segment Anything (SAM ViT-B/L/H, MobileSAM ViT-T).

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
        CheckpointError,
        CheckpointMismatchError,
        SamConfig,
        UnknownModelError,
        build_sam,
    )
    from .predictor import ImageNotSetError, SamPredictor
    from .sam import Sam

_EXPORTS = {
    "MODEL_CONFIGS": "build",
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
    "CheckpointError",
    "CheckpointMismatchError",
    "ImageNotSetError",
    "Sam",
    "SamAutomaticMaskGenerator",
    "SamConfig",
    "SamPredictor",
    "UnknownModelError",
    "build_sam",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'clicksam.model' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
