"""Every form of :mod:`clicksam.model.two_way_forms` equals the reference ``TwoWayTransformer``.

A tiny transformer (2 blocks, width 32, 4 heads) with seeded random weights, every parameter perturbed
(random init leaves LayerNorm gains at 1 and biases at 0, which would hide a dropped affine term),
on a 6x5 grid of image tokens with a dense prompt added.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from clicksam.model.transformer import TwoWayTransformer
from clicksam.model.two_way_forms import (
    DenseImage,
    FactoredImage,
    FoldedForm,
    GridForm,
    PlainForm,
    PrecomputedForm,
    PrecomputedImage,
    PreparedImage,
    SharedImage,
    TwoWayForm,
    factored_product,
    pe_tables,
    prepare_image,
    run_two_way,
    shared_image,
)

C, H, W, T = 32, 6, 5, 7  # width, grid, prompt tokens
L = H * W
ATOL = 1e-5


def _close(a: Tensor, b: Tensor) -> None:
    torch.testing.assert_close(a, b, atol=ATOL, rtol=1e-5)


@pytest.fixture(scope="module")
def transformer() -> TwoWayTransformer:
    torch.manual_seed(0)
    model = TwoWayTransformer(depth=2, embedding_dim=C, num_heads=4, mlp_dim=64).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))
    return model


def _inputs(batch: int, seed: int = 2) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """tokens (B, T, C), embedding E (1, L, C), dense prompt lhs (L, 3) / rhs (3, C), PE (1, L, C)."""
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randn(batch, T, C, generator=gen)
    embedding = torch.randn(1, L, C, generator=gen)
    lhs, rhs = torch.randn(L, 3, generator=gen), 0.5 * torch.randn(3, C, generator=gen)
    pe = torch.randn(1, L, C, generator=gen)
    return tokens, embedding, lhs, rhs, pe


@torch.no_grad()
def _reference(
    transformer: TwoWayTransformer, tokens: Tensor, image: Tensor, pe: Tensor
) -> tuple[Tensor, Tensor]:
    """The module itself on (B, L, C) image tokens, in its (B, C, h, w) interface."""
    batch = tokens.shape[0]

    def grid(x: Tensor) -> Tensor:
        return x.expand(batch, -1, -1).transpose(1, 2).reshape(batch, C, H, W)

    return transformer(grid(image), grid(pe), tokens)  # type: ignore[no-any-return]


@torch.no_grad()
@pytest.mark.parametrize("form", [PlainForm(), FoldedForm()], ids=["plain", "folded"])
def test_dense_forms_equal_the_reference(
    transformer: TwoWayTransformer, form: TwoWayForm[DenseImage]
) -> None:
    tokens, embedding, lhs, rhs, pe = _inputs(1)
    image = embedding + lhs @ rhs
    ref_tokens, ref_image = _reference(transformer, tokens, image, pe)
    out_tokens, out_image = run_two_way(transformer, tokens, DenseImage(image, pe), form)
    _close(out_tokens, ref_tokens)
    _close(out_image.tokens, ref_image)


@torch.no_grad()
@pytest.mark.parametrize("with_tables", [False, True], ids=["tables_in_call", "tables_once"])
def test_folded_form_batched(transformer: TwoWayTransformer, with_tables: bool) -> None:
    tokens, embedding, _, _, pe = _inputs(3)
    images = embedding + 0.3 * torch.randn(3, L, C, generator=torch.Generator().manual_seed(9))
    ref_tokens, ref_image = _reference(transformer, tokens, images, pe)
    tables = pe_tables(transformer, pe[0]) if with_tables else None
    out_tokens, out_image = run_two_way(transformer, tokens, DenseImage(images, pe), FoldedForm(3, tables))
    _close(out_tokens, ref_tokens)
    _close(out_image.tokens, ref_image)


@torch.no_grad()
def test_precomputed_form_equals_the_reference(transformer: TwoWayTransformer) -> None:
    """Per-image projections + a per-prompt factored image; the factors rebuild the image tokens."""
    tokens, embedding, lhs, rhs, pe = _inputs(1)
    ref_tokens, ref_image = _reference(transformer, tokens, embedding + lhs @ rhs, pe)
    readout = torch.randn(C, 11, generator=torch.Generator().manual_seed(4))
    prep = prepare_image(transformer, embedding, pe[0], L, readout)
    assert PreparedImage.from_flat(prep.flat(), depth=2).flat() == prep.flat()
    out_tokens, out_image = run_two_way(
        transformer, tokens, PrecomputedImage(prep, lhs, rhs, pe), PrecomputedForm(L)
    )
    assert isinstance(out_image, FactoredImage)
    _close(out_tokens, ref_tokens)
    _close(out_image.tokens, ref_image)
    bias = torch.randn(11, generator=torch.Generator().manual_seed(5))
    _close(factored_product(out_image, readout, bias), ref_image @ readout + bias)


@torch.no_grad()
@pytest.mark.parametrize("batch", [1, 4])
def test_grid_form_equals_the_reference(transformer: TwoWayTransformer, batch: int) -> None:
    """B prompt sets on one shared image, as segment-everything runs them."""
    tokens, embedding, lhs, rhs, pe = _inputs(batch)
    image = embedding + lhs @ rhs
    ref_tokens, ref_image = _reference(transformer, tokens, image, pe)
    form: TwoWayForm[SharedImage | DenseImage] = GridForm(batch, pe_tables(transformer, pe[0], first=1))
    out_tokens, out_image = run_two_way(transformer, tokens, shared_image(transformer, image, pe), form)
    assert isinstance(out_image, DenseImage)
    _close(out_tokens, ref_tokens)
    _close(out_image.tokens, ref_image)


def test_prepared_image_needs_all_its_tensors(transformer: TwoWayTransformer) -> None:
    tokens = _inputs(1)[1]
    with pytest.raises(ValueError, match="a prepared image of 2 blocks is 10 tensors, got 1"):
        PreparedImage.from_flat((tokens,), depth=2)
