"""The projects API against a real uvicorn, on SQLite and on PostgreSQL: every rule, exact details."""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from projects_helpers import annotation, image_bytes, ring_mask, rle

from clicksam.server.projects.masks import counts_to_mask


def make_project(
    client: httpx.Client, name: str = "birds", categories: tuple[str, ...] = ("cat", "dog")
) -> int:
    r = client.post("/api/projects", json={"name": name, "categories": list(categories)})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def upload(client: httpx.Client, pid: int, *files: tuple[str, bytes]) -> httpx.Response:
    return client.post(
        f"/api/projects/{pid}/images",
        files=[("image", (name, data, "application/octet-stream")) for name, data in files],
    )


def test_projects_create_list_get_delete(client: httpx.Client) -> None:
    r = client.post("/api/projects", json={"name": " birds ", "categories": ["cat", "dog"]})
    assert r.status_code == 201
    project = r.json()
    assert project["name"] == "birds" and project["categories"] == ["cat", "dog"]
    assert project["image_count"] == 0
    assert project["status_counts"] == {"new": 0, "in_progress": 0, "done": 0, "skipped": 0}
    pid = project["id"]

    r = client.post("/api/projects", json={"name": "birds", "categories": []})
    assert r.status_code == 409
    assert r.json() == {"detail": "a project named 'birds' already exists; choose another name"}
    r = client.post("/api/projects", json={"name": "  ", "categories": []})
    assert (r.status_code, r.json()) == (422, {"detail": "the project name is empty; give it a name"})
    r = client.post("/api/projects", json={"name": "x", "categories": ["a", "b", "a"]})
    assert (r.status_code, r.json()) == (422, {"detail": "category names must be unique; repeated: a"})

    assert [p["name"] for p in client.get("/api/projects").json()["projects"]] == ["birds"]
    assert client.get(f"/api/projects/{pid}").json() == project
    assert client.delete(f"/api/projects/{pid}").status_code == 204
    r = client.get(f"/api/projects/{pid}")
    assert r.status_code == 404
    assert r.json() == {"detail": f"no project with id {pid}; GET /api/projects lists them"}
    assert client.delete(f"/api/projects/{pid}").status_code == 404
    assert client.get("/api/projects").json() == {"projects": []}


def test_upload_keeps_good_files_and_reports_each_bad_one(
    start_server: Callable[..., httpx.Client], database: str | None, data_dir: Path
) -> None:
    client = start_server(database, max_upload_bytes=20_000, max_pixels=40_000)
    pid = make_project(client)
    good = image_bytes(48, 64, seed=1)
    truncated = image_bytes(48, 64, seed=2)[:200]
    buf = io.BytesIO()
    Image.new("RGB", (200, 201)).save(buf, "PNG")  # a few hundred bytes, 40,200 pixels
    too_many_pixels = buf.getvalue()
    too_many_bytes = image_bytes(90, 90, seed=4, fmt="BMP")  # ~24 KB of pixels
    r = upload(
        client,
        pid,
        ("../../etc/a.png", good),
        ("notes.txt", b"just text"),
        ("cut.png", truncated),
        ("big.png", too_many_pixels),
        ("huge.bmp", too_many_bytes),
    )
    assert r.status_code == 201, r.text
    body = r.json()
    [image] = body["images"]
    assert image["file_name"] == "a.png"  # never a path
    assert (image["width"], image["height"], image["status"], image["version"]) == (64, 48, "new", 0)
    assert body["errors"] == [
        {
            "file_name": "notes.txt",
            "status_code": 415,
            "detail": "unsupported file type: send a JPEG, PNG, GIF, WebP, BMP, TIFF, HEIC/HEIF or AVIF "
            "image",
        },
        {
            "file_name": "cut.png",
            "status_code": 400,
            "detail": "could not decode the PNG image: the file is truncated or damaged; "
            "re-export or re-save it",
        },
        {
            "file_name": "big.png",
            "status_code": 413,
            "detail": "image too large: 200x201 = 40,200 pixels; the limit is 40,000 pixels, "
            "downscale it and try again",
        },
        {
            "file_name": "huge.bmp",
            "status_code": 413,
            "detail": "upload too large: the limit is 20,000 bytes; send a smaller or more compressed image",
        },
    ]
    # the embedding id works with the embeddings API
    meta = client.get(f"/api/embeddings/{image['embedding_id']}/meta").json()
    assert meta["original_size"] == [48, 64]
    assert client.get(f"/api/embeddings/{image['embedding_id']}").status_code == 200
    # bytes kept exactly, content-addressed, nothing written where the file name pointed
    served = client.get(f"/api/projects/{pid}/images/{image['id']}/file")
    assert served.content == good and served.headers["content-type"] == "image/png"
    assert not (data_dir.parent / "etc").exists()
    import hashlib

    sha = hashlib.sha256(good).hexdigest()
    assert (data_dir / "images" / sha[:2] / sha[2:4] / sha).read_bytes() == good
    # the same bytes again: the same image
    again = upload(client, pid, ("copy.png", good)).json()["images"][0]
    assert again["id"] == image["id"]
    # only bad files: the first one's error, as POST /api/embeddings would answer
    r = upload(client, pid, ("notes.txt", b"just text"), ("cut.png", truncated))
    assert r.status_code == 415
    assert r.json()["detail"].startswith("unsupported file type")
    r = client.post(f"/api/projects/{pid}/images", files=[("other", ("a.png", good, "image/png"))])
    assert r.status_code == 422
    r = upload(client, 999, ("a.png", good))
    assert (r.status_code, r.json()) == (
        404,
        {"detail": "no project with id 999; GET /api/projects lists them"},
    )


