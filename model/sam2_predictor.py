"""``SamPredictor`` for SAM 2.1 models: the official ``SAM2ImagePredictor`` interface.

``SamPredictor(sam2_model)`` returns a :class:`Sam2Predictor` (see ``SamPredictor.__new__``), so code
written against either official predictor works with either family:

* ``SAM2ImagePredictor``: ``set_image`` (array or PIL image), ``set_image_batch``, ``predict(point_coords,
  point_labels, box, mask_input, multimask_output, return_logits, normalize_coords)``,
  ``predict_batch``, ``get_image_embedding``, ``reset_predictor``, and the internals its automatic mask
  generator calls (``_transforms.transform_coords``, ``_predict``, ``_features``, ``_orig_hw``).
* SAM 1's ``SamPredictor``: ``transform.apply_coords(_torch)`` / ``apply_boxes(_torch)`` (here into the
  square-input frame), ``predict_torch``, ``set_torch_image``, ``features``, ``reset_image``.

Frames: prompts given to :meth:`Sam2Predictor.predict` are original-image pixels (xy), or [0, 1]
fractions with ``normalize_coords=False``; those given to :meth:`predict_torch` / :meth:`_predict` are
already in the 1024x1024 square-input frame. Mask inputs and returned low-res logits are 256x256 over
the square; returned masks are in the original frame. As the official predictor, ``predict`` returns
masks as float32 0/1 arrays (logits with ``return_logits``), and low-res logits clamped to [-32, 32].
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from . import frames
from .predictor import ImageNotSetError, SamPredictor
from .sam2 import Sam2, Sam2ImageFeatures

__all__ = ["Sam2Predictor"]

logger = logging.getLogger(__name__)

_Array = npt.NDArray[Any]


def _as_rgb_array(image: Any) -> npt.NDArray[np.uint8]:
    """An (H, W, 3) uint8 array from an array or a PIL image (the official predictor takes both)."""
    from PIL import Image

    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got shape {arr.shape} dtype {arr.dtype}")
    return arr


class Sam2Predictor(SamPredictor):
    """Computes a SAM 2.1 image's features once, then predicts masks for any number of prompts."""

    def __init__(
        self,
        sam_model: Sam2,
        mask_threshold: float = 0.0,
        max_hole_area: float = 0.0,
        max_sprinkle_area: float = 0.0,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            sam_model: the SAM 2.1 model.
            mask_threshold: logit threshold of the returned boolean masks.
            max_hole_area, max_sprinkle_area: the official predictor's hole / sprinkle removal. It
                needs sam2's CUDA extension; on CPU the official code warns and skips it, and so do we.
        """
        if not isinstance(sam_model, Sam2):
            raise TypeError(f"Sam2Predictor needs a Sam2 model, got {type(sam_model).__name__}")
        if max_hole_area > 0 or max_sprinkle_area > 0:
            logger.warning(
                "max_hole_area / max_sprinkle_area are not applied (the official predictor skips them "
                "too without its CUDA extension)"
            )
        self.sam2 = sam_model
        self.model = sam_model  # type: ignore[assignment]  # the official attribute: a Sam2 here
        self.mask_threshold = mask_threshold
        self.max_hole_area = max_hole_area
        self.max_sprinkle_area = max_sprinkle_area
        self._transforms = frames.ResizeSquare(sam_model.image_size)
        self.transform = self._transforms  # type: ignore[assignment]  # SAM 1's name, SAM 2's frames
        side = sam_model.image_embedding_size
        self._bb_feat_sizes = [(4 * side, 4 * side), (2 * side, 2 * side), (side, side)]
        self.reset_predictor()

    @property
    def device(self) -> torch.device:
        return self.sam2.device

    @property
    def image_size(self) -> int:
        return self.sam2.image_size

    # ------------------------------------------------------------------------------------- state

    def reset_predictor(self) -> None:
        """Forget the current image(s) and their features."""
        self._is_image_set = False
        self._is_batch = False
        self._features: dict[str, Any] | None = None
        self._image_features: Sam2ImageFeatures | None = None
        self._orig_hw: list[tuple[int, int]] = []
        # SAM 1's names
        self.is_image_set = False
        self.features = None
        self.original_size = (0, 0)
        self.input_size = (0, 0)
        self.orig_h = self.orig_w = self.input_h = self.input_w = 0

    def reset_image(self) -> None:
        """SAM 1's name for :meth:`reset_predictor`."""
        self.reset_predictor()

    def _store(self, features: Sam2ImageFeatures, orig_hw: list[tuple[int, int]], batch: bool) -> None:
        self._image_features = features
        self._features = {"image_embed": features.image_embed, "high_res_feats": features.high_res_feats}
        self._orig_hw = orig_hw
        self._is_image_set = self.is_image_set = True
        self._is_batch = batch
        self.features = features.image_embed
        self.original_size = orig_hw[0]
        self.orig_h, self.orig_w = orig_hw[0]
        self.input_size = (self.image_size, self.image_size)
        self.input_h = self.input_w = self.image_size

    @torch.no_grad()
    def set_image(self, image: Any, image_format: str = "RGB") -> None:
        """Compute the features of an image.

        Args:
            image: (H, W, 3) uint8 array or a PIL image.
            image_format: channel order of an array, ``"RGB"`` (SAM 2's) or ``"BGR"`` (SAM 1's option).
        """
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        self.reset_predictor()
        arr = _as_rgb_array(image)
        if image_format == "BGR":
            arr = np.ascontiguousarray(arr[..., ::-1])
        features = self.sam2.encode_image(self.sam2.preprocess(arr))
        self._store(features, [(int(arr.shape[0]), int(arr.shape[1]))], batch=False)

    @torch.no_grad()
    def set_image_batch(self, image_list: list[npt.NDArray[np.uint8]]) -> None:
        """Compute the features of several (H_i, W_i, 3) uint8 RGB images (for :meth:`predict_batch`)."""
        if not isinstance(image_list, list) or not image_list:
            raise ValueError("set_image_batch takes a non-empty list of HxWx3 uint8 arrays")
        self.reset_predictor()
        arrays = [_as_rgb_array(image) for image in image_list]
        batch = torch.cat([self.sam2.preprocess(arr) for arr in arrays], dim=0)
        features = self.sam2.encode_image(batch)
        self._store(features, [(int(a.shape[0]), int(a.shape[1])) for a in arrays], batch=True)

    @torch.no_grad()
    def set_torch_image(self, transformed_image: torch.Tensor, original_image_size: tuple[int, ...]) -> None:
        """SAM 1's entry for an already resized image.

        Args:
            transformed_image: (1, 3, S, S) RGB in [0, 1] (``predictor.transform.apply_image(image)[None]``).
            original_image_size: (H, W) of the image before resizing.
        """
        side = self.image_size
        if transformed_image.ndim != 4 or tuple(transformed_image.shape[1:]) != (3, side, side):
            raise ValueError(
                f"set_torch_image takes a (1, 3, {side}, {side}) image in [0, 1] "
                f"(predictor.transform.apply_image), got shape {tuple(transformed_image.shape)}"
            )
        self.reset_predictor()
        x = transformed_image.to(self.device, torch.float32)
        x = (x - self.sam2.pixel_mean) / self.sam2.pixel_std
        size = (int(original_image_size[0]), int(original_image_size[1]))
        self._store(self.sam2.encode_image(x), [size], batch=False)

    def get_image_embedding(self) -> torch.Tensor:
        """The current image's (1, 256, 64, 64) embedding (``no_mem_embed`` added)."""
        if not self._is_image_set or self._image_features is None:
            raise ImageNotSetError("no image is set: call set_image(...) before get_image_embedding()")
        return self._image_features.image_embed

    def get_image_features(self) -> Sam2ImageFeatures:
        """All three decoder inputs of the current image(s) (see :class:`Sam2ImageFeatures`)."""
        if not self._is_image_set or self._image_features is None:
            raise ImageNotSetError("no image is set: call set_image(...) before get_image_features()")
        return self._image_features

    # ------------------------------------------------------------------------------------ prompts

    def _prep_prompts(
        self,
        point_coords: Any,
        point_labels: Any,
        box: Any,
        mask_logits: Any,
        normalize_coords: bool,
        img_idx: int = -1,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """Prompts as tensors in the square-input frame: (mask_input, coords, labels, box corners)."""
        coords_t = labels_t = box_t = mask_t = None
        orig_hw = self._orig_hw[img_idx]
        if point_coords is not None:
            if point_labels is None:
                raise ValueError("point_labels must be given with point_coords")
            coords = torch.as_tensor(np.asarray(point_coords, dtype=np.float32), device=self.device)
            labels_t = torch.as_tensor(np.asarray(point_labels), dtype=torch.int, device=self.device)
            if (
                coords.ndim not in (2, 3)
                or coords.shape[-1] != 2
                or tuple(labels_t.shape) != tuple(coords.shape[:-1])
            ):
                raise ValueError(
                    "point_coords must be (N, 2) or (B, N, 2) and point_labels (N,) or (B, N), got "
                    f"{tuple(coords.shape)} and {tuple(labels_t.shape)}"
                )
            coords_t = self._transforms.transform_coords(coords, normalize=normalize_coords, orig_hw=orig_hw)
            if coords_t.ndim == 2:
                coords_t, labels_t = coords_t[None], labels_t[None]
        if box is not None:
            box_arr = torch.as_tensor(np.asarray(box, dtype=np.float32), device=self.device)
            if box_arr.shape[-1] != 4 or box_arr.ndim > 2:
                raise ValueError(f"box must be (4,) or (B, 4) xyxy, got shape {tuple(box_arr.shape)}")
            box_t = self._transforms.transform_boxes(box_arr, normalize=normalize_coords, orig_hw=orig_hw)
        if mask_logits is not None:
            mask_t = torch.as_tensor(np.asarray(mask_logits, dtype=np.float32), device=self.device)
            if mask_t.ndim == 3:
                mask_t = mask_t[None]
            low = self.sam2.low_res_size
            if mask_t.ndim != 4 or tuple(mask_t.shape[1:]) != (1, low, low):
                raise ValueError(
                    f"mask_input must be (1, {low}, {low}) or (B, 1, {low}, {low}) low-res logits "
                    f"(a previous prediction's), got {tuple(mask_t.shape)}"
                )
        return mask_t, coords_t, labels_t, box_t

    def predict(
        self,
        point_coords: Any = None,
        point_labels: Any = None,
        box: Any = None,
        mask_input: Any = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Predict masks for prompts on the current image (official ``SAM2ImagePredictor.predict``).

        Args:
            point_coords: (N, 2) xy in original pixels (or [0, 1] with ``normalize_coords=False``);
                (B, N, 2) for B prompt sets.
            point_labels: (N,) or (B, N): 1 foreground, 0 background.
            box: (4,) or (B, 4) xyxy, same frame as the points.
            mask_input: (1, 256, 256) low-res logits (a previous prediction's), or (B, 1, 256, 256).
            multimask_output: three candidates instead of one (dynamically selected) mask.
            return_logits: logits instead of 0/1 masks.
            normalize_coords: the coordinates are pixels of the original image (True) or [0, 1].

        Returns:
            masks (C, H, W) float32, scores (C,), low-res logits (C, 256, 256) clamped to [-32, 32];
            with a leading B axis for B > 1 prompt sets. C = 3 with multimask_output, else 1.
        """
        if not self._is_image_set:
            raise ImageNotSetError("no image is set: call set_image(...) before predict(...)")
        mask_t, coords_t, labels_t, box_t = self._prep_prompts(
            point_coords, point_labels, box, mask_input, normalize_coords
        )
        masks, scores, low_res = self._predict(
            coords_t, labels_t, box_t, mask_t, multimask_output, return_logits=return_logits
        )
        return (
            masks.squeeze(0).float().cpu().numpy(),
            scores.squeeze(0).float().cpu().numpy(),
            low_res.squeeze(0).float().cpu().numpy(),
        )

    def predict_batch(
        self,
        point_coords_batch: list[Any] | None = None,
        point_labels_batch: list[Any] | None = None,
        box_batch: list[Any] | None = None,
        mask_input_batch: list[Any] | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> tuple[list[_Array], list[_Array], list[_Array]]:
        """:meth:`predict` for each image set with :meth:`set_image_batch`: lists of its outputs."""
        if not self._is_image_set or not self._is_batch:
            raise ImageNotSetError("predict_batch needs images set with set_image_batch(...)")
        all_masks, all_scores, all_low = [], [], []
        for i in range(len(self._orig_hw)):

            def pick(items: list[Any] | None, i: int = i) -> Any:
                return None if items is None else items[i]

            mask_t, coords_t, labels_t, box_t = self._prep_prompts(
                pick(point_coords_batch),
                pick(point_labels_batch),
                pick(box_batch),
                pick(mask_input_batch),
                normalize_coords,
                img_idx=i,
            )
            masks, scores, low_res = self._predict(
                coords_t, labels_t, box_t, mask_t, multimask_output, return_logits=return_logits, img_idx=i
            )
            all_masks.append(masks.squeeze(0).float().cpu().numpy())
            all_scores.append(scores.squeeze(0).float().cpu().numpy())
            all_low.append(low_res.squeeze(0).float().cpu().numpy())
        return all_masks, all_scores, all_low

    @torch.no_grad()
    def _predict(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        img_idx: int = -1,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The official ``_predict``: prompts already in the square-input frame.

        Args:
            point_coords: (B, N, 2) xy; point_labels: (B, N).
            boxes: (B, 4) or (B, 2, 2) xyxy; they become two corner points (labels 2, 3) placed
                before the clicks.
            mask_input: (B, 1, 256, 256) low-res logits.
            multimask_output, return_logits: as in :meth:`predict`.
            img_idx: which image of a batch set with :meth:`set_image_batch`.

        Returns:
            masks (B, C, H, W) (bool, or logits), scores (B, C), low-res logits (B, C, 256, 256) in [-32, 32].
        """
        if not self._is_image_set or self._image_features is None:
            raise ImageNotSetError("no image is set: call set_image(...) before predicting")
        coords, labels = point_coords, point_labels
        if coords is not None and labels is None:
            raise ValueError("point_labels must be given with point_coords")
        if boxes is not None:
            box_coords = boxes.reshape(-1, 2, 2).to(self.device, torch.float32)
            box_labels = torch.tensor([[2, 3]], dtype=torch.int, device=self.device).repeat(
                box_coords.shape[0], 1
            )
            if coords is not None and labels is not None:
                coords = torch.cat([box_coords, coords], dim=1)
                labels = torch.cat([box_labels, labels], dim=1)
            else:
                coords, labels = box_coords, box_labels
        index = img_idx % len(self._orig_hw)
        features = self._image_features.select(index)
        low_res, scores = self.sam2.decode(
            features, coords, labels, mask_input, multimask_output=multimask_output
        )
        masks = self.sam2.postprocess_masks(low_res, self._orig_hw[index])
        low_res = torch.clamp(low_res, -32.0, 32.0)
        if not return_logits:
            masks = masks > self.mask_threshold
        return masks, scores, low_res

    @torch.no_grad()
    def predict_torch(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """SAM 1's batched entry: prompts in the square-input frame (``predictor.transform``), (B, 4)
        boxes; returns masks (B, C, H, W), scores (B, C), low-res logits (B, C, 256, 256)."""
        return self._predict(
            point_coords, point_labels, boxes, mask_input, multimask_output, return_logits=return_logits
        )
