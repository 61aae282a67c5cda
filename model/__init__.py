"""clicksam.model: a checkpoint-compatible Segment Anything (SAM ViT-B/L/H, MobileSAM ViT-T)."""

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
