"""manifest.json: the contract the page reads (names, shapes, dtypes, files, hashes, options)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from export_testlib import Exported
from wire_fixtures import check_web_fixture

from clicksam.formats import Manifest, ManifestError


@pytest.mark.slow
def test_manifest_content(exported: Exported) -> None:
    doc = json.loads((exported.out_dir / "manifest.json").read_text())
    assert doc["format"] == "clicksam-decoder"
    assert doc["version"] == 3
    assert doc["model"] == "vit_test"
    assert doc["checkpoint_sha256"] is None
    assert doc["seed"] == 0
    assert (doc["image_size"], doc["low_res_size"], doc["mask_threshold"], doc["opset"]) == (
        1024,
        256,
        0.0,
        17,
    )
    assert doc["resize"] == "longest_side"
    assert doc["image_inputs"] == [
        {"name": "image_embeddings", "dtype": "float16", "shape": [1, 256, 64, 64]}
    ]
    assert doc["default_variant"] == "browser"
    official, browser = doc["variants"]["official"], doc["variants"]["browser"]
    assert official["file"] == "decoder.onnx"
    assert official["masks_frame"] == "original"
    assert official["inputs"] == [
        {"name": "image_embeddings", "dtype": "float32", "shape": [1, 256, 64, 64]},
        {"name": "point_coords", "dtype": "float32", "shape": [1, "num_points", 2]},
        {"name": "point_labels", "dtype": "float32", "shape": [1, "num_points"]},
        {"name": "mask_input", "dtype": "float32", "shape": [1, 1, 256, 256]},
        {"name": "has_mask_input", "dtype": "float32", "shape": [1]},
        {"name": "orig_im_size", "dtype": "float32", "shape": [2]},
    ]
    assert [o["name"] for o in official["outputs"]] == ["masks", "iou_predictions", "low_res_masks"]
    assert browser["file"] == "decoder_browser.onnx"
    assert browser["masks_frame"] == "low_res"
    assert browser["mask_tokens"] == {"single": 0, "multi": [1, 2, 3], "selection": "token"}
    # the per-image graph takes the embedding; the click graph takes its outputs
    prep = browser["prep"]
    assert prep["file"] == "decoder_browser_prep.onnx"
    assert prep["inputs"] == [{"name": "image_embeddings", "dtype": "float16", "shape": [1, 256, 64, 64]}]
    projections = {"keys": [1, 8, 16, 4096], "values": [1, 8, 4096, 16], "queries": [1, 8, 4096, 16]}
    expected = [("image_tokens", [1, 4096, 256])]
    for name in ("l0_t2i_keys", "l0_t2i_values", "l0_i2t_queries", "l1_t2i_keys", "l1_t2i_values",
                 "l1_i2t_queries", "final_t2i_keys", "final_t2i_values"):  # fmt: skip
        expected.append((name, projections[name.rsplit("_", 1)[1]]))
    expected.append(("upscale_base", [1, 4096, 256]))
    assert prep["outputs"] == [{"name": n, "dtype": "float32", "shape": shape} for n, shape in expected]
    assert browser["inputs"][: len(prep["outputs"])] == prep["outputs"]
    assert [i["name"] for i in browser["inputs"]][len(prep["outputs"]) :] == [
        "point_coords", "point_labels", "mask_input", "has_mask_input",
    ]  # fmt: skip
    assert "prep" not in official
    assert browser["outputs"] == [
        {"name": "low_res_masks", "dtype": "float32", "shape": [1, 4, 256, 256]},
        {"name": "iou_predictions", "dtype": "float32", "shape": [1, 4]},
    ]
    assert browser["options"]["embedding_dtype"] == "float16"
    assert browser["options"]["weights_float16"] is True
    assert browser["options"]["verified"]["min_mask_iou"] >= 0.98
    for entry in (official, browser, prep):
        data = (exported.out_dir / entry["file"]).read_bytes()
        assert entry["bytes"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    # the browser file is the smaller download
    assert browser["bytes"] < 0.6 * official["bytes"]
    assert Manifest.read(exported.out_dir).to_json() == doc


@pytest.mark.slow
def test_the_page_reads_the_manifest_python_writes(exported: Exported) -> None:
    """``web/src/testdata/manifest_python.json`` is this export's manifest (``manifest.test.ts`` parses it).

    Only the values that differ from build to build (file sizes, hashes, measured errors) are replaced
    by placeholders; every key, type, name, shape and option is the exporter's.
    """
    doc = json.loads((exported.out_dir / "manifest.json").read_text())
    for variant in doc["variants"].values():
        for entry in (variant, variant.get("prep")):
            if entry is not None:
                entry["bytes"], entry["sha256"] = 1000, "0" * 64
        verified = variant["options"].get("verified")
        if verified is not None:
            verified["max_abs_err"], verified["min_mask_iou"] = 0.0, 1.0
    check_web_fixture("manifest_python.json", doc)


def test_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="run `clicksam export` first"):
        Manifest.read(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "clicksam-decoder", "version": 99}')
    with pytest.raises(ManifestError, match="unsupported manifest version 99"):
        Manifest.read(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "clicksam-decoder", "version": 3, "variants": {}}')
    with pytest.raises(ManifestError, match="missing or bad field"):
        Manifest.read(tmp_path)
    (tmp_path / "manifest.json").write_text("not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        Manifest.read(tmp_path)
