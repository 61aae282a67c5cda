"""A project out as COCO (RLE or polygons), YOLO-seg or PNG masks, and COCO JSON back in.

Every export covers all of the project's images. Zip members are named by image id (``000042.jpg``),
never by an uploaded file name; the file names appear only as data (COCO ``file_name``).

* ``coco``: COCO instances JSON, masks as compressed RLE (exact), plus our ``source``, ``score`` and
  ``prompts`` keys, which COCO readers ignore and our import keeps.
* ``coco-polygons``: the same with polygons; holes are bridged into their outer ring (see ``masks``).
* ``yolo``: Ultralytics' YOLO-seg layout: ``images/train/<stem>.<ext>``, ``labels/train/<stem>.txt``
  with one ``<class> x1 y1 x2 y2 ...`` line per object (coordinates normalised to 0..1 by the image's
  width and height), and ``data.yaml`` (``path``, ``train``, ``val``, ``names``).
* ``masks``: ``masks/<image id>/<annotation id>.png`` (8-bit, 255 inside) and ``annotations.json``.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
from PIL import Image

from clicksam.server.projects import masks
from clicksam.server.projects.errors import InvalidInputError
from clicksam.server.projects.repository import ImportedImage, Snapshot, SnapshotImage
from clicksam.server.projects.schemas import AnnotationIn, Prompts, Rle
from clicksam.server.projects.storage import BlobStore

EXTENSIONS: Final[dict[str, str]] = {
    "JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "BMP": "bmp", "TIFF": "tif",
    "HEIF": "heic", "AVIF": "avif",
}  # fmt: skip


def _stem(image: SnapshotImage) -> str:
    return f"{image.id:06d}"


def _coco(snapshot: Snapshot, segmentation: Callable[[SnapshotImage, str], Any]) -> dict[str, Any]:
    category_ids = {name: i + 1 for i, name in enumerate(snapshot.categories)}
    annotations: list[dict[str, Any]] = []
    for image in snapshot.images:
        for ann in image.annotations:
            seg = segmentation(image, ann.counts)
            if seg is None:
                continue
            annotations.append(
                {
                    "id": ann.id,
                    "image_id": image.id,
                    "category_id": category_ids[ann.category],
                    "segmentation": seg,
                    "area": ann.area,
                    "bbox": ann.bbox,
                    "iscrowd": 0,
                    "source": ann.source,
                    "score": ann.score,
                    "prompts": ann.prompts,
                }
            )
    return {
        "info": {
            "description": f"clicksam project {snapshot.name}",
            "date_created": datetime.now(UTC).isoformat(timespec="seconds"),
        },
        "images": [
            {"id": im.id, "file_name": im.file_name, "width": im.width, "height": im.height}
            for im in snapshot.images
        ],
        "categories": [{"id": i, "name": name, "supercategory": ""} for name, i in category_ids.items()],
        "annotations": annotations,
    }


def coco_rle(snapshot: Snapshot) -> dict[str, Any]:
    return _coco(snapshot, lambda im, counts: {"size": [im.height, im.width], "counts": counts})


def coco_polygons(snapshot: Snapshot) -> dict[str, Any]:
    """COCO with polygons; an empty mask has no polygon and is left out."""

    def polygons(im: SnapshotImage, counts: str) -> list[list[float]] | None:
        return masks.mask_to_polygons(masks.counts_to_mask(counts, im.height, im.width)) or None

    return _coco(snapshot, polygons)


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            # image bytes are already compressed: store them
            compress = zipfile.ZIP_STORED if name.startswith("images/") else zipfile.ZIP_DEFLATED
            archive.writestr(name, data, compress_type=compress)
    return buf.getvalue()


def yolo(snapshot: Snapshot, store: BlobStore) -> bytes:
    """A zip in Ultralytics' YOLO-seg dataset layout (every image in ``train``, also named as ``val``)."""
    class_of = {name: i for i, name in enumerate(snapshot.categories)}
    names = "\n".join(f"  {i}: {json.dumps(name)}" for name, i in class_of.items())
    members = [("data.yaml", f"path: .\ntrain: images/train\nval: images/train\nnames:\n{names}\n".encode())]
    for image in snapshot.images:
        lines = []
        for ann in image.annotations:
            path = masks.mask_to_single_polygon(masks.counts_to_mask(ann.counts, image.height, image.width))
            if len(path) < 3:
                continue
            xy = np.clip(path / np.array([image.width, image.height]), 0.0, 1.0)
            lines.append(" ".join([str(class_of[ann.category]), *(f"{v:.6f}" for v in xy.ravel())]))
        stem = _stem(image)
        members.append((f"images/train/{stem}.{EXTENSIONS[image.format]}", store.read(image.sha256)))
        members.append((f"labels/train/{stem}.txt", "".join(line + "\n" for line in lines).encode()))
    return _zip(members)


