"""The HTTP API against the real app: statuses, exact error details, headers, cache and encoder behaviour."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from server_helpers import encode, post_image, random_rgb
from wire_fixtures import WEB_TESTDATA

from clicksam.formats import MANIFEST_VERSION, EmbeddingMeta, EmbeddingTensor
from clicksam.model import Sam, SamPredictor
from clicksam.server.app import create_app
from clicksam.server.cache import CachedEmbedding, EmbeddingCache
from clicksam.server.errors import DecoderMismatchError
from clicksam.server.loading import ModelSpec
from clicksam.server.service import EmbeddingService
from clicksam.server.settings import Settings

ISOLATION = {
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-embedder-policy": "require-corp",
    "cross-origin-resource-policy": "same-origin",
}


def service_of(client: TestClient) -> EmbeddingService:
    service = client.app.state.service  # type: ignore[attr-defined]
    assert isinstance(service, EmbeddingService)
    return service


def assert_isolated(response: Any) -> None:
    for name, value in ISOLATION.items():
        assert response.headers.get(name) == value, (response.url, name)


def png(seed: int, height: int = 48, width: int = 64) -> bytes:
    return encode(Image.fromarray(random_rgb(height, width, seed)), "PNG")


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


# --- happy path and the wire format ---------------------------------------------------------------------


def test_embedding_bytes_equal_the_predictor(client: TestClient, sam: Sam) -> None:
    pixels = random_rgb(300, 400, seed=1)
    response = post_image(client, encode(Image.fromarray(pixels), "PNG"))
    assert response.status_code == 200
    meta = response.json()
    assert meta["model"] == "vit_test"
    assert meta["original_size"] == [300, 400]
    assert meta["input_size"] == [768, 1024]
    assert meta["shape"] == [1, 256, 64, 64]
    assert meta["tensors"] == [
        {"name": "image_embeddings", "shape": [1, 256, 64, 64], "offset": 0, "size": 256 * 64 * 64}
    ]
    assert meta["dtype"] == "float16"
    assert meta["url"] == f"/api/embeddings/{meta['id']}"
    assert meta["cached"] is False and meta["encode_ms"] > 0

    predictor = SamPredictor(sam)
    predictor.set_image(pixels)
    reference = predictor.get_image_embedding().numpy()

    f32 = client.get(meta["url"], params={"dtype": "float32"})
    assert f32.status_code == 200
    got32 = np.frombuffer(f32.content, "<f4").reshape(reference.shape)
    assert np.abs(got32 - reference).max() <= 1e-3
    f16 = client.get(meta["url"])
    assert f16.headers["content-type"] == "application/octet-stream"
    got16 = np.frombuffer(f16.content, "<f2").reshape(reference.shape)
    assert np.array_equal(got16, reference.astype("<f2"))
    assert "content-encoding" not in f16.headers  # tensors are never gzipped
    assert f16.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert f16.headers["etag"] == f'"{meta["id"]}-float16"'
    assert_isolated(f16)

    again = client.get(meta["url"], headers={"If-None-Match": f16.headers["etag"]})
    assert again.status_code == 304 and again.content == b""

    same_meta = client.get(f"{meta['url']}/meta").json()
    assert same_meta == {**meta, "cached": True}


def test_cache_hit_does_not_encode_again(client: TestClient) -> None:
    service = service_of(client)
    data = png(2)
    first = post_image(client, data).json()
    second = post_image(client, data, "other-name.png", "image/x-whatever").json()
    assert first["id"] == second["id"]
    assert (first["cached"], second["cached"]) == (False, True)
    assert service.encodes == 1 and service.encoder.jobs_done == 1
    # the same pixels in another container are the same image
    as_bmp = encode(Image.fromarray(random_rgb(48, 64, 2)), "BMP")
    third = post_image(client, as_bmp, "x.bmp", "image/bmp").json()
    assert third["id"] == first["id"] and third["cached"] is True
    assert service.encodes == 1


def test_two_concurrent_identical_uploads_encode_once(client: TestClient) -> None:
    service = service_of(client)
    release = threading.Event()
    assert client.portal is not None
    # occupy the real encoder worker so the two uploads meet while the first one's encode is pending
    blocker = client.portal.start_task_soon(service.encoder.run, lambda: release.wait(30))
    wait_until(lambda: service.encoder.pending == 1)
    data = png(3)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(post_image, client, data)
        wait_until(lambda: len(service._inflight) == 1)
        second = pool.submit(post_image, client, data)
        wait_until(lambda: service.joined == 1)
        release.set()
        responses = [first.result(timeout=60), second.result(timeout=60)]
    blocker.result(timeout=30)
    assert [r.status_code for r in responses] == [200, 200]
    assert responses[0].json()["id"] == responses[1].json()["id"]
    assert service.encodes == 1
    assert service.encoder.jobs_done == 2  # the blocker and one encode


def test_overload_gives_503_with_retry_after_and_recovers(make_client: Callable[..., TestClient]) -> None:
    client = make_client(queue_size=1)
    service = service_of(client)
    release = threading.Event()
    assert client.portal is not None
    blocker = client.portal.start_task_soon(service.encoder.run, lambda: release.wait(30))
    wait_until(lambda: service.encoder.pending == 1)
    with ThreadPoolExecutor(1) as pool:
        queued = pool.submit(post_image, client, png(10))  # waits in the queue (1 slot)
        wait_until(lambda: service.encoder.pending == 2)
        refused = post_image(client, png(11))
        assert refused.status_code == 503
        assert refused.json() == {
            "detail": "the encoder is busy (2 images in progress); retry in a few seconds"
        }
        assert int(refused.headers["retry-after"]) >= 1
        assert_isolated(refused)
        # the rest of the server still answers while the encoder is saturated
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").json()["encoder_pending"] == 2
        release.set()
        assert queued.result(timeout=60).status_code == 200
    blocker.result(timeout=30)
    wait_until(lambda: service.encoder.pending == 0)
    retried = post_image(client, png(11))
    assert retried.status_code == 200 and retried.json()["cached"] is False


# --- errors: exact status and detail ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "status", "detail"),
    [
        (b"", 400, "the uploaded file is empty; send an image file in the 'image' field"),
        (
            b"%PDF-1.4 not an image at all",
            415,
            "unsupported file type: send a JPEG, PNG, GIF, WebP, BMP, TIFF, HEIC/HEIF or AVIF image",
        ),
        (
            png(4)[:200],
            400,
            "could not decode the PNG image: the file is truncated or damaged; re-export or re-save it",
        ),
    ],
)
def test_bad_uploads(client: TestClient, data: bytes, status: int, detail: str) -> None:
    response = post_image(client, data, "photo.png", "image/png")  # the name and type lie
    assert response.status_code == status
    assert response.json() == {"detail": detail}
    assert_isolated(response)
    assert service_of(client).encodes == 0


def test_missing_image_field(client: TestClient) -> None:
    response = client.post("/api/embeddings", files={"picture": ("a.png", png(5), "image/png")})
    assert response.status_code == 422
    assert response.json() == {
        "detail": "no image: send the file as multipart/form-data in the field 'image'"
    }
    assert client.post("/api/embeddings").status_code == 422


def test_too_many_pixels_is_413(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_pixels=10_000)
    response = post_image(client, png(6, 120, 100))
    assert response.status_code == 413
    assert response.json() == {
        "detail": "image too large: 100x120 = 12,000 pixels; the limit is 10,000 pixels, "
        "downscale it and try again"
    }


def test_upload_over_the_byte_limit_is_413(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_upload_bytes=20_000)
    big = png(7, 200, 200)  # ~120 kB of noise
    assert len(big) > 100_000
    detail = {
        "detail": "upload too large: the limit is 20,000 bytes; send a smaller or more compressed image"
    }
    response = post_image(client, big)  # over limit + multipart slack: refused from Content-Length
    assert response.status_code == 413 and response.json() == detail
    assert_isolated(response)
    just_over = png(8, 90, 90)  # over the limit but inside the multipart slack: refused after parsing
    assert 20_000 < len(just_over) < 20_000 + 60_000
    response = post_image(client, just_over)
    assert response.status_code == 413 and response.json() == detail
    small = png(9, 20, 20)
    assert post_image(client, small).status_code == 200


def test_unknown_and_malformed_ids_are_404(client: TestClient) -> None:
    detail = {"detail": "no embedding with this id on this server; upload the image to POST /api/embeddings"}
    for embedding_id in ["0" * 64, "not-an-id", "..%2E%2E"]:
        for suffix in ["", "/meta"]:
            response = client.get(f"/api/embeddings/{embedding_id}{suffix}")
            assert response.status_code == 404, embedding_id
            assert response.json() == detail
    # slashes never reach the handler (no route), and ids never become paths anyway
    assert client.get("/api/embeddings/..%2F..%2Fetc%2Fpasswd").status_code == 404
    bad_dtype = client.get(f"/api/embeddings/{'0' * 64}", params={"dtype": "float64"})
    assert bad_dtype.status_code == 422


def test_decoder_mismatch_refuses_to_start(tmp_path: Path, spec: ModelSpec, sam: Sam) -> None:
    decoder = tmp_path / "decoder"
    decoder.mkdir()
    (decoder / "decoder.onnx").write_bytes(b"x")
    # a manifest as the exporter writes it (the page's fixture), with one variant
    manifest: dict[str, Any] = json.loads((WEB_TESTDATA / "manifest_python.json").read_text())
    manifest["variants"] = {"official": manifest["variants"]["official"]}
    manifest.update(default_variant="official", model="vit_b", seed=0)
    manifest["version"] = MANIFEST_VERSION - 1  # an export of an older clicksam: re-exported, never served
    (decoder / "manifest.json").write_text(json.dumps(manifest))
    settings = Settings(model="vit_test", decoder_dir=decoder, web_dir=tmp_path / "no-web")
    old = f"has manifest version {MANIFEST_VERSION - 1}, this clicksam serves version {MANIFEST_VERSION}"
    with pytest.raises(DecoderMismatchError, match=old):
        create_app(settings, spec=spec, sam=sam)
    manifest["version"] = MANIFEST_VERSION
    (decoder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DecoderMismatchError) as info:
        create_app(settings, spec=spec, sam=sam)
    assert str(info.value).startswith(
        f"the decoder in {decoder} was exported for model 'vit_b', not 'vit_test'. Export the decoder"
    )
    manifest["model"] = "vit_test"
    manifest["seed"] = 5
    (decoder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DecoderMismatchError, match="exported with seed 5, not 0"):
        create_app(settings, spec=spec, sam=sam)
    manifest["seed"] = 0
    manifest["variants"]["official"]["prep"] = {
        "file": "decoder_prep.onnx", "bytes": 1, "sha256": "0" * 64, "inputs": [], "outputs": [],
    }  # fmt: skip
    (decoder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DecoderMismatchError, match=r"has no file 'decoder_prep\.onnx'"):
        create_app(settings, spec=spec, sam=sam)
    (decoder / "decoder_prep.onnx").write_bytes(b"x")
    app = create_app(settings, spec=spec, sam=sam)
    with TestClient(app) as client:
        served = client.get("/decoder/manifest.json")
        assert served.status_code == 200 and served.json() == manifest
        assert served.headers["cache-control"] == "no-cache"
        assert_isolated(served)
        onnx = client.get("/decoder/decoder.onnx")
        assert onnx.headers["content-type"] == "application/octet-stream"
        assert client.get("/decoder/../settings.py").status_code == 404
        assert client.get("/api/config").json()["decoder_manifest"] == "/decoder/manifest.json"
    (decoder / "manifest.json").unlink()
    with pytest.raises(DecoderMismatchError, match="no decoder manifest"):
        create_app(settings, spec=spec, sam=sam)


# --- config, health, docs, page, static headers -----------------------------------------------------------


def test_config_health_and_docs(client: TestClient) -> None:
    config = client.get("/api/config")
    assert config.status_code == 200
    body = config.json()
    assert body["model"] == "vit_test" and body["demo_model"] is True
    assert "clicksam weights download vit_t" in body["notice"]
    assert body["embedding_dtype"] == "float16"
    assert body["max_upload_bytes"] == 50 * 1024 * 1024 and body["max_pixels"] == 100_000_000
    assert body["decoder_manifest"] is None  # this test app serves no decoder
    assert_isolated(config)
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    schema = client.get("/openapi.json", headers={"Accept-Encoding": "gzip"})
    assert schema.headers.get("content-encoding") == "gzip"  # JSON is worth compressing
    paths = schema.json()["paths"]
    for path in ["/api/config", "/api/embeddings", "/api/embeddings/{embedding_id}", "/healthz", "/readyz"]:
        assert path in paths
    post = paths["/api/embeddings"]["post"]
    assert {"200", "400", "413", "415", "422", "503"} <= set(post["responses"])


def test_unbuilt_page_says_how_to_build(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "make web" in page.text
    assert_isolated(page)


def test_built_page_static_headers(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    web = tmp_path / "dist"
    (web / "assets").mkdir(parents=True)
    (web / "index.html").write_text("<!doctype html><title>clicksam</title>" + "<p>x</p>" * 300)
    (web / "assets" / "index-Bq3x9Zk1.js").write_text("console.log('hi');\n" * 200)
    (web / "assets" / "ort-wasm-simd-threaded.jsep-Ck2PqW8a.wasm").write_bytes(b"\0asm" + bytes(2000))
    (web / "assets" / "ort-wasm-simd-threaded.jsep-Dd8a7Fq2.mjs").write_text("export {};\n" * 200)
    client = make_client(web_dir=web)
    index = client.get("/", headers={"Accept-Encoding": "gzip"})
    assert index.status_code == 200 and "clicksam" in index.text
    assert index.headers["cache-control"] == "no-cache"
    assert index.headers["content-encoding"] == "gzip"
    assert_isolated(index)
    js = client.get("/assets/index-Bq3x9Zk1.js")
    assert js.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert js.headers["content-type"].startswith("text/javascript")
    wasm = client.get("/assets/ort-wasm-simd-threaded.jsep-Ck2PqW8a.wasm")
    assert wasm.headers["content-type"] == "application/wasm"
    assert_isolated(wasm)
    mjs = client.get("/assets/ort-wasm-simd-threaded.jsep-Dd8a7Fq2.mjs")
    assert mjs.headers["content-type"].startswith("text/javascript")
    # the API still wins over the page mount
    assert client.get("/api/config").status_code == 200
    assert client.get("/nope.html").status_code == 404


# --- the cache on its own ----------------------------------------------------------------------------------


def _meta(key: str) -> EmbeddingMeta:
    tensors = EmbeddingTensor.layout([("image_embeddings", (1, 4, 8, 8))])
    return EmbeddingMeta(
        key, "vit_test", (8, 8), (1024, 1024), (1, 4, 8, 8), tensors, "float16", f"/x/{key}", 1.0
    )


def test_cache_lru_respects_its_byte_budget() -> None:
    entry_bytes = CachedEmbedding.from_array(_meta("a"), np.zeros((1, 4, 8, 8), np.float32)).nbytes
    cache = EmbeddingCache(max_bytes=3 * entry_bytes)
    ids = [f"{i:064x}" for i in range(5)]
    for i, key in enumerate(ids[:3]):
        cache.put(key, CachedEmbedding.from_array(_meta(key), np.full((1, 4, 8, 8), i, np.float32)))
    assert cache.get(ids[0]) is not None  # 0 is now the most recently used
    cache.put(ids[3], CachedEmbedding.from_array(_meta(ids[3]), np.zeros((1, 4, 8, 8), np.float32)))
    assert cache.get(ids[1]) is None  # the least recently used went
    assert cache.get(ids[0]) is not None and cache.get(ids[2]) is not None
    assert cache.nbytes == 3 * entry_bytes and len(cache) == 3
    with pytest.raises(ValueError):
        cache.put(
            "../../etc/passwd", CachedEmbedding.from_array(_meta("x"), np.zeros((1, 4, 8, 8), np.float32))
        )


def test_disk_cache_survives_a_restart(make_client: Callable[..., TestClient], tmp_path: Path) -> None:
    cache_dir = tmp_path / "shared-cache"
    first = make_client(cache_dir=cache_dir, disk_cache=True)
    meta = post_image(first, png(12)).json()
    tensor = first.get(meta["url"]).content
    files = sorted(p.name for p in cache_dir.rglob("*") if p.is_file())
    assert files == [f"{meta['id']}.emb"]
    second = make_client(cache_dir=cache_dir, disk_cache=True)  # a fresh process-like app: empty memory
    assert second.get(meta["url"]).content == tensor
    again = post_image(second, png(12)).json()
    assert again["cached"] is True and service_of(second).encodes == 0
