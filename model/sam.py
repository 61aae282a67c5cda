"""The SAM model: image encoder + prompt encoder + mask decoder, with SAM's pre- and post-processing.

Frames: *original* is the caller's image in pixels (H, W); the *resized-input* frame is that image
scaled so its long side is ``image_size`` (1024), at the top-left of a zero-padded square; the *low-res*
frame is the decoder's 256x256 output over that whole padded square.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder

__all__ = ["PIXEL_MEAN", "PIXEL_STD", "Sam"]

# ImageNet statistics on the 0-255 scale, as the official models were trained with
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


class Sam(nn.Module):
    """Segment Anything: predicts object masks from an image and prompts."""

    mask_threshold: float = 0.0
    image_format: str = "RGB"
    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor

    def __init__(
        self,
        *,
        image_encoder: nn.Module,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        image_size: int = 1024,
        pixel_mean: tuple[float, float, float] = PIXEL_MEAN,
        pixel_std: tuple[float, float, float] = PIXEL_STD,
    ) -> None:
        """
        Args:
            image_encoder: (B, 3, image_size, image_size) -> (B, C, H, W) image embedding.
            prompt_encoder: embeds points, boxes and mask prompts.
            mask_decoder: predicts masks and IoU scores.
            image_size: side of the padded square input in pixels.
            pixel_mean: per-channel mean subtracted from 0-255 RGB input.
            pixel_std: per-channel std dividing the centred input.
        """
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.image_size = image_size
        # not persistent: official checkpoints do not hold them
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise and zero-pad a resized image.

        Args:
            x: (B, 3, h, w) float RGB on the 0-255 scale, already resized so max(h, w) == image_size.

        Returns:
            (B, 3, image_size, image_size); padding (bottom/right) is zero after normalisation.
        """
        x = (x - self.pixel_mean) / self.pixel_std
        h, w = x.shape[-2:]
        return F.pad(x, (0, self.image_size - w, 0, self.image_size - h))

    def postprocess_masks(
        self, masks: torch.Tensor, input_size: tuple[int, ...], original_size: tuple[int, ...]
    ) -> torch.Tensor:
        """Low-res mask logits to logits over the original image.

        Args:
            masks: (B, C, 256, 256) logits in the low-res frame.
            input_size: (h, w) of the resized image inside the padded square.
            original_size: (H, W) of the original image.

        Returns:
            (B, C, H, W) logits in the original frame (threshold at ``mask_threshold``).
        """
        masks = F.interpolate(masks, (self.image_size, self.image_size), mode="bilinear", align_corners=False)
        masks = masks[..., : input_size[0], : input_size[1]]
        return F.interpolate(masks, tuple(original_size), mode="bilinear", align_corners=False)

    @torch.no_grad()
    def forward(
        self, batched_input: list[dict[str, Any]], multimask_output: bool
    ) -> list[dict[str, torch.Tensor]]:
        """Predict masks for a batch of images with their prompts, end to end.

        Args:
            batched_input: one dict per image with ``image`` (3, h, w) float 0-255 resized RGB,
                ``original_size`` (H, W), and optional ``point_coords`` (B, N, 2) + ``point_labels``
                (B, N), ``boxes`` (B, 4) (resized-input frame), ``mask_inputs`` (B, 1, 256, 256).
            multimask_output: three candidates per prompt instead of one.

        Returns:
            one dict per image: ``masks`` (B, C, H, W) bool, ``iou_predictions`` (B, C),
            ``low_res_logits`` (B, C, 256, 256).
        """
        images = torch.stack([self.preprocess(item["image"][None])[0] for item in batched_input], dim=0)
        embeddings = self.image_encoder(images)
        outputs = []
        for record, embedding in zip(batched_input, embeddings, strict=True):
            points = None
            if "point_coords" in record:
                points = (record["point_coords"], record["point_labels"])
            sparse, dense = self.prompt_encoder(
                points=points, boxes=record.get("boxes"), masks=record.get("mask_inputs")
            )
            low_res, iou = self.mask_decoder(
                image_embeddings=embedding.unsqueeze(0),
                image_pe=self.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask_output,
            )
            masks = self.postprocess_masks(
                low_res, input_size=tuple(record["image"].shape[-2:]), original_size=record["original_size"]
            )
            outputs.append(
                {"masks": masks > self.mask_threshold, "iou_predictions": iou, "low_res_logits": low_res}
            )
        return outputs
