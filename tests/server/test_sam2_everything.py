"""``POST /api/everything`` on a real uvicorn server (loopback) serving SAM 2.1 (``sam2_tiny``, seeded).

The service starts SAM 2.1's generator from the three cached per-image tensors (the upload is encoded
once, by ``/api/embeddings``' path) and its records equal the library's on the same features.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from server_helpers import StatusRecorder, encode, random_rgb, run_uvicorn

from clicksam.model import Sam2, amg, build_sam
from clicksam.model.sam2_automatic import SAM2AutomaticMaskGenerator
from clicksam.server.app import create_app
from clicksam.server.loading import resolve_model
from clicksam.server.settings import Settings

pytestmark = pytest.mark.slow  # SAM 2.1 encodes at 1024: seconds on 2 shared cores

# random weights: the filters keep nothing, so they are off (and NMS too) to compare every mask
LOW = {"pred_iou_thresh": "0", "stability_score_thresh": "0", "box_nms_thresh": "1"}


def test_sam2_everything_matches_the_library_and_reuses_the_embedding(tmp_path: Path) -> None:
    sam2 = build_sam("sam2_tiny", seed=0).eval()
    settings = Settings(
        model="sam2_tiny",
        cache_dir=tmp_path / "cache",
        data_dir=tmp_path / "data",
        web_dir=tmp_path / "no-web",
    )
    app = create_app(settings, spec=resolve_model("sam2_tiny", None, 0), sam=sam2)  # type: ignore[arg-type]
    statuses: list[int] = []
    app.add_middleware(StatusRecorder, statuses=statuses)
    pixels = random_rgb(60, 80, 5) // 4
    pixels[10:30, 20:50] = (200, 40, 40)
    data = encode(Image.fromarray(pixels), "PNG")
    files = {"image": ("a.png", data, "image/png")}
    with run_uvicorn(app) as url, httpx.Client(base_url=url, timeout=600) as client:
        response = client.post("/api/everything", files=files, data={"points_per_side": "2", **LOW})
        assert response.status_code == 200, response.text
        # the official defaults (pred_iou_thresh 0.8 for SAM 2.1) when the request leaves them out
        defaults = client.post("/api/everything", files=files, data={"points_per_side": "2"})
        assert defaults.status_code == 200, defaults.text
        assert app.state.service.encodes == 1  # both runs started from the cached tensors
    assert all(s < 500 for s in statuses)
    body = response.json()
    assert body["original_size"] == [60, 80]

    with torch.no_grad():
        features = sam2.encode_image(sam2.preprocess(pixels))
        options = {"points_per_side": 2, "output_mode": "coco_rle"}
        expected = SAM2AutomaticMaskGenerator(
            sam2, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0, **options
        ).generate(pixels, image_embedding=features)
        expected_defaults = SAM2AutomaticMaskGenerator(sam2, **options).generate(
            pixels, image_embedding=features
        )
    masks = body["masks"]
    assert len(masks) == len(expected) == 12  # 4 points x 3 candidates
    assert len(defaults.json()["masks"]) == len(expected_defaults)
    for got, exp in zip(masks, expected, strict=True):
        a, b = amg.rle_to_mask(got["segmentation"]), amg.rle_to_mask(exp["segmentation"])
        assert a.shape == (60, 80)
        assert (a & b).sum() >= 0.99 * (a | b).sum()
        assert abs(got["predicted_iou"] - exp["predicted_iou"]) < 1e-4
        assert np.allclose(got["point_coords"], exp["point_coords"])
        assert got["crop_box"] == [0, 0, 80, 60]


def test_mask_generator_refuses_tensors_of_the_other_family() -> None:
    from clicksam.model.automatic import EverythingError, mask_generator

    sam2 = build_sam("sam2_tiny", seed=0).eval()
    assert isinstance(sam2, Sam2)
    generator = mask_generator(sam2)
    with pytest.raises(EverythingError, match=r"SAM 2\.1 takes the tensors"):
        generator.features_from_tensors({"image_embeddings": torch.zeros(1, 256, 64, 64)})
