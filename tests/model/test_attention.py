"""The attention fast path (scaled_dot_product_attention) and the plain path give the same numbers."""

from __future__ import annotations

import pytest
import torch

from clicksam.model.common import attention, attention_path, get_attention_path
from clicksam.model.image_encoder import Attention as EncoderAttention
from clicksam.model.image_encoder import Block, rel_pos_bias, window_partition, window_unpartition
from clicksam.model.transformer import Attention as DecoderAttention


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("with_bias", [False, True])
def test_attention_function_paths_agree(with_bias: bool) -> None:
    g = _gen(0)
    q, k, v = (torch.randn(2, 3, 50, 16, generator=g) for _ in range(3))
    bias = torch.randn(2, 3, 50, 50, generator=g) if with_bias else None
    fast = attention(q, k, v, bias, path="sdpa")
    plain = attention(q, k, v, bias, path="plain")
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    # and the plain path is softmax attention written out
    logits = q @ k.transpose(-1, -2) / 4.0 + (bias if bias is not None else 0)
    assert (plain - logits.softmax(-1) @ v).abs().max().item() < 1e-5


@pytest.mark.parametrize(
    ("q_grid", "k_grid", "lead"),
    [
        ((3, 5), (3, 5), (2, 3)),
        ((64, 64), (64, 64), (1, 2)),
        ((14, 14), (14, 14), (40, 2)),
        ((4, 6), (5, 2), (1, 1)),
    ],
)
def test_rel_pos_paths_agree(q_grid: tuple[int, int], k_grid: tuple[int, int], lead: tuple[int, int]) -> None:
    """Blocked plain path (several blocks for the 64x64 grid and for the 80 windows) vs SDPA vs dense."""
    g = _gen(11)
    nq, nk = q_grid[0] * q_grid[1], k_grid[0] * k_grid[1]
    q, k, v = (
        torch.randn(*lead, nq, 16, generator=g),
        torch.randn(*lead, nk, 16, generator=g),
        torch.randn(*lead, nk, 8, generator=g),
    )
    rel_h = torch.randn(*lead, *q_grid, k_grid[0], generator=g)
    rel_w = torch.randn(*lead, *q_grid, k_grid[1], generator=g)
    plain = attention(q, k, v, rel_pos=(rel_h, rel_w), path="plain")
    sdpa = attention(q, k, v, rel_pos=(rel_h, rel_w), path="sdpa")
    bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(*lead, nq, nk)
    dense = ((q / 4.0) @ k.transpose(-1, -2) + bias).softmax(-1) @ v
    torch.testing.assert_close(plain, dense, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sdpa, dense, rtol=1e-5, atol=1e-5)


def _perturb(module: torch.nn.Module, seed: int) -> None:
    g = _gen(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize(("size", "window"), [((14, 14), 14), ((20, 17), 14), ((16, 16), 0)])
def test_encoder_block_paths_agree(size: tuple[int, int], window: int) -> None:
    torch.manual_seed(1)
    block = Block(32, num_heads=4, use_rel_pos=True, window_size=window, input_size=size).eval()
    _perturb(block, 2)
    x = torch.randn(2, *size, 32, generator=_gen(3))
    with torch.no_grad():
        with attention_path("sdpa"):
            fast = block(x)
        with attention_path("plain"):
            plain = block(x)
        auto = block(x)
    assert get_attention_path() == "auto"
    torch.testing.assert_close(auto, fast, rtol=0, atol=0)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)


def test_decoder_attention_paths_agree() -> None:
    torch.manual_seed(4)
    attn = DecoderAttention(64, 4, downsample_rate=2).eval()
    g = _gen(5)
    q, k = torch.randn(3, 7, 64, generator=g), torch.randn(3, 100, 64, generator=g)
    with torch.no_grad():
        fast = attn(q, k, k)
        with attention_path("sdpa"):
            assert torch.equal(attn(q, k, k), fast)
        with attention_path("plain"):
            plain = attn(q, k, k)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)


def test_encoder_attention_equals_written_out_formula() -> None:
    """Reference: softmax(q k^T * scale + <q, Rh> + <q, Rw>) v, element by element for one head."""
    torch.manual_seed(6)
    attn = EncoderAttention(8, num_heads=1, use_rel_pos=True, input_size=(3, 4)).eval()
    _perturb(attn, 7)
    x = torch.randn(1, 3, 4, 8, generator=_gen(8))
    with torch.no_grad():
        out = attn(x)
        q, k, v = attn.qkv(x.reshape(12, 8)).split(8, dim=-1)
        logits = torch.empty(12, 12)
        for i in range(12):
            qh, qw = divmod(i, 4)
            for j in range(12):
                kh, kw = divmod(j, 4)
                logits[i, j] = (
                    q[i] @ k[j] * 8**-0.5
                    + q[i] @ attn.rel_pos_h[qh - kh + 2]
                    + q[i] @ attn.rel_pos_w[qw - kw + 3]
                )
        ref = attn.proj(logits.softmax(-1) @ v).reshape(1, 3, 4, 8)
    assert (out - ref).abs().max().item() < 1e-5


def test_rel_pos_bias_shape() -> None:
    q = torch.randn(6, 5 * 7, 4)
    bias = rel_pos_bias(q, torch.randn(9, 4), torch.randn(13, 4), (5, 7), (5, 7))
    assert bias.shape == (6, 35, 35)


@pytest.mark.parametrize(("h", "w"), [(14, 14), (15, 29), (64, 64), (3, 2)])
def test_window_partition_round_trip(h: int, w: int) -> None:
    x = torch.randn(2, h, w, 5)
    windows, pad_hw = window_partition(x, 14)
    assert windows.shape[1:] == (14, 14, 5)
    assert pad_hw == (-(-h // 14) * 14, -(-w // 14) * 14)
    assert torch.equal(window_unpartition(windows, 14, pad_hw, (h, w)), x)


def test_unknown_attention_path() -> None:
    with pytest.raises(ValueError, match="'auto', 'sdpa' or 'plain'"), attention_path("flash"):  # type: ignore[arg-type]
        pass
