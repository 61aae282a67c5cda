"""Fixtures of the export tests: a seeded ``vit_test`` model and its exports, made once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from export_testlib import BROWSER_FP32, Exported

from clicksam.export.decoder import DEFAULT_CONFIGS, export_decoder
from clicksam.model import Sam, build_sam


@pytest.fixture(scope="session")
def sam() -> Sam:
    """Seeded vit_test with every prompt-encoder / mask-decoder tensor perturbed.

    Random init leaves LayerNorm weights at 1 and biases at 0, which would hide a dropped or
    swapped affine term in a rewritten graph.
    """
    model = build_sam("vit_test", seed=0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in (model.prompt_encoder, model.mask_decoder):
            for p in module.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model.eval()


@pytest.fixture(scope="session")
def exported(sam: Sam, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exported]:
    """official + browser (defaults) + browser_fp32, exported and verified once."""
    out = tmp_path_factory.mktemp("decoder")
    manifest = export_decoder(
        sam,
        out,
        model_name="vit_test",
        checkpoint_sha256=None,
        seed=0,
        variants={**DEFAULT_CONFIGS, "browser_fp32": BROWSER_FP32},
    )
    yield Exported(sam, out, manifest)
