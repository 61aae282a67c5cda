"""Conversions between SAM's coordinate frames; the one Python module that owns them.

* **original**: the caller's image, (H, W) pixels, xy coordinates in those pixels.
* **resized-input**: the image scaled so its long side is ``long_side`` (1024), (h, w) with
  ``h = int(H * scale + 0.5)``; it sits at the top-left of the zero-padded long_side x long_side square
  the encoder sees. Prompts given to the prompt encoder are xy in this frame.
* **low-res**: the decoder's mask logits, 256x256 over the whole padded square (1/4 of the padded frame).

Coordinates are scaled per axis (``w / W`` for x, ``h / H`` for y), exactly as the official code does,
since rounding makes the two ratios differ slightly.

SAM 2.1 uses other frames (the ``*_square`` functions below):

* **square-input**: the original image stretched to ``side`` x ``side`` (1024x1024) without keeping
  the aspect ratio and without padding; prompts are xy in this frame, ``(x / W, y / H) * side``.
* **low-res**: the decoder's 256x256 logits over that whole square; masks go from there straight to
  the original (H, W) with one bilinear resize.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image

__all__ = [
    "ResizeLongestSide",
    "ResizeSquare",
    "apply_boxes",
    "apply_boxes_torch",
    "apply_coords",
    "apply_coords_square",
    "apply_coords_torch",
    "get_preprocess_shape",
    "resize_to_long_side",
    "resize_to_square_torch",
    "unapply_coords",
    "unapply_coords_square",
    "upsample_masks_to_original",
]

_Coords = TypeVar("_Coords", npt.NDArray[np.float64], torch.Tensor)


def get_preprocess_shape(oldh: int, oldw: int, long_side: int) -> tuple[int, int]:
    """Size (newh, neww) of an (oldh, oldw) image scaled so that its long side is ``long_side``.

    Rounds half up like the official code (``int(x * scale + 0.5)``), but never to 0 (a very thin
    image keeps one row/column rather than vanishing).
    """
    if oldh <= 0 or oldw <= 0:
        raise ValueError(f"image size must be positive, got (H, W) = ({oldh}, {oldw})")
    scale = long_side * 1.0 / max(oldh, oldw)
    newh, neww = oldh * scale, oldw * scale
    return max(1, int(newh + 0.5)), max(1, int(neww + 0.5))


def resize_to_long_side(image: npt.NDArray[np.uint8], long_side: int) -> npt.NDArray[np.uint8]:
    """Resize an (H, W, 3) uint8 image so its long side is ``long_side``: (h, w, 3) uint8.

    Pillow's bilinear filter, as the official preprocessing: it antialiases when downscaling, so
    ``torch.nn.functional.interpolate`` or OpenCV would give different pixels and embeddings.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got shape {image.shape} dtype {image.dtype}")
    newh, neww = get_preprocess_shape(image.shape[0], image.shape[1], long_side)
    resized = Image.fromarray(np.ascontiguousarray(image), mode="RGB").resize(
        (neww, newh), resample=Image.Resampling.BILINEAR
    )
    return np.array(resized)  # a writable copy: torch refuses read-only buffers


def _scale_xy(
    out: _Coords, original_size: tuple[int, int], long_side: int, *, inverse: bool = False
) -> _Coords:
    """Scale xy ``out`` (..., 2) in place from the original frame (H, W) to the resized-input frame.

    ``inverse=True`` scales back, by ``W / w`` and ``H / h`` themselves (not their reciprocals, which
    can round differently).
    """
    old_h, old_w = original_size
    new_h, new_w = get_preprocess_shape(old_h, old_w, long_side)
    sx, sy = (old_w / new_w, old_h / new_h) if inverse else (new_w / old_w, new_h / old_h)
    out[..., 0] *= sx
    out[..., 1] *= sy
    return out


def apply_coords(
    coords: npt.ArrayLike, original_size: tuple[int, int], long_side: int
) -> npt.NDArray[np.float64]:
    """xy coordinates (..., 2) from the original frame (H, W) to the resized-input frame (float64 copy)."""
    return _scale_xy(np.array(coords, dtype=np.float64, copy=True), original_size, long_side)


def unapply_coords(
    coords: npt.ArrayLike, original_size: tuple[int, int], long_side: int
) -> npt.NDArray[np.float64]:
    """Inverse of :func:`apply_coords`: xy (..., 2) from the resized-input frame to the original frame."""
    return _scale_xy(np.array(coords, dtype=np.float64, copy=True), original_size, long_side, inverse=True)


