"""COCO-format instance masks: RLE (compressed string and uncompressed counts) and polygons.

This is what lets people fine-tune on their own data: any COCO ``instances`` JSON (and the JSON the
page exports, which stores each mask as ``{"size": [H, W], "counts": "<compressed RLE>"}``) loads into
``CocoInstances``, whose items are ``(image, masks)`` in the original image frame, the same shape of
sample as ``clicksam.train.scenes``.

COCO RLE, as defined by the COCO API: the mask is flattened in column-major (Fortran) order, counts
alternate runs of 0s and 1s starting with 0s (so a mask that starts with a 1 has a leading 0 count).
The compressed string stores each count (from the third on, as the difference to the count two
before) in 5-bit groups, least significant first, each group + 48 as one ASCII character, with bit
0x20 meaning "more groups follow" and bit 0x10 of the last group the sign.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from clicksam.errors import UsageError

__all__ = [
    "CocoFormatError",
    "CocoInstances",
    "CocoSample",
    "decode_rle",
    "decode_segmentation",
    "encode_rle",
    "masks_to_coco",
    "polygons_to_mask",
    "rle_counts_from_string",
    "rle_counts_to_string",
]

logger = logging.getLogger(__name__)


class CocoFormatError(UsageError, ValueError):
    """A COCO file or segmentation that does not follow the format; the message says what is wrong."""


# ---------------------------------------------------------------------------------------------------
# RLE


def rle_counts_to_string(counts: Sequence[int]) -> str:
    """Compress RLE counts into COCO's ASCII string."""
    out: list[str] = []
    for i, count in enumerate(counts):
        x = int(count)
        if i > 2:
            x -= int(counts[i - 2])
        more = True
        while more:
            c = x & 0x1F
            x >>= 5  # arithmetic shift: negative numbers end at -1
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def rle_counts_from_string(s: str) -> list[int]:
    """Decompress COCO's ASCII RLE string into counts."""
    counts: list[int] = []
    p = 0
    n = len(s)
    while p < n:
        x = 0
        k = 0
        more = True
        while more:
            if p >= n:
                raise CocoFormatError("compressed RLE string ends in the middle of a count")
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                raise CocoFormatError(f"compressed RLE string has an invalid character {s[p]!r} at {p}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def encode_rle(mask: np.ndarray, compress: bool = True) -> dict[str, Any]:
    """Encode a binary mask as COCO RLE.

    Args:
        mask: (H, W) bool or {0, 1} array in the image frame.
        compress: True for the compressed ASCII string, False for the list of counts.

    Returns:
        ``{"size": [H, W], "counts": str | list[int]}``.
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    h, w = mask.shape
    flat = np.asarray(mask, dtype=bool).flatten(order="F")
    # run boundaries: positions where the value changes, plus both ends
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(edges).tolist()
    if flat.size and flat[0]:
        runs = [0, *runs]
    if flat.size == 0:
        runs = [0]
    counts: str | list[int] = rle_counts_to_string(runs) if compress else [int(r) for r in runs]
    return {"size": [int(h), int(w)], "counts": counts}


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """Decode COCO RLE (compressed string or list of counts) to an (H, W) bool mask."""
    try:
        h, w = (int(v) for v in rle["size"])
        counts_field = rle["counts"]
    except (KeyError, TypeError, ValueError) as exc:
        raise CocoFormatError(f'RLE must be {{"size": [H, W], "counts": ...}}, got {rle!r:.200}') from exc
    if isinstance(counts_field, bytes):
        counts_field = counts_field.decode("ascii")
    if isinstance(counts_field, str):
        counts = rle_counts_from_string(counts_field)
    elif isinstance(counts_field, list):
        counts = [int(c) for c in counts_field]
    else:
        raise CocoFormatError(
            f"RLE counts must be a string or a list of ints, got {type(counts_field).__name__}"
        )
    if any(c < 0 for c in counts):
        raise CocoFormatError("RLE counts must be non-negative")
    if sum(counts) != h * w:
        raise CocoFormatError(f"RLE counts sum to {sum(counts)} but size {h}x{w} needs {h * w}")
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape((w, h)).T.copy()


def polygons_to_mask(polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """Rasterise COCO polygons ``[[x1, y1, x2, y2, ...], ...]`` (pixel coordinates) to (H, W) bool.

    Several polygons are united, as in COCO (an object split by an occluder).
    """
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in polygons:
        if len(poly) < 6 or len(poly) % 2:
            raise CocoFormatError(f"a polygon needs an even number (>= 6) of coordinates, got {len(poly)}")
        draw.polygon(
            [(float(poly[i]), float(poly[i + 1])) for i in range(0, len(poly), 2)], fill=1, outline=1
        )
    return np.asarray(canvas, dtype=bool)


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Any COCO ``segmentation`` field (polygons, RLE, compressed RLE) to an (H, W) bool mask.

    Args:
        segmentation: the annotation's ``segmentation`` value.
        height, width: the image size from ``images[]``; an RLE must match it.
    """
    if isinstance(segmentation, list):
        return polygons_to_mask(segmentation, height, width)
    if isinstance(segmentation, dict):
        mask = decode_rle(segmentation)
        if mask.shape != (height, width):
            raise CocoFormatError(
                f"RLE size {list(mask.shape)} does not match the image size {[height, width]}"
            )
        return mask
    raise CocoFormatError(f"segmentation must be polygons or RLE, got {type(segmentation).__name__}")


def masks_to_coco(
    masks: Sequence[np.ndarray],
    file_name: str,
    image_id: int = 1,
    category_name: str = "object",
) -> dict[str, Any]:
    """A COCO ``instances`` document for one image, with compressed-RLE masks (the page's export format).

    Args:
        masks: (H, W) bool masks in the image frame.
        file_name: the image's file name, relative to the image folder.
    """
    if not masks:
        raise ValueError("masks_to_coco needs at least one mask (the image size comes from the masks)")
    h, w = masks[0].shape
    annotations = []
    for k, mask in enumerate(masks):
        ys, xs = np.nonzero(mask)
        bbox = (
            [0.0, 0.0, 0.0, 0.0]
            if len(xs) == 0
            else [
                float(xs.min()),
                float(ys.min()),
                float(xs.max() - xs.min() + 1),
                float(ys.max() - ys.min() + 1),
            ]
        )
        annotations.append(
            {
                "id": k + 1,
                "image_id": image_id,
                "category_id": 1,
                "segmentation": encode_rle(mask),
                "area": int(mask.sum()),
                "bbox": bbox,
                "iscrowd": 0,
            }
        )
    return {
        "images": [{"id": image_id, "file_name": file_name, "height": int(h), "width": int(w)}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": category_name}],
    }


# ---------------------------------------------------------------------------------------------------
# dataset


@dataclass
class CocoSample:
    """One image and its instance masks, in the original image frame.

    Attributes:
        image: (H, W, 3) uint8 RGB, EXIF orientation applied.
        masks: (K, H, W) bool.
        image_id: the COCO image id.
    """

    image: np.ndarray
    masks: np.ndarray
    image_id: int


class CocoInstances:
    """Images with at least one usable instance from a COCO ``instances`` JSON.

    Args:
        annotation_file: the COCO JSON.
        image_dir: folder that ``file_name`` is relative to (default: the JSON's folder).
        min_area: instances with fewer pixels are skipped (too small to prompt reliably).
        include_crowd: whether ``iscrowd=1`` regions count as instances (COCO excludes them).
    """

    def __init__(
        self,
        annotation_file: str | Path,
        image_dir: str | Path | None = None,
        min_area: int = 16,
        include_crowd: bool = False,
    ) -> None:
        path = Path(annotation_file)
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise CocoFormatError(f"COCO annotation file {path} does not exist") from exc
        except json.JSONDecodeError as exc:
            raise CocoFormatError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict) or "images" not in doc or "annotations" not in doc:
            raise CocoFormatError(f"{path} is not a COCO instances file: it needs 'images' and 'annotations'")
        self.image_dir = Path(image_dir) if image_dir is not None else path.parent
        self.min_area = min_area
        self.images: dict[int, dict[str, Any]] = {int(im["id"]): im for im in doc["images"]}
        self.annotations: dict[int, list[dict[str, Any]]] = {}
        for ann in doc["annotations"]:
            if ann.get("iscrowd", 0) and not include_crowd:
                continue
            image_id = int(ann["image_id"])
            if image_id not in self.images:
                raise CocoFormatError(f"annotation {ann.get('id')} refers to unknown image_id {image_id}")
            self.annotations.setdefault(image_id, []).append(ann)
        self.ids = sorted(self.annotations)
        if not self.ids:
            raise CocoFormatError(f"{path} has no annotated images")

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> CocoSample:
        image_id = self.ids[index]
        info = self.images[image_id]
        file = self.image_dir / str(info["file_name"])
        try:
            with Image.open(file) as pil:
                image = np.asarray(ImageOps.exif_transpose(pil).convert("RGB"))
        except FileNotFoundError as exc:
            raise CocoFormatError(f"image {file} (image_id {image_id}) does not exist") from exc
        h, w = image.shape[:2]
        if "height" in info and "width" in info and (int(info["height"]), int(info["width"])) != (h, w):
            raise CocoFormatError(
                f"image {file} is {h}x{w} but the COCO file says {info['height']}x{info['width']}"
            )
        masks = [decode_segmentation(a["segmentation"], h, w) for a in self.annotations[image_id]]
        kept = [m for m in masks if m.sum() >= self.min_area]
        stacked = np.stack(kept) if kept else np.zeros((0, h, w), dtype=bool)
        return CocoSample(image=image, masks=stacked, image_id=image_id)
