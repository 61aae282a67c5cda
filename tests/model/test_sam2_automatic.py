"""``SAM2AutomaticMaskGenerator`` against the official one of ``sam2==1.1.0`` (a test-time referee only).

Both get the same weights: the official ``SAM2Base`` (built from its hydra config with the small Hiera
trunk of the model parity tests, every block kind at the real 1024 geometry) with every parameter and
buffer perturbed by seeded noise, the mask hypernetworks' last layers scaled by -100 (sharp logits, so
that candidates pass the stability filter, and on the side of the threshold that gives small masks with
different boxes, so that NMS keeps several) and the IoU head's bias raised by 2 (predicted IoUs around
0.9, above the default 0.8); ours loads that state strictly minus the named video-only keys. Records
are matched one to one (mask IoU >= 0.99, scores within 1e-3).
The official generator needs torchvision's NMS and box area: the referee stub's (stable by score).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from sam2_parity_helpers import SMALL, SMALL_OVERRIDES, make_pair, require_referee

from clicksam.model import amg
from clicksam.model.build import is_video_only_key
from clicksam.model.sam2 import Sam2
from clicksam.model.sam2_automatic import SAM2AutomaticMaskGenerator


@pytest.fixture(scope="module")
def models() -> tuple[Sam2, Any]:
    """(ours, official) with the same perturbed, sharpened weights, both in eval mode."""
    from referee_stubs import SAM2_OFFICIAL_CONFIGS

    pair = make_pair(SMALL, SAM2_OFFICIAL_CONFIGS["sam2.1_hiera_t"], SMALL_OVERRIDES, seed=3)
    state = pair.official.state_dict()
    for key in state:
        if key.startswith("sam_mask_decoder.output_hypernetworks_mlps") and ".layers.2." in key:
            # sharp logits (stable masks), negated: random weights put most pixels of every mask on
            # one side, and this side gives small masks whose boxes differ, so NMS keeps several
            state[key] = state[key] * -100.0
    # predicted IoUs around 0.9 (sigmoid), so the default threshold of 0.8 lets candidates through
    state["sam_mask_decoder.iou_prediction_head.layers.2.bias"] += 2.0
    pair.official.load_state_dict(state, strict=True)
    pair.ours.load_state_dict({k: v for k, v in state.items() if not is_video_only_key(k)}, strict=True)
    return pair.ours.eval(), pair.official.eval()


def _image(seed: int, h: int, w: int) -> np.ndarray:
    """Six rectangles of saturated colours on a flat grey background: objects for a grid of points."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 128, dtype=np.uint8)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)]
    for colour in colours:
        y0, x0 = rng.integers(0, h - 20), rng.integers(0, w - 20)
        img[y0 : y0 + rng.integers(10, h // 3), x0 : x0 + rng.integers(10, w // 3)] = colour
    return img


def _compare(ours: list[dict[str, Any]], ref: list[dict[str, Any]]) -> None:
    """Same number of records, matched one to one by prompt point and mask IoU (scores that tie to
    float rounding may come out in either order)."""
    assert len(ours) == len(ref)
    unmatched = list(range(len(ref)))
    for a in ours:
        same_point = [
            j for j in unmatched if np.allclose(ref[j]["point_coords"], a["point_coords"], atol=1e-4)
        ]
        assert same_point, f"no official record for point {a['point_coords']}"

        def mask_iou(j: int, a: dict[str, Any] = a) -> float:
            ma, mb = a["segmentation"], ref[j]["segmentation"]
            return float((ma & mb).sum() / max(1, (ma | mb).sum()))

        j = max(same_point, key=mask_iou)
        b = ref[j]
        unmatched.remove(j)
        assert mask_iou(j) >= 0.99
        assert a["predicted_iou"] == pytest.approx(b["predicted_iou"], abs=1e-3)
        assert a["stability_score"] == pytest.approx(b["stability_score"], abs=1e-3)
        assert a["area"] == pytest.approx(b["area"], rel=0.01)
        np.testing.assert_allclose(a["bbox"], b["bbox"], atol=2)
        assert list(a["crop_box"]) == list(b["crop_box"])


def _official_generator(official: Any, **options: Any) -> Any:
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator as Official

    return Official(official, **options)


# (image seed, H, W, options, at least this many masks): the official defaults on an 8x8 grid, with
# and without a crop layer, with use_m2m on and off. m2m runs the whole decoder once more for each of
# the 3 candidates of every point (the official code upscales all of them): a 4x4 grid keeps it short
CASES = [
    pytest.param(0, 96, 128, {"points_per_side": 8}, 2, id="defaults"),
    pytest.param(0, 96, 128, {"points_per_side": 4, "use_m2m": True}, 2, id="m2m"),
    pytest.param(
        1,
        120,
        90,
        {"points_per_side": 8, "crop_n_layers": 1, "crop_n_points_downscale_factor": 2},
        2,
        id="crop-layer",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("seed", "h", "w", "options", "min_masks"), CASES)
def test_matches_official_generator(
    models: tuple[Sam2, Any], seed: int, h: int, w: int, options: dict[str, Any], min_masks: int
) -> None:
    ours_model, official = models
    image = _image(seed, h, w)
    with torch.no_grad():
        ours = SAM2AutomaticMaskGenerator(ours_model, **options).generate(image)
        ref = _official_generator(official, **options).generate(image)
    assert len(ref) >= min_masks, "the referee kept too few masks: NMS would not be shown to keep several"
    _compare(ours, ref)


def test_low_res_clean_up_matches_the_official_postprocessing(monkeypatch: pytest.MonkeyPatch) -> None:
    """``min_mask_region_area``: :func:`amg.fill_small_regions` + the resize equal the official
    ``SAM2Transforms.postprocess_masks`` with ``max_hole_area = max_sprinkle_area``. The official code
    needs its CUDA extension for the connected components; it gets scipy's 8-connected labelling."""
    require_referee()
    from referee_stubs import install_sam2_torchvision_stub
    from scipy import ndimage

    install_sam2_torchvision_stub()
    import sam2.utils.misc
    from sam2.utils.transforms import SAM2Transforms

    def components(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        labels = np.zeros(mask.shape, dtype=np.int32)
        areas = np.zeros(mask.shape, dtype=np.int32)
        for i, m in enumerate(mask[:, 0].numpy().astype(bool)):
            lab, _ = ndimage.label(m, structure=np.ones((3, 3)))
            sizes = np.bincount(lab.ravel())
            labels[i, 0], areas[i, 0] = lab, np.where(lab > 0, sizes[lab], 0)
        return torch.from_numpy(labels), torch.from_numpy(areas)

    monkeypatch.setattr(sam2.utils.misc, "get_connected_components", components)
    gen = torch.Generator().manual_seed(0)
    # blobs and specks: smoothed noise plus single-pixel spikes of both signs
    logits = torch.nn.functional.avg_pool2d(torch.randn(3, 1, 64, 64, generator=gen), 5, 1, 2)[:, 0] * 8
    spikes = torch.rand(3, 64, 64, generator=gen)
    logits = torch.where(spikes > 0.995, 5.0, torch.where(spikes < 0.005, -5.0, logits))
    for area in (1, 6, 40):
        official = SAM2Transforms(1024, 0.0, max_hole_area=area, max_sprinkle_area=area)
        expected = official.postprocess_masks(logits[None], (50, 70))[0]
        ours = amg.fill_small_regions(logits, 0.0, area, area, 10.0)
        assert not torch.equal(ours, logits), "nothing was cleaned up: the case proves little"
        got = torch.nn.functional.interpolate(ours[:, None], (50, 70), mode="bilinear", align_corners=False)
        torch.testing.assert_close(got[:, 0], expected, atol=1e-5, rtol=0)
