"""Building blocks of automatic mask generation ("segment everything").

Point grids, crop boxes, stability scores, mask boxes, box NMS, COCO run-length encoding (uncompressed
and the compressed string form) and small-region clean-up. Everything is vectorised with torch / numpy and
needs neither torchvision, pycocotools nor OpenCV.

Frames: unless a docstring says otherwise, masks are (..., H, W) over the pixels of the image (or crop)
they were predicted for; boxes are XYXY in the same pixels, with the right/bottom edge being the index of
the last mask pixel (inclusive), as SAM's generator reports them.

COCO RLE: a mask is flattened in column-major (Fortran) order; ``counts`` alternates run lengths of 0s
and 1s, always starting with a (possibly empty) run of 0s. The compressed form packs the counts into an
ASCII string (6 bits a character, offset 48; from the fourth count on, each count is stored as the
difference to the count two places earlier).
"""

from __future__ import annotations

import math
from itertools import product
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import torch

__all__ = [
    "RLE",
    "area_from_rle",
    "batched_mask_to_box",
    "box_area",
    "box_xyxy_to_xywh",
    "build_all_layer_point_grids",
    "build_point_grid",
    "calculate_stability_score",
    "coco_encode_rle",
    "connected_components",
    "fill_small_regions",
    "generate_crop_boxes",
    "is_box_near_crop_edge",
    "mask_to_rle",
    "nms",
    "nms_numpy",
    "remove_small_regions",
    "rle_counts_from_string",
    "rle_counts_to_string",
    "rle_to_mask",
    "uncrop_boxes_xyxy",
    "uncrop_masks",
    "uncrop_points",
]

RLE: TypeAlias = dict[str, Any]
"""``{"size": [H, W], "counts": list[int] | str}`` (uncompressed when a list, compressed when a str)."""

BoolArray: TypeAlias = npt.NDArray[np.bool_]
IntArray: TypeAlias = npt.NDArray[np.int64]


# ---------------------------------------------------------------------------------------------- grids


def build_point_grid(n_per_side: int) -> npt.NDArray[np.float64]:
    """An ``n x n`` grid of points in the unit square, each at the centre of its cell.

    Returns:
        (n*n, 2) xy in [0, 1], row by row (x varies fastest); the first point is (1/(2n), 1/(2n)).
    """
    if n_per_side < 1:
        raise ValueError(f"points per side must be >= 1, got {n_per_side}")
    offset = 1.0 / (2 * n_per_side)
    one_side = np.linspace(offset, 1.0 - offset, n_per_side)
    xs = np.tile(one_side[None, :], (n_per_side, 1))
    ys = np.tile(one_side[:, None], (1, n_per_side))
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def build_all_layer_point_grids(
    n_per_side: int, n_layers: int, scale_per_layer: int
) -> list[npt.NDArray[np.float64]]:
    """One grid per crop layer; layer ``i`` has ``int(n_per_side / scale_per_layer**i)`` points a side."""
    return [build_point_grid(int(n_per_side / (scale_per_layer**i))) for i in range(n_layers + 1)]


def generate_crop_boxes(
    im_size: tuple[int, int], n_layers: int, overlap_ratio: float
) -> tuple[list[list[int]], list[int]]:
    """Crop boxes of every layer: layer 0 is the whole image, layer ``i`` a ``2**i x 2**i`` overlapping grid.

    Args:
        im_size: (H, W) of the image in pixels.
        n_layers: number of crop layers beyond the whole image.
        overlap_ratio: overlap of neighbouring first-layer crops as a fraction of the short side;
            layer ``i`` uses ``overlap_ratio * short_side * 2 / 2**i`` pixels.

    Returns:
        crop boxes XYXY in image pixels (right/bottom exclusive) and the layer index of each.
    """
    im_h, im_w = im_size
    short_side = min(im_h, im_w)
    boxes: list[list[int]] = [[0, 0, im_w, im_h]]
    layers = [0]
    for i_layer in range(n_layers):
        n_side = 2 ** (i_layer + 1)
        overlap = int(overlap_ratio * short_side * (2 / n_side))
        crop_w = math.ceil((overlap * (n_side - 1) + im_w) / n_side)
        crop_h = math.ceil((overlap * (n_side - 1) + im_h) / n_side)
        xs = [int((crop_w - overlap) * i) for i in range(n_side)]
        ys = [int((crop_h - overlap) * i) for i in range(n_side)]
        # x-major order, so that ties in cross-crop NMS resolve the same way as SAM's generator
        for x0, y0 in product(xs, ys):
            boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
            layers.append(i_layer + 1)
    return boxes, layers


