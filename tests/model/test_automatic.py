"""``SamAutomaticMaskGenerator`` against the official generator (a test-time referee only).

Both get the same weights: our seeded ``vit_test`` model, its prompt encoder and mask decoder perturbed
with seeded noise and the hypernetwork outputs scaled up, so that logits are sharp and a good share of
masks pass the stability filter (raw random weights give masks that almost all fail it, and a test that
compares zero masks proves nothing). The official ``Sam`` wraps our image encoder module, so both see the
same embedding; the encoder itself is tested elsewhere.

The official generator imports ``torchvision.ops.boxes.batched_nms`` / ``box_area``; the referee gets a
plain reference loop written here (stable by score, as torchvision's NMS).
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np
import pytest
import torch
from referee_stubs import reference_sam, sharpened_state

from clicksam.model import SamAutomaticMaskGenerator, amg, build_sam
from clicksam.model.automatic import EverythingError, GridDecoder


def _reference_batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """torchvision semantics: per category, visit by descending score (stable), drop IoU > threshold."""
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    b = boxes.tolist()
    keep: list[int] = []
    for i in order:
        ok = True
        for j in keep:
            if int(idxs[i]) != int(idxs[j]):
                continue
            iw = max(0.0, min(b[i][2], b[j][2]) - max(b[i][0], b[j][0]))
            ih = max(0.0, min(b[i][3], b[j][3]) - max(b[i][1], b[j][1]))
            inter = iw * ih
            union = (
                (b[i][2] - b[i][0]) * (b[i][3] - b[i][1]) + (b[j][2] - b[j][0]) * (b[j][3] - b[j][1]) - inter
            )
            if union > 0 and inter / union > iou_threshold:
                ok = False
                break
        if ok:
            keep.append(i)
    return torch.tensor(keep, dtype=torch.int64)


@pytest.fixture(scope="module")
def models(segment_anything_ref: types.ModuleType) -> tuple[Any, Any, types.ModuleType]:
    from segment_anything import automatic_mask_generator as official_amg
    from segment_anything import modeling

    sam = build_sam("vit_test", seed=0).eval()
    state = sharpened_state(sam)
    sam.load_state_dict(state)
    grid = sam.prompt_encoder.image_embedding_size
    official = reference_sam(modeling, sam.image_encoder, grid)
    official.load_state_dict(state, strict=True)
    return sam, official, official_amg


def _image(seed: int, h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), dtype=np.uint8)
    img[:] = rng.integers(0, 255, size=3)
    for _ in range(6):  # a few flat rectangles on a textured background
        y0, x0 = rng.integers(0, h - 8), rng.integers(0, w - 8)
        img[y0 : y0 + rng.integers(8, h // 2), x0 : x0 + rng.integers(8, w // 2)] = rng.integers(0, 255, 3)
    noise = rng.integers(-20, 20, size=img.shape)
    return np.clip(img.astype(np.int64) + noise, 0, 255).astype(np.uint8)


def _compare(ours: list[dict[str, Any]], ref: list[dict[str, Any]]) -> None:
    """Same number of records, matched one to one by prompt point and mask IoU (scores that tie to
    float rounding may come out in either order)."""
    assert len(ours) == len(ref)
    unmatched = list(range(len(ref)))
    for a in ours:
        same_point = [
            j for j in unmatched if np.allclose(ref[j]["point_coords"], a["point_coords"], atol=1e-6)
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


# (image seed, H, W, options, at least this many masks). Random weights make every point find nearly the
# same mask, so with NMS on only a mask or two survive: the cases with box_nms_thresh=1 (nothing is a
# duplicate) compare every mask that passed the filters, one by one; NMS itself is tested in test_rle.
CASES = [
    (0, 96, 128, {"points_per_side": 8}, 1),  # SAM's defaults, sparser grid
    (1, 120, 90, {"points_per_side": 6, "box_nms_thresh": 1.0}, 10),
    (
        2,
        70,
        100,
        {"points_per_side": 6, "pred_iou_thresh": 0.5, "stability_score_thresh": 0.8, "box_nms_thresh": 1.0},
        10,
    ),
    (
        3,
        90,
        120,
        {
            "points_per_side": 4,
            "pred_iou_thresh": 0.5,
            "stability_score_thresh": 0.8,
            "box_nms_thresh": 1.0,
            "crop_n_layers": 1,
            "crop_n_points_downscale_factor": 2,
            "min_mask_region_area": 20,
        },
        1,  # every crop mask touches its crop's edge and goes: only whole-image masks stay
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("seed", "h", "w", "options", "min_masks"), CASES)
def test_matches_official_generator(
    models: tuple[Any, Any, types.ModuleType],
    monkeypatch: pytest.MonkeyPatch,
    seed: int,
    h: int,
    w: int,
    options: dict[str, Any],
    min_masks: int,
) -> None:
    sam, official, official_amg = models
    monkeypatch.setattr(official_amg, "batched_nms", _reference_batched_nms)
    if options.get("min_mask_region_area", 0) > 0:
        # the official clean-up calls OpenCV: give it ours (tested against a flood fill in test_rle)
        monkeypatch.setattr(official_amg, "remove_small_regions", amg.remove_small_regions)
        monkeypatch.setitem(__import__("sys").modules, "cv2", types.ModuleType("cv2"))
    torch.manual_seed(0)
    image = _image(seed, h, w)
    with torch.no_grad():
        ours = SamAutomaticMaskGenerator(sam, **options).generate(image)
        ref = official_amg.SamAutomaticMaskGenerator(official, **options).generate(image)
    assert len(ref) >= min_masks, "the referee found (almost) no masks: the comparison would prove little"
    _compare(ours, ref)


def test_factored_decoder_matches_the_module(models: tuple[Any, Any, types.ModuleType]) -> None:
    sam = models[0]
    gen = torch.Generator().manual_seed(5)
    embedding = torch.randn(1, 256, 64, 64, generator=gen)
    coords = torch.rand(6, 1, 2, generator=gen) * 1024
    labels = torch.ones(6, 1, dtype=torch.int)
    with torch.no_grad():
        sparse, dense = sam.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        ref_masks, ref_iou = sam.mask_decoder.predict_masks(
            embedding, sam.prompt_encoder.get_dense_pe(), sparse, dense
        )
        dec = GridDecoder.for_sam(sam, embedding)
        tokens, keys = dec.transformer_forward(sparse)
        iou, mask_tokens = dec.iou_and_mask_tokens(tokens)
        select = torch.zeros(6, 4, dtype=torch.bool)
        select[:, 1:] = True
        select[0, 2] = False
        masks = dec.masks_for(keys, mask_tokens, select)
    torch.testing.assert_close(iou, ref_iou, atol=1e-4, rtol=0)
    torch.testing.assert_close(masks, ref_masks[select], atol=1e-3 * float(ref_masks.abs().max()), rtol=0)


def test_output_modes_agree(models: tuple[Any, Any, types.ModuleType]) -> None:
    sam = models[0]
    image = _image(4, 64, 80)
    opts: dict[str, Any] = {"points_per_side": 4, "pred_iou_thresh": 0.5, "stability_score_thresh": 0.8}
    binary = SamAutomaticMaskGenerator(sam, **opts).generate(image)
    coco = SamAutomaticMaskGenerator(sam, output_mode="coco_rle", **opts).generate(image)
    raw = SamAutomaticMaskGenerator(sam, output_mode="uncompressed_rle", **opts).generate(image)
    assert len(binary) == len(coco) == len(raw) > 0
    for b, c, r in zip(binary, coco, raw, strict=True):
        assert b["segmentation"].shape == (64, 80) and b["segmentation"].dtype == bool
        assert isinstance(c["segmentation"]["counts"], str) and c["segmentation"]["size"] == [64, 80]
        np.testing.assert_array_equal(amg.rle_to_mask(c["segmentation"]), b["segmentation"])
        np.testing.assert_array_equal(amg.rle_to_mask(r["segmentation"]), b["segmentation"])
        assert b["area"] == int(b["segmentation"].sum())
        x, y, w, h = b["bbox"]
        ys, xs = np.nonzero(b["segmentation"])
        assert [x, y, x + w, y + h] == [xs.min(), ys.min(), xs.max(), ys.max()]


def test_embedding_reuse_and_progress(models: tuple[Any, Any, types.ModuleType]) -> None:
    from clicksam.model import SamPredictor

    sam = models[0]
    image = _image(5, 50, 70)
    predictor = SamPredictor(sam)
    predictor.set_image(image)
    assert predictor.features is not None
    calls: list[tuple[int, int]] = []
    gen = SamAutomaticMaskGenerator(sam, points_per_side=4, pred_iou_thresh=0.5, stability_score_thresh=0.8)
    with_embedding = gen.generate(
        image, image_embedding=predictor.features, progress=lambda d, t: calls.append((d, t))
    )
    plain = gen.generate(image)
    assert len(with_embedding) == len(plain)
    for a, b in zip(with_embedding, plain, strict=True):
        np.testing.assert_array_equal(a["segmentation"], b["segmentation"])
    assert calls[-1] == (16, 16) and gen.total_points((50, 70)) == 16


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"points_per_side": None}, "exactly one"),
        ({"output_mode": "png"}, "output_mode"),
        ({"pred_iou_thresh": 1.5}, "pred_iou_thresh"),
        ({"points_per_batch": 0}, "points_per_batch"),
        ({"crop_n_layers": 3, "points_per_side": 4, "crop_n_points_downscale_factor": 2}, "no points"),
        ({"points_per_side": None, "point_grids": [np.zeros((4, 3))]}, "point_grids"),
    ],
)
def test_bad_options(
    models: tuple[Any, Any, types.ModuleType], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(EverythingError, match=message):
        SamAutomaticMaskGenerator(models[0], **options)


def test_bad_images(models: tuple[Any, Any, types.ModuleType]) -> None:
    gen = SamAutomaticMaskGenerator(models[0], points_per_side=2)
    for bad in (
        np.zeros((10, 10), np.uint8),
        np.zeros((10, 10, 4), np.uint8),
        np.zeros((10, 10, 3), np.float32),
    ):
        with pytest.raises(EverythingError, match="HxWx3 uint8"):
            gen.generate(bad)
    with pytest.raises(EverythingError, match="image_embedding"):
        gen.generate(np.zeros((10, 10, 3), np.uint8), image_embedding=torch.zeros(256, 64, 64))
