"""The optional ONNX Runtime image encoder: exported, verified, used, and refused when it does not match."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from server_helpers import encode, post_image, random_rgb

from clicksam.formats import SIDECAR_NAME
from clicksam.model import Sam, SamPredictor
from clicksam.serve import ensure_onnx_encoder
from clicksam.server.loading import ModelSpec
from clicksam.server.onnx_encoder import encoder_dir, sidecar_problem


@pytest.fixture
def exported_encoder(sam: Sam, spec: ModelSpec, tmp_path: Path) -> Path:
    """A cache folder holding the verified ONNX export of the test model's encoder; returns its folder."""
    directory = encoder_dir(tmp_path / "cache", spec)
    assert sidecar_problem(directory, spec) is not None
    assert ensure_onnx_encoder(sam, spec, directory, threads=2)
    return directory


@pytest.mark.slow
def test_onnx_encoder_matches_the_predictor(
    make_client: Callable[..., TestClient], sam: Sam, spec: ModelSpec, tmp_path: Path, exported_encoder: Path
) -> None:
    cache_dir = tmp_path / "cache"
    sidecar = json.loads((exported_encoder / SIDECAR_NAME).read_text())
    assert sidecar["model_id"] == spec.model_id and sidecar["max_abs_err"] <= 1e-3

    client = make_client(cache_dir=cache_dir, encoder="onnxruntime")
    assert client.get("/readyz").json()["encoder_backend"] == "onnxruntime"
    pixels = random_rgb(200, 256, seed=21)
    meta = post_image(client, encode(Image.fromarray(pixels), "PNG")).json()
    got = np.frombuffer(client.get(meta["url"], params={"dtype": "float32"}).content, "<f4")
    predictor = SamPredictor(sam)
    predictor.set_image(pixels)
    reference = predictor.get_image_embedding().numpy()
    assert np.abs(got.reshape(reference.shape) - reference).max() <= 1e-3

    torch_client = make_client(cache_dir=cache_dir, encoder="torch")
    assert torch_client.get("/readyz").json()["encoder_backend"] == "torch"


@pytest.mark.slow
def test_an_export_for_other_weights_is_not_used(
    make_client: Callable[..., TestClient], spec: ModelSpec, tmp_path: Path, exported_encoder: Path
) -> None:
    sidecar_path = exported_encoder / SIDECAR_NAME
    sidecar = json.loads(sidecar_path.read_text())
    sidecar["model_id"] = "vit_test:seed7"
    sidecar_path.write_text(json.dumps(sidecar))
    assert "is for vit_test:seed7, not vit_test:seed0" in str(sidecar_problem(exported_encoder, spec))
    client = make_client(cache_dir=tmp_path / "cache", encoder="auto")
    assert client.get("/readyz").json()["encoder_backend"] == "torch"
    assert post_image(client, encode(Image.fromarray(random_rgb(32, 32, 3)), "PNG")).status_code == 200
