"""``POST /api/everything`` on a real uvicorn server (loopback) with the seeded ``vit_test`` model."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from server_helpers import StatusRecorder, encode, random_rgb, run_uvicorn

from clicksam.model import Sam, SamAutomaticMaskGenerator, SamPredictor, amg
from clicksam.server import images
from clicksam.server.app import create_app
from clicksam.server.loading import ModelSpec
from clicksam.server.settings import Settings

# random weights: the default thresholds keep nothing (the logits are flat: stability 0), so the tests
# switch the filters off, and NMS too, to get many masks to compare
LOW = {"pred_iou_thresh": "0", "stability_score_thresh": "0", "box_nms_thresh": "1"}


def _blocks(h: int, w: int) -> np.ndarray:
    img = random_rgb(h, w, 3) // 4
    img[10:40, 15:50] = (200, 40, 40)
    img[h - 30 : h - 5, w - 40 : w - 10] = (30, 160, 60)
    return img


def _app(sam: Sam, spec: ModelSpec, make_settings: Callable[..., Settings], statuses: list[int]) -> Any:
    app = create_app(make_settings(), spec=spec, sam=sam)
    app.add_middleware(StatusRecorder, statuses=statuses)
    return app


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Wrap ``decode_image`` wherever the server modules hold it; returns the list of decoded sizes."""
    real = images.decode_image
    decodes: list[int] = []

    def counting(data: bytes, **kwargs: Any) -> images.DecodedImage:
        decodes.append(len(data))
        return real(data, **kwargs)

    for module in list(sys.modules.values()):
        if module.__name__.startswith("clicksam.server") and getattr(module, "decode_image", None) is real:
            monkeypatch.setattr(module, "decode_image", counting)
    return decodes


def test_everything_matches_the_library_and_reuses_the_embedding(
    sam: Sam, spec: ModelSpec, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    statuses: list[int] = []
    app = _app(sam, spec, make_settings, statuses)
    decodes = _count_decodes(monkeypatch)
    pixels = _blocks(72, 96)
    data = encode(Image.fromarray(pixels), "PNG")
    form = {"points_per_side": "4", **LOW}
    with run_uvicorn(app) as url, httpx.Client(base_url=url, timeout=300) as client:
        first = client.post("/api/embeddings", files={"image": ("a.png", data, "image/png")})
        assert first.status_code == 200
        assert len(decodes) == 1
        response = client.post("/api/everything", files={"image": ("a.png", data, "image/png")}, data=form)
        assert response.status_code == 200, response.text
        assert len(decodes) == 2, "segment-everything decoded the upload more than once"
        body = response.json()
        again = client.post("/api/everything", files={"image": ("b.png", data, "image/png")}, data=form)
        assert again.status_code == 200 and again.json() == body
        service = app.state.service
        assert service.encodes == 1  # the upload's embedding was reused, never encoded again
    assert body["id"] == first.json()["id"]
    assert body["original_size"] == [72, 96]
    masks = body["masks"]
    assert len(masks) > 10

    predictor = SamPredictor(sam)
    predictor.set_image(pixels)
    with torch.no_grad():
        expected = SamAutomaticMaskGenerator(
            sam,
            points_per_side=4,
            pred_iou_thresh=0.0,
            stability_score_thresh=0.0,
            box_nms_thresh=1.0,
            output_mode="coco_rle",
        ).generate(pixels, image_embedding=predictor.features)
    assert len(masks) == len(expected)
    for got, exp in zip(masks, expected, strict=True):
        assert set(got) == {
            "segmentation",
            "area",
            "bbox",
            "predicted_iou",
            "stability_score",
            "point_coords",
            "crop_box",
        }
        assert got["segmentation"]["size"] == [72, 96]
        a, b = amg.rle_to_mask(got["segmentation"]), amg.rle_to_mask(exp["segmentation"])
        assert (a & b).sum() >= 0.99 * (a | b).sum()
        assert got["area"] == int(a.sum())
        assert abs(got["predicted_iou"] - exp["predicted_iou"]) < 1e-4
        assert got["crop_box"] == [0, 0, 96, 72]
    assert all(s < 500 for s in statuses)


def test_everything_errors(sam: Sam, spec: ModelSpec, make_settings: Callable[..., Settings]) -> None:
    statuses: list[int] = []
    app = _app(sam, spec, make_settings, statuses)
    png = encode(Image.fromarray(random_rgb(20, 20, 0)), "PNG")
    with run_uvicorn(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        missing = client.post("/api/everything", data={"points_per_side": "4"})
        assert missing.status_code == 422
        assert missing.json() == {
            "detail": "no image: send the file as multipart/form-data in the field 'image'"
        }

        bad_option = client.post(
            "/api/everything", files={"image": ("a.png", png, "image/png")}, data={"points_per_side": "0"}
        )
        assert bad_option.status_code == 422
        assert bad_option.json() == {
            "detail": "body field 'points_per_side': Input should be greater than or equal to 1"
        }

        not_image = b"this is not an image at all"
        everything = client.post("/api/everything", files={"image": ("a.png", not_image, "image/png")})
        embeddings = client.post("/api/embeddings", files={"image": ("a.png", not_image, "image/png")})
        assert everything.status_code == embeddings.status_code == 415
        assert everything.json() == embeddings.json()
        assert everything.json()["detail"]
    assert all(s < 500 for s in statuses)


@pytest.mark.slow
def test_a_long_run_does_not_block_other_requests(
    sam: Sam, spec: ModelSpec, make_settings: Callable[..., Settings]
) -> None:
    statuses: list[int] = []
    app = _app(sam, spec, make_settings, statuses)
    data = encode(Image.fromarray(_blocks(64, 64)), "PNG")
    with run_uvicorn(app) as url, httpx.Client(base_url=url, timeout=600) as client:
        client.post("/api/embeddings", files={"image": ("a.png", data, "image/png")}).raise_for_status()
        started = threading.Event()

        def run() -> httpx.Response:
            started.set()
            return client.post(
                "/api/everything",
                files={"image": ("a.png", data, "image/png")},
                data={"points_per_side": "12"},
            )

        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(run)
            started.wait()
            # wait until the run holds the generator thread, then ask for something else
            runner = None
            deadline = time.monotonic() + 60
            while runner is None or runner.pending == 0:
                assert time.monotonic() < deadline, "the everything run never started"
                runner = app.state.everything
                time.sleep(0.01)
            config = client.get("/api/config")
            assert config.status_code == 200
            assert not future.done(), "the run finished before the other request: the test proves nothing"
            response = future.result()
        assert response.status_code == 200
    assert all(s < 500 for s in statuses)
