"""``clicksam everything``: PNG masks, the COCO JSON and the errors, through the real console entry."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clicksam.cli import main
from clicksam.model import amg

# seeded random weights have flat logits: switch the filters (and NMS) off to get masks at all
FAST = [
    "--model",
    "vit_test",
    "--random-weights",
    "0",
    "--points-per-side",
    "3",
    "--pred-iou-thresh",
    "0",
    "--stability-score-thresh",
    "0",
    "--box-nms-thresh",
    "1",
    "--quiet",
]


def _write_image(path: Path, h: int, w: int, seed: int) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def test_png_and_coco_output(tmp_path: Path) -> None:
    a = tmp_path / "a.png"
    b = tmp_path / "sub" / "a.png"  # same stem: gets its own folder
    b.parent.mkdir()
    _write_image(a, 40, 56, 0)
    _write_image(b, 30, 30, 1)
    out = tmp_path / "out"
    assert main(["everything", str(a), str(b), "--out", str(out), *FAST]) == 0

    coco = json.loads((out / "everything.json").read_text())
    assert [im["file_name"] for im in coco["images"]] == ["a.png", "a.png"]
    assert [(im["height"], im["width"]) for im in coco["images"]] == [(40, 56), (30, 30)]
    assert coco["categories"] == [{"id": 1, "name": "object"}]
    for image_id, folder, size in ((1, out / "a", (40, 56)), (2, out / "a_2", (30, 30))):
        anns = [ann for ann in coco["annotations"] if ann["image_id"] == image_id]
        assert len(anns) > 0
        with (folder / "masks.csv").open() as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == len(anns) == len(list(folder.glob("mask_*.png")))
        areas = sorted((ann["area"] for ann in anns), reverse=True)
        for row, area in zip(rows, areas, strict=True):
            png = np.array(Image.open(folder / row["file"]))
            assert png.shape == size and set(np.unique(png)) <= {0, 255}
            assert int((png == 255).sum()) == int(row["area"]) == area
        for ann in anns:
            mask = amg.rle_to_mask(ann["segmentation"])
            assert mask.shape == size and int(mask.sum()) == ann["area"]
            assert isinstance(ann["segmentation"]["counts"], str)


def test_coco_only(tmp_path: Path) -> None:
    img = tmp_path / "x.jpg"
    _write_image(img, 24, 32, 2)
    out = tmp_path / "o"
    assert main(["everything", str(img), "--out", str(out), "--format", "coco", *FAST]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["everything.json"]


def test_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o"
    assert main(["everything", str(tmp_path / "nope.png"), "--out", str(out), *FAST]) == 2
    assert "no such image file" in capsys.readouterr().err
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert main(["everything", str(bad), "--out", str(out), *FAST]) == 2
    assert "cannot read it as an image" in capsys.readouterr().err
    good = tmp_path / "good.png"
    _write_image(good, 10, 10, 3)
    # no official checkpoint exists for the test preset: say what to do instead
    assert main(["everything", str(good), "--out", str(out), "--model", "vit_test", "--quiet"]) == 2
    assert "no official checkpoint" in capsys.readouterr().err
    assert main(["everything", str(good), "--out", str(out), *FAST, "--pred-iou-thresh", "2"]) == 2
    assert "pred_iou_thresh must lie in [0, 1]" in capsys.readouterr().err


@pytest.mark.slow
def test_sam2_model_and_its_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--model sam2_tiny`` runs SAM 2.1's generator (here with m2m and one mask a point); SAM 2.1's
    switches on a SAM 1 model are refused, naming the option."""
    img = tmp_path / "x.png"
    _write_image(img, 24, 32, 4)
    out = tmp_path / "o"
    sam2 = ["--model", "sam2_tiny", *FAST[2:], "--points-per-side", "2", "--use-m2m", "--single-mask"]
    assert main(["everything", str(img), "--out", str(out), "--format", "coco", *sam2]) == 0
    coco = json.loads((out / "everything.json").read_text())
    assert coco["info"]["description"] == "clicksam everything (sam2_tiny)"
    assert 0 < len(coco["annotations"]) <= 4  # one mask a point at most
    assert main(["everything", str(img), "--out", str(out), *FAST, "--use-m2m"]) == 2
    assert "SamAutomaticMaskGenerator has no option use_m2m" in capsys.readouterr().err
