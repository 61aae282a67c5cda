"""Shared test fixtures: seeded tiny models and the official ``segment_anything`` package as a referee.

The official package imports torchvision, which does not load next to the CPU torch here. Before
importing it, :func:`install_torchvision_stub` puts a small ``torchvision`` into ``sys.modules`` with
exactly the names it imports: ``transforms.functional.resize`` / ``to_pil_image`` (Pillow bilinear, as
torchvision does for PIL images) and ``ops.boxes.batched_nms`` / ``box_area`` (plain torch).
"""

from __future__ import annotations

import os
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from referee_stubs import install_torchvision_stub


@pytest.fixture(scope="session", autouse=True)
def _private_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Servers and commands started by the tests keep their projects in a temporary folder.

    ``clicksam serve`` opens a projects database in ``CLICKSAM_DATA_DIR`` (default: the user's data
    folder); a test run must never write there. Subprocesses inherit the variable.
    """
    previous = os.environ.get("CLICKSAM_DATA_DIR")
    data_dir = tmp_path_factory.mktemp("clicksam-data")
    os.environ["CLICKSAM_DATA_DIR"] = str(data_dir)
    yield data_dir
    if previous is None:
        os.environ.pop("CLICKSAM_DATA_DIR", None)
    else:
        os.environ["CLICKSAM_DATA_DIR"] = previous


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
