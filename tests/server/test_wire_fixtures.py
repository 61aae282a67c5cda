"""The embedding metadata the server answers, as the page's fixture (``web/src/api.test.ts`` parses it)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from PIL import Image
from server_helpers import encode, post_image, random_rgb
from wire_fixtures import check_web_fixture

from clicksam.formats import EmbeddingResponse


def test_the_page_reads_the_embedding_metadata_python_writes(client: TestClient) -> None:
    response = post_image(client, encode(Image.fromarray(random_rgb(30, 40, seed=5)), "PNG"))
    assert response.status_code == 200
    doc = response.json()
    assert set(doc) == {f.name for f in EmbeddingResponse.__dataclass_fields__.values()}
    doc["encode_ms"] = 12.5  # the one value that differs from run to run
    check_web_fixture("embedding_python.json", doc)
    meta = client.get(f"{doc['url']}/meta").json()
    assert meta == {**doc, "encode_ms": meta["encode_ms"], "cached": True}