def apply_boxes(
    boxes: npt.ArrayLike, original_size: tuple[int, int], long_side: int
) -> npt.NDArray[np.float64]:
    """xyxy boxes (..., 4) from the original frame to the resized-input frame: (N, 4) float64."""
    corners = np.asarray(boxes, dtype=np.float64).reshape(-1, 2, 2)
    return apply_coords(corners, original_size, long_side).reshape(-1, 4)


def apply_coords_torch(coords: torch.Tensor, original_size: tuple[int, int], long_side: int) -> torch.Tensor:
    """Torch variant of :func:`apply_coords`: (..., 2) xy, returned as a new float tensor."""
    return _scale_xy(coords.detach().clone().to(torch.float), original_size, long_side)


def apply_boxes_torch(boxes: torch.Tensor, original_size: tuple[int, int], long_side: int) -> torch.Tensor:
    """Torch variant of :func:`apply_boxes`: (..., 4) xyxy -> (N, 4) float."""
    return apply_coords_torch(boxes.reshape(-1, 2, 2), original_size, long_side).reshape(-1, 4)


class ResizeLongestSide:
    """The official ``ResizeLongestSide`` interface over this module's functions.

    ``SamPredictor.transform`` is one, so code written against Meta's predictor (for example
    ``predictor.transform.apply_boxes_torch(boxes, image.shape[:2])`` for batched box prompts) works.
    """

    def __init__(self, target_length: int) -> None:
        self.target_length = target_length

    def apply_image(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        """(H, W, 3) uint8 -> (h, w, 3) uint8 resized-input image."""
        return resize_to_long_side(image, self.target_length)

    def apply_coords(self, coords: npt.ArrayLike, original_size: tuple[int, ...]) -> npt.NDArray[np.float64]:
        """(..., 2) xy original frame -> resized-input frame."""
        return apply_coords(coords, (int(original_size[0]), int(original_size[1])), self.target_length)

    def apply_boxes(self, boxes: npt.ArrayLike, original_size: tuple[int, ...]) -> npt.NDArray[np.float64]:
        """(..., 4) xyxy original frame -> (N, 4) resized-input frame."""
        return apply_boxes(boxes, (int(original_size[0]), int(original_size[1])), self.target_length)

    def apply_coords_torch(self, coords: torch.Tensor, original_size: tuple[int, ...]) -> torch.Tensor:
        """Torch variant of :meth:`apply_coords`."""
        return apply_coords_torch(coords, (int(original_size[0]), int(original_size[1])), self.target_length)

    def apply_boxes_torch(self, boxes: torch.Tensor, original_size: tuple[int, ...]) -> torch.Tensor:
        """Torch variant of :meth:`apply_boxes`."""
        return apply_boxes_torch(boxes, (int(original_size[0]), int(original_size[1])), self.target_length)

    @staticmethod
    def get_preprocess_shape(oldh: int, oldw: int, long_side_length: int) -> tuple[int, int]:
        return get_preprocess_shape(oldh, oldw, long_side_length)


# ------------------------------------------------------------------------------ SAM 2.1 frames


def resize_to_square_torch(image: npt.NDArray[np.uint8], side: int) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, side, side) float32 in [0, 1], stretched (aspect ratio not kept).

    The resize SAM 2's preprocessing applies to tensors (torchvision's ``ToTensor`` then ``Resize`` on
    a tensor): bilinear with antialiasing when downscaling, ``align_corners=False``. Pillow's or an
    un-antialiased ``interpolate`` give other pixels.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got shape {image.shape} dtype {image.dtype}")
    # (3, H, W) copy: also takes read-only arrays (np.asarray of a PIL image)
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div(255)
    resized = torch.nn.functional.interpolate(
        x[None], size=(side, side), mode="bilinear", align_corners=False, antialias=True
    )
    return resized[0]