# ------------------------------------------------------------------------------------- mask quantities


def calculate_stability_score(logits: torch.Tensor, mask_threshold: float, offset: float) -> torch.Tensor:
    """IoU of the masks binarised at ``threshold + offset`` and at ``threshold - offset``.

    The high-threshold mask lies inside the low-threshold one, so the IoU is a ratio of areas.

    Args:
        logits: (..., H, W) mask logits in any frame.

    Returns:
        (...) float32; NaN where the low-threshold mask is empty.
    """
    inter = (logits > (mask_threshold + offset)).sum(dim=(-1, -2), dtype=torch.int32)
    union = (logits > (mask_threshold - offset)).sum(dim=(-1, -2), dtype=torch.int32)
    return inter / union


def batched_mask_to_box(masks: torch.Tensor) -> torch.Tensor:
    """Tight XYXY boxes (inclusive right/bottom pixel index) around boolean masks.

    Args:
        masks: (..., H, W) bool.

    Returns:
        (..., 4) int64; [0, 0, 0, 0] for an empty mask.
    """
    h, w = masks.shape[-2:]
    lead = masks.shape[:-2]
    if masks.numel() == 0:
        return torch.zeros(*lead, 4, dtype=torch.int64, device=masks.device)
    flat = masks.reshape(-1, h, w)
    rows = flat.any(dim=-1)  # (N, H)
    cols = flat.any(dim=-2)  # (N, W)
    # argmax on a bool-as-uint8 returns the first maximum: first/last occupied row and column
    top = rows.to(torch.uint8).argmax(dim=-1)
    bottom = h - 1 - rows.flip(-1).to(torch.uint8).argmax(dim=-1)
    left = cols.to(torch.uint8).argmax(dim=-1)
    right = w - 1 - cols.flip(-1).to(torch.uint8).argmax(dim=-1)
    out = torch.stack([left, top, right, bottom], dim=-1)
    out = out * rows.any(dim=-1, keepdim=True)  # empty masks -> zeros
    return out.reshape(*lead, 4)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 4) XYXY -> (N,) ``(x1 - x0) * (y1 - y0)`` (no +1, as the NMS below measures boxes)."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_xyxy_to_xywh(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) XYXY -> (..., 4) XYWH (new tensor)."""
    out = boxes.clone()
    out[..., 2] = boxes[..., 2] - boxes[..., 0]
    out[..., 3] = boxes[..., 3] - boxes[..., 1]
    return out


def is_box_near_crop_edge(
    boxes: torch.Tensor, crop_box: list[int], orig_box: list[int], atol: float = 20.0
) -> torch.Tensor:
    """Which boxes touch an edge of their crop that is not also an edge of the image.

    Args:
        boxes: (N, 4) XYXY in the crop's pixels.
        crop_box: XYXY of the crop in image pixels.
        orig_box: XYXY of the whole image (``[0, 0, W, H]``).
        atol: distance in pixels that counts as touching.

    Returns:
        (N,) bool.
    """
    crop_t = torch.as_tensor(crop_box, dtype=torch.float32, device=boxes.device)
    orig_t = torch.as_tensor(orig_box, dtype=torch.float32, device=boxes.device)
    in_image = uncrop_boxes_xyxy(boxes, crop_box).float()
    near_crop = torch.isclose(in_image, crop_t[None, :], atol=atol, rtol=0)
    near_image = torch.isclose(in_image, orig_t[None, :], atol=atol, rtol=0)
    return (near_crop & ~near_image).any(dim=1)


def uncrop_boxes_xyxy(boxes: torch.Tensor, crop_box: list[int]) -> torch.Tensor:
    """(..., 4) XYXY in crop pixels -> image pixels."""
    x0, y0 = crop_box[0], crop_box[1]
    return boxes + torch.tensor([x0, y0, x0, y0], device=boxes.device)


def uncrop_points(points: torch.Tensor, crop_box: list[int]) -> torch.Tensor:
    """(..., 2) xy in crop pixels -> image pixels."""
    return points + torch.tensor([crop_box[0], crop_box[1]], device=points.device)


