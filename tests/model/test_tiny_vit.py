"""TinyViT (MobileSAM's image encoder): checkpoint layout and numerical parity with the official code.

The official ``mobile_sam`` package is a test-time referee only. It imports ``timm`` and ``torchvision``,
which do not load next to the CPU torch here, so the few names it needs are provided by small modules put
into ``sys.modules`` before the import (see ``referee_stubs.install_timm_stub``).
"""

from __future__ import annotations

import time
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from referee_stubs import install_timm_stub
from torch import nn

from clicksam.model.build import TinyViTConfig
from clicksam.model.common import attention_path
from clicksam.model.tiny_vit import Attention, TinyViT, TinyViTBlock

DATA = Path(__file__).resolve().parents[1] / "data"
LISTING = DATA / "sam_state_dict_vit_t.tsv"

# a light TinyViT that still has every block kind: MBConv stage, padded and unpadded attention windows,
# both patch-merging strides. The official forward hard-codes a 64x64 output grid at the end, so the
# input must be 1024 and the last merge must keep the resolution (the official code keys that on 320).
SMALL_CONFIG = TinyViTConfig(
    embed_dims=(16, 24, 32, 320),
    depths=(1, 2, 1, 1),
    num_heads=(1, 2, 2, 5),
    window_sizes=(7, 7, 14, 7),
    mlp_ratio=2.0,
    mbconv_expand_ratio=2.0,
)
SMALL: dict[str, Any] = SMALL_CONFIG.constructor_args(img_size=1024)


def import_official_tiny_vit() -> types.ModuleType:
    install_timm_stub()
    from mobile_sam.modeling import tiny_vit_sam

    return tiny_vit_sam


