"""COCO RLE (uncompressed and compressed string), NMS, boxes, grids and connected components of
``clicksam.model.amg``, each against a hand-computed value or a plain reference loop written here."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch

from clicksam.model import amg


def _naive_rle_counts(mask: np.ndarray) -> list[int]:
    flat = mask.T.reshape(-1)  # column-major
    counts: list[int] = []
    current, run = False, 0
    for v in flat:
        if bool(v) == current:
            run += 1
        else:
            counts.append(run)
            current, run = bool(v), 1
    counts.append(run)
    return counts


def _random_masks(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """Blobby masks (thresholded smoothed noise) plus the edge cases: empty, full, single pixels."""
    noise = rng.standard_normal((n, h, w))
    for _ in range(3):
        noise = (noise + np.roll(noise, 1, 1) + np.roll(noise, 1, 2) + np.roll(noise, -1, 1)) / 4
    masks = noise > 0.1
    masks[0] = False
    masks[1] = True
    masks[2] = False
    masks[2, 0, 0] = True  # starts with a 1
    masks[3] = False
    masks[3, -1, -1] = True  # ends with a 1
    return masks


# ----------------------------------------------------------------------------------- known strings

# Hand-computed with pycocotools' published rleToString algorithm (maskApi.c); see the comments.
KNOWN = [
    ([0, 4], "04"),  # 2x2 all ones: '0'+0, '0'+4
    ([4, 1, 4], "414"),  # 3x3 with only the centre pixel
    ([9], "9"),
    # 40 = 0b01000|01000 -> groups 8 (more) and 1: 'X' '1'; 100 -> 4 (more), 3: 'T' '3';
    # the fourth value is stored as 3 - 40 = -37 -> groups 27 (more) and 30 (sign bit set): 'k' 'N'
    ([5, 40, 100, 3], "5X1T3kN"),
    # 16 alone would look negative (bit 0x10), so it takes a second group: 16|0x20 -> '`', then '0'
    ([16, 1], "`01"),
]


@pytest.mark.parametrize(("counts", "string"), KNOWN)
def test_known_coco_strings(counts: list[int], string: str) -> None:
    assert amg.rle_counts_to_string(counts) == string
    assert amg.rle_counts_from_string(string).tolist() == counts


def test_known_mask_to_compressed_rle() -> None:
    mask = np.zeros((3, 3), dtype=bool)
    mask[1, 1] = True
    rle = amg.mask_to_rle(torch.as_tensor(mask)[None])[0]
    assert rle == {"size": [3, 3], "counts": [4, 1, 4]}
    assert amg.coco_encode_rle(rle) == {"size": [3, 3], "counts": "414"}
    # a 2x3 mask whose first column is set: column-major counts start with an empty run of zeros
    mask = np.zeros((2, 3), dtype=bool)
    mask[:, 0] = True
    assert amg.mask_to_rle(torch.as_tensor(mask)[None])[0]["counts"] == [0, 2, 4]


# ------------------------------------------------------------------------------------- round trips


def test_mask_to_rle_matches_a_plain_loop_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    masks = _random_masks(rng, 12, 37, 53)
    rles = amg.mask_to_rle(torch.as_tensor(masks))
    assert len(rles) == len(masks)
    for mask, rle in zip(masks, rles, strict=True):
        assert rle["size"] == [37, 53]
        assert rle["counts"] == _naive_rle_counts(mask)
        assert sum(rle["counts"]) == 37 * 53
        np.testing.assert_array_equal(amg.rle_to_mask(rle), mask)
        assert amg.area_from_rle(rle) == int(mask.sum())
        coco = amg.coco_encode_rle(rle)
        assert isinstance(coco["counts"], str)
        assert amg.rle_counts_from_string(coco["counts"]).tolist() == rle["counts"]
        np.testing.assert_array_equal(amg.rle_to_mask(coco), mask)
        assert amg.area_from_rle(coco) == int(mask.sum())


def test_empty_and_full_masks() -> None:
    masks = torch.zeros(2, 4, 5, dtype=torch.bool)
    masks[1] = True
    empty, full = amg.mask_to_rle(masks)
    assert empty["counts"] == [20]
    assert full["counts"] == [0, 20]
    assert amg.mask_to_rle(torch.zeros(0, 4, 5, dtype=torch.bool)) == []


def test_string_round_trip_of_large_and_alternating_counts() -> None:
    rng = np.random.default_rng(1)
    counts = rng.integers(0, 5_000_000, size=500)
    counts[::7] = 0
    counts[3::11] = 1
    assert amg.rle_counts_from_string(amg.rle_counts_to_string(counts)).tolist() == counts.tolist()


def test_bad_strings_and_sizes_are_rejected() -> None:
    with pytest.raises(ValueError, match="characters"):
        amg.rle_counts_from_string("04~")
    with pytest.raises(ValueError, match="truncated"):
        amg.rle_counts_from_string("X")  # a group that promises another
    with pytest.raises(ValueError, match="H\\*W"):
        amg.rle_to_mask({"size": [2, 2], "counts": [1, 1]})


# -------------------------------------------------------------------------------------- boxes, NMS


def test_batched_mask_to_box() -> None:
    masks = _random_masks(np.random.default_rng(2), 8, 20, 30)
    boxes = amg.batched_mask_to_box(torch.as_tensor(masks))
    for mask, box in zip(masks, boxes.tolist(), strict=True):
        if not mask.any():
            assert box == [0, 0, 0, 0]
            continue
        ys, xs = np.nonzero(mask)
        assert box == [xs.min(), ys.min(), xs.max(), ys.max()]
    assert amg.batched_mask_to_box(torch.as_tensor(masks).reshape(2, 4, 20, 30)).shape == (2, 4, 4)


def _reference_nms(boxes: list[list[float]], scores: list[float], thr: float) -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # sorted() is stable
    keep: list[int] = []
    for i in order:
        ok = True
        for j in keep:
            bi, bj = boxes[i], boxes[j]
            iw = max(0.0, min(bi[2], bj[2]) - max(bi[0], bj[0]))
            ih = max(0.0, min(bi[3], bj[3]) - max(bi[1], bj[1]))
            inter = iw * ih
            union = (bi[2] - bi[0]) * (bi[3] - bi[1]) + (bj[2] - bj[0]) * (bj[3] - bj[1]) - inter
            if union > 0 and inter / union > thr:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


@pytest.mark.parametrize("thr", [0.3, 0.7])
def test_nms_matches_a_reference_loop(thr: float) -> None:
    rng = np.random.default_rng(3)
    xy = rng.integers(0, 80, size=(300, 2))
    wh = rng.integers(0, 40, size=(300, 2))  # includes zero-width boxes
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    scores = rng.integers(0, 20, size=300).astype(np.float32)  # many ties
    keep = amg.nms(torch.as_tensor(boxes), torch.as_tensor(scores), thr)
    expected = _reference_nms(boxes.tolist(), scores.tolist(), thr)
    assert keep.tolist() == expected
    assert amg.nms_numpy(boxes, scores, thr).tolist() == expected
    assert 0 < len(expected) < 300


def test_nms_of_nothing() -> None:
    assert amg.nms(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []


# ------------------------------------------------------------------------------- grids, crops, misc


def test_point_grid() -> None:
    grid = amg.build_point_grid(2)
    np.testing.assert_allclose(grid, [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]])
    grids = amg.build_all_layer_point_grids(32, 2, 2)
    assert [len(g) for g in grids] == [32 * 32, 16 * 16, 8 * 8]
    np.testing.assert_allclose(grids[0][0], [1 / 64, 1 / 64])


def test_crop_boxes_for_a_1024x768_image() -> None:
    boxes, layers = amg.generate_crop_boxes((768, 1024), 1, 512 / 1500)
    # overlap = int(512/1500 * 768) = 262; crop = ceil((262 + side) / 2) = 643 x 515
    assert boxes == [
        [0, 0, 1024, 768],
        [0, 0, 643, 515],
        [0, 253, 643, 768],
        [381, 0, 1024, 515],
        [381, 253, 1024, 768],
    ]
    assert layers == [0, 1, 1, 1, 1]
    assert len(amg.generate_crop_boxes((100, 80), 2, 0.3)[0]) == 1 + 4 + 16


def test_stability_score() -> None:
    logits = torch.full((1, 4, 4), -5.0)
    logits[0, :2, :2] = 3.0  # 4 pixels above +1
    logits[0, 2, :] = 0.5  # 4 more above -1 only
    assert amg.calculate_stability_score(logits, 0.0, 1.0).tolist() == [0.5]
    assert torch.isnan(amg.calculate_stability_score(torch.full((1, 2, 2), -9.0), 0.0, 1.0)).all()


def test_edge_filter_and_uncrop() -> None:
    crop = [100, 50, 300, 250]
    boxes = torch.tensor([[0, 0, 50, 50], [60, 60, 100, 100], [30, 30, 199, 120]])
    near = amg.is_box_near_crop_edge(boxes, crop, [0, 0, 300, 400])
    # the first touches the crop's left/top edge (inside the image); the third its right edge, which is
    # also the image's right edge, so it stays
    assert near.tolist() == [True, False, False]
    assert amg.uncrop_boxes_xyxy(boxes[:1], crop).tolist() == [[100, 50, 150, 100]]
    assert amg.uncrop_points(torch.tensor([[1.5, 2.0]]), crop).tolist() == [[101.5, 52.0]]
    masks = torch.ones(1, 200, 200, dtype=torch.bool)
    full = amg.uncrop_masks(masks, crop, 400, 300)
    assert full.shape == (1, 400, 300) and int(full.sum()) == 200 * 200 and bool(full[0, 50, 100])
    assert amg.box_xyxy_to_xywh(torch.tensor([1, 2, 4, 8])).tolist() == [1, 2, 3, 6]


# ------------------------------------------------------------------------- connected components


def _naive_components(mask: np.ndarray) -> list[set[tuple[int, int]]]:
    seen = np.zeros_like(mask)
    comps = []
    h, w = mask.shape
    for y in range(h):
        for x in range(w):
            if mask[y, x] and not seen[y, x]:
                comp = set()
                queue = deque([(y, x)])
                seen[y, x] = True
                while queue:
                    cy, cx = queue.popleft()
                    comp.add((cy, cx))
                    for dy in (-1, 0, 1):
                        for dx in (-1, 0, 1):
                            ny, nx = cy + dy, cx + dx
                            if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                                seen[ny, nx] = True
                                queue.append((ny, nx))
                comps.append(comp)
    return comps


def test_connected_components_match_a_flood_fill() -> None:
    rng = np.random.default_rng(4)
    for density in (0.3, 0.5, 0.6):
        mask = rng.random((40, 50)) < density
        labels, sizes = amg.connected_components(mask)
        comps = _naive_components(mask)  # found in raster order of first pixel, as the labels
        assert len(sizes) == len(comps) + 1
        for i, comp in enumerate(comps, start=1):
            ys, xs = np.nonzero(labels == i)
            assert set(zip(ys.tolist(), xs.tolist(), strict=True)) == comp
            assert sizes[i] == len(comp)
        assert sizes[0] == (~mask).sum()
    # a spiral-like snake: one component whatever the route
    snake = np.zeros((9, 9), dtype=bool)
    snake[0, :], snake[:, 8], snake[8, 1:], snake[2:, 1], snake[2, 1:7], snake[2:7, 6] = (True,) * 6
    assert len(amg.connected_components(snake)[1]) == 2
    assert amg.connected_components(np.zeros((3, 3), dtype=bool))[1].tolist() == [9]


def test_remove_small_regions() -> None:
    mask = np.zeros((20, 20), dtype=bool)
    mask[2:12, 2:12] = True
    mask[5, 5] = False  # a 1-pixel hole
    mask[15:17, 15:17] = True  # a 4-pixel island
    filled, changed = amg.remove_small_regions(mask, 3, "holes")
    assert changed and filled[5, 5] and filled.sum() == mask.sum() + 1
    same, changed = amg.remove_small_regions(mask, 1, "holes")
    assert not changed and same is mask
    cleaned, changed = amg.remove_small_regions(mask, 5, "islands")
    assert changed and not cleaned[15:17, 15:17].any() and cleaned[2:12, 2:12].sum() == 99
    # every island small: the largest stays
    only, changed = amg.remove_small_regions(mask, 1000, "islands")
    assert changed and only.sum() == 99
    with pytest.raises(ValueError, match="mode"):
        amg.remove_small_regions(mask, 3, "blobs")
