"""The demo model's image encoder: SAM's embedding shape, and global context from its attention blocks."""

from __future__ import annotations

import pytest
import torch

from clicksam.model.demo_encoder import DemoEncoder, DemoEncoderConfig, GlobalBlock


def _far_cell_change(config: DemoEncoderConfig) -> float:
    """How much the bottom-right cell's embedding moves when only the top-left input corner changes."""
    torch.manual_seed(0)
    encoder = DemoEncoder(config).eval()
    x = torch.randn(1, 3, 512, 512)
    y = x.clone()
    y[..., :64, :64] += 3.0
    with torch.no_grad():
        a, b = encoder(x), encoder(y)
    assert tuple(a.shape) == (1, 256, 32, 32)
    return float((a[..., -1, -1] - b[..., -1, -1]).abs().max())


def test_global_blocks_let_every_cell_see_the_whole_image() -> None:
    # the convolutions alone reach a few dozen cells; the attention blocks tie the far corners together
    assert _far_cell_change(DemoEncoderConfig(global_depth=0)) == 0.0
    assert _far_cell_change(DemoEncoderConfig(global_depth=2)) > 1e-4


def test_global_block_shapes_and_head_check() -> None:
    block = GlobalBlock(64, num_heads=4)
    x = torch.randn(2, 64, 5, 7)
    assert block(x).shape == x.shape
    with pytest.raises(ValueError, match="heads"):
        GlobalBlock(64, num_heads=5)