def test_upload_size_is_after_exif_orientation(client: httpx.Client) -> None:
    pid = make_project(client)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: a 64 wide, 48 tall file shows 48 wide, 64 tall
    buf = io.BytesIO()
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(buf, "JPEG", exif=exif)
    [image] = upload(client, pid, ("photo.jpg", buf.getvalue())).json()["images"]
    assert (image["width"], image["height"]) == (48, 64)


def test_images_page_and_filter(client: httpx.Client) -> None:
    pid = make_project(client)
    ids = [
        img["id"]
        for img in upload(client, pid, *[(f"{i}.png", image_bytes(8, 8, i)) for i in range(5)]).json()[
            "images"
        ]
    ]
    page = client.get(f"/api/projects/{pid}/images", params={"offset": 1, "limit": 2}).json()
    assert [im["id"] for im in page["images"]] == ids[1:3]
    assert (page["total"], page["offset"], page["limit"]) == (5, 1, 2)
    mask = np.zeros((8, 8), bool)
    mask[2:5, 3:6] = True
    assert (
        client.put(
            f"/api/projects/{pid}/images/{ids[3]}/annotations",
            json={"version": 0, "annotations": [annotation(mask)]},
        ).status_code
        == 200
    )
    assert (
        client.put(
            f"/api/projects/{pid}/images/{ids[4]}/annotations",
            json={"version": 0, "annotations": [], "status": "skipped"},
        ).status_code
        == 200
    )
    done = client.get(f"/api/projects/{pid}/images", params={"status": "in_progress"}).json()
    assert [im["id"] for im in done["images"]] == [ids[3]] and done["total"] == 1
    assert client.get(f"/api/projects/{pid}").json()["status_counts"] == {
        "new": 3, "in_progress": 1, "done": 0, "skipped": 1,
    }  # fmt: skip
    assert client.get(f"/api/projects/{pid}/images", params={"limit": 1001}).status_code == 422
    assert client.get(f"/api/projects/{pid}/images", params={"status": "lost"}).status_code == 422
    r = client.get("/api/projects/999/images")
    assert (r.status_code, r.json()) == (
        404,
        {"detail": "no project with id 999; GET /api/projects lists them"},
    )


