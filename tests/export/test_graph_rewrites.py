"""The exact rewrites of the browser graph, in PyTorch: the per-image / per-click split
(``precompute_image``) and the token-major dense prompt equal the plain SAM decoder graph, and the
plain graph equals the model's own prompt encoder + mask decoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from export_testlib import torch_reference

from clicksam.export.graph import DecoderGraph, GraphOptions, ImagePrepGraph, PrecomputedDecoderGraph
from clicksam.model import Sam

PROMPTS = {
    "click": ([[400.0, 300.0], [0.0, 0.0]], [1.0, -1.0]),
    "clicks": ([[400.0, 300.0], [620.0, 410.0], [100.0, 700.0], [0.0, 0.0]], [1.0, 0.0, 1.0, -1.0]),
    "box_click": ([[120.0, 90.0], [700.0, 560.0], [400.0, 300.0]], [2.0, 3.0, 0.0]),
}
# the same prompts through the model's public API: (clicks, labels, box); padding is added by it
PUBLIC = {
    "click": ([[400.0, 300.0]], [1.0], None),
    "clicks": ([[400.0, 300.0], [620.0, 410.0], [100.0, 700.0]], [1.0, 0.0, 1.0], None),
    "box_click": ([[400.0, 300.0]], [0.0], [120.0, 90.0, 700.0, 560.0]),
}
FAST = GraphOptions(
    outputs="low_res", pe_in_graph=True, fold_attention=True, matmul_upscaling=True, token_major_dense=True
)


@torch.no_grad()
@pytest.mark.parametrize("with_mask", [False, True], ids=["no_mask", "mask_input"])
@pytest.mark.parametrize("prompt", list(PROMPTS))
def test_precomputed_click_graph_equals_plain_graph(sam: Sam, prompt: str, with_mask: bool) -> None:
    plain = DecoderGraph(sam, GraphOptions(outputs="low_res")).eval()
    fast = DecoderGraph(sam, FAST).eval()
    click = PrecomputedDecoderGraph(sam, GraphOptions(**{**FAST.__dict__, "precompute_image": True})).eval()
    gen = torch.Generator().manual_seed(5)
    embedding = torch.randn(1, 256, 64, 64, generator=gen)
    mask = 4.0 * torch.randn(1, 1, 256, 256, generator=gen)
    coords, labels = (torch.tensor([v]) for v in PROMPTS[prompt])
    flag = torch.tensor([1.0 if with_mask else 0.0])
    ref_low, ref_iou = plain(embedding, coords, labels, mask, flag)
    clicks, click_labels, box = (None if v is None else np.array(v) for v in PUBLIC[prompt])
    model_low, model_iou = torch_reference(
        sam, embedding, clicks, click_labels, box, mask.numpy() if with_mask else None
    )
    assert np.abs(ref_low.numpy() - model_low).max() <= 1e-4
    assert np.abs(ref_iou.numpy() - model_iou).max() <= 1e-4
    for low, iou in (
        fast(embedding, coords, labels, mask, flag),
        click(*ImagePrepGraph(click)(embedding), coords, labels, mask, flag),
    ):
        assert (low - ref_low).abs().max() <= 1e-4
        assert (iou - ref_iou).abs().max() <= 1e-5
    assert 0.0 < (ref_low > 0).float().mean() < 1.0  # a mask with a boundary, so the check means something


def test_precompute_needs_the_low_res_matmul_graph(sam: Sam) -> None:
    with pytest.raises(ValueError, match="precompute_image needs"):
        PrecomputedDecoderGraph(
            sam, GraphOptions(outputs="official", matmul_upscaling=True, precompute_image=True)
        )
