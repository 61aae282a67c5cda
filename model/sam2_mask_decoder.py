"""SAM 2.1's mask decoder: SAM's decoder plus high-resolution skip features and an object-score token.

What differs from :class:`~clicksam.model.mask_decoder.MaskDecoder` (whose layers it keeps):

* the output tokens are ``[obj_score_token, iou_token, mask_tokens...]`` (the object-score token is
  attended to like the others; its head ``pred_obj_score_head`` only serves video tracking and is not
  part of this model);
* the upscaling path adds the two high-resolution features: ``conv_s1`` projects the stride-8 level
  to C/4 channels, added after the first transposed convolution; ``conv_s0`` projects the stride-4
  level to C/8, added after the second. The projections are applied once per image
  (:meth:`project_high_res`), not per prompt;
* the IoU head ends in a sigmoid;
* single-mask output is chosen dynamically (eval mode only, as the official code): token 0's mask if
  its stability score (IoU of the logits thresholded at +-delta) is at least ``thresh``, else the
  multimask candidate with the highest predicted IoU.

Frames: masks come out as (B, C, 4h, 4w) logits over the whole 1024x1024 input (the low-res frame,
256x256); the image embedding is (B, 256, h, w) with h = w = 64.
"""

from __future__ import annotations

import torch
from torch import nn

from .mask_decoder import MLP, MaskDecoder
from .transformer import TwoWayTransformer

__all__ = ["Sam2MaskDecoder", "sam2_two_way_transformer"]


def _token_mlp(embedding_dim: int, mlp_dim: int) -> nn.Module:
    """SAM 2's token MLP in the two-way blocks: keys ``mlp.layers.0/1``, ReLU."""
    return MLP(embedding_dim, mlp_dim, embedding_dim, 2)


def sam2_two_way_transformer(
    *, depth: int, embedding_dim: int, num_heads: int, mlp_dim: int
) -> TwoWayTransformer:
    """SAM's two-way transformer with SAM 2's MLP layout (the same maths, other key names)."""
    return TwoWayTransformer(
        depth=depth, embedding_dim=embedding_dim, num_heads=num_heads, mlp_dim=mlp_dim, mlp_block=_token_mlp
    )


