"""Shared layers: the fused oneDNN linear equals F.linear and steps aside for autograd and tracing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clicksam.model.common import LayerNorm2d, MLPBlock, linear


@pytest.mark.parametrize("activation", ["none", "gelu"])
def test_linear_matches_eager(activation: str) -> None:
    torch.manual_seed(0)
    layer = nn.Linear(48, 96)
    x = torch.randn(2, 5, 7, 48)
    with torch.inference_mode():
        out = linear(x, layer, activation)  # type: ignore[arg-type]
    ref = F.linear(x, layer.weight, layer.bias)
    ref = F.gelu(ref) if activation == "gelu" else ref
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    # non-contiguous input
    xt = torch.randn(2, 48, 5).transpose(1, 2)
    with torch.no_grad():
        torch.testing.assert_close(
            linear(xt, layer), F.linear(xt, layer.weight, layer.bias), rtol=1e-5, atol=1e-5
        )


def test_linear_keeps_autograd() -> None:
    layer = nn.Linear(8, 4)
    x = torch.randn(3, 8, requires_grad=True)
    linear(x, layer, "gelu").sum().backward()
    assert x.grad is not None and layer.weight.grad is not None


def test_traced_mlp_uses_standard_ops() -> None:
    mlp = MLPBlock(16, 32).eval()
    x = torch.randn(1, 4, 16)
    with torch.no_grad():
        traced = torch.jit.trace(mlp, x)
    graph = str(traced.graph)
    assert "mkldnn" not in graph and "linear" in graph
    torch.testing.assert_close(traced(x), mlp(x), rtol=1e-5, atol=1e-5)


def test_layernorm2d_matches_layer_norm_over_channels() -> None:
    torch.manual_seed(1)
    ln = LayerNorm2d(6)
    with torch.no_grad():
        ln.weight.normal_()
        ln.bias.normal_()
    x = torch.randn(2, 6, 3, 5)
    ref = F.layer_norm(x.permute(0, 2, 3, 1), (6,), ln.weight, ln.bias, eps=1e-6).permute(0, 3, 1, 2)
    torch.testing.assert_close(ln(x), ref, rtol=1e-5, atol=1e-5)
