"""``POST /api/embeddings/{id}/detect`` and ``/api/config``'s detector fields, with a tiny random OWLv2.

The detector is the real ``transformers`` OWLv2 code with a tiny random configuration
(tests/detector_testlib.py). Every error answers its status with the exact ``detail``; the image side
runs once per image (a second query reuses it; two simultaneous first queries share one run, against a
real uvicorn); a full worker queue answers 503 + Retry-After.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from server_helpers import png_bytes, post_image, random_rgb, run_uvicorn

pytest.importorskip("transformers")

from detector_testlib import make_tiny_owlv2

from clicksam.server.app import create_app
from clicksam.server.detection import MAX_QUERIES, NOT_HELD, DetectionService

HEIGHT, WIDTH = 60, 100  # non-square: boxes must stay inside 100 x 60


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_owlv2(tmp_path_factory.mktemp("owlv2"))


@pytest.fixture
def detect_client(make_client: Callable[..., TestClient], tiny_folder: Path) -> TestClient:
    return make_client(text_model=str(tiny_folder))


def _upload(client: TestClient, seed: int = 0) -> str:
    response = post_image(client, png_bytes(Image.fromarray(random_rgb(HEIGHT, WIDTH, seed))))
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def _detection(client: TestClient) -> DetectionService:
    service = client.app.state.detection  # type: ignore[attr-defined]
    assert isinstance(service, DetectionService)
    return service


def test_config_names_the_detector(detect_client: TestClient, tiny_folder: Path) -> None:
    config = detect_client.get("/api/config").json()
    assert config["detector"] == {"model": tiny_folder.name, "text": True, "exemplars": True}
    assert config["detector_hint"] is None


def test_without_a_detector_config_and_detect_say_how_to_turn_it_on(client: TestClient) -> None:
    hint = (
        "text and exemplar prompts are off: start the server with --text-model owlv2-base (after "
        "`clicksam weights download owlv2-base`) or --text-model PATH of a Hugging Face OWLv2 folder; it "
        "needs pip install 'clicksam[text]'"
    )
    config = client.get("/api/config").json()
    assert config["detector"] is None
    assert config["detector_hint"] == hint
    image_id = _upload(client)
    response = client.post(f"/api/embeddings/{image_id}/detect", json={"text": ["dog"]})
    assert response.status_code == 409
    assert response.json() == {"detail": hint}


def test_a_named_model_that_is_not_downloaded_says_how_to_get_it(
    make_client: Callable[..., TestClient], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLICKSAM_CACHE_DIR", str(tmp_path / "empty-cache"))
    client = make_client(text_model="owlv2-base")
    hint = (
        "text and exemplar prompts are off: the owlv2-base weights are not in the cache (or not accepted); "
        "run `clicksam weights download owlv2-base` and restart the server"
    )
    assert client.get("/api/config").json()["detector_hint"] == hint
    response = client.post(f"/api/embeddings/{'0' * 64}/detect", json={"text": ["dog"]})
    assert (response.status_code, response.json()) == (409, {"detail": hint})


def test_text_query_boxes_in_original_pixels_and_the_image_side_runs_once(detect_client: TestClient) -> None:
    image_id = _upload(detect_client)
    detection = _detection(detect_client)
    url = f"/api/embeddings/{image_id}/detect"
    first = detect_client.post(url, json={"text": ["dog", "red car"], "threshold": 0.0})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["model"] == detection.detector.name
    detections = body["detections"]
    assert detections, "threshold 0 keeps every patch whose score is above 0"
    assert {d["label"] for d in detections} <= {"dog", "red car"}
    scores = [d["score"] for d in detections]
    assert scores == sorted(scores, reverse=True)
    for d in detections:
        x0, y0, x1, y1 = d["box"]
        assert 0 <= x0 <= x1 <= WIDTH and 0 <= y0 <= y1 <= HEIGHT
    assert (
        "image;dur=" in first.headers["server-timing"] and 'desc="computed"' in first.headers["server-timing"]
    )
    assert (detection.image_runs, detection.text_runs) == (1, 2)

    second = detect_client.post(url, json={"text": ["dog", "cat"], "threshold": 0.0, "max_detections": 3})
    assert second.status_code == 200, second.text
    assert len(second.json()["detections"]) <= 3
    assert 'desc="cached"' in second.headers["server-timing"]
    assert (detection.image_runs, detection.text_runs) == (1, 3)  # only "cat" was new


def test_exemplar_query_labels_exemplar(detect_client: TestClient) -> None:
    image_id = _upload(detect_client, seed=3)
    url = f"/api/embeddings/{image_id}/detect"
    response = detect_client.post(url, json={"exemplars": [[10, 5, 40, 30]], "threshold": 0.0})
    assert response.status_code == 200, response.text
    labels = {d["label"] for d in response.json()["detections"]}
    assert labels == {"exemplar"}
    both = detect_client.post(url, json={"text": ["dog"], "exemplars": [[10, 5, 40, 30]], "threshold": 0.0})
    assert both.status_code == 200
    assert {d["label"] for d in both.json()["detections"]} <= {"exemplar", "dog"}
    detection = _detection(detect_client)
    assert (detection.image_runs, detection.exemplar_runs) == (1, 1)  # the exemplar vector is cached too


def test_unknown_id_is_404(detect_client: TestClient) -> None:
    response = detect_client.post(f"/api/embeddings/{'ab' * 32}/detect", json={"text": ["dog"]})
    assert response.status_code == 404
    assert response.json() == {"detail": NOT_HELD}


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({}, 'give at least one text query ("text": ["dog"]) or one exemplar box'),
        ({"text": ["dog", "  "]}, 'text query 2 is empty: type what to find, e.g. "dog"'),
        ({"text": ["x" * 201]}, "text query 1 has 201 characters; at most 200: shorten it"),
        (
            {"text": ["a photo of a red car of a dog of a cat of a person of a coin"]},
            "text query 1 is 20 tokens long; the detector reads at most 16 (a few words): shorten it",
        ),
        (
            {"text": ["dog"] * (MAX_QUERIES + 1)},
            f"too many queries: {MAX_QUERIES + 1} text + 0 exemplars; at most {MAX_QUERIES} together",
        ),
        (
            {"exemplars": [[10, 10, 120, 50]]},
            "exemplar 1 [10.0, 10.0, 120.0, 50.0] is outside the 100x60 image: boxes are [x0, y0, x1, y1] "
            "in original pixels within 0..100 and 0..60",
        ),
        (
            {"exemplars": [[20, 10, 20, 50]]},
            "exemplar 1 [20.0, 10.0, 20.0, 50.0] has no area: x1 must exceed x0 and y1 exceed y0 by at "
            "least 1 pixel; draw a box around one example object",
        ),
        ({"exemplars": [[1, 2, 3]]}, "exemplar 1 must be four numbers [x0, y0, x1, y1] in image pixels"),
        (
            {"text": ["dog"], "threshold": 1.5},
            "threshold must be a number from 0 to below 1 (a score must exceed it); got 1.5",
        ),
        ({"text": ["dog"], "max_detections": 0}, "max_detections must be from 1 to 1000; got 0"),
    ],
)
def test_bad_input_is_422_with_what_to_fix(
    detect_client: TestClient, body: dict[str, Any], detail: str
) -> None:
    image_id = _upload(detect_client)
    response = detect_client.post(f"/api/embeddings/{image_id}/detect", json=body)
    assert response.status_code == 422
    assert response.json() == {"detail": detail}
    assert _detection(detect_client).image_runs == 0  # refused before any work


class _Gate:
    """Wraps the detector's image side: counts the runs and holds them until released."""

    def __init__(self, detection: DetectionService) -> None:
        self.runs = 0
        self.entered = threading.Event()
        self.release = threading.Event()
        real = detection.detector.image_features

        def gated(pixels: np.ndarray) -> Any:
            self.runs += 1
            self.entered.set()
            assert self.release.wait(60)
            return real(pixels)

        detection.detector.image_features = gated  # type: ignore[method-assign]


