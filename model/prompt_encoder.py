"""SAM's prompt encoder: points, boxes and a low-res mask to sparse and dense prompt embeddings.

Frames: point and box coordinates are xy in the resized-input frame (``input_image_size``, 1024x1024
for the official models; a point at pixel (x, y) means that pixel's centre). Mask prompts are logits in
the low-res frame (``4 * image_embedding_size``, 256x256), covering the whole padded input.

Point labels: 1 foreground, 0 background, 2 / 3 top-left / bottom-right box corner (the form the ONNX
decoder takes boxes in; equal to passing ``boxes``), -1 padding ("not a point").
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .common import LayerNorm2d

__all__ = ["PositionEmbeddingRandom", "PromptEncoder"]


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features of normalised xy coordinates (Tancik et al. 2020)."""

    positional_encoding_gaussian_matrix: torch.Tensor

    def __init__(self, num_pos_feats: int = 64, scale: float | None = None) -> None:
        """
        Args:
            num_pos_feats: frequencies; the encoding has 2 * num_pos_feats channels (sin and cos).
            scale: standard deviation of the frequencies; None or <= 0 means 1.
        """
        super().__init__()
        if scale is None or scale <= 0.0:
            scale = 1.0
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats)))

    def _pe_encoding(self, coords: torch.Tensor) -> torch.Tensor:
        """(..., 2) xy in [0, 1] -> (..., 2 * num_pos_feats)."""
        coords = 2 * coords - 1  # to [-1, 1]
        coords = coords @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Encoding of every cell centre of an (h, w) grid: (2 * num_pos_feats, h, w)."""
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        grid = torch.ones((h, w), device=device, dtype=torch.float32)
        y_embed = (grid.cumsum(dim=0) - 0.5) / h
        x_embed = (grid.cumsum(dim=1) - 0.5) / w
        pe = self._pe_encoding(torch.stack([x_embed, y_embed], dim=-1))  # (h, w, C)
        return pe.permute(2, 0, 1)

    def forward_with_coords(self, coords_input: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Encode pixel coordinates.

        Args:
            coords_input: (B, N, 2) xy in pixels of an image of ``image_size``.
            image_size: (H, W) of that image.

        Returns:
            (B, N, 2 * num_pos_feats).
        """
        coords = coords_input.clone()
        coords[:, :, 0] = coords[:, :, 0] / image_size[1]
        coords[:, :, 1] = coords[:, :, 1] / image_size[0]
        return self._pe_encoding(coords.to(torch.float))


class PromptEncoder(nn.Module):
    """Embeds prompts for SAM's mask decoder."""

    def __init__(
        self,
        *,
        embed_dim: int,
        image_embedding_size: tuple[int, int],
        input_image_size: tuple[int, int],
        mask_in_chans: int,
    ) -> None:
        """
        Args:
            embed_dim: prompt embedding width (256 for the official models).
            image_embedding_size: (H, W) of the image embedding grid (64, 64).
            input_image_size: (H, W) of the padded input image the coordinates refer to (1024, 1024).
            mask_in_chans: hidden channels of the mask-prompt downscaler (16).
        """
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = input_image_size
        self.image_embedding_size = image_embedding_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)

        # foreground, background, box top-left, box bottom-right
        self.num_point_embeddings: int = 4
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)

        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def _point_embedding(self, i: int) -> torch.Tensor:
        """(1, embed_dim) learned vector of point label ``i`` (0 bg, 1 fg, 2/3 box corners)."""
        table = self.point_embeddings[i]
        assert isinstance(table, nn.Embedding)
        return table.weight

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image embedding grid: (1, embed_dim, H, W)."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def _embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """(B, N, 2) xy (resized-input frame) + (B, N) labels -> (B, N (+1 if pad), embed_dim)."""
        points = points + 0.5  # a pixel index means that pixel's centre
        if pad:
            # without a box the decoder was trained with one "not a point" token appended
            points = torch.cat([points, torch.zeros_like(points[:, :1])], dim=1)
            labels = torch.cat([labels, -torch.ones_like(labels[:, :1])], dim=1)
        embedding = self.pe_layer.forward_with_coords(points, self.input_image_size)
        labels = labels[..., None]  # (B, N, 1) to broadcast over channels
        # masks rather than indexed assignment: same numbers, and it traces to a static ONNX graph
        embedding = torch.where(labels == -1, torch.zeros_like(embedding), embedding)
        embedding = embedding + self.not_a_point_embed.weight * (labels == -1)
        for i in range(self.num_point_embeddings):
            embedding = embedding + self._point_embedding(i) * (labels == i)
        return embedding

    def _embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """(B, 4) xyxy boxes (resized-input frame) -> (B, 2, embed_dim) corner embeddings."""
        boxes = boxes + 0.5  # pixel centres
        corners = boxes.reshape(-1, 2, 2)
        embedding = self.pe_layer.forward_with_coords(corners, self.input_image_size)
        top_left = embedding[:, 0, :] + self._point_embedding(2)
        bottom_right = embedding[:, 1, :] + self._point_embedding(3)
        return torch.stack([top_left, bottom_right], dim=1)

    def _embed_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """(B, 1, 4H, 4W) low-res mask logits -> (B, embed_dim, H, W)."""
        return self.mask_downscaling(masks)

    @staticmethod
    def _get_batch_size(
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> int:
        if points is not None:
            return int(points[0].shape[0])
        if boxes is not None:
            return int(boxes.shape[0])
        if masks is not None:
            return int(masks.shape[0])
        return 1

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed any combination of prompts.

        Args:
            points: ((B, N, 2) xy coordinates in the resized-input frame, (B, N) labels), or None.
            boxes: (B, 4) xyxy boxes in the resized-input frame, or None.
            masks: (B, 1, 256, 256) mask logits in the low-res frame, or None.

        Returns:
            sparse (B, M, embed_dim) for the points (+ one padding token when there is no box) and the
            two box corners, and dense (B, embed_dim, H, W) from the mask (or the learned no-mask vector).
        """
        bs = self._get_batch_size(points, boxes, masks)
        device = self.no_mask_embed.weight.device
        sparse = torch.empty((bs, 0, self.embed_dim), device=device)
        if points is not None:
            coords, labels = points
            sparse = torch.cat([sparse, self._embed_points(coords, labels, pad=boxes is None)], dim=1)
        if boxes is not None:
            sparse = torch.cat([sparse, self._embed_boxes(boxes)], dim=1)

        if masks is not None:
            dense = self._embed_masks(masks)
        else:
            h, w = self.image_embedding_size
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(bs, -1, h, w)
        return sparse, dense
