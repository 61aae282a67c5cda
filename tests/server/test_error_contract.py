"""Every error is ``{"detail": "<string>"}`` and the OpenAPI document says so: one test per problem found.

The problems are the ones schemathesis found against ``clicksam serve`` (``test_openapi_contract.py``
runs it): FastAPI's list-shaped validation ``detail``, the required ``image`` upload documented as
optional, 405s without a (complete) ``Allow`` header, bare "Not Found" / "Method Not Allowed" phrases,
and FastAPI's undocumented 400 for a body it cannot parse. The app runs on a real uvicorn on 127.0.0.1
with a page at ``/`` and the projects API, as ``clicksam serve`` builds it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from server_helpers import StatusRecorder, encode, random_rgb, run_uvicorn

from clicksam.model import Sam
from clicksam.server.app import create_app
from clicksam.server.loading import ModelSpec
from clicksam.server.settings import Settings

NO_IMAGE = "no image: send the file as multipart/form-data in the field 'image'"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("errors")
    (root / "web").mkdir()
    (root / "web" / "index.html").write_text("<!doctype html><title>clicksam</title>")
    return root


@pytest.fixture(scope="module")
def client(sam: Sam, spec: ModelSpec, root: Path) -> Iterator[httpx.Client]:
    web, data = root / "web", root / "data"
    settings = Settings(model="vit_test", cache_dir=root / "cache", web_dir=web, data_dir=data)
    app = create_app(settings, spec=spec, sam=sam)
    statuses: list[int] = []
    app.add_middleware(StatusRecorder, statuses=statuses)
    with run_uvicorn(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client
    assert not [status for status in statuses if status >= 500], statuses


@pytest.fixture(scope="module")
def openapi(client: httpx.Client) -> dict[str, Any]:
    document: dict[str, Any] = client.get("/openapi.json").json()
    return document


def _png() -> bytes:
    return encode(Image.fromarray(random_rgb(12, 10, 0)), "PNG")


# --- FastAPI's request validation: one string, not a list ----------------------------------------------


def test_everything_form_errors_are_one_string(client: httpx.Client) -> None:
    # what schemathesis sent: 'image' as a text field, and an option out of range
    response = client.post("/api/everything", data={"image": "null", "min_mask_region_area": "-1"})
    assert response.status_code == 422
    assert response.json() == {
        "detail": f"{NO_IMAGE}; body field 'min_mask_region_area': Input should be greater than or equal to 0"
    }
    response = client.post(
        "/api/everything", files={"image": ("a.png", _png(), "image/png")}, data={"crop_n_layers": "x"}
    )
    assert response.status_code == 422
    assert response.json() == {
        "detail": "body field 'crop_n_layers': Input should be a valid integer, unable to parse string as an "
        "integer"
    }


@pytest.mark.parametrize("path", ["/api/embeddings", "/api/everything"])
def test_a_missing_image_says_how_to_send_it(client: httpx.Client, path: str) -> None:
    for request in [{}, {"data": {"image": "text, not a file"}}, {"files": {"picture": ("a.png", b"x")}}]:
        response = client.post(path, **request)  # type: ignore[arg-type]
        assert response.status_code == 422
        assert response.json() == {"detail": NO_IMAGE}


def test_query_and_path_errors_are_strings(client: httpx.Client) -> None:
    response = client.get(f"/api/embeddings/{'0' * 64}", params={"dtype": "float64"})
    assert response.status_code == 422
    assert response.json() == {"detail": "query parameter 'dtype': Input should be 'float16' or 'float32'"}
    response = client.get("/api/projects/abc")
    assert response.status_code == 422
    assert response.json() == {
        "detail": "path parameter 'pid': Input should be a valid integer, unable to parse string as an "
        "integer"
    }


def test_json_bodies_that_do_not_parse(client: httpx.Client) -> None:
    headers = {"Content-Type": "application/json"}
    response = client.post("/api/projects", content=b'{"name": ', headers=headers)
    assert response.status_code == 422
    assert response.json() == {"detail": "the body is not valid JSON (Expecting value); send a JSON document"}
    response = client.post("/api/projects", content=b"\xff\xfe{", headers=headers)  # not UTF-8: FastAPI's 400
    assert response.status_code == 400
    assert response.json() == {
        "detail": "the body could not be parsed: send UTF-8 JSON, or a well-formed multipart form for uploads"
    }


# --- 404 and 405 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/nothing-here", "/no-such-file.js"])
def test_unknown_paths_are_404_with_a_string(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.json() == {
        "detail": f"not found: {path} is no page, file or API route of this server; the API is at /docs"
    }


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/healthz", "GET"),  # was the page's 405 (the page was mounted at "/"), without Allow
        ("POST", "/api/config", "GET"),
        ("PUT", "/api/embeddings", "POST"),
        ("POST", f"/api/embeddings/{'0' * 64}", "GET"),
        ("OPTIONS", "/api/projects/1", "DELETE, GET"),  # Allow named only the first route's methods
        ("POST", "/api/projects/1/images/2/annotations", "GET, PUT"),
        ("POST", "/index.html", "GET, HEAD"),  # the page's own files
    ],
)
def test_405_names_every_allowed_method(client: httpx.Client, method: str, path: str, allow: str) -> None:
    response = client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert response.json() == {"detail": f"method {method} is not allowed on {path}; use {allow}"}


def test_the_page_is_still_served(client: httpx.Client) -> None:
    assert client.get("/").text == "<!doctype html><title>clicksam</title>"
    assert client.head("/index.html").status_code == 200


def test_an_unexpected_exception_is_a_500_with_a_string(sam: Sam, spec: ModelSpec, root: Path) -> None:
    settings = Settings(model="vit_test", cache_dir=root / "cache500", data_dir=root / "data500")
    app = create_app(settings, spec=spec, sam=sam)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as test_client:
        response = test_client.get("/boom")
    assert response.status_code == 500
    assert response.json() == {
        "detail": "internal server error: this is a bug in clicksam; the server log has the details"
    }


# --- the document ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/embeddings", "Body_create_embedding_api_embeddings_post"),
        ("/api/everything", "Body_segment_everything_api_everything_post"),
    ],
)
def test_the_image_upload_is_documented_as_required(openapi: dict[str, Any], path: str, body: str) -> None:
    request = openapi["paths"][path]["post"]["requestBody"]
    assert request["required"] is True
    form = request["content"]["multipart/form-data"]
    assert form["encoding"]["image"]["contentType"].startswith("image/jpeg, image/png, ")
    schema = openapi["components"]["schemas"][body]
    assert schema["required"] == ["image"]
    assert schema["properties"]["image"]["contentMediaType"] == "application/octet-stream"  # no null


def test_every_documented_error_is_a_string_detail(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert schemas["ErrorResponse"]["properties"]["detail"]["type"] == "string"
    checked = 0
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) < 400 or (path, status) == ("/readyz", "503"):
                    continue  # /readyz answers its figures with the 503
                media = response["content"]["application/json"]
                assert media["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path)
                checked += 1
            if "requestBody" in operation:
                assert "400" in operation["responses"], (method, path)
    assert checked > 40