def uncrop_masks(masks: torch.Tensor, crop_box: list[int], orig_h: int, orig_w: int) -> torch.Tensor:
    """(N, h, w) masks over a crop -> (N, H, W) over the image, zero outside the crop."""
    x0, y0, x1, y1 = crop_box
    if (x0, y0, x1, y1) == (0, 0, orig_w, orig_h):
        return masks
    pad = (x0, orig_w - x1, y0, orig_h - y1)  # left, right, top, bottom
    return torch.nn.functional.pad(masks, pad, value=0)


# ------------------------------------------------------------------------------------------------ NMS


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression, as ``torchvision.ops.nms``.

    Boxes are visited by descending score (ties keep their input order); a box is dropped when its IoU
    with an already kept box is above ``iou_threshold``. Areas are ``(x1 - x0) * (y1 - y0)``; a pair with
    zero union never suppresses.

    Args:
        boxes: (N, 4) XYXY, any real dtype (compared in float32).
        scores: (N,).
        iou_threshold: IoU above which the lower-scored box goes.

    Returns:
        (K,) int64 indices of the kept boxes, by descending score.
    """
    n = boxes.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    b = boxes[order].float()
    areas = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    suppressed = np.zeros(n, dtype=bool)
    keep: list[int] = []
    # one vectorised row of the IoU matrix per kept box: O(N*K) work, O(N) memory
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = b[i + 1 :]
        if rest.shape[0] == 0:
            break
        w = (torch.minimum(b[i, 2], rest[:, 2]) - torch.maximum(b[i, 0], rest[:, 0])).clamp(min=0)
        h = (torch.minimum(b[i, 3], rest[:, 3]) - torch.maximum(b[i, 1], rest[:, 1])).clamp(min=0)
        inter = w * h
        iou = inter / (areas[i] + areas[i + 1 :] - inter)
        suppressed[i + 1 :] |= (iou > iou_threshold).numpy()
    return order[torch.as_tensor(keep, dtype=torch.int64, device=boxes.device)]


def nms_numpy(boxes: npt.ArrayLike, scores: npt.ArrayLike, iou_threshold: float) -> IntArray:
    """:func:`nms` for numpy arrays: (N, 4) XYXY boxes, (N,) scores -> (K,) int64 kept indices."""
    keep = nms(torch.as_tensor(np.asarray(boxes)), torch.as_tensor(np.asarray(scores)), iou_threshold)
    return keep.numpy().astype(np.int64)


# ------------------------------------------------------------------------------------------------ RLE


def mask_to_rle(masks: torch.Tensor) -> list[RLE]:
    """Uncompressed COCO RLEs of a batch of masks, all at once.

    Args:
        masks: (N, H, W) bool.

    Returns:
        N dicts ``{"size": [H, W], "counts": list[int]}``; the counts sum to H*W.
    """
    n, h, w = masks.shape
    if n == 0:
        return []
    flat = masks.permute(0, 2, 1).reshape(n, h * w)  # column-major, as COCO
    change = flat[:, 1:] != flat[:, :-1]
    idx = change.nonzero().numpy()  # (K, 2) (mask, position) sorted by mask then position
    mask_id, pos = idx[:, 0], idx[:, 1] + 1  # a new run starts at pos
    # run ends per mask: every change position, then h*w; with the previous end (or 0) -> run length
    ends = np.concatenate([pos, np.full(n, h * w)])
    owner = np.concatenate([mask_id, np.arange(n)])
    order = np.lexsort((ends, owner))
    ends, owner = ends[order], owner[order]
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1]
    first = np.ones(len(ends), dtype=bool)
    first[1:] = owner[1:] != owner[:-1]
    starts[first] = 0
    lengths = ends - starts
    split_at = np.flatnonzero(first)[1:]
    starts_with_one = flat[:, 0].numpy()
    out: list[RLE] = []
    for i, runs in enumerate(np.split(lengths, split_at)):
        counts = runs.tolist()
        if starts_with_one[i]:
            counts.insert(0, 0)
        out.append({"size": [h, w], "counts": counts})
    return out


def _counts_of(rle: RLE) -> IntArray:
    counts = rle["counts"]
    if isinstance(counts, str | bytes):
        return rle_counts_from_string(counts)
    return np.asarray(counts, dtype=np.int64)


def rle_to_mask(rle: RLE) -> BoolArray:
    """(H, W) bool mask of a COCO RLE, compressed (``counts`` a string) or not."""
    h, w = (int(v) for v in rle["size"])
    counts = _counts_of(rle)
    if counts.sum() != h * w:
        raise ValueError(f"RLE counts sum to {int(counts.sum())}, expected H*W = {h * w}")
    values = np.arange(len(counts)) % 2 == 1
    flat = np.repeat(values, counts)
    return flat.reshape(w, h).T


def area_from_rle(rle: RLE) -> int:
    """Number of foreground pixels of a COCO RLE."""
    return int(_counts_of(rle)[1::2].sum())


def rle_counts_to_string(counts: npt.ArrayLike) -> str:
    """Compress RLE counts to COCO's string form (as pycocotools' ``rleToString``), vectorised.

    Each value (a count, or from the fourth on its difference to the count two places earlier) is
    written as little-endian 5-bit groups, bit 0x20 flagging that another group follows; the last group
    carries the sign in bit 0x10; every group is offset by 48 to be printable.
    """
    x = np.asarray(counts, dtype=np.int64)
    if x.size == 0:
        return ""
    v = x.copy()
    v[3:] -= x[1:-2]
    groups: list[IntArray] = []
    active: list[BoolArray] = []
    alive = np.ones(v.shape, dtype=bool)
    rest = v
    for _ in range(13):  # 13 * 5 bits cover int64
        c = rest & 0x1F
        rest = rest >> 5  # arithmetic shift keeps the sign
        more = np.where((c & 0x10) != 0, rest != -1, rest != 0)
        groups.append(np.where(more, c | 0x20, c) + 48)
        active.append(alive.copy())
        alive &= more
        if not alive.any():
            break
    chars = np.stack(groups, axis=1)[np.stack(active, axis=1)]  # value-major, group-minor
    return chars.astype(np.uint8).tobytes().decode("ascii")


def rle_counts_from_string(s: str | bytes) -> IntArray:
    """Decode COCO's compressed RLE string to counts (inverse of :func:`rle_counts_to_string`)."""
    raw = s.encode("ascii") if isinstance(s, str) else bytes(s)
    if len(raw) == 0:
        return np.zeros(0, dtype=np.int64)
    c = np.frombuffer(raw, dtype=np.uint8).astype(np.int64) - 48
    if c.min() < 0 or c.max() > 63:
        raise ValueError("not a COCO compressed RLE string: characters must lie in '0'..'o'")
    last = (c & 0x20) == 0  # the last group of each value
    if not last[-1]:
        raise ValueError("truncated COCO compressed RLE string")
    value_id = np.concatenate([[0], np.cumsum(last)[:-1]])
    value_start = np.concatenate([[0], np.flatnonzero(last)[:-1] + 1])
    shift = 5 * (np.arange(len(c)) - value_start[value_id])
    v = np.zeros(int(last.sum()), dtype=np.int64)
    np.add.at(v, value_id, (c & 0x1F) << shift)
    end = np.flatnonzero(last)
    negative = (c[end] & 0x10) != 0
    v[negative] -= np.left_shift(np.int64(1), shift[end][negative] + 5)
    # undo the delta coding: x[i] = v[i] + x[i - 2] for i > 2, i.e. running sums along each parity
    x = v.copy()
    x[1::2] = np.cumsum(v[1::2])
    x[2::2] = np.cumsum(v[2::2])
    return x


