"""SamPredictor API behaviour (numbers against the official predictor are in test_parity.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clicksam.model import ImageNotSetError, Sam, SamPredictor


@pytest.fixture(scope="module")
def predictor(tiny_sam: Sam) -> SamPredictor:
    p = SamPredictor(tiny_sam)
    rng = np.random.default_rng(0)
    p.set_image(rng.integers(0, 256, size=(120, 200, 3), dtype=np.uint8))
    return p


def test_state_after_set_image(predictor: SamPredictor) -> None:
    assert predictor.is_image_set
    assert predictor.original_size == (120, 200)
    assert predictor.input_size == (614, 1024)
    assert predictor.get_image_embedding().shape == (1, 256, 64, 64)


def test_predict_shapes_and_types(predictor: SamPredictor) -> None:
    masks, scores, low = predictor.predict(np.array([[50.0, 60.0]]), np.array([1]))
    assert masks.shape == (3, 120, 200) and masks.dtype == np.bool_
    assert scores.shape == (3,) and low.shape == (3, 256, 256)
    previous = low[:1]
    masks, scores, low = predictor.predict(
        box=np.array([10, 10, 150, 100]), mask_input=previous, multimask_output=False, return_logits=True
    )
    assert masks.shape == (1, 120, 200) and masks.dtype == np.float32
    # boolean masks are the logits thresholded at mask_threshold
    bool_masks, _, _ = predictor.predict(
        box=np.array([10, 10, 150, 100]), mask_input=previous, multimask_output=False
    )
    assert np.array_equal(bool_masks, masks > 0.0)


def test_predict_torch_batch(predictor: SamPredictor) -> None:
    coords = torch.tensor([[[100.0, 200.0]], [[500.0, 300.0]]])
    labels = torch.ones(2, 1, dtype=torch.int)
    masks, scores, low = predictor.predict_torch(coords, labels, multimask_output=True)
    assert masks.shape == (2, 3, 120, 200) and scores.shape == (2, 3) and low.shape == (2, 3, 256, 256)
    _, _, low_one = predictor.predict_torch(coords[1:], labels[1:], multimask_output=True)
    torch.testing.assert_close(low_one[0], low[1], rtol=1e-5, atol=1e-5)


def test_bgr_equals_reversed_rgb(tiny_sam: Sam) -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(64, 48, 3), dtype=np.uint8)
    a, b = SamPredictor(tiny_sam), SamPredictor(tiny_sam)
    a.set_image(image)
    b.set_image(np.ascontiguousarray(image[..., ::-1]), image_format="BGR")
    assert torch.equal(a.get_image_embedding(), b.get_image_embedding())


def test_errors_before_image_and_on_bad_input(tiny_sam: Sam) -> None:
    p = SamPredictor(tiny_sam)
    with pytest.raises(ImageNotSetError, match="call set_image"):
        p.predict(np.array([[1.0, 1.0]]), np.array([1]))
    with pytest.raises(ImageNotSetError):
        p.get_image_embedding()
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        p.set_image(np.zeros((10, 10, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="image_format"):
        p.set_image(np.zeros((10, 10, 3), dtype=np.uint8), image_format="RGBA")
    with pytest.raises(ValueError, match="long side 1024"):
        p.set_torch_image(torch.zeros(1, 3, 100, 100), (100, 100))


def test_bad_prompts_are_value_errors(predictor: SamPredictor) -> None:
    with pytest.raises(ValueError, match="point_labels must be given"):
        predictor.predict(point_coords=np.array([[1.0, 2.0]]))
    with pytest.raises(ValueError, match=r"point_coords must be \(N, 2\)"):
        predictor.predict(np.array([1.0, 2.0]), np.array([1]))
    with pytest.raises(ValueError, match="box must be"):
        predictor.predict(box=np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="mask_input must be"):
        predictor.predict(box=np.array([1, 2, 3, 4]), mask_input=np.zeros((256, 256)))


def test_reset_image(tiny_sam: Sam) -> None:
    p = SamPredictor(tiny_sam)
    p.set_image(np.zeros((16, 16, 3), dtype=np.uint8))
    p.reset_image()
    assert not p.is_image_set and p.features is None


def test_box_as_corner_points_equals_box(tiny_sam: Sam) -> None:
    """Labels 2/3 (the ONNX decoder's box form) embed exactly like a box prompt."""
    pe = tiny_sam.prompt_encoder
    box = torch.tensor([[100.0, 150.0, 600.0, 700.0]])
    corners = box.reshape(1, 2, 2)
    with torch.no_grad():
        sparse_box, _ = pe(points=None, boxes=box, masks=None)
        # the padding point is only appended without a box, so compare without it
        sparse_pts = pe._embed_points(corners, torch.tensor([[2, 3]]), pad=False)
    torch.testing.assert_close(sparse_pts, sparse_box)


def test_padding_point_only_without_box(tiny_sam: Sam) -> None:
    pe = tiny_sam.prompt_encoder
    coords, labels = torch.tensor([[[10.0, 20.0]]]), torch.tensor([[1]])
    with torch.no_grad():
        only_points, dense = pe(points=(coords, labels), boxes=None, masks=None)
        with_box, _ = pe(points=(coords, labels), boxes=torch.tensor([[0.0, 0.0, 5.0, 5.0]]), masks=None)
        none, _ = pe(points=None, boxes=None, masks=None)
    assert only_points.shape == (1, 2, 256)  # click + padding point
    assert torch.equal(only_points[0, 1], pe.not_a_point_embed.weight[0])
    assert with_box.shape == (1, 3, 256)  # click + 2 corners, no padding
    assert none.shape == (1, 0, 256) and dense.shape == (1, 256, 64, 64)
