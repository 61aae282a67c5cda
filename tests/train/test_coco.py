"""COCO loader: RLE codec against known COCO API strings, polygons, and the page's export format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clicksam.train.coco import (
    CocoFormatError,
    CocoInstances,
    decode_rle,
    decode_segmentation,
    encode_rle,
    masks_to_coco,
    polygons_to_mask,
    rle_counts_from_string,
    rle_counts_to_string,
)
from clicksam.train.scenes import ProceduralScenes


def _square(lo: int, hi: int, size: int = 25) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[lo:hi, lo:hi] = True
    return mask


# strings produced by the reference COCO API (pycocotools) for these 25x25 squares, as published in
# third-party test suites; they pin our codec to the real format rather than to itself
@pytest.mark.parametrize(
    ("lo", "hi", "counts"),
    [(0, 5, "05d00000000d?"), (5, 10, "R45d00000000b;"), (20, 25, "X`05d00000000")],
)
def test_compressed_rle_matches_coco_api(lo: int, hi: int, counts: str) -> None:
    mask = _square(lo, hi)
    assert encode_rle(mask) == {"size": [25, 25], "counts": counts}
    np.testing.assert_array_equal(decode_rle({"size": [25, 25], "counts": counts}), mask)


def test_uncompressed_counts_are_column_major() -> None:
    mask = np.zeros((3, 4), dtype=bool)
    mask[0, 1] = mask[1, 1] = True  # second column, first two rows
    rle = encode_rle(mask, compress=False)
    assert rle == {"size": [3, 4], "counts": [3, 2, 7]}
    np.testing.assert_array_equal(decode_rle(rle), mask)
    starts_with_one = np.ones((2, 2), dtype=bool)
    assert encode_rle(starts_with_one, compress=False)["counts"] == [0, 4]


def test_rle_round_trip_random_masks_and_negative_deltas() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        h, w = rng.integers(1, 60, size=2)
        mask = rng.random((h, w)) < rng.uniform(0.05, 0.95)
        rle = encode_rle(mask)
        np.testing.assert_array_equal(decode_rle(rle), mask)
        counts = encode_rle(mask, compress=False)["counts"]
        assert rle_counts_from_string(rle_counts_to_string(counts)) == counts
    big = [0, 100000, 3, 99999, 1, 2]
    assert rle_counts_from_string(rle_counts_to_string(big)) == big


def test_bad_rle_is_a_clear_error() -> None:
    with pytest.raises(CocoFormatError, match="sum to"):
        decode_rle({"size": [4, 4], "counts": [3, 2]})
    with pytest.raises(CocoFormatError, match="size"):
        decode_rle({"counts": "05"})
    with pytest.raises(CocoFormatError, match="invalid character"):
        decode_rle({"size": [2, 2], "counts": "0\x01"})


def test_polygons_rasterise_and_unite() -> None:
    square = [2, 2, 7, 2, 7, 7, 2, 7]
    mask = polygons_to_mask([square], 10, 12)
    assert mask.shape == (10, 12)
    assert mask[2:8, 2:8].all() and mask.sum() == 36
    two = decode_segmentation([square, [9, 0, 11, 0, 11, 2, 9, 2]], 10, 12)
    assert two.sum() == 36 + 9
    with pytest.raises(CocoFormatError, match="even number"):
        polygons_to_mask([[1, 2, 3]], 5, 5)


def test_page_export_loads_back(tmp_path: Path) -> None:
    """The page exports standard COCO with compressed-RLE strings; it must load straight back."""
    scene = ProceduralScenes(seed=3)[0]
    Image.fromarray(scene.image).save(tmp_path / "scene.png")
    doc = masks_to_coco(list(scene.masks), "scene.png")
    # what the page writes: counts is a string, size is [H, W], plus bbox/area/iscrowd
    ann = doc["annotations"][0]
    assert isinstance(ann["segmentation"]["counts"], str)
    assert ann["segmentation"]["size"] == list(scene.image.shape[:2])
    (tmp_path / "export.json").write_text(json.dumps(doc))
    # an extra polygon annotation and a crowd region, as a hand-made COCO file may have
    doc["annotations"].append(
        {
            "id": 99,
            "image_id": 1,
            "category_id": 1,
            "segmentation": [[1, 1, 20, 1, 20, 20, 1, 20]],
            "iscrowd": 0,
        }
    )
    doc["annotations"].append(
        {
            "id": 100,
            "image_id": 1,
            "category_id": 1,
            "segmentation": encode_rle(scene.masks[0], False),
            "iscrowd": 1,
        }
    )
    (tmp_path / "mixed.json").write_text(json.dumps(doc))

    data = CocoInstances(tmp_path / "export.json")
    assert len(data) == 1
    sample = data[0]
    np.testing.assert_array_equal(sample.image, scene.image)
    np.testing.assert_array_equal(sample.masks, scene.masks)

    mixed = CocoInstances(tmp_path / "mixed.json")[0]
    assert len(mixed.masks) == len(scene.masks) + 1  # crowd excluded, polygon included
    assert mixed.masks[-1][1:21, 1:21].all()


def test_bad_coco_files_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(CocoFormatError, match="does not exist"):
        CocoInstances(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(CocoFormatError, match="not valid JSON"):
        CocoInstances(tmp_path / "x.json")
    (tmp_path / "y.json").write_text(json.dumps({"images": []}))
    with pytest.raises(CocoFormatError, match="needs 'images' and 'annotations'"):
        CocoInstances(tmp_path / "y.json")
    doc = masks_to_coco([np.ones((4, 4), dtype=bool)], "nope.png")
    (tmp_path / "z.json").write_text(json.dumps(doc))
    with pytest.raises(CocoFormatError, match="does not exist"):
        CocoInstances(tmp_path / "z.json")[0]
