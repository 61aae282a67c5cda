"""Shared pieces of the SAM 2.1 parity tests: the official model and ours with the same perturbed
weights, test images, prompts, and the max-abs-error comparison.

The official ``sam2==1.1.0`` package is a test-time referee only; it is built through its own hydra
configs with :func:`referee_stubs.reference_sam2`, with torchvision stubbed (see referee_stubs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch

from clicksam.model.build import Sam2Config, build_sam2_from_config, is_video_only_key
from clicksam.model.hiera import HieraConfig
from clicksam.model.sam2 import Sam2

TOL = 1e-4

#: a small Hiera for most parity cases: every block kind (query pooling with and without window
#: padding, padded windows, one global block) at the real 1024 geometry, so the decoder, the frames
#: and the feature sizes are the official ones
SMALL = Sam2Config(
    "parity_small", HieraConfig(8, 1, (1, 1, 3, 1), (3,), window_pos_embed_bkg_spatial_size=(7, 7))
)
SMALL_OVERRIDES = [
    "++model.image_encoder.trunk.embed_dim=8",
    "++model.image_encoder.trunk.num_heads=1",
    "++model.image_encoder.trunk.stages=[1,1,3,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.image_encoder.neck.backbone_channel_list=[64,32,16,8]",
]

#: (H, W) of the test images: 4:3, 3:4, 1:1, 16:9 and a tiny one
IMAGE_SIZES = {"4:3": (240, 320), "3:4": (320, 240), "1:1": (256, 256), "16:9": (180, 320), "tiny": (7, 5)}


def require_referee() -> None:
    pytest.importorskip("hydra", reason="the sam2 referee (dev extra + Makefile) is not installed")
    pytest.importorskip("sam2", reason="the sam2 referee (dev extra + Makefile) is not installed")


@dataclass
class Pair:
    """The official model and ours with identical weights, both in eval mode."""

    official: torch.nn.Module
    ours: Sam2


def make_pair(config: Sam2Config, config_file: str, overrides: list[str], seed: int = 0) -> Pair:
    """Build both models and give them the same perturbed weights (every parameter and buffer of the
    official model, the video-only ones included; ours gets all but those, strictly)."""
    require_referee()
    from referee_stubs import perturbed_state, reference_sam2

    official = reference_sam2(config_file, overrides)
    state = perturbed_state(official, seed=seed)
    official.load_state_dict(state, strict=True)
    ours = build_sam2_from_config(config, seed=seed)
    ours.load_state_dict({k: v for k, v in state.items() if not is_video_only_key(k)}, strict=True)
    return Pair(official.eval(), ours.eval())


def make_image(h: int, w: int, seed: int = 0) -> npt.NDArray[np.uint8]:
    """An (h, w, 3) uint8 image with smooth gradients, two shapes and noise (edges for the encoder)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([255 * xx / max(w - 1, 1), 255 * yy / max(h - 1, 1), 128 + 0 * xx], axis=-1)
    disc = (xx - 0.6 * w) ** 2 + (yy - 0.45 * h) ** 2 < (0.2 * min(h, w)) ** 2
    img[disc] = (230, 40, 60)
    img[int(0.1 * h) : int(0.35 * h) + 1, int(0.1 * w) : int(0.3 * w) + 1] = (20, 200, 90)
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def prompts(h: int, w: int) -> dict[str, dict[str, Any]]:
    """The prompt kinds of the issue, in original pixels (mask_input is filled in by the caller)."""
    return {
        "click": {"point_coords": np.array([[0.6 * w, 0.45 * h]]), "point_labels": np.array([1])},
        "clicks": {
            "point_coords": np.array([[0.6 * w, 0.45 * h], [0.2 * w, 0.2 * h], [0.9 * w, 0.9 * h]]),
            "point_labels": np.array([1, 1, 0]),
        },
        "box": {"box": np.array([0.35 * w, 0.2 * h, 0.85 * w, 0.7 * h])},
        "box+clicks": {
            "box": np.array([0.35 * w, 0.2 * h, 0.85 * w, 0.7 * h]),
            "point_coords": np.array([[0.6 * w, 0.45 * h], [0.8 * w, 0.25 * h]]),
            "point_labels": np.array([1, 0]),
        },
    }


def max_err(a: Any, b: Any) -> float:
    ta = torch.as_tensor(np.asarray(a, dtype=np.float32))
    tb = torch.as_tensor(np.asarray(b, dtype=np.float32))
    assert ta.shape == tb.shape, (ta.shape, tb.shape)
    return float((ta - tb).abs().max()) if ta.numel() else 0.0
