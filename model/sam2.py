"""SAM 2.1 for images: Hiera image encoder + SAM's prompt encoder + SAM 2's mask decoder.

Frames (converted in :mod:`clicksam.model.frames`): the *original* image (H, W) is stretched to the
1024x1024 *square-input* frame (no aspect ratio kept, no padding); prompts are xy in that frame,
``(x / W, y / H) * 1024``; the decoder's *low-res* logits are 256x256 over the whole square and go
straight to (H, W) with one bilinear resize.

The contract other modules build on (names stable):

* ``build_sam("sam2_tiny", seed=0)`` (or ``"sam2.1_hiera_t"`` ... with ``checkpoint=``) gives a
  :class:`Sam2` in eval mode.
* :meth:`Sam2.preprocess` takes an (H, W, 3) uint8 RGB image and returns the (1, 3, 1024, 1024)
  normalised input.
* :meth:`Sam2.encode_image` takes that input and returns :class:`Sam2ImageFeatures`, what the decoder
  consumes, for a 1024 input:

  - ``image_embed`` (B, 256, 64, 64): the stride-16 level with ``no_mem_embed`` added;
  - ``high_res_feats_0`` (B, 32, 256, 256): the stride-4 level after ``sam_mask_decoder.conv_s0``;
  - ``high_res_feats_1`` (B, 64, 128, 128): the stride-8 level after ``sam_mask_decoder.conv_s1``.

  These are the official ``SAM2ImagePredictor._features`` (``image_embed``, ``high_res_feats``) and
  the input names of the official-interface ONNX decoder.
* :meth:`Sam2.decode` takes those features and prompts in the square-input frame (points (B, N, 2)
  with labels (B, N): 1 fg, 0 bg, 2 / 3 box corners; optional (B, 1, 256, 256) mask logits) and
  returns low-res logits (B, 3 or 1, 256, 256) and IoU scores (B, 3 or 1). Boxes are passed as two
  corner points with labels 2 and 3, *before* the clicks, and the prompt encoder appends its padding
  point in every case, exactly as the official predictor does.

Attribute names are the official ``SAM2Base`` ones (``image_encoder``, ``sam_prompt_encoder``,
``sam_mask_decoder``, ``no_mem_embed``); the video-only modules are left out (see
:data:`clicksam.model.build.SAM2_VIDEO_ONLY_KEYS`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from . import frames
from .prompt_encoder import PromptEncoder
from .sam2_image_encoder import ImageEncoder
from .sam2_mask_decoder import Sam2MaskDecoder

__all__ = ["SAM2_PIXEL_MEAN", "SAM2_PIXEL_STD", "Sam2", "Sam2ImageFeatures"]

# ImageNet statistics on the 0-1 scale (SAM 2 normalises after ToTensor)
SAM2_PIXEL_MEAN = (0.485, 0.456, 0.406)
SAM2_PIXEL_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Sam2ImageFeatures:
    """One or B images' decoder inputs (shapes for a 1024 input; see the module docstring).

    Attributes:
        image_embed: (B, 256, 64, 64), ``no_mem_embed`` added.
        high_res_feats_0: (B, 32, 256, 256), after ``conv_s0``.
        high_res_feats_1: (B, 64, 128, 128), after ``conv_s1``.
    """

    image_embed: torch.Tensor
    high_res_feats_0: torch.Tensor
    high_res_feats_1: torch.Tensor

    @property
    def high_res_feats(self) -> list[torch.Tensor]:
        """[high_res_feats_0, high_res_feats_1], the official order."""
        return [self.high_res_feats_0, self.high_res_feats_1]

    def select(self, index: int) -> Sam2ImageFeatures:
        """Image ``index`` of a batch, keeping the batch axis: (1, ...) tensors."""
        return Sam2ImageFeatures(
            self.image_embed[index : index + 1],
            self.high_res_feats_0[index : index + 1],
            self.high_res_feats_1[index : index + 1],
        )


class Sam2(nn.Module):
    """SAM 2.1's image path: predicts object masks from an image and prompts."""

    mask_threshold: float = 0.0
    image_format: str = "RGB"
    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor

    def __init__(
        self,
        *,
        image_encoder: ImageEncoder,
        sam_prompt_encoder: PromptEncoder,
        sam_mask_decoder: Sam2MaskDecoder,
        image_size: int = 1024,
        backbone_stride: int = 16,
    ) -> None:
        """
        Args:
            image_encoder: (B, 3, S, S) -> three (B, 256, .) levels, highest resolution first.
            sam_prompt_encoder: SAM's prompt encoder over the (S, S) square and the S/16 grid.
            sam_mask_decoder: SAM 2's mask decoder.
            image_size: side S of the square input (1024).
            backbone_stride: stride of the image embedding (16: a 64x64 grid).
        """
        super().__init__()
        self.image_encoder = image_encoder
        self.sam_prompt_encoder = sam_prompt_encoder
        self.sam_mask_decoder = sam_mask_decoder
        self.image_size = image_size
        self.backbone_stride = backbone_stride
        hidden = sam_prompt_encoder.embed_dim
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, hidden))
        nn.init.trunc_normal_(self.no_mem_embed, std=0.02)
        self.register_buffer("pixel_mean", torch.tensor(SAM2_PIXEL_MEAN).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(SAM2_PIXEL_STD).view(-1, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def image_embedding_size(self) -> int:
        """Side of the image embedding grid (64 for image_size 1024)."""
        return self.image_size // self.backbone_stride

    @property
    def low_res_size(self) -> int:
        """Side of the decoder's low-res logits (256 for image_size 1024)."""
        return 4 * self.image_embedding_size

    def preprocess(self, image: npt.NDArray[np.uint8]) -> torch.Tensor:
        """(H, W, 3) uint8 RGB -> (1, 3, S, S) float, stretched to the square and normalised."""
        x = frames.resize_to_square_torch(np.asarray(image), self.image_size).to(self.device)
        return ((x - self.pixel_mean) / self.pixel_std)[None]

    def forward_image(self, img_batch: torch.Tensor) -> list[torch.Tensor]:
        """The official ``forward_image``'s ``backbone_fpn``: the three neck levels, the two high-res
        ones already through ``conv_s0`` / ``conv_s1`` (no ``no_mem_embed``).

        Args:
            img_batch: (B, 3, S, S) normalised RGB.

        Returns:
            [(B, 32, S/4, S/4), (B, 64, S/8, S/8), (B, 256, S/16, S/16)].
        """
        s0, s1, s2 = self.image_encoder(img_batch)
        s0, s1 = self.sam_mask_decoder.project_high_res(s0, s1)
        return [s0, s1, s2]

    def encode_image(self, img_batch: torch.Tensor) -> Sam2ImageFeatures:
        """(B, 3, S, S) normalised RGB -> the decoder's inputs (see :class:`Sam2ImageFeatures`)."""
        s0, s1, s2 = self.forward_image(img_batch)
        # the official code adds it on the flattened (HW, B, C) tokens: the same per-channel sum
        image_embed = s2 + self.no_mem_embed.view(1, -1, 1, 1)
        return Sam2ImageFeatures(image_embed=image_embed, high_res_feats_0=s0, high_res_feats_1=s1)

    def decode(
        self,
        features: Sam2ImageFeatures,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        mask_input: torch.Tensor | None = None,
        *,
        multimask_output: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode prompts on one image's features.

        Args:
            features: one image's features (batch 1).
            point_coords: (B, N, 2) xy in the square-input frame (box corners first, labels 2 / 3),
                or None.
            point_labels: (B, N) int labels, or None.
            mask_input: (B, 1, 256, 256) low-res logits, or None.
            multimask_output: the 3 candidates instead of one (dynamically selected) mask.

        Returns:
            low-res logits (B, 3 or 1, 256, 256) and IoU predictions (B, 3 or 1).
        """
        points = None
        if point_coords is not None:
            if point_labels is None:
                raise ValueError("point_labels must be given with point_coords")
            points = (point_coords, point_labels)
        sparse, dense = self.sam_prompt_encoder(points=points, boxes=None, masks=mask_input)
        batched = points is not None and points[0].shape[0] > 1
        return self.sam_mask_decoder(
            image_embeddings=features.image_embed,
            image_pe=self.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
            repeat_image=batched,
            high_res_features=features.high_res_feats,
        )

    def postprocess_masks(self, masks: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
        """(B, C, 256, 256) low-res logits -> (B, C, H, W) logits in the original frame."""
        return frames.upsample_masks_to_original(masks, original_size)