def apply_coords_square(
    coords: torch.Tensor, original_size: tuple[int, int] | None, side: int, *, normalize: bool = True
) -> torch.Tensor:
    """xy (..., 2) to the square-input frame, as a new float tensor.

    Args:
        coords: (..., 2) xy in original-image pixels (``normalize=True``) or already in [0, 1].
        original_size: (H, W) of the original image; needed when ``normalize`` is True.
        side: side of the square input (1024).
        normalize: divide x by W and y by H first (the official ``normalize_coords``).
    """
    out = coords.detach().clone().to(torch.float)
    if normalize:
        if original_size is None:
            raise ValueError("original_size is needed to normalise pixel coordinates")
        h, w = original_size
        out[..., 0] = out[..., 0] / w
        out[..., 1] = out[..., 1] / h
    return out * side


def unapply_coords_square(coords: torch.Tensor, original_size: tuple[int, int], side: int) -> torch.Tensor:
    """Inverse of :func:`apply_coords_square` (normalize=True): (..., 2) square-input -> original xy."""
    out = coords.detach().clone().to(torch.float) / side
    h, w = original_size
    out[..., 0] = out[..., 0] * w
    out[..., 1] = out[..., 1] * h
    return out


def upsample_masks_to_original(masks: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
    """(B, C, 256, 256) low-res logits over the square input -> (B, C, H, W) logits, one bilinear step."""
    return torch.nn.functional.interpolate(
        masks.float(), tuple(original_size), mode="bilinear", align_corners=False
    )


class ResizeSquare:
    """SAM 2.1's frame conversions behind the ``ResizeLongestSide`` interface (``predictor.transform``).

    Code written against SAM 1's predictor (``predictor.transform.apply_coords_torch(...)`` then
    ``predict_torch``) keeps working with a SAM 2.1 predictor: the coordinates land in the square frame.
    """

    def __init__(self, target_length: int) -> None:
        self.target_length = target_length

    def apply_image(self, image: npt.NDArray[np.uint8]) -> torch.Tensor:
        """(H, W, 3) uint8 -> (3, side, side) float in [0, 1] (see :func:`resize_to_square_torch`)."""
        return resize_to_square_torch(image, self.target_length)

    def apply_coords(self, coords: npt.ArrayLike, original_size: tuple[int, ...]) -> npt.NDArray[np.float64]:
        """(..., 2) xy original frame -> square-input frame."""
        arr = torch.as_tensor(np.asarray(coords, dtype=np.float32))
        size = (int(original_size[0]), int(original_size[1]))
        return apply_coords_square(arr, size, self.target_length).numpy().astype(np.float64)

    def apply_boxes(self, boxes: npt.ArrayLike, original_size: tuple[int, ...]) -> npt.NDArray[np.float64]:
        """(..., 4) xyxy original frame -> (N, 4) square-input frame."""
        corners = np.asarray(boxes, dtype=np.float64).reshape(-1, 2, 2)
        return self.apply_coords(corners, original_size).reshape(-1, 4)

    def apply_coords_torch(self, coords: torch.Tensor, original_size: tuple[int, ...]) -> torch.Tensor:
        """Torch variant of :meth:`apply_coords`."""
        size = (int(original_size[0]), int(original_size[1]))
        return apply_coords_square(coords, size, self.target_length)

    def apply_boxes_torch(self, boxes: torch.Tensor, original_size: tuple[int, ...]) -> torch.Tensor:
        """Torch variant of :meth:`apply_boxes`: (..., 4) -> (N, 4)."""
        return self.apply_coords_torch(boxes.reshape(-1, 2, 2), original_size).reshape(-1, 4)

    # the official SAM2Transforms names (``predictor._transforms``), for code written against them

    def transform_coords(
        self, coords: torch.Tensor, normalize: bool = False, orig_hw: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """(..., 2) xy in pixels of ``orig_hw`` (``normalize``) or in [0, 1] -> square-input frame."""
        size = None if orig_hw is None else (int(orig_hw[0]), int(orig_hw[1]))
        return apply_coords_square(coords, size, self.target_length, normalize=normalize)

    def transform_boxes(
        self, boxes: torch.Tensor, normalize: bool = False, orig_hw: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """(B, 4) xyxy -> (B, 2, 2) corners in the square-input frame (the official layout)."""
        return self.transform_coords(boxes.reshape(-1, 2, 2), normalize, orig_hw)

    def postprocess_masks(self, masks: torch.Tensor, orig_hw: tuple[int, int]) -> torch.Tensor:
        """(B, C, 256, 256) low-res logits -> (B, C, H, W) (see :func:`upsample_masks_to_original`)."""
        return upsample_masks_to_original(masks, (int(orig_hw[0]), int(orig_hw[1])))