def test_annotations_save_versions_and_rules(client: httpx.Client) -> None:
    pid = make_project(client)
    [image] = upload(client, pid, ("a.png", image_bytes(40, 60, 0))).json()["images"]
    url = f"/api/projects/{pid}/images/{image['id']}/annotations"
    assert client.get(url).json() == {"version": 0, "annotations": []}

    ring = ring_mask(40, 60, 20, 25, 15, 6)
    square = np.zeros((40, 60), bool)
    square[0:10, 50:60] = True
    prompts = {"points": [[25.0, 8.0, 1], [25.0, 20.0, 0]], "box": None}
    sent = [
        annotation(ring, "cat", source="manual", prompts=prompts),
        annotation(square, "dog", source="everything", score=0.93),
    ]
    r = client.put(url, json={"version": 0, "annotations": sent})
    assert (r.status_code, r.json()) == (200, {"version": 1})
    got = client.get(url).json()
    assert got["version"] == 1
    first, second = got["annotations"]
    assert first["segmentation"] == rle(ring) and first["category"] == "cat"
    assert first["area"] == int(ring.sum())
    assert first["bbox"] == [10.0, 5.0, 31.0, 31.0]
    assert first["prompts"] == {"points": [[25.0, 8.0, 1], [25.0, 20.0, 0]], "box": None}
    assert (second["source"], second["score"], second["bbox"], second["area"]) == (
        "everything",
        0.93,
        [50.0, 0.0, 10.0, 10.0],
        100,
    )
    assert np.array_equal(counts_to_mask(second["segmentation"]["counts"], 40, 60), square)
    assert client.get(f"/api/projects/{pid}/images/{image['id']}".rsplit("/", 1)[0]).status_code == 200
    assert client.get(f"/api/projects/{pid}/images").json()["images"][0]["status"] == "in_progress"

    # a stale version: 409 and nothing changes
    r = client.put(url, json={"version": 0, "annotations": []})
    assert r.status_code == 409
    assert r.json() == {
        "detail": "version conflict: these annotations were saved since version 0 (now version 1); "
        "reload them, or send version 1 to overwrite"
    }
    assert client.get(url).json() == got

    # keeping an annotation by id keeps its id and created_at; the other one is dropped
    keep = {**sent[0], "id": first["id"], "category": "dog"}
    assert client.put(url, json={"version": 1, "annotations": [keep], "status": "done"}).json() == {
        "version": 2
    }
    [kept] = client.get(url).json()["annotations"]
    assert (kept["id"], kept["created_at"], kept["category"]) == (first["id"], first["created_at"], "dog")
    assert kept["updated_at"] >= first["updated_at"]

    def refused(body: dict[str, object]) -> dict[str, object]:
        r = client.put(url, json={"version": 2, **body})
        assert r.status_code == 422, r.text
        assert client.get(url).json()["version"] == 2  # nothing changed
        return r.json()

    wrong_size = annotation(np.zeros((60, 40), bool))
    assert refused({"annotations": [sent[0], wrong_size]}) == {
        "detail": "annotation 1: the RLE size [60, 40] is not the image's size [40, 60]; "
        "send the mask at the image's resolution"
    }
    bad_string = {"category": "cat", "segmentation": {"size": [40, 60], "counts": "a b c"}}
    assert refused({"annotations": [bad_string]}) == {
        "detail": "annotation 0: the RLE counts are not a valid COCO compressed RLE string: "
        'send {"size": [height, width], "counts": "<COCO compressed RLE>"}'
    }
    short = {"category": "cat", "segmentation": {"size": [40, 60], "counts": [100, 20]}}
    assert refused({"annotations": [short]}) == {
        "detail": "annotation 0: the RLE counts cover 120 pixels but the size [40, 60] has 2400: "
        'send {"size": [height, width], "counts": "<COCO compressed RLE>"}'
    }
    assert refused({"annotations": [annotation(ring, "bird")]}) == {
        "detail": "annotation 0: unknown category 'bird'; the project's categories are 'cat', 'dog'"
    }
    assert refused({"annotations": [{**sent[0], "id": 12345}]}) == {
        "detail": f"annotation id 12345 is not an annotation of image {image['id']}; "
        "leave 'id' out for new ones"
    }
    assert (
        client.put(url, json={"version": 2, "annotations": [{**sent[0], "source": "magic"}]}).status_code
        == 422
    )

    r = client.get(f"/api/projects/{pid}/images/999/annotations")
    assert (r.status_code, r.json()) == (
        404, {"detail": f"project {pid} has no image with id 999; GET /api/projects/{pid}/images lists them"},
    )  # fmt: skip
    assert (
        client.put(
            f"/api/projects/{pid}/images/999/annotations", json={"version": 0, "annotations": []}
        ).status_code
        == 404
    )