@pytest.fixture
def served(
    make_settings: Callable[..., Any], spec: Any, sam: Any, tiny_folder: Path
) -> Iterator[tuple[str, Any]]:
    app = create_app(make_settings(text_model=str(tiny_folder), queue_size=0), spec=spec, sam=sam)
    with run_uvicorn(app) as base:
        yield base, app


def _upload_http(base: str, seed: int) -> str:
    data = png_bytes(Image.fromarray(random_rgb(HEIGHT, WIDTH, seed)))
    response = httpx.post(f"{base}/api/embeddings", files={"image": ("a.png", data, "image/png")}, timeout=60)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


@pytest.mark.slow
def test_two_simultaneous_first_queries_share_one_image_side_and_a_full_queue_is_503(
    served: tuple[str, Any],
) -> None:
    base, app = served
    first_id, other_id = _upload_http(base, 1), _upload_http(base, 2)
    gate = _Gate(app.state.detection)
    url = f"{base}/api/embeddings/{first_id}/detect"
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(httpx.post, url, json={"text": [t]}, timeout=60) for t in ("dog", "cat")]
        assert gate.entered.wait(30)
        time.sleep(0.3)  # the second request arrives while the first one's image side runs
        # queue_size 0: the worker is busy with the first image, so another image's side is refused
        busy = httpx.post(f"{base}/api/embeddings/{other_id}/detect", json={"text": ["dog"]}, timeout=60)
        gate.release.set()
        answers = [f.result() for f in futures]
    assert [a.status_code for a in answers] == [200, 200]
    assert gate.runs == 1 and app.state.detection.image_runs == 1
    assert busy.status_code == 503
    assert busy.json()["detail"].startswith("the encoder is busy")
    assert int(busy.headers["retry-after"]) >= 1
