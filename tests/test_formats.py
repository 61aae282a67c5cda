"""``clicksam.formats``: each wire format reads back what it writes, and says which field is wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from wire_fixtures import WEB_TESTDATA

from clicksam.formats import (
    EmbeddingMeta,
    EncoderSidecar,
    FormatError,
    Manifest,
    ManifestError,
    ManifestVersionError,
)


def _fixture(name: str) -> Any:
    return json.loads((WEB_TESTDATA / name).read_text())


def test_a_real_manifest_reads_back_to_the_same_document() -> None:
    doc = _fixture("manifest_python.json")
    manifest = Manifest.from_json(doc)
    assert manifest.variants["browser"].prep is not None
    assert manifest.variants["browser"].files() == ["decoder_browser.onnx", "decoder_browser_prep.onnx"]
    assert manifest.to_json() == doc


def test_manifest_errors_name_the_field() -> None:
    doc = _fixture("manifest_python.json")
    with pytest.raises(ManifestVersionError) as info:
        Manifest.from_json({**doc, "version": 2})
    assert info.value.found == 2
    with pytest.raises(ManifestError, match=r"manifest\.image_size: expected an integer"):
        Manifest.from_json({**doc, "image_size": "1024"})
    with pytest.raises(ManifestError, match=r"manifest\.image_inputs: expected a list"):
        Manifest.from_json({**doc, "image_inputs": {"shape": [1, 256, 64, 64]}})
    with pytest.raises(ManifestError, match=r"manifest\.image_inputs is empty"):
        Manifest.from_json({**doc, "image_inputs": []})
    with pytest.raises(ManifestError, match=r"manifest\.resize must be one of longest_side, stretch"):
        Manifest.from_json({**doc, "resize": "crop"})
    doc["variants"]["official"]["inputs"][0]["shape"] = "1x256"
    with pytest.raises(ManifestError, match=r"variants\.official\.inputs\[0\]\.shape"):
        Manifest.from_json(doc)


def test_embedding_meta_reads_back_and_answers_with_cached() -> None:
    doc = _fixture("embedding_python.json")
    stored = {k: v for k, v in doc.items() if k != "cached"}
    meta = EmbeddingMeta.from_json(stored)
    assert json.loads(json.dumps(meta.to_json())) == stored
    assert json.loads(json.dumps(meta.response(cached=True).to_json())) == {**doc, "cached": True}
    with pytest.raises(FormatError, match=r"embedding\.original_size"):
        EmbeddingMeta.from_json({**stored, "original_size": [1, 2, 3]})


def test_encoder_sidecar_round_trip(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="no encoder sidecar"):
        EncoderSidecar.read(tmp_path)
    sidecar = EncoderSidecar("vit_t", "vit_t:ab", "ab" * 32, 2e-4, {"export": 1.5, "torch": 0.2})
    sidecar.write(tmp_path)
    assert EncoderSidecar.read(tmp_path) == sidecar
    (tmp_path / "encoder.json").write_text('{"format": "clicksam-encoder", "version": 9}')
    with pytest.raises(FormatError, match="version 1"):
        EncoderSidecar.read(tmp_path)
