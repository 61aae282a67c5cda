"""Frame conversions: resize shape rounding, Pillow resize, coordinate mapping and round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from clicksam.model import frames


def test_get_preprocess_shape_values() -> None:
    cases = {
        (480, 640): (768, 1024),
        (640, 480): (1024, 768),
        (1024, 1024): (1024, 1024),
        (1080, 1920): (576, 1024),
        (7, 5): (1024, 731),
        (3, 2000): (2, 1024),
        (1, 5000): (1, 1024),
        (683, 1024): (683, 1024),
    }
    for (h, w), expected in cases.items():
        assert frames.get_preprocess_shape(h, w, 1024) == expected, (h, w)


def test_get_preprocess_shape_rejects_empty() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        frames.get_preprocess_shape(0, 10, 1024)


def test_resize_is_pillow_bilinear() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(300, 400, 3), dtype=np.uint8)
    out = frames.resize_to_long_side(image, 1024)
    assert out.shape == (768, 1024, 3) and out.dtype == np.uint8 and out.flags.writeable
    expected = np.asarray(Image.fromarray(image).resize((1024, 768), Image.Resampling.BILINEAR))
    assert np.array_equal(out, expected)
    # downscaling antialiases (Pillow's filter widens), unlike a plain 2-tap bilinear sample
    big = rng.integers(0, 256, size=(2048, 100, 3), dtype=np.uint8)
    small = frames.resize_to_long_side(big, 1024)
    assert small.shape == (1024, 50, 3)
    assert small.std() < big.std() * 0.8


def test_resize_rejects_bad_images() -> None:
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        frames.resize_to_long_side(np.zeros((10, 10), dtype=np.uint8), 1024)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        frames.resize_to_long_side(np.zeros((10, 10, 3), dtype=np.float32), 1024)  # type: ignore[arg-type]


def test_coords_are_scaled_per_axis_and_round_trip() -> None:
    size = (7, 5)  # resized to (1024, 731): x scale 146.2, y scale 146.29
    coords = np.array([[0.0, 0.0], [5.0, 7.0], [2.5, 3.5]])
    out = frames.apply_coords(coords, size, 1024)
    assert np.allclose(out[1], [731.0, 1024.0])
    assert np.allclose(out[2], [731 / 2, 1024 / 2])
    assert np.allclose(frames.unapply_coords(out, size, 1024), coords)
    assert coords[1, 0] == 5.0  # input untouched


def test_boxes_and_torch_variants_agree() -> None:
    size = (300, 400)
    boxes = np.array([[10.0, 20.0, 390.0, 290.0], [0.0, 0.0, 400.0, 300.0]])
    out = frames.apply_boxes(boxes, size, 1024)
    assert out.shape == (2, 4)
    assert np.allclose(out[1], [0, 0, 1024, 768])
    out_t = frames.apply_boxes_torch(torch.tensor(boxes), size, 1024)
    assert np.allclose(out_t.numpy(), out, atol=1e-4)
    coords_t = frames.apply_coords_torch(torch.tensor([[[10, 20]]]), size, 1024)
    assert coords_t.dtype == torch.float32
    assert np.allclose(coords_t.numpy(), frames.apply_coords(np.array([[[10, 20]]]), size, 1024))


def test_resize_longest_side_interface() -> None:
    """The official transform's interface (used as ``predictor.transform`` by code written for Meta's)."""
    t = frames.ResizeLongestSide(1024)
    size = (300, 400)
    boxes = torch.tensor([[10.0, 20.0, 390.0, 290.0]])
    assert torch.allclose(t.apply_boxes_torch(boxes, size), torch.tensor([[25.6, 51.2, 998.4, 742.4]]))
    assert np.allclose(t.apply_coords(np.array([[400.0, 300.0]]), size), [[1024.0, 768.0]])
    assert t.apply_image(np.zeros((300, 400, 3), dtype=np.uint8)).shape == (768, 1024, 3)
    assert t.get_preprocess_shape(300, 400, 1024) == (768, 1024)