def coco_encode_rle(rle: RLE) -> RLE:
    """Uncompressed RLE -> ``{"size": [H, W], "counts": "<compressed string>"}`` (JSON-ready)."""
    return {"size": [int(v) for v in rle["size"]], "counts": rle_counts_to_string(_counts_of(rle))}


# ------------------------------------------------------------------------------ connected components


def connected_components(mask: BoolArray) -> tuple[npt.NDArray[np.int32], IntArray]:
    """8-connected components of a boolean image.

    Labels are numbered 1.. in raster order of each component's first pixel (0 is the background).
    Works on horizontal runs: runs on neighbouring rows that touch (diagonals included) are merged by
    label propagation with pointer jumping.

    Args:
        mask: (H, W) bool.

    Returns:
        (H, W) int32 labels and (num_labels + 1,) pixel counts per label (index 0 = background).
    """
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    padded = np.zeros((h, w + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    d = np.diff(padded, axis=1)  # (H, W+1): +1 where a run starts, -1 one past its end
    start_r, start_c = np.nonzero(d == 1)
    _, end_c = np.nonzero(d == -1)  # same row order, one end per start
    n = len(start_r)
    if n == 0:
        return np.zeros((h, w), dtype=np.int32), np.array([h * w], dtype=np.int64)
    stride = w + 2
    key_start = start_r * stride + start_c
    key_end = start_r * stride + end_c  # exclusive end
    # runs a (row r) and b (row r+1) touch iff start_b <= end_a and start_a <= end_b (8-connectivity)
    q_lo = (start_r - 1) * stride + start_c
    q_hi = (start_r - 1) * stride + end_c
    first = np.searchsorted(key_end, q_lo, side="left")
    last = np.searchsorted(key_start, q_hi, side="right") - 1
    n_pairs = np.clip(last - first + 1, 0, None)
    b_idx = np.repeat(np.arange(n), n_pairs)
    pair_rank = np.arange(n_pairs.sum()) - np.repeat(np.cumsum(n_pairs) - n_pairs, n_pairs)
    a_idx = np.repeat(first, n_pairs) + pair_rank
    labels = np.arange(n)
    if len(a_idx):
        while True:
            lo = np.minimum(labels[a_idx], labels[b_idx])
            new = labels.copy()
            # hook both runs and their current roots, so long chains merge in few rounds
            for idx in (a_idx, b_idx, labels[a_idx], labels[b_idx]):
                np.minimum.at(new, idx, lo)
            while True:  # pointer jumping: follow labels to their roots
                jumped = new[new]
                if np.array_equal(jumped, new):
                    break
                new = jumped
            if np.array_equal(new, labels):
                break
            labels = new
    # renumber roots 1.. in order of their first run (= raster order of the first pixel)
    roots, dense = np.unique(labels, return_inverse=True)
    run_label = (dense + 1).astype(np.int32)
    lengths = end_c - start_c
    sizes = np.zeros(len(roots) + 1, dtype=np.int64)
    np.add.at(sizes, run_label, lengths)
    sizes[0] = h * w - lengths.sum()
    out = np.zeros((h, w + 1), dtype=np.int32)
    # paint the runs: label at the start, minus it one past the end, then a running sum along rows
    np.add.at(out, (start_r, start_c), run_label)
    np.add.at(out, (start_r, end_c), -run_label)
    return np.cumsum(out, axis=1)[:, :w].astype(np.int32), sizes


def remove_small_regions(mask: BoolArray, area_thresh: float, mode: str) -> tuple[BoolArray, bool]:
    """Fill small holes or remove small islands of a mask (8-connectivity).

    Args:
        mask: (H, W) bool.
        area_thresh: regions with fewer pixels than this are small.
        mode: ``"holes"`` fills small background regions; ``"islands"`` removes small foreground regions
            (when every island is small, the largest one stays).

    Returns:
        the new mask and whether it changed.
    """
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    holes = mode == "holes"
    working = ~mask if holes else mask
    labels, sizes = connected_components(working)
    region_sizes = sizes[1:]
    small = np.flatnonzero(region_sizes < area_thresh) + 1
    if len(small) == 0:
        return mask, False
    if holes:
        fill = np.zeros(len(sizes), dtype=bool)
        fill[0] = True  # the mask itself
        fill[small] = True
    else:
        fill = np.ones(len(sizes), dtype=bool)
        fill[0] = False
        fill[small] = False
        if not fill.any():
            fill[int(np.argmax(region_sizes)) + 1] = True
    return fill[labels], True


def fill_small_regions(
    logits: torch.Tensor, threshold: float, max_hole_area: float, max_sprinkle_area: float, fill: float
) -> torch.Tensor:
    """SAM 2's clean-up of mask logits: small holes become foreground, small sprinkles background.

    Holes are 8-connected regions of ``logits <= threshold`` with at most ``max_hole_area`` pixels (image
    borders do not matter); they get ``threshold + fill``. Sprinkles are 8-connected regions of
    ``logits > threshold`` of the *input* with at most ``max_sprinkle_area`` pixels; they get
    ``threshold - fill`` (applied after the holes). An area of 0 disables that half.

    Args:
        logits: (K, h, w) mask logits (SAM 2 applies it in the 256x256 low-res frame).

    Returns:
        (K, h, w) new logits.
    """
    out = logits.clone()
    for i, mask in enumerate(logits.cpu().numpy()):
        if max_hole_area > 0:
            labels, sizes = connected_components(mask <= threshold)
            hole = (labels > 0) & (sizes[labels] <= max_hole_area)
            out[i][torch.from_numpy(hole).to(out.device)] = threshold + fill
        if max_sprinkle_area > 0:
            labels, sizes = connected_components(mask > threshold)
            sprinkle = (labels > 0) & (sizes[labels] <= max_sprinkle_area)
            out[i][torch.from_numpy(sprinkle).to(out.device)] = threshold - fill
    return out
