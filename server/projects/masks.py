"""Annotation masks: COCO compressed RLE checked against the image, measured, drawn as polygons.

The RLE codec is ``clicksam.model.amg``'s (column-major runs starting with background, COCO's 6-bit
string form). Here: validation with messages that say what to send, bbox and area computed from the runs
without decoding the mask, and polygons for exports.

Polygons and holes: pycocotools unites the polygons of one annotation (``frPyObjects`` + ``merge``), so a
hole cannot be a polygon of its own. Within one polygon, though, its rasteriser fills by parity (a pixel
column toggles at every boundary crossing). So each outer ring carries its holes: the ring is walked, then a
straight "bridge" goes to a hole, the hole is walked, and the bridge is walked back. The bridge's two
traversals cancel under parity, so the hole stays empty. Ultralytics joins the parts of a YOLO-seg object
the same way (its ``merge_multi_segment``), and OpenCV's ``fillPoly`` fills the same pixels.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt
import torch

from clicksam.model.amg import mask_to_rle, rle_counts_from_string, rle_counts_to_string, rle_to_mask

BoolArray = npt.NDArray[np.bool_]

RLE_HELP: Final[str] = 'send {"size": [height, width], "counts": "<COCO compressed RLE>"}'


class MaskError(ValueError):
    """A segmentation that is not a valid RLE of the image's size; the message says what to send."""


def parse_rle(segmentation: Any, height: int, width: int) -> npt.NDArray[np.int64]:
    """Counts of a COCO RLE ``{"size": [h, w], "counts": str | list[int]}`` of a ``height`` x ``width`` image.

    Raises:
        MaskError: not an RLE, a malformed counts string, negative counts, counts that do not cover
            the size, or a size that is not the image's.
    """
    if not isinstance(segmentation, dict) or set(segmentation) != {"size", "counts"}:
        raise MaskError(f"the segmentation is not a COCO RLE: {RLE_HELP}")
    size = segmentation["size"]
    if (
        not isinstance(size, list)
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in size)
    ):
        raise MaskError(f"the RLE size must be [height, width] in pixels: {RLE_HELP}")
    if size != [height, width]:
        raise MaskError(
            f"the RLE size {size} is not the image's size [{height}, {width}]; "
            "send the mask at the image's resolution"
        )
    raw = segmentation["counts"]
    if isinstance(raw, str):
        try:
            counts = rle_counts_from_string(raw)
        except (ValueError, UnicodeEncodeError) as exc:
            raise MaskError(f"the RLE counts are not a valid COCO compressed RLE string: {RLE_HELP}") from exc
    elif isinstance(raw, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
        if any(abs(v) > height * width for v in raw):
            raise MaskError(f"the RLE counts have a run longer than the image: {RLE_HELP}")
        counts = np.asarray(raw, dtype=np.int64)
    else:
        raise MaskError(f"the RLE counts must be a string (or a list of integers): {RLE_HELP}")
    if counts.size and counts.min() < 0:
        raise MaskError(f"the RLE counts decode to a negative run length: {RLE_HELP}")
    if int(counts.sum()) != height * width:
        raise MaskError(
            f"the RLE counts cover {int(counts.sum())} pixels but the size [{height}, {width}] has "
            f"{height * width}: {RLE_HELP}"
        )
    return counts


def counts_to_string(counts: npt.NDArray[np.int64]) -> str:
    return rle_counts_to_string(counts)


def bbox_and_area(counts: npt.NDArray[np.int64], height: int) -> tuple[list[float], int]:
    """COCO bbox ``[x, y, w, h]`` (pixels, inclusive extents) and the pixel count, from the runs.

    Args:
        counts: RLE counts (column-major, background first) of a mask ``height`` pixels tall.
    """
    ends = np.cumsum(counts)
    lengths = counts[1::2]
    if lengths.size == 0 or int(lengths.sum()) == 0:
        return [0.0, 0.0, 0.0, 0.0], 0
    starts = ends[0::2][: lengths.size]  # a foreground run starts where the background run before it ends
    keep = lengths > 0
    first = starts[keep]
    last = first + lengths[keep] - 1
    col0, col1 = first // height, last // height
    one_column = col0 == col1
    # a run over two or more columns passes the bottom of its first and the top of its next column
    row0 = np.where(one_column, first % height, 0)
    row1 = np.where(one_column, last % height, height - 1)
    x0, x1 = int(col0.min()), int(col1.max())
    y0, y1 = int(row0.min()), int(row1.max())
    return [float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1)], int(lengths.sum())