def png_masks(snapshot: Snapshot) -> bytes:
    """A zip of one 8-bit PNG per annotation and an ``annotations.json`` that says what each one is."""
    index: list[dict[str, Any]] = []
    members: list[tuple[str, bytes]] = []
    for image in snapshot.images:
        for ann in image.annotations:
            mask = masks.counts_to_mask(ann.counts, image.height, image.width)
            buf = io.BytesIO()
            Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(buf, "PNG", optimize=True)
            name = f"masks/{_stem(image)}/{ann.id:06d}.png"
            members.append((name, buf.getvalue()))
            index.append(
                {
                    "mask": name,
                    "image_id": image.id,
                    "file_name": image.file_name,
                    "category": ann.category,
                    "bbox": ann.bbox,
                    "area": ann.area,
                    "source": ann.source,
                    "score": ann.score,
                }
            )
    members.append(("annotations.json", json.dumps({"annotations": index}, indent=1).encode()))
    return _zip(members)


# ---------------------------------------------------------------------------------------------- import


def _bad(message: str) -> InvalidInputError:
    return InvalidInputError(f"not a usable COCO instances file: {message}")


def _polygons_to_counts(polygons: list[Any], height: int, width: int) -> str:
    """Compressed RLE of COCO polygons as pycocotools draws them: each polygon by parity, united."""
    from skimage.draw import polygon as fill_polygon

    mask = np.zeros((height, width), dtype=bool)
    for poly in polygons:
        if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
            raise _bad("a polygon must be a list of at least 3 x, y pairs")
        xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        layer = np.zeros((height, width), dtype=bool)
        # pixel centres sit at +0.5 in COCO's frame, at integers in skimage's
        rows, cols = fill_polygon(xy[:, 1] - 0.5, xy[:, 0] - 0.5, shape=(height, width))
        layer[rows, cols] = True
        mask |= layer
    return masks.mask_to_counts(mask)


def parse_coco(doc: Any) -> tuple[list[str], list[ImportedImage]]:
    """Categories (in the file's order) and images with annotations of a COCO instances document.

    Raises:
        InvalidInputError: the document is not COCO instances, or a reference or a mask is broken.
    """
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in ("images", "annotations")):
        raise _bad("it needs 'images' and 'annotations' lists (and 'categories')")
    try:
        categories = {int(c["id"]): str(c["name"]) for c in doc.get("categories", [])}
        images = {
            int(im["id"]): ImportedImage(
                id=int(im["id"]),
                file_name=str(im["file_name"]),
                width=int(im["width"]),
                height=int(im["height"]),
                annotations=[],
            )
            for im in doc["images"]
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise _bad(
            "each category needs an 'id' and a 'name', each image an 'id', 'file_name', 'width' and 'height'"
        ) from exc
    for ann in doc["annotations"]:
        if not isinstance(ann, dict):
            raise _bad("each annotation must be an object")
        ref = f"annotation {ann.get('id')!r}"
        image = images.get(ann.get("image_id"))  # type: ignore[arg-type]
        if image is None:
            raise _bad(f"{ref} refers to image_id {ann.get('image_id')!r}, which is not in 'images'")
        category = categories.get(ann.get("category_id"))  # type: ignore[arg-type]
        if category is None:
            raise _bad(
                f"{ref} refers to category_id {ann.get('category_id')!r}, which is not in 'categories'"
            )
        seg = ann.get("segmentation")
        if isinstance(seg, list):
            seg = {
                "size": [image.height, image.width],
                "counts": _polygons_to_counts(seg, image.height, image.width),
            }
        if not isinstance(seg, dict):
            raise _bad(f"{ref} has no segmentation (polygons or RLE)")
        try:
            item = AnnotationIn(
                category=category,
                segmentation=Rle.model_validate(seg),
                source=ann.get("source", "manual"),
                score=ann.get("score"),
                prompts=Prompts.model_validate(ann["prompts"]) if ann.get("prompts") is not None else None,
            )
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise _bad(f"{ref}: {str(exc).splitlines()[0]}") from exc
        image.annotations.append(item)
    return list(categories.values()), list(images.values())


def dump_json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()