class Sam2MaskDecoder(MaskDecoder):
    """SAM 2.1's mask decoder (image path): see the module docstring for what it adds to SAM's."""

    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer: TwoWayTransformer,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
        dynamic_multimask_via_stability: bool = True,
        dynamic_multimask_stability_delta: float = 0.05,
        dynamic_multimask_stability_thresh: float = 0.98,
    ) -> None:
        """
        Args:
            transformer_dim: channel width C (256).
            transformer: the two-way transformer (:func:`sam2_two_way_transformer`).
            num_multimask_outputs: candidate masks for multimask output (3).
            iou_head_depth, iou_head_hidden_dim: the IoU MLP (sigmoid output).
            dynamic_multimask_via_stability: pick single-mask output by stability (the official
                predictor's setting); False always returns token 0's mask.
            dynamic_multimask_stability_delta: logit margin of the stability score.
            dynamic_multimask_stability_thresh: minimum stability to keep token 0's mask.
        """
        super().__init__(
            transformer_dim=transformer_dim,
            transformer=transformer,
            num_multimask_outputs=num_multimask_outputs,
            iou_head_depth=iou_head_depth,
            iou_head_hidden_dim=iou_head_hidden_dim,
        )
        self.iou_prediction_head.sigmoid_output = True
        self.obj_score_token = nn.Embedding(1, transformer_dim)
        self.conv_s0 = nn.Conv2d(transformer_dim, transformer_dim // 8, kernel_size=1, stride=1)
        self.conv_s1 = nn.Conv2d(transformer_dim, transformer_dim // 4, kernel_size=1, stride=1)
        self.dynamic_multimask_via_stability = dynamic_multimask_via_stability
        self.dynamic_multimask_stability_delta = dynamic_multimask_stability_delta
        self.dynamic_multimask_stability_thresh = dynamic_multimask_stability_thresh

    def project_high_res(
        self, feat_s0: torch.Tensor, feat_s1: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The neck's two high-res levels to what :meth:`forward` takes (done once per image).

        Args:
            feat_s0: (B, C, 4h, 4w) stride-4 neck level; feat_s1: (B, C, 2h, 2w) stride-8 level.

        Returns:
            (B, C/8, 4h, 4w) and (B, C/4, 2h, 2w).
        """
        return self.conv_s0(feat_s0), self.conv_s1(feat_s1)

    def forward(  # type: ignore[override]
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        repeat_image: bool,
        high_res_features: list[torch.Tensor] | tuple[torch.Tensor, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Masks and IoU scores for B prompt sets (the official signature; returns two of its four).

        Args:
            image_embeddings: (1 or B, C, h, w), ``no_mem_embed`` already added.
            image_pe: (1, C, h, w) from ``PromptEncoder.get_dense_pe``.
            sparse_prompt_embeddings: (B, M, C); dense_prompt_embeddings: (B, C, h, w).
            multimask_output: the 3 candidates instead of one mask.
            repeat_image: repeat a single image (and its high-res features) for the B prompt sets.
            high_res_features: [(1 or B, C/8, 4h, 4w), (1 or B, C/4, 2h, 2w)], after conv_s0 / conv_s1.

        Returns:
            mask logits (B, 3 or 1, 4h, 4w) in the low-res frame and IoU predictions (B, 3 or 1).
        """
        masks, iou_pred = self.predict_all_masks(
            image_embeddings,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            repeat_image=repeat_image,
            high_res_features=high_res_features,
        )
        if multimask_output:
            return masks[:, 1:], iou_pred[:, 1:]
        if self.dynamic_multimask_via_stability and not self.training:
            return self.dynamic_multimask_via_stability_select(masks, iou_pred)
        return masks[:, 0:1], iou_pred[:, 0:1]

    def predict_all_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        *,
        repeat_image: bool,
        high_res_features: list[torch.Tensor] | tuple[torch.Tensor, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every mask token: logits (B, num_mask_tokens, 4h, 4w), IoU predictions (B, num_mask_tokens)."""
        output_tokens = torch.cat(
            [self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight], dim=0
        )  # (2 + T, C)
        batch = sparse_prompt_embeddings.shape[0]
        tokens = torch.cat(
            [output_tokens.unsqueeze(0).expand(batch, -1, -1), sparse_prompt_embeddings], dim=1
        )

        # one image's high-res features broadcast over B prompt sets, as in the official code
        feat_s0, feat_s1 = high_res_features
        src = torch.repeat_interleave(image_embeddings, batch, dim=0) if repeat_image else image_embeddings
        src = src + dense_prompt_embeddings
        pos_src = torch.repeat_interleave(image_pe, batch, dim=0)
        b, c, h, w = src.shape

        hs, src = self.transformer(src, pos_src, tokens)
        iou_token_out = hs[:, 1, :]
        mask_tokens_out = hs[:, 2 : 2 + self.num_mask_tokens, :]

        dc1, ln1, act1, dc2, act2 = self.output_upscaling
        upscaled = act1(ln1(dc1(src.transpose(1, 2).reshape(b, c, h, w)) + feat_s1))  # (B, C/4, 2h, 2w)
        upscaled = act2(dc2(upscaled) + feat_s0)  # (B, C/8, 4h, 4w)
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )  # (B, T, C/8)
        b, c8, h4, w4 = upscaled.shape
        masks = (hyper_in @ upscaled.reshape(b, c8, h4 * w4)).reshape(b, -1, h4, w4)
        return masks, self.iou_prediction_head(iou_token_out)

    def stability_scores(self, mask_logits: torch.Tensor) -> torch.Tensor:
        """(B, K, H, W) logits -> (B, K): area(> delta) / area(> -delta), 1 where both are empty."""
        flat = mask_logits.flatten(-2)
        delta = self.dynamic_multimask_stability_delta
        area_i = torch.sum(flat > delta, dim=-1).float()
        area_u = torch.sum(flat > -delta, dim=-1).float()
        return torch.where(area_u > 0, area_i / area_u, 1.0)

    def dynamic_multimask_via_stability_select(
        self, all_mask_logits: torch.Tensor, all_iou_scores: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token 0's mask where it is stable, else the best-scored candidate: (B, 1, H, W), (B, 1)."""
        multimask_logits = all_mask_logits[:, 1:]
        multimask_iou = all_iou_scores[:, 1:]
        best = torch.argmax(multimask_iou, dim=-1)
        rows = torch.arange(multimask_iou.shape[0], device=all_iou_scores.device)
        best_logits = multimask_logits[rows, best].unsqueeze(1)
        best_iou = multimask_iou[rows, best].unsqueeze(1)
        single_logits = all_mask_logits[:, 0:1]
        single_iou = all_iou_scores[:, 0:1]
        is_stable = self.stability_scores(single_logits) >= self.dynamic_multimask_stability_thresh  # (B, 1)
        logits = torch.where(is_stable[..., None, None].expand_as(single_logits), single_logits, best_logits)
        iou = torch.where(is_stable.expand_as(single_iou), single_iou, best_iou)
        return logits, iou