def counts_to_mask(counts_string: str, height: int, width: int) -> BoolArray:
    """(H, W) bool mask of a stored RLE."""
    return rle_to_mask({"size": [height, width], "counts": counts_string})


def mask_to_counts(mask: BoolArray) -> str:
    """COCO compressed RLE string of an (H, W) bool mask."""
    rle = mask_to_rle(torch.from_numpy(np.ascontiguousarray(mask, dtype=bool))[None])[0]
    return rle_counts_to_string(rle["counts"])


# ------------------------------------------------------------------------------------------- polygons


def _drop_collinear(ring: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """A closed ring (first point not repeated) without the vertices that lie on a straight run."""
    prev = np.roll(ring, 1, axis=0)
    nxt = np.roll(ring, -1, axis=0)
    cross = (ring[:, 0] - prev[:, 0]) * (nxt[:, 1] - ring[:, 1]) - (ring[:, 1] - prev[:, 1]) * (
        nxt[:, 0] - ring[:, 0]
    )
    return ring[np.abs(cross) > 1e-9]


def _signed_area(ring: npt.NDArray[np.float64]) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def mask_rings(mask: BoolArray) -> list[tuple[npt.NDArray[np.float64], list[npt.NDArray[np.float64]]]]:
    """Outer rings of the mask's parts, each with the rings of its holes; (N, 2) xy, COCO pixel frame.

    Rings follow the pixel edges (a pixel (x, y) covers [x, x+1) x [y, y+1)), with the corners cut by
    half a pixel (marching squares at level 0.5); parts touching only at a corner count as one.
    """
    from skimage.measure import find_contours, points_in_poly

    padded = np.pad(np.asarray(mask, dtype=np.uint8), 1)
    outers: list[npt.NDArray[np.float64]] = []
    holes: list[npt.NDArray[np.float64]] = []
    for contour in find_contours(padded, 0.5, fully_connected="high"):
        ring = contour[:-1, ::-1] - 0.5  # (row, col) of the padded mask -> xy of pixel edges
        ring = _drop_collinear(ring)
        if len(ring) < 3:
            continue
        (outers if _signed_area(ring) > 0 else holes).append(ring)
    parts: list[tuple[npt.NDArray[np.float64], list[npt.NDArray[np.float64]]]] = [(o, []) for o in outers]
    areas = [abs(_signed_area(o)) for o in outers]
    for hole in holes:
        # the hole belongs to the smallest outer ring around it
        inside = [i for i, o in enumerate(outers) if points_in_poly(hole[:1], o)[0]]
        if inside:
            parts[min(inside, key=lambda i: areas[i])][1].append(hole)
    return parts


def _bridged(outer: npt.NDArray[np.float64], holes: list[npt.NDArray[np.float64]]) -> npt.NDArray[np.float64]:
    """One closed path: ``outer``, then for each hole a bridge from outer's first point, the hole, back."""
    pieces = [outer, outer[:1]]
    for hole in holes:
        pieces += [hole, hole[:1], outer[:1]]
    return np.concatenate(pieces)


def mask_to_polygons(mask: BoolArray) -> list[list[float]]:
    """COCO polygons ``[[x1, y1, x2, y2, ...], ...]`` of a mask: one per part, its holes bridged in."""
    return [[round(float(v), 2) for v in _bridged(outer, holes).ravel()] for outer, holes in mask_rings(mask)]


def mask_to_single_polygon(mask: BoolArray) -> npt.NDArray[np.float64]:
    """All parts and holes of a mask as one parity-filled path (YOLO-seg has one polygon per object)."""
    parts = mask_rings(mask)
    if not parts:
        return np.zeros((0, 2))
    paths = [_bridged(outer, holes) for outer, holes in parts]
    start = paths[0][:1]
    pieces = [paths[0]]
    for path in paths[1:]:
        pieces += [start, path, path[:1], start]
    return np.concatenate(pieces)
