"""Exports read by the libraries people use (pycocotools for COCO), the YOLO-seg layout, import round trip."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from PIL import Image
from projects_helpers import annotation, image_bytes, ring_mask

from clicksam.server.projects.masks import counts_to_mask

pycocotools_mask = pytest.importorskip("pycocotools.mask")
from pycocotools.coco import COCO  # noqa: E402  (after the importorskip)

H, W = 120, 160


def shapes() -> list[np.ndarray]:
    """Non-trivial masks: a ring (a hole), a square with two holes and an island in one, two parts."""
    ring = ring_mask(H, W, 60, 50, 40, 15)
    holes = np.zeros((H, W), bool)
    holes[10:110, 100:155] = True
    holes[20:50, 110:140] = False
    holes[60:100, 115:145] = False
    holes[75:85, 125:135] = True
    parts = np.zeros((H, W), bool)
    parts[2:8, 2:30] = True
    parts[112:118, 5:60] = True
    return [ring, holes, parts]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.fixture
def project(client: httpx.Client) -> dict[str, Any]:
    """A project with two annotated images and one without annotations."""
    pid = client.post("/api/projects", json={"name": "exp", "categories": ["ring", "blob"]}).json()["id"]
    files = [("image", (f"img{i}.png", image_bytes(H, W, i), "image/png")) for i in range(3)]
    images = client.post(f"/api/projects/{pid}/images", files=files).json()["images"]
    saved: dict[int, list[np.ndarray]] = {}
    masks = shapes()
    for image, chosen in ((images[0], masks), (images[1], masks[1:])):
        anns = [
            annotation(m, "ring" if k == 0 and len(chosen) == 3 else "blob", score=0.5)
            for k, m in enumerate(chosen)
        ]
        r = client.put(
            f"/api/projects/{pid}/images/{image['id']}/annotations", json={"version": 0, "annotations": anns}
        )
        assert r.status_code == 200
        saved[image["id"]] = chosen
    return {"pid": pid, "images": images, "saved": saved}


def load_coco(doc: dict[str, Any], tmp_path: Any) -> COCO:
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(doc))
    return COCO(str(path))


def test_coco_rle_export_equals_the_saved_masks(
    client: httpx.Client, project: dict[str, Any], tmp_path: Any
) -> None:
    r = client.get(f"/api/projects/{project['pid']}/export", params={"format": "coco"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    coco = load_coco(r.json(), tmp_path)
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["ring", "blob"]
    assert sorted(coco.getImgIds()) == sorted(im["id"] for im in project["images"])
    for image_id, masks in project["saved"].items():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        assert len(anns) == len(masks)
        for ann, mask in zip(anns, masks, strict=True):
            assert iou(coco.annToMask(ann).astype(bool), mask) == 1.0
            rle = coco.annToRLE(ann)
            assert ann["area"] == int(pycocotools_mask.area(rle))
            assert ann["bbox"] == pycocotools_mask.toBbox(rle).tolist()


def test_coco_polygon_export_keeps_holes(
    client: httpx.Client, project: dict[str, Any], tmp_path: Any
) -> None:
    r = client.get(f"/api/projects/{project['pid']}/export", params={"format": "coco-polygons"})
    coco = load_coco(r.json(), tmp_path)
    for image_id, masks in project["saved"].items():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        for ann, mask in zip(anns, masks, strict=True):
            assert isinstance(ann["segmentation"], list)
            got = coco.annToMask(ann).astype(bool)
            assert iou(got, mask) >= 0.98, iou(got, mask)
            assert not got[60, 50] and not got[35, 125]  # the holes stay empty
            assert got[80, 130] == mask[80, 130]  # and the island in a hole is there


def test_yolo_export_follows_the_ultralytics_layout(client: httpx.Client, project: dict[str, Any]) -> None:
    from skimage.draw import polygon

    r = client.get(f"/api/projects/{project['pid']}/export", params={"format": "yolo"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(r.content))
    data = yaml.safe_load(archive.read("data.yaml"))
    assert data == {
        "path": ".",
        "train": "images/train",
        "val": "images/train",
        "names": {0: "ring", 1: "blob"},
    }
    names = set(archive.namelist())
    for image in project["images"]:
        stem = f"{image['id']:06d}"
        assert f"images/train/{stem}.png" in names
        assert archive.read(f"images/train/{stem}.png") == image_bytes(H, W, project["images"].index(image))
        lines = archive.read(f"labels/train/{stem}.txt").decode().splitlines()
        masks = project["saved"].get(image["id"], [])
        assert len(lines) == len(masks)
        for line, mask in zip(lines, masks, strict=True):
            cls, *coords = line.split()
            assert int(cls) in (0, 1) and len(coords) % 2 == 0 and len(coords) >= 6
            xy = np.array([float(c) for c in coords]).reshape(-1, 2)
            assert (xy >= 0).all() and (xy <= 1).all()
            # one parity-filled polygon per object (as Ultralytics' merged segments), back in pixels
            rr, cc = polygon(xy[:, 1] * H - 0.5, xy[:, 0] * W - 0.5, shape=(H, W))
            drawn = np.zeros((H, W), bool)
            drawn[rr, cc] = ~drawn[rr, cc]
            assert iou(drawn, mask) >= 0.97


def test_png_masks_export(client: httpx.Client, project: dict[str, Any]) -> None:
    r = client.get(f"/api/projects/{project['pid']}/export", params={"format": "masks"})
    archive = zipfile.ZipFile(io.BytesIO(r.content))
    index = json.loads(archive.read("annotations.json"))["annotations"]
    assert len(index) == sum(len(m) for m in project["saved"].values())
    by_image: dict[int, list[np.ndarray]] = {}
    for entry in index:
        png = np.asarray(Image.open(io.BytesIO(archive.read(entry["mask"]))))
        assert set(np.unique(png)) <= {0, 255}
        by_image.setdefault(entry["image_id"], []).append(png == 255)
    for image_id, masks in project["saved"].items():
        assert all(np.array_equal(a, b) for a, b in zip(by_image[image_id], masks, strict=True))
    assert client.get(f"/api/projects/{project['pid']}/export", params={"format": "voc"}).status_code == 422
    assert client.get("/api/projects/999/export").status_code == 404


@pytest.mark.parametrize("fmt", ["coco", "coco-polygons"])
def test_import_of_our_own_export_round_trips(
    client: httpx.Client, project: dict[str, Any], fmt: str
) -> None:
    exported = client.get(f"/api/projects/{project['pid']}/export", params={"format": fmt}).json()
    pid = client.post("/api/projects", json={"name": "copy", "categories": ["blob"]}).json()["id"]
    files = [("image", (f"img{i}.png", image_bytes(H, W, i), "image/png")) for i in range(3)]
    images = client.post(f"/api/projects/{pid}/images", files=files).json()["images"]
    r = client.post(f"/api/projects/{pid}/import", json=exported)
    assert r.status_code == 200, r.text
    assert r.json() == {"images": 3, "annotations": 5, "categories_added": ["ring"], "unmatched": []}
    assert client.get(f"/api/projects/{pid}").json()["categories"] == ["blob", "ring"]
    again = client.get(f"/api/projects/{pid}/export", params={"format": fmt}).json()
    for field in ("images", "annotations"):
        for a, b in zip(exported[field], again[field], strict=True):
            a = {k: v for k, v in a.items() if k not in ("id", "image_id", "category_id")}
            b = {k: v for k, v in b.items() if k not in ("id", "image_id", "category_id")}
            assert a == b
    original = client.get(
        f"/api/projects/{project['pid']}/images/{project['images'][0]['id']}/annotations"
    ).json()
    copied = client.get(f"/api/projects/{pid}/images/{images[0]['id']}/annotations").json()
    assert copied["version"] == 1
    if fmt == "coco":  # exact: the same RLE, bbox, area, source, score and prompts
        strip = ("id", "created_at", "updated_at")
        assert [{k: v for k, v in a.items() if k not in strip} for a in copied["annotations"]] == [
            {k: v for k, v in a.items() if k not in strip} for a in original["annotations"]
        ]
    else:  # polygons: the same shapes, holes included
        for a, b in zip(copied["annotations"], original["annotations"], strict=True):
            got = counts_to_mask(a["segmentation"]["counts"], H, W)
            assert iou(got, counts_to_mask(b["segmentation"]["counts"], H, W)) >= 0.98
            assert (a["category"], a["source"], a["score"]) == (b["category"], b["source"], b["score"])


def test_import_rules(client: httpx.Client, project: dict[str, Any]) -> None:
    pid = project["pid"]
    image = project["images"][2]
    url = f"/api/projects/{pid}/import"

    def doc(**changes: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "images": [{"id": 7, "file_name": image["file_name"], "width": W, "height": H}],
            "categories": [{"id": 3, "name": "blob"}],
            "annotations": [
                {"id": 1, "image_id": 7, "category_id": 3, "segmentation": [[10, 10, 50, 10, 50, 40]]}
            ],
        }
        base.update(changes)
        return base

    r = client.post(url, json={"images": []})
    assert r.status_code == 422
    assert r.json() == {
        "detail": "not a usable COCO instances file: it needs 'images' and 'annotations' lists "
        "(and 'categories')"
    }
    r = client.post(
        url, json=doc(annotations=[{"id": 1, "image_id": 8, "category_id": 3, "segmentation": []}])
    )
    assert r.json() == {
        "detail": "not a usable COCO instances file: annotation 1 refers to image_id 8, "
        "which is not in 'images'"
    }
    bad_rle = {"id": 1, "image_id": 7, "category_id": 3}
    bad_rle["segmentation"] = {"size": [H, W + 1], "counts": "0"}
    r = client.post(url, json=doc(annotations=[bad_rle]))
    assert r.status_code == 422
    assert r.json()["detail"].startswith(
        f"image '{image['file_name']}': annotation 0: the RLE size [120, 161]"
    )
    version = client.get(f"/api/projects/{pid}/images/{image['id']}/annotations").json()["version"]
    assert version == 0  # nothing changed
    unknown = doc(images=[{"id": 7, "file_name": "nope.png", "width": W, "height": H}])
    assert client.post(url, json=unknown).json() == {
        "images": 0, "annotations": 0, "categories_added": [], "unmatched": ["nope.png"],
    }  # fmt: skip
    r = client.post(url, json=doc())
    assert r.json() == {"images": 1, "annotations": 1, "categories_added": [], "unmatched": []}
    [ann] = client.get(f"/api/projects/{pid}/images/{image['id']}/annotations").json()["annotations"]
    # drawn as pycocotools draws polygons
    reference = pycocotools_mask.merge(pycocotools_mask.frPyObjects([[10, 10, 50, 10, 50, 40]], H, W))
    assert ann["segmentation"]["counts"] == reference["counts"].decode()
    assert ann["bbox"] == pycocotools_mask.toBbox(reference).tolist() and ann["source"] == "manual"
    assert client.post("/api/projects/999/import", json=doc()).status_code == 404


def test_exports_with_start_server(start_server: Callable[..., httpx.Client]) -> None:
    """An empty project exports valid, empty files."""
    client = start_server(None)
    pid = client.post("/api/projects", json={"name": "empty", "categories": ["a"]}).json()["id"]
    assert client.get(f"/api/projects/{pid}/export").json()["annotations"] == []
    archive = zipfile.ZipFile(
        io.BytesIO(client.get(f"/api/projects/{pid}/export", params={"format": "yolo"}).content)
    )
    assert archive.namelist() == ["data.yaml"]
