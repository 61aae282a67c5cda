"""SAM 2.1 numerical parity with the official ``sam2==1.1.0`` (test-time referee), on perturbed weights.

Max abs error <= 1e-4 (fp32) on the three feature levels, the low-res logits, the IoU scores and the
full-size mask logits, for a click, several clicks, a box, a box with clicks and a previous low-res mask
as ``mask_input``, each with multimask output on and off (single-mask output goes through the dynamic
stability selection), on 4:3, 3:4, 1:1, 16:9 and tiny images. Our side runs through
``SamPredictor(sam2_model)``, the official side through ``SAM2ImagePredictor``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from sam2_parity_helpers import (
    IMAGE_SIZES,
    SMALL,
    SMALL_OVERRIDES,
    TOL,
    Pair,
    make_image,
    make_pair,
    max_err,
    prompts,
)

from clicksam.model import SamPredictor
from clicksam.model.sam2_predictor import Sam2Predictor

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pair() -> Pair:
    return make_pair(SMALL, "configs/sam2.1/sam2.1_hiera_t.yaml", SMALL_OVERRIDES, seed=0)


def _predictors(pair: Pair, image: np.ndarray) -> tuple[Any, Sam2Predictor]:
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    official = SAM2ImagePredictor(pair.official)
    ours = SamPredictor(pair.ours)
    assert isinstance(ours, Sam2Predictor)
    with torch.no_grad():
        official.set_image(image)
        ours.set_image(image)
    return official, ours


def _compare(official: Any, ours: Sam2Predictor, kwargs: dict[str, Any]) -> dict[str, float]:
    with torch.no_grad():
        ref = official.predict(**kwargs, return_logits=True)
        got = ours.predict(**kwargs, return_logits=True)
    return {name: max_err(a, b) for name, a, b in zip(("masks", "iou", "low_res"), ref, got, strict=True)}


def _check_features(official: Any, ours: Sam2Predictor) -> None:
    ref_feats = official._features
    got_feats = ours._features
    assert got_feats is not None
    assert max_err(ref_feats["image_embed"], got_feats["image_embed"]) <= TOL
    for level in (0, 1):
        assert max_err(ref_feats["high_res_feats"][level], got_feats["high_res_feats"][level]) <= TOL, level
    assert tuple(got_feats["image_embed"].shape) == (1, 256, 64, 64)
    assert tuple(got_feats["high_res_feats"][0].shape) == (1, 32, 256, 256)
    assert tuple(got_feats["high_res_feats"][1].shape) == (1, 64, 128, 128)


def _errors(official: Any, ours: Sam2Predictor, cases: dict[str, dict[str, Any]]) -> dict[str, float]:
    errors: dict[str, float] = {}
    for name, kwargs in cases.items():
        for multimask in (True, False):
            for key, err in _compare(official, ours, dict(kwargs, multimask_output=multimask)).items():
                errors[f"{name}/mm={multimask}/{key}"] = err
    return errors


def _assert_within(errors: dict[str, float]) -> None:
    worst = max(errors, key=lambda k: errors[k])
    assert errors[worst] <= TOL, f"{worst}: {errors[worst]:.2e}"


def test_every_prompt_kind_matches_on_a_4_3_image(pair: Pair) -> None:
    """Click, clicks, box, box + clicks, and the previous low-res mask as mask_input, multimask on/off."""
    h, w = IMAGE_SIZES["4:3"]
    official, ours = _predictors(pair, make_image(h, w))
    _check_features(official, ours)
    cases = prompts(h, w)
    errors = _errors(official, ours, cases)
    # refinement: the previous prediction's best low-res logits as mask_input, with the click again
    with torch.no_grad():
        _, scores, low_res = official.predict(**cases["click"], multimask_output=True)
    previous = low_res[int(np.argmax(scores))][None]
    errors.update(_errors(official, ours, {"mask_input": dict(cases["click"], mask_input=previous)}))
    _assert_within(errors)


@pytest.mark.parametrize("aspect", ["3:4", "1:1", "16:9", "tiny"])
def test_features_and_prompts_match_on_other_aspects(pair: Pair, aspect: str) -> None:
    h, w = IMAGE_SIZES[aspect]
    official, ours = _predictors(pair, make_image(h, w))
    _check_features(official, ours)
    cases = prompts(h, w)
    _assert_within(_errors(official, ours, {"click": cases["click"], "box+clicks": cases["box+clicks"]}))


def test_both_branches_of_the_dynamic_single_mask_selection(pair: Pair) -> None:
    """Single-mask output keeps token 0's mask when it is stable, else the best candidate. With these
    weights no mask reaches the official 0.98 (the fallback, compared above); a threshold of 0 on both
    sides makes every mask stable, so the token-0 branch is compared too."""
    h, w = IMAGE_SIZES["4:3"]
    official, ours = _predictors(pair, make_image(h, w))
    cases = {k: dict(v, multimask_output=False) for k, v in prompts(h, w).items()}
    ref_decoder, our_decoder = pair.official.sam_mask_decoder, pair.ours.sam_mask_decoder
    assert ref_decoder.dynamic_multimask_via_stability and our_decoder.dynamic_multimask_via_stability
    with torch.no_grad():
        fallback = {k: ours.predict(**kw, return_logits=True) for k, kw in cases.items()}
    try:
        ref_decoder.dynamic_multimask_stability_thresh = our_decoder.dynamic_multimask_stability_thresh = 0.0
        errors = {k: max(_compare(official, ours, kw).values()) for k, kw in cases.items()}
        with torch.no_grad():
            token0 = {k: ours.predict(**kw, return_logits=True) for k, kw in cases.items()}
    finally:
        ref_decoder.dynamic_multimask_stability_thresh = our_decoder.dynamic_multimask_stability_thresh = 0.98
    _assert_within(errors)
    # the two branches really gave different masks
    gaps = {k: max_err(fallback[k][2], token0[k][2]) for k in cases}
    assert all(gap > 100 * TOL for gap in gaps.values()), gaps


def test_the_check_catches_a_port_that_drops_the_high_res_features(pair: Pair) -> None:
    """Zeroing the two high-res levels (what a port without them computes) exceeds the tolerance."""
    h, w = IMAGE_SIZES["4:3"]
    official, ours = _predictors(pair, make_image(h, w))
    kwargs = dict(prompts(h, w)["click"], multimask_output=True)
    assert max(_compare(official, ours, kwargs).values()) <= TOL

    features = ours.get_image_features()
    dropped = type(features)(
        features.image_embed,
        torch.zeros_like(features.high_res_feats_0),
        torch.zeros_like(features.high_res_feats_1),
    )
    ours._image_features = dropped
    errors = _compare(official, ours, kwargs)
    assert errors["low_res"] > 100 * TOL and errors["masks"] > 100 * TOL


def test_real_hiera_t_preset_matches() -> None:
    """The registry's sam2.1_hiera_t against the official config, perturbed weights: features, a
    click (multimask on and off) and box + clicks on a 4:3 image."""
    from clicksam.model.build import SAM2_CONFIGS

    pair = make_pair(SAM2_CONFIGS["sam2.1_hiera_t"], "configs/sam2.1/sam2.1_hiera_t.yaml", [], seed=1)
    h, w = IMAGE_SIZES["4:3"]
    official, ours = _predictors(pair, make_image(h, w, seed=1))
    _check_features(official, ours)
    cases = prompts(h, w)
    _assert_within(_errors(official, ours, {"click": cases["click"], "box+clicks": cases["box+clicks"]}))