def test_concurrent_saves_of_one_version_give_one_200_and_one_409(client: httpx.Client) -> None:
    pid = make_project(client)
    [image] = upload(client, pid, ("a.png", image_bytes(64, 64, 0))).json()["images"]
    url = f"/api/projects/{pid}/images/{image['id']}/annotations"
    for version in range(6):
        barrier = threading.Barrier(2)
        statuses: list[int] = []

        def save(
            seed: int,
            version: int = version,
            barrier: threading.Barrier = barrier,
            statuses: list[int] = statuses,
        ) -> None:
            mask = np.random.default_rng(seed).random((64, 64)) < 0.5
            body = {"version": version, "annotations": [annotation(mask)] * 20}
            barrier.wait()
            statuses.append(client.put(url, json=body).status_code)

        threads = [threading.Thread(target=save, args=(seed,)) for seed in (1, 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(statuses) == [200, 409]
        assert client.get(url).json()["version"] == version + 1


def test_token_is_required_when_configured(start_server: Callable[..., httpx.Client]) -> None:
    client = start_server(None, token="s3cret")
    r = client.get("/api/projects")
    assert r.status_code == 401
    assert r.json() == {
        "detail": "this server needs its token: send 'Authorization: Bearer <CLICKSAM_TOKEN>'"
    }
    assert r.headers["www-authenticate"] == "Bearer"
    assert client.get("/api/projects", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/api/projects", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/healthz").status_code == 200  # only the projects are guarded


def test_no_token_beyond_loopback_refuses_unless_no_auth(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from clicksam.server.projects.errors import AuthConfigError
    from clicksam.server.projects.runtime import ProjectsConfig, check_auth

    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        check_auth(ProjectsConfig(data_dir=tmp_path, host=host))
    check_auth(ProjectsConfig(data_dir=tmp_path, host="0.0.0.0", token="t"))
    for host in ("0.0.0.0", "::", "192.168.1.5", "example.org"):
        with pytest.raises(AuthConfigError, match=f"refusing to listen on {host} with the projects open"):
            check_auth(ProjectsConfig(data_dir=tmp_path, host=host))
    with caplog.at_level("WARNING"):
        check_auth(ProjectsConfig(data_dir=tmp_path, host="0.0.0.0", no_auth=True))
    assert "--no-auth: anyone who can reach 0.0.0.0" in caplog.text


def test_hostile_values_are_422_not_500(client: httpx.Client) -> None:
    """Values a database would choke on (NUL, ids beyond 32 bits, NaN) are refused before it sees them."""
    r = client.post("/api/projects", json={"name": "a\x00b", "categories": []})
    assert (r.status_code, r.json()) == (
        422, {"detail": "the project name 'a\\x00b' has control characters; use printable ones"},
    )  # fmt: skip
    assert client.get(f"/api/projects/{2**63}").status_code == 422
    assert client.get("/api/projects/0").status_code == 422
    pid = make_project(client)
    assert client.get(f"/api/projects/{pid}/images", params={"offset": 2**40}).status_code == 422
    [image] = upload(client, pid, ("a\x00b.png", image_bytes(8, 8, 0))).json()["images"]
    assert image["file_name"] == "a%00b.png"  # httpx escapes it; the server drops control characters too
    url = f"/api/projects/{pid}/images/{image['id']}/annotations"
    mask = np.ones((8, 8), bool)
    nan = '{"version": 0, "annotations": [{"category": "cat", "segmentation": %s, "score": NaN}]}'
    r = client.put(url, content=nan % json.dumps(rle(mask)), headers={"content-type": "application/json"})
    assert r.status_code == 422
    big = {"category": "cat", "segmentation": {"size": [8, 8], "counts": [2**70, 5]}}
    r = client.put(url, json={"version": 0, "annotations": [big]})
    assert (r.status_code, r.json()["detail"]) == (
        422, 'annotation 0: the RLE counts have a run longer than the image: '
        'send {"size": [height, width], "counts": "<COCO compressed RLE>"}',
    )  # fmt: skip
    assert client.put(url, json={"version": 2**40, "annotations": []}).status_code == 422
    assert client.get(url).json()["version"] == 0


def test_several_files_may_together_pass_the_single_upload_limit(
    start_server: Callable[..., httpx.Client], database: str | None
) -> None:
    """The body of an images request may hold REQUEST_FILES uploads; the byte limit applies per file."""
    client = start_server(database, max_upload_bytes=70_000)  # one request to /api/embeddings: <= 135,536
    pid = make_project(client)
    fits = [image_bytes(140, 140, seed, fmt="BMP") for seed in range(3)]  # 58,854 bytes each
    over = image_bytes(160, 160, 9, fmt="BMP")  # 76,854 bytes
    r = upload(client, pid, *[(f"{i}.bmp", f) for i, f in enumerate(fits)], ("over.bmp", over))
    assert r.status_code == 201, r.text
    assert [im["file_name"] for im in r.json()["images"]] == ["0.bmp", "1.bmp", "2.bmp"]
    assert r.json()["errors"] == [
        {
            "file_name": "over.bmp",
            "status_code": 413,
            "detail": "upload too large: the limit is 70,000 bytes; send a smaller or more compressed image",
        }
    ]
    # the request as a whole is still bounded
    r = upload(client, pid, *[(f"{i}.bmp", fits[0]) for i in range(25)])
    assert r.status_code == 413
    assert r.json() == {
        "detail": "upload too large: one request may carry 1,400,000 bytes; "
        "send the images in several requests"
    }
    # and /api/embeddings keeps its own limit
    r = client.post("/api/embeddings", files={"image": ("a.bmp", fits[0] * 3, "image/bmp")})
    assert r.status_code == 413


def test_serve_refuses_an_open_non_loopback_address(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = Path(sys.executable).with_name("clicksam")
    args = [str(script), "serve", "--host", "0.0.0.0", "--model", "vit_test", "--cache-dir", str(tmp_path)]
    env = {k: v for k, v in os.environ.items() if k != "CLICKSAM_TOKEN"}
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 with the projects open to anyone: set CLICKSAM_TOKEN" in done.stderr
    assert "Traceback" not in done.stderr
