"""``clicksam detect``: a tiny random OWLv2 + a seeded tiny SAM, end to end, and its input errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("transformers")

from detector_testlib import make_tiny_owlv2

from clicksam.cli import main

SAM = ["--model", "vit_test", "--random-weights", "0", "--threads", "2"]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_owlv2(tmp_path_factory.mktemp("owlv2"))


def _image(path: Path, height: int, width: int) -> Path:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.slow
def test_detect_writes_coco_with_labels_as_categories_and_pngs(tmp_path: Path, tiny_folder: Path) -> None:
    image = _image(tmp_path / "street.png", 60, 100)
    out = tmp_path / "out"
    argv = ["detect", str(image), "--text", "dog, red car", "--exemplar", "5,5,30,40", "--out", str(out)]
    assert (
        main([*argv, "--text-model", str(tiny_folder), "--threshold", "0", "--max-detections", "5", *SAM])
        == 0
    )
    coco = json.loads((out / "detect.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["dog", "red car", "exemplar"]
    assert coco["images"] == [{"id": 1, "file_name": "street.png", "height": 60, "width": 100}]
    annotations = coco["annotations"]
    assert 1 <= len(annotations) <= 5
    scores = [a["score"] for a in annotations]
    assert scores == sorted(scores, reverse=True)
    for a in annotations:
        assert a["segmentation"]["size"] == [60, 100] and isinstance(a["segmentation"]["counts"], str)
        x0, y0, x1, y1 = a["detection_box"]
        assert 0 <= x0 <= x1 <= 100 and 0 <= y0 <= y1 <= 60
    with (out / "street" / "masks.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(annotations)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert [r["label"] for r in rows] == [names[a["category_id"]] for a in annotations]
    mask = np.array(Image.open(out / "street" / rows[0]["file"]))
    assert mask.shape == (60, 100) and int((mask == 255).sum()) == annotations[0]["area"]


def test_detect_refuses_bad_input(tmp_path: Path, tiny_folder: Path) -> None:
    image = _image(tmp_path / "a.png", 30, 40)
    base = ["detect", str(image), "--out", str(tmp_path / "o"), "--text-model", str(tiny_folder), *SAM]
    assert main(base) == 2  # no query
    assert main([*base, "--exemplar", "1,2,3"]) == 2
    assert main([*base, "--exemplar", "0,0,50,10"]) == 2  # wider than the image
    assert main(["detect", str(image), "--out", str(tmp_path / "o"), "--text", "dog", "--text-model",
                 str(tmp_path / "nowhere"), *SAM]) == 2  # fmt: skip
