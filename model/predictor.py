"""``SamPredictor``: the official interactive API (set an image once, prompt it many times).

``SamPredictor(sam2_model)`` gives a :class:`~clicksam.model.sam2_predictor.Sam2Predictor`: the official
``SAM2ImagePredictor`` interface (see that module).

Frames: prompts given to :meth:`SamPredictor.predict` are in the original image's pixels (xy); those
given to :meth:`SamPredictor.predict_torch` are already in the resized-input frame (map them with
``predictor.transform`` or :mod:`clicksam.model.frames`). Mask inputs and the returned low-res logits
are in the 256x256 low-res frame; returned masks are in the original frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from . import frames
from .sam import Sam
from .sam2 import Sam2

__all__ = ["ImageNotSetError", "SamPredictor"]


class ImageNotSetError(RuntimeError):
    """A prediction was asked for before :meth:`SamPredictor.set_image`."""


class SamPredictor:
    """Computes an image's embedding once, then predicts masks for any number of prompts."""

    def __new__(cls, sam_model: Sam | Sam2, *args: Any, **kwargs: Any) -> SamPredictor:
        """A SAM 2.1 model gets a ``Sam2Predictor`` (a subclass with SAM 2's semantics)."""
        if cls is SamPredictor and isinstance(sam_model, Sam2):
            from .sam2_predictor import Sam2Predictor

            return object.__new__(Sam2Predictor)
        return object.__new__(cls)

    def __init__(self, sam_model: Sam | Sam2) -> None:
        if not isinstance(sam_model, Sam):
            raise TypeError(f"SamPredictor needs a Sam or Sam2 model, got {type(sam_model).__name__}")
        self.model = sam_model
        self.transform = frames.ResizeLongestSide(sam_model.image_size)
        self.reset_image()

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def image_size(self) -> int:
        return self.model.image_size

    def reset_image(self) -> None:
        """Forget the current image and its embedding."""
        self.is_image_set = False
        self.features: torch.Tensor | None = None
        self.original_size: tuple[int, int] = (0, 0)
        self.input_size: tuple[int, int] = (0, 0)
        self.orig_h = self.orig_w = self.input_h = self.input_w = 0

    def set_image(self, image: npt.NDArray[np.uint8], image_format: str = "RGB") -> None:
        """Compute the embedding of an image.

        Args:
            image: (H, W, 3) uint8 image.
            image_format: channel order of ``image``, ``"RGB"`` or ``"BGR"``.

        Raises:
            ValueError: the image is not HxWx3 uint8 or the format is unknown.
        """
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 image, got shape {image.shape} dtype {image.dtype}")
        if image_format != self.model.image_format:
            image = image[..., ::-1]
        resized = self.transform.apply_image(image)  # (h, w, 3) uint8
        tensor = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None]
        self.set_torch_image(tensor, (image.shape[0], image.shape[1]))

    @torch.no_grad()
    def set_torch_image(self, transformed_image: torch.Tensor, original_image_size: tuple[int, ...]) -> None:
        """Compute the embedding of an already resized image.

        Args:
            transformed_image: (1, 3, h, w) RGB 0-255 (any dtype), long side == image_size.
            original_image_size: (H, W) of the image before resizing.
        """
        if (
            transformed_image.ndim != 4
            or transformed_image.shape[1] != 3
            or max(transformed_image.shape[2:]) != self.image_size
        ):
            raise ValueError(
                f"set_torch_image takes a (B, 3, h, w) image with long side {self.image_size}, "
                f"got shape {tuple(transformed_image.shape)}"
            )
        self.reset_image()
        self.original_size = (int(original_image_size[0]), int(original_image_size[1]))
        self.input_size = (int(transformed_image.shape[-2]), int(transformed_image.shape[-1]))
        self.orig_h, self.orig_w = self.original_size
        self.input_h, self.input_w = self.input_size
        input_image = self.model.preprocess(transformed_image.float())
        self.features = self.model.image_encoder(input_image)
        self.is_image_set = True

    def predict(
        self,
        point_coords: npt.NDArray[np.floating] | None = None,
        point_labels: npt.NDArray[np.integer] | None = None,
        box: npt.NDArray[np.floating] | None = None,
        mask_input: npt.NDArray[np.floating] | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[
        npt.NDArray[np.bool_] | npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]
    ]:
        """Predict masks for prompts on the current image.

        Args:
            point_coords: (N, 2) xy in original-image pixels.
            point_labels: (N,) 1 foreground, 0 background.
            box: (4,) xyxy in original-image pixels.
            mask_input: (1, 256, 256) low-res logits, typically a previous prediction's.
            multimask_output: three candidate masks (for ambiguous single clicks) instead of one.
            return_logits: return logits instead of boolean masks.

        Returns:
            masks (C, H, W) in the original frame, scores (C,), low-res logits (C, 256, 256);
            C = 3 with multimask_output, else 1.
        """
        if not self.is_image_set:
            raise ImageNotSetError("no image is set: call set_image(...) before predict(...)")
        coords_t = labels_t = box_t = mask_t = None
        if point_coords is not None:
            if point_labels is None:
                raise ValueError("point_labels must be given with point_coords")
            coords = np.asarray(point_coords, dtype=np.float64)
            labels = np.asarray(point_labels)
            if coords.ndim != 2 or coords.shape[1] != 2 or labels.shape != (coords.shape[0],):
                raise ValueError(
                    f"point_coords must be (N, 2) and point_labels (N,), got {coords.shape}, {labels.shape}"
                )
            coords = self.transform.apply_coords(coords, self.original_size)
            coords_t = torch.as_tensor(coords, dtype=torch.float, device=self.device)[None]
            labels_t = torch.as_tensor(labels, dtype=torch.int, device=self.device)[None]
        if box is not None:
            box_arr = np.asarray(box, dtype=np.float64)
            if box_arr.size != 4:
                raise ValueError(f"box must be (4,) xyxy, got shape {box_arr.shape}")
            box_arr = self.transform.apply_boxes(box_arr, self.original_size)
            box_t = torch.as_tensor(box_arr, dtype=torch.float, device=self.device)  # (1, 4)
        if mask_input is not None:
            mask_arr = np.asarray(mask_input, dtype=np.float32)
            low = self.model.prompt_encoder.mask_input_size
            if mask_arr.shape != (1, *low):
                raise ValueError(
                    f"mask_input must be (1, {low[0]}, {low[1]}) low-res logits, got {mask_arr.shape}"
                )
            mask_t = torch.as_tensor(mask_arr, device=self.device)[None]

        masks, scores, low_res = self.predict_torch(
            coords_t, labels_t, box_t, mask_t, multimask_output=multimask_output, return_logits=return_logits
        )
        return masks[0].cpu().numpy(), scores[0].cpu().numpy(), low_res[0].cpu().numpy()

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
        """Predict masks for a batch of prompts already in the resized-input frame.

        Args:
            point_coords: (B, N, 2) xy in the resized-input frame.
            point_labels: (B, N) labels.
            boxes: (B, 4) xyxy in the resized-input frame.
            mask_input: (B, 1, 256, 256) low-res logits.
            multimask_output: three candidates instead of one.
            return_logits: logits instead of boolean masks.

        Returns:
            masks (B, C, H, W) in the original frame, scores (B, C), low-res logits (B, C, 256, 256).
        """
        if not self.is_image_set or self.features is None:
            raise ImageNotSetError("no image is set: call set_image(...) before predict_torch(...)")
        points = None
        if point_coords is not None:
            if point_labels is None:
                raise ValueError("point_labels must be given with point_coords")
            points = (point_coords, point_labels)
        sparse, dense = self.model.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        low_res, scores = self.model.mask_decoder(
            image_embeddings=self.features,
            image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )
        masks = self.model.postprocess_masks(low_res, self.input_size, self.original_size)
        if not return_logits:
            masks = masks > self.model.mask_threshold
        return masks, scores, low_res

    def get_image_embedding(self) -> torch.Tensor:
        """The current image's embedding: (1, 256, 64, 64)."""
        if not self.is_image_set or self.features is None:
            raise ImageNotSetError("no image is set: call set_image(...) before get_image_embedding()")
        return self.features