def perturb_(module: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Add seeded noise to every float parameter and buffer (BN statistics too); return the state dict.

    Zero-initialised tensors (attention biases, the last BN of each MBConv) become non-zero, so a port
    that ignored them could not pass.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if not t.is_floating_point():
                continue
            noise = torch.randn(t.shape, generator=g)
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name.endswith("attention_biases"):
                t.add_(noise)
            elif t.ndim <= 1:
                t.add_(0.2 * noise)
            else:
                # weights on the scale of a fan-in init, so every branch contributes O(1) to its
                # residual sum and an error anywhere shows in the output
                t.add_(noise / t[0].numel() ** 0.5)
    return module.state_dict()


def _listing_rows(prefix: str) -> dict[str, tuple[list[int], str]]:
    rows: dict[str, tuple[list[int], str]] = {}
    for line in LISTING.read_text().splitlines():
        name, shape, dtype = line.split("\t")
        if name.startswith(prefix):
            dims = [int(d) for d in shape.strip("[]").split(",") if d.strip()]
            rows[name[len(prefix) :]] = (dims, dtype)
    return rows


def test_state_dict_matches_official_listing() -> None:
    expected = _listing_rows("image_encoder.")
    assert len(expected) == 302
    got = {k: (list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in TinyViT().state_dict().items()}
    assert set(got) == set(expected), (sorted(set(expected) - set(got)), sorted(set(got) - set(expected)))
    assert got == expected
    # the index buffer is rebuilt from the window size, never stored in checkpoints
    assert not any("attention_bias_idxs" in k for k in got)


def test_sdpa_and_plain_attention_agree() -> None:
    torch.manual_seed(0)
    attn = Attention(24, 8, num_heads=3, attn_ratio=1.0, resolution=(5, 5)).eval()
    perturb_(attn, seed=1)
    x = torch.randn(6, 25, 24)
    with attention_path("sdpa"):
        fast = attn(x)
    with attention_path("plain"):
        plain = attn(x)
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)


def test_bias_index_matches_official() -> None:
    ref = import_official_tiny_vit()
    for res in [(7, 7), (14, 14), (3, 5)]:
        theirs = ref.Attention(16, 8, num_heads=2, attn_ratio=1, resolution=res)
        ours = Attention(16, 8, num_heads=2, attn_ratio=1.0, resolution=res)
        assert ours.attention_biases.shape == theirs.attention_biases.shape
        assert torch.equal(ours.attention_bias_idxs, theirs.attention_bias_idxs)


@pytest.mark.parametrize(
    ("res", "window"),
    [((7, 7), 7), ((10, 10), 5), ((10, 13), 4)],
    ids=["one-window", "tiled", "padded"],
)
def test_block_matches_official(res: tuple[int, int], window: int) -> None:
    ref = import_official_tiny_vit()
    torch.manual_seed(0)
    theirs = ref.TinyViTBlock(24, res, num_heads=3, window_size=window, mlp_ratio=2.0)
    ours = TinyViTBlock(24, num_heads=3, window_size=window, mlp_ratio=2.0)
    state = perturb_(theirs, seed=2)
    ours.load_state_dict(state, strict=True)
    theirs.eval()
    ours.eval()
    x = torch.randn(2, res[0], res[1], 24)
    with torch.no_grad():
        expected = theirs(x.reshape(2, res[0] * res[1], 24)).reshape(2, res[0], res[1], 24)
        got = ours(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def _official_pair(config: dict[str, Any], seed: int) -> tuple[nn.Module, TinyViT]:
    ref = import_official_tiny_vit()
    torch.manual_seed(seed)
    theirs = ref.TinyViT(**config)
    ours = TinyViT(**config)
    state = perturb_(theirs, seed=seed + 1)
    ours.load_state_dict(state, strict=True)
    # eval() after loading: the official Attention caches the gathered bias when switched to eval mode
    theirs.eval()
    ours.eval()
    return theirs, ours


def test_small_tinyvit_matches_official() -> None:
    theirs, ours = _official_pair(SMALL, seed=10)
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = theirs(x)
        got = ours(x)
    assert got.shape == (1, 256, 64, 64)
    err = (got - expected).abs().max().item()
    assert err <= 1e-4, err
    # the sdpa and plain attention paths give the same encoder output
    with torch.no_grad(), attention_path("plain"):
        plain = ours(x)
    assert (plain - expected).abs().max().item() <= 1e-4
    # with autograd on, the fused oneDNN conv/linear + GELU kernels are not used: same result
    unfused = ours(x).detach()
    assert (unfused - expected).abs().max().item() <= 1e-4


def test_no_stale_bias_after_eval_then_load() -> None:
    """MobileSAM's builder calls eval() before loading weights; our encoder must still use the loaded ones."""
    config = {**SMALL, "img_size": 256}  # no referee here, so any input size will do
    torch.manual_seed(0)
    source = TinyViT(**config)
    state = perturb_(source, seed=5)
    source.eval()
    early = TinyViT(**config).eval()  # eval first, then load: the official order
    early.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(early(x), source(x), atol=0, rtol=0)
        # and a later change of a bias takes effect at once (a per-offset change: a constant shift
        # would cancel in the softmax)
        block = early.layers[1].blocks[0]
        assert isinstance(block, TinyViTBlock)
        before = early(x)
        biases = block.attn.attention_biases
        biases.add_(torch.randn(biases.shape, generator=torch.Generator().manual_seed(7)))
        assert (early(x) - before).abs().max().item() > 1e-3


def test_other_input_sizes_and_bad_input() -> None:
    enc = TinyViT(**{**SMALL, "img_size": 256}).eval()
    with torch.no_grad():
        assert enc(torch.zeros(2, 3, 256, 256)).shape == (2, 256, 16, 16)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        enc(torch.zeros(3, 256, 256))
    with pytest.raises(ValueError, match="equal"):
        TinyViT(depths=[2, 2], embed_dims=[64, 128, 160])


def test_train_mode_runs_and_backprops() -> None:
    enc = TinyViT(**{**SMALL, "img_size": 128, "drop_path_rate": 0.1, "use_checkpoint": True}).train()
    out = enc(torch.randn(2, 3, 128, 128))
    out.square().mean().backward()
    grad = enc.layers[1].blocks[0].attn.attention_biases.grad
    assert grad is not None and grad.abs().sum() > 0
    scales = enc.layer_lr_scales()
    assert set(scales) == {k for k, _ in enc.named_parameters()}
    assert scales["layers.3.blocks.0.mlp.fc1.weight"] == 1.0
    assert scales["patch_embed.seq.0.c.weight"] == pytest.approx(0.8 ** (sum(SMALL["depths"]) - 1))


@pytest.mark.slow
def test_full_vit_t_encoder_matches_official() -> None:
    """The MobileSAM configuration at 1024x1024, perturbed weights, ours vs the official forward."""
    config = TinyViTConfig().constructor_args(img_size=1024)  # the defaults are MobileSAM's
    theirs, ours = _official_pair(config, seed=20)
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(6))
    with torch.inference_mode():
        t0 = time.perf_counter()
        expected = theirs(x)
        t1 = time.perf_counter()
        got = ours(x)
        t2 = time.perf_counter()
    print(f"official {t1 - t0:.2f} s, ours {t2 - t1:.2f} s, ratio {(t1 - t0) / (t2 - t1):.2f}x")
    assert got.shape == (1, 256, 64, 64)
    err = (got - expected).abs().max().item()
    assert err <= 1e-4, err
