"""SAM 2.1's predictor interface and frames, on the seeded ``sam2_tiny`` preset (no referee needed).

Parity with the official code is in test_sam2_parity.py; here: ``SamPredictor(sam2)`` gives the
SAM 2 predictor, its entry points agree with each other, bad input is refused with a clear message,
and the square-input frame conversions round-trip.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from clicksam.model import ImageNotSetError, SamPredictor, build_sam, frames
from clicksam.model.sam2 import Sam2
from clicksam.model.sam2_predictor import Sam2Predictor


@pytest.fixture(scope="module")
def sam2_tiny() -> Sam2:
    return build_sam("sam2_tiny", seed=0)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.full((60, 80, 3), 90, np.uint8)
    img[15:40, 30:70] = (220, 60, 40)
    return np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def predictor(sam2_tiny: Sam2, image: np.ndarray) -> Sam2Predictor:
    p = SamPredictor(sam2_tiny)
    assert isinstance(p, Sam2Predictor)
    p.set_image(image)
    return p


def test_sam_predictor_dispatches_on_the_model_family(sam2_tiny: Sam2) -> None:
    assert type(SamPredictor(sam2_tiny)) is Sam2Predictor
    assert type(SamPredictor(build_sam("vit_test", seed=0))) is SamPredictor
    with pytest.raises(TypeError, match="Sam or Sam2"):
        SamPredictor(torch.nn.Linear(1, 1))  # type: ignore[arg-type]


def test_predict_before_set_image_says_what_to_do(sam2_tiny: Sam2) -> None:
    p = SamPredictor(sam2_tiny)
    with pytest.raises(ImageNotSetError, match=r"set_image"):
        p.predict(point_coords=[[1, 1]], point_labels=[1])
    with pytest.raises(ImageNotSetError, match=r"set_image"):
        p.get_image_embedding()


def test_outputs_have_the_official_shapes_and_types(predictor: Sam2Predictor) -> None:
    masks, scores, low_res = predictor.predict(point_coords=[[50, 25]], point_labels=[1])
    assert masks.shape == (3, 60, 80) and masks.dtype == np.float32
    assert set(np.unique(masks)) <= {0.0, 1.0}
    assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 1))  # sigmoid IoU head
    assert low_res.shape == (3, 256, 256) and low_res.min() >= -32 and low_res.max() <= 32
    masks, scores, _ = predictor.predict(point_coords=[[50, 25]], point_labels=[1], multimask_output=False)
    assert masks.shape == (1, 60, 80) and scores.shape == (1,)
    assert predictor.get_image_embedding().shape == (1, 256, 64, 64)


def test_normalize_coords_false_takes_fractions(predictor: Sam2Predictor) -> None:
    a = predictor.predict(point_coords=[[40, 30]], point_labels=[1], return_logits=True)
    b = predictor.predict(
        point_coords=[[0.5, 0.5]], point_labels=[1], return_logits=True, normalize_coords=False
    )
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(x, y, atol=1e-5)


def test_sam1_style_predict_torch_equals_predict(predictor: Sam2Predictor) -> None:
    """Code written against SAM 1's predictor: transform.apply_*_torch, then predict_torch."""
    points, box = np.array([[50.0, 25.0]]), np.array([30.0, 15.0, 70.0, 40.0])
    want = predictor.predict(point_coords=points, point_labels=[1], box=box, return_logits=True)
    size = predictor.original_size
    coords = predictor.transform.apply_coords_torch(torch.tensor(points[None]), size)
    boxes = predictor.transform.apply_boxes_torch(torch.tensor(box[None]), size)
    masks, scores, _ = predictor.predict_torch(coords, torch.tensor([[1]]), boxes, return_logits=True)
    np.testing.assert_allclose(masks[0].numpy(), want[0], atol=1e-5)
    np.testing.assert_allclose(scores[0].numpy(), want[1], atol=1e-6)


