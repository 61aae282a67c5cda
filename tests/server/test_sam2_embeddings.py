"""``/api/embeddings`` serving SAM 2.1 (the tiny ``sam2_tiny`` preset, seeded random weights): the three
tensors the decoder needs, in the manifest's wire order, in one body, with the usual caching."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from server_helpers import encode, post_image, random_rgb

from clicksam.model import Sam2, build_sam
from clicksam.server.app import create_app
from clicksam.server.loading import ModelSpec, resolve_model
from clicksam.server.settings import Settings

pytestmark = pytest.mark.slow  # one SAM 2.1 encode at 1024 takes a few seconds on 2 shared cores

#: what Sam2ImageFeatures holds for a 1024 input, in its order (= the manifest's image_inputs)
SAM2_TENSORS = [
    ("image_embed", [1, 256, 64, 64]),
    ("high_res_feats_0", [1, 32, 256, 256]),
    ("high_res_feats_1", [1, 64, 128, 128]),
]


@pytest.fixture(scope="module")
def sam2() -> Sam2:
    return build_sam("sam2_tiny", seed=0).eval()


@pytest.fixture
def make_sam2_client(sam2: Sam2, tmp_path: Path) -> Iterator[Callable[..., TestClient]]:
    spec: ModelSpec = resolve_model("sam2_tiny", None, 0)
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        folders = {
            "cache_dir": tmp_path / "cache",
            "data_dir": tmp_path / "data",
            "web_dir": tmp_path / "no-web",
        }
        settings = Settings(model="sam2_tiny", **folders, **overrides)
        client = TestClient(create_app(settings, spec=spec, sam=sam2))  # type: ignore[arg-type]
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def test_sam2_embedding_is_three_tensors_in_wire_order(
    make_sam2_client: Callable[..., TestClient], sam2: Sam2
) -> None:
    client = make_sam2_client(disk_cache=True)
    pixels = random_rgb(30, 40, seed=7)  # 4:3: stretched to the square, not padded
    meta = post_image(client, encode(Image.fromarray(pixels), "PNG")).json()
    assert meta["model"] == "sam2_tiny"
    assert meta["original_size"] == [30, 40] and meta["input_size"] == [1024, 1024]
    assert meta["shape"] == [1, 256, 64, 64]
    offsets = np.cumsum([0] + [int(np.prod(shape)) for _, shape in SAM2_TENSORS])
    assert meta["tensors"] == [
        {"name": name, "shape": shape, "offset": int(offsets[i]), "size": int(np.prod(shape))}
        for i, (name, shape) in enumerate(SAM2_TENSORS)
    ]
    with torch.inference_mode():
        features = sam2.encode_image(sam2.preprocess(pixels))
    f32 = client.get(meta["url"], params={"dtype": "float32"})
    f16 = client.get(meta["url"])
    assert len(f16.content) == 8_388_608 and len(f32.content) == 2 * 8_388_608  # 8 MiB on the wire
    body32, body16 = np.frombuffer(f32.content, "<f4"), np.frombuffer(f16.content, "<f2")
    for t in meta["tensors"]:
        expected = getattr(features, t["name"]).numpy()
        part = slice(t["offset"], t["offset"] + t["size"])
        got32 = body32[part].reshape(t["shape"])
        # the server encodes on its worker thread under its own torch thread count, so oneDNN may sum
        # in another order: equal to the last bits or so (seen: 1.4e-7), never a layout slip (~0.1)
        np.testing.assert_allclose(got32, expected, rtol=0, atol=1e-5, err_msg=t["name"])
        assert np.array_equal(body16[part].reshape(t["shape"]), got32.astype(np.float16)), t["name"]

    again = post_image(client, encode(Image.fromarray(pixels), "BMP"), "x.bmp", "image/bmp").json()
    assert again["cached"] is True and client.app.state.service.encodes == 1  # type: ignore[attr-defined]
    restarted = make_sam2_client(disk_cache=True)  # empty memory: the three tensors come back from disk
    assert restarted.get(meta["url"]).content == f16.content
    assert restarted.get(f"{meta['url']}/meta").json() == {**meta, "cached": True}
