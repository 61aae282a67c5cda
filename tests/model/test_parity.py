"""Numerical parity with the official ``segment_anything`` package (a test-time referee only).

Small configurations of the official classes (ViT-B structure: windowed blocks with padded windows, a
global block, decomposed relative positions, the full 256-channel prompt encoder and mask decoder) get
the same weights in both implementations. Every parameter and buffer is perturbed with seeded noise
first: SAM zero-initialises ``pos_embed`` and ``rel_pos_*``, so a port that dropped them would pass on
raw random weights.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np
import pytest
import torch
from referee_stubs import reference_sam

from clicksam.model import Sam, SamPredictor
from clicksam.model.build import SamConfig, ViTConfig, build_sam_from_config
from clicksam.model.common import attention_path
from clicksam.model.image_encoder import get_rel_pos

TOL = 1e-4

SMALL = SamConfig("parity_small", ViTConfig(embed_dim=48, depth=3, num_heads=3, global_attn_indexes=(1,)))


def _perturbed_state(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The model's state dict with seeded noise added to every floating tensor."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            noise = torch.randn(value.shape, generator=gen, dtype=value.dtype)
            # 0.05 keeps activations moderate through the stacked blocks, 0.5 makes the
            # positional tables (zero-initialised) clearly non-zero
            scale = 0.5 if ("rel_pos" in key or "pos_embed" in key) else 0.05
            value = value + scale * noise
        state[key] = value.clone()
    return state


def _official_sam(sa: types.ModuleType, config: SamConfig) -> torch.nn.Module:
    from segment_anything import modeling

    enc = config.encoder
    assert isinstance(enc, ViTConfig)
    grid = config.image_embedding_size
    encoder = modeling.ImageEncoderViT(
        **enc.constructor_args(config.image_size, config.prompt_embed_dim),
        norm_layer=lambda d: torch.nn.LayerNorm(d, eps=1e-6),
    )
    return reference_sam(modeling, encoder, (grid, grid), config.image_size)


@pytest.fixture(scope="module")
def pair(segment_anything_ref: types.ModuleType) -> tuple[Sam, torch.nn.Module]:
    ours = build_sam_from_config(SMALL, seed=0)
    theirs = _official_sam(segment_anything_ref, SMALL)
    state = _perturbed_state(ours, seed=1234)
    ours.load_state_dict(state, strict=True)
    theirs.load_state_dict(state, strict=True)
    return ours, theirs


def _image(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth random picture (gradients + blobs) so the resize and the encoder see structure."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    for c in range(3):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        img[..., c] = 255 * np.exp(-(((xx - cx) / (0.3 * w + 1)) ** 2 + ((yy - cy) / (0.3 * h + 1)) ** 2))
    img += rng.normal(0, 20, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _max_err(a: Any, b: Any) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def _prompts(h: int, w: int) -> dict[str, dict[str, Any]]:
    """Prompt sets in original-image pixels."""
    return {
        "single_click": {"point_coords": np.array([[0.4 * w, 0.55 * h]]), "point_labels": np.array([1])},
        "clicks": {
            "point_coords": np.array([[0.4 * w, 0.55 * h], [0.7 * w, 0.2 * h], [0.1 * w, 0.9 * h]]),
            "point_labels": np.array([1, 0, 1]),
        },
        "box": {"box": np.array([0.1 * w, 0.2 * h, 0.8 * w, 0.9 * h])},
        "box_clicks": {
            "box": np.array([0.1 * w, 0.2 * h, 0.8 * w, 0.9 * h]),
            "point_coords": np.array([[0.5 * w, 0.5 * h], [0.15 * w, 0.85 * h]]),
            "point_labels": np.array([1, 0]),
        },
    }


def _assert_predictors_agree(
    mine: SamPredictor, ref: Any, image: np.ndarray, max_mask_flips: int | None = 2
) -> None:
    """Our predictor and the referee's agree within TOL on ``image`` (H, W, 3): frames, embedding, and
    every prompt set of :func:`_prompts` with and without multimask, then with a previous mask_input.

    ``max_mask_flips``: how many pixels of the boolean mask_input masks may differ (logits within TOL
    of the threshold); None does not compare them.
    """
    h, w = image.shape[:2]
    mine.set_image(image)
    ref.set_image(image)
    assert mine.input_size == tuple(ref.input_size)
    assert mine.original_size == tuple(ref.original_size)
    emb_err = _max_err(mine.get_image_embedding(), ref.get_image_embedding())
    assert emb_err <= TOL, f"embedding max abs err {emb_err}"
    # the perturbation must make the embedding non-trivial, or the comparison proves little
    assert float(ref.get_image_embedding().std()) > 0.1

    for name, prompt in _prompts(h, w).items():
        for multimask in (True, False):
            m_masks, m_scores, m_low = mine.predict(**prompt, multimask_output=multimask, return_logits=True)
            r_masks, r_scores, r_low = ref.predict(**prompt, multimask_output=multimask, return_logits=True)
            assert m_low.shape == r_low.shape and m_masks.shape == r_masks.shape == (m_low.shape[0], h, w)
            assert _max_err(m_low, r_low) <= TOL, (name, multimask, _max_err(m_low, r_low))
            assert _max_err(m_scores, r_scores) <= TOL, (name, multimask)
            assert _max_err(m_masks, r_masks) <= TOL, (name, multimask)

        # the previous prediction's best low-res logits as mask_input, with the same prompt
        _, r_scores, r_low = ref.predict(**prompt, multimask_output=True)
        previous = r_low[int(np.argmax(r_scores))][None]
        m_masks, m_scores, m_low = mine.predict(**prompt, mask_input=previous, multimask_output=False)
        r_masks, r_scores, r_low = ref.predict(**prompt, mask_input=previous, multimask_output=False)
        assert _max_err(m_low, r_low) <= TOL, (name, "mask_input")
        assert _max_err(m_scores, r_scores) <= TOL, (name, "mask_input")
        # boolean masks agree except where a logit sits within the tolerance of the threshold
        if max_mask_flips is not None:
            assert (m_masks != r_masks).sum() <= max_mask_flips, name


# (H, W): 4:3 landscape, 3:4 portrait, 1:1, 16:9, a tiny one, and a 1024 one (no resize)
SIZES = [(300, 400), (400, 300), (256, 256), (180, 320), (7, 5), (768, 1024)]


@pytest.mark.slow
@pytest.mark.parametrize(("h", "w"), SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_predictor_parity_with_official(
    pair: tuple[Sam, torch.nn.Module], segment_anything_ref: types.ModuleType, h: int, w: int
) -> None:
    ours, theirs = pair
    image = _image(h, w, seed=h * 1000 + w)
    _assert_predictors_agree(SamPredictor(ours), segment_anything_ref.SamPredictor(theirs), image)


@pytest.mark.slow
def test_parity_holds_on_both_attention_paths(pair: tuple[Sam, torch.nn.Module]) -> None:
    ours, theirs = pair
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref = theirs.image_encoder(x)
        for path in ("auto", "sdpa", "plain"):
            with attention_path(path):  # type: ignore[arg-type]
                err = (ours.image_encoder(x) - ref).abs().max().item()
            assert err <= TOL, (path, err)


def test_relative_positions_matter(pair: tuple[Sam, torch.nn.Module]) -> None:
    """Guards the parity test itself: dropping rel-pos (or pos_embed) must change the embedding a lot."""
    ours, _ = pair
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(6))
    block = ours.image_encoder.blocks[1].attn
    with torch.no_grad():
        base = ours.image_encoder(x)
        saved = block.rel_pos_h.detach().clone()
        block.rel_pos_h.zero_()
        try:
            changed = ours.image_encoder(x)
        finally:
            block.rel_pos_h.copy_(saved)
    assert (base - changed).abs().max().item() > 100 * TOL


@pytest.mark.parametrize(
    ("q_size", "k_size", "length"), [(14, 14, 27), (14, 14, 15), (8, 16, 31), (16, 8, 9)]
)
def test_get_rel_pos_matches_official_including_interpolation(
    segment_anything_ref: types.ModuleType, q_size: int, k_size: int, length: int
) -> None:
    from segment_anything.modeling.image_encoder import get_rel_pos as ref_get_rel_pos

    table = torch.randn(length, 6, generator=torch.Generator().manual_seed(length))
    ours = get_rel_pos(q_size, k_size, table)
    theirs = ref_get_rel_pos(q_size, k_size, table)
    assert ours.shape == theirs.shape == (q_size, k_size, 6)
    assert torch.equal(ours, theirs)


def test_prompt_encoder_and_decoder_parity_batched(pair: tuple[Sam, torch.nn.Module]) -> None:
    """Batched prompts straight into the prompt encoder + decoder (the path the ONNX export traces)."""
    ours, theirs = pair
    gen = torch.Generator().manual_seed(9)
    emb = torch.randn(1, 256, 64, 64, generator=gen)
    coords = torch.rand(3, 4, 2, generator=gen) * 1024
    labels = torch.tensor([[1, 0, 1, 1], [1, 1, 0, 0], [0, 1, 1, 0]])
    boxes = torch.tensor(
        [[10.0, 20.0, 500.0, 700.0], [0.0, 0.0, 1023.0, 1023.0], [300.0, 300.0, 310.0, 320.0]]
    )
    masks = torch.randn(3, 1, 256, 256, generator=gen) * 5
    with torch.no_grad():
        for kwargs in (
            {"points": (coords, labels), "boxes": None, "masks": None},
            {"points": None, "boxes": boxes, "masks": None},
            {"points": (coords, labels), "boxes": boxes, "masks": masks},
            {"points": None, "boxes": None, "masks": masks},
        ):
            s1, d1 = ours.prompt_encoder(**kwargs)
            s2, d2 = theirs.prompt_encoder(**kwargs)
            assert _max_err(s1, s2) <= TOL and _max_err(d1, d2) <= TOL
            pe1, pe2 = ours.prompt_encoder.get_dense_pe(), theirs.prompt_encoder.get_dense_pe()
            assert _max_err(pe1, pe2) <= TOL
            for multimask in (True, False):
                m1, i1 = ours.mask_decoder(emb, pe1, s1, d1, multimask)
                m2, i2 = theirs.mask_decoder(emb, pe2, s2, d2, multimask)
                assert _max_err(m1, m2) <= TOL and _max_err(i1, i2) <= TOL