def test_batched_prompts_equal_one_by_one(predictor: Sam2Predictor) -> None:
    boxes = np.array([[30.0, 15.0, 70.0, 40.0], [5.0, 5.0, 30.0, 50.0]])
    masks, scores, _ = predictor.predict(box=boxes, multimask_output=False, return_logits=True)
    assert masks.shape == (2, 1, 60, 80)
    for i in range(2):
        single, score, _ = predictor.predict(box=boxes[i], multimask_output=False, return_logits=True)
        np.testing.assert_allclose(masks[i], single, atol=1e-4)
        np.testing.assert_allclose(scores[i], score, atol=1e-6)


@pytest.mark.slow
def test_image_batch_pil_and_bgr_equal_single_rgb(
    sam2_tiny: Sam2, image: np.ndarray, predictor: Sam2Predictor
) -> None:
    want = predictor.predict(point_coords=[[50, 25]], point_labels=[1], return_logits=True)
    other = SamPredictor(sam2_tiny)
    assert isinstance(other, Sam2Predictor)
    other.set_image_batch([image, image[:30]])
    masks, _, _ = other.predict_batch([np.array([[50, 25]])] * 2, [np.array([1])] * 2, return_logits=True)
    np.testing.assert_allclose(masks[0], want[0], atol=1e-4)
    assert masks[1].shape == (3, 30, 80)
    other.set_image(Image.fromarray(image))
    np.testing.assert_allclose(
        other.predict(point_coords=[[50, 25]], point_labels=[1])[1], want[1], atol=1e-6
    )
    other.set_image(np.ascontiguousarray(image[..., ::-1]), image_format="BGR")
    np.testing.assert_allclose(
        other.predict(point_coords=[[50, 25]], point_labels=[1])[1], want[1], atol=1e-6
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"point_coords": [[1, 2, 3]], "point_labels": [1]}, "point_coords must be"),
        ({"point_coords": [[1, 2]]}, "point_labels must be given"),
        ({"box": [1, 2, 3]}, "box must be"),
        (
            {"point_coords": [[1, 2]], "point_labels": [1], "mask_input": np.zeros((1, 64, 64))},
            "mask_input must be",
        ),
    ],
)
def test_bad_prompts_are_refused_with_what_to_pass(
    predictor: Sam2Predictor, kwargs: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        predictor.predict(**kwargs)


def test_bad_images_are_refused(sam2_tiny: Sam2) -> None:
    p = SamPredictor(sam2_tiny)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        p.set_image(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="image_format"):
        p.set_image(np.zeros((10, 10, 3), np.uint8), image_format="RGBA")


# ---------------------------------------------------------------------------------------- frames


@pytest.mark.parametrize("size", [(480, 640), (640, 480), (7, 5), (1, 3000)])
def test_square_frame_round_trips(size: tuple[int, int]) -> None:
    h, w = size
    xy = torch.tensor([[0.0, 0.0], [w - 1.0, h - 1.0], [w / 3, h / 7]])
    square = frames.apply_coords_square(xy, size, 1024)
    assert torch.all(square >= 0) and torch.all(square <= 1024)
    torch.testing.assert_close(frames.unapply_coords_square(square, size, 1024), xy, rtol=1e-6, atol=1e-4)
    # per axis: the image corners map to the square's corners whatever the aspect ratio
    torch.testing.assert_close(
        frames.apply_coords_square(torch.tensor([[w, h]]).float(), size, 1024),
        torch.tensor([[1024.0, 1024.0]]),
    )


def test_square_resize_is_antialiased_and_stretched() -> None:
    stripes = np.zeros((8, 2048, 3), np.uint8)
    stripes[:, ::2] = 255
    out = frames.resize_to_square_torch(stripes, 1024)
    assert out.shape == (3, 1024, 1024)
    # 2:1 downscale of 1-pixel stripes: antialiased gives grey (away from the borders, where the
    # filter is cut), a plain bilinear sample would alias to 0 / 1
    inner = out[:, :, 2:-2]
    assert torch.allclose(inner, torch.full_like(inner, 0.5), atol=0.01)


def test_low_res_masks_go_straight_to_the_original_size() -> None:
    low = torch.full((1, 1, 256, 256), -5.0)
    low[..., :128, :] = 5.0  # top half of the square
    up = frames.upsample_masks_to_original(low, (30, 90))
    assert up.shape == (1, 1, 30, 90)
    assert bool((up[0, 0, :14] > 0).all()) and bool((up[0, 0, 16:] < 0).all())
