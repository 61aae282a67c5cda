"""Click simulation: clicks land in the error regions, with the right label, at the right place."""

from __future__ import annotations

import numpy as np
import pytest

from clicksam.train.prompts import distance_to_boundary, mask_box, next_click, noisy_box, sample_point


def _brute_distance(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1)
    ys, xs = np.nonzero(~padded)
    out = np.zeros(mask.shape, dtype=np.float32)
    for y, x in zip(*np.nonzero(mask), strict=True):
        out[y, x] = np.sqrt(((ys - (y + 1)) ** 2 + (xs - (x + 1)) ** 2).min())
    return out


def test_distance_to_boundary_is_exact_euclidean() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        mask = rng.random((17, 23)) < 0.8
        np.testing.assert_allclose(distance_to_boundary(mask), _brute_distance(mask), rtol=1e-6)
    square = np.zeros((9, 9), dtype=bool)
    square[2:7, 2:7] = True
    d = distance_to_boundary(square)
    assert d.max() == 3.0 and d[4, 4] == 3.0  # the centre is 3 px from the nearest outside pixel


def test_sampled_clicks_land_in_the_error_region_with_the_right_label() -> None:
    rng = np.random.default_rng(1)
    for _ in range(200):
        gt = rng.random((20, 30)) < rng.uniform(0.1, 0.9)
        pred = rng.random((20, 30)) < rng.uniform(0.1, 0.9)
        click = next_click(rng, pred, gt, mode="sample")
        assert click is not None
        assert pred[click.y, click.x] != gt[click.y, click.x], "a click must be on an error pixel"
        # missed object pixel -> foreground click; spilled background pixel -> background click
        assert click.positive == bool(gt[click.y, click.x])
        assert click.label == (1 if click.positive else 0)


def test_center_clicks_go_deep_into_the_larger_error() -> None:
    rng = np.random.default_rng(2)
    gt = np.zeros((40, 40), dtype=bool)
    gt[5:25, 5:35] = True
    first = next_click(rng, np.zeros_like(gt), gt, mode="center")
    assert first is not None and first.positive
    assert 12 <= first.y <= 17 and gt[first.y, first.x]
    # the prediction spilled a large block below the object: the next click is negative, inside it
    pred = gt.copy()
    pred[27:39, 5:35] = True
    pred[5:8, 5:8] = False  # plus a small miss, which is the smaller error
    click = next_click(rng, pred, gt, mode="center")
    assert click is not None and not click.positive
    assert 30 <= click.y <= 35 and pred[click.y, click.x] and not gt[click.y, click.x]
    assert next_click(rng, gt, gt, mode="center") is None
    assert next_click(rng, gt, gt, mode="sample") is None
    with pytest.raises(ValueError, match="unknown click mode"):
        next_click(rng, pred, gt, mode="nope")  # type: ignore[arg-type]


def test_first_prompts_point_and_noisy_box() -> None:
    rng = np.random.default_rng(3)
    mask = np.zeros((64, 80), dtype=bool)
    mask[10:30, 20:60] = True
    for _ in range(50):
        point = sample_point(rng, mask)
        assert point is not None and mask[point[1], point[0]]
    assert mask_box(mask) == (20, 10, 59, 29)
    boxes = np.stack(
        [b for b in (noisy_box(rng, mask, frame_scale=4.0) for _ in range(400)) if b is not None]
    )
    assert (boxes[:, 0] <= boxes[:, 2]).all() and (boxes[:, 1] <= boxes[:, 3]).all()
    assert boxes.min() >= 0 and boxes[:, [0, 2]].max() <= 79 and boxes[:, [1, 3]].max() <= 63
    # noise std: 10% of the side (4 px on x), capped at 20 px of the 1024 frame = 5 mask px
    assert 2.5 < np.std(boxes[:, 0] - 20) < 5.0
    assert 1.2 < np.std(boxes[:, 1] - 10) < 2.8
    tight = noisy_box(rng, mask, frame_scale=4.0, max_noise_px=0.0)
    assert tight is not None and tight.tolist() == [20, 10, 59, 29]
    assert (
        sample_point(rng, np.zeros((3, 3), bool)) is None and noisy_box(rng, np.zeros((3, 3), bool)) is None
    )
