"""Shared test fixtures: seeded tiny models and the official ``segment_anything`` package as a referee.

The official package imports torchvision, which does not load next to the CPU torch here. Before
importing it, :func:`install_torchvision_stub` puts a small ``torchvision`` into ``sys.modules`` with
exactly the names it imports: ``transforms.functional.resize`` / ``to_pil_image`` (Pillow bilinear, as
torchvision does for PIL images) and ``ops.boxes.batched_nms`` / ``box_area`` (plain torch).
"""

from __future__ import annotations

import types
from typing import Any

import pytest
from referee_stubs import install_torchvision_stub


@pytest.fixture(scope="session")
def segment_anything_ref() -> types.ModuleType:
    """The official ``segment_anything`` package (test-time referee only)."""
    install_torchvision_stub()
    import segment_anything

    return segment_anything


@pytest.fixture(scope="session")
def tiny_sam() -> Any:
    """A seeded ``vit_test`` SAM (tiny ViT encoder, standard prompt encoder / decoder), eval mode."""
    from clicksam.model import build_sam

    return build_sam("vit_test", seed=0)
