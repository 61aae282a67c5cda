"""``SAM2AutomaticMaskGenerator``: segment-everything for SAM 2.1, with the official generator's options.

The pipeline (grid, crops, IoU / stability / crop-edge filters, NMS, RLE, records) is the shared one of
:class:`~clicksam.model.automatic.MaskGeneratorBase`; this module says how SAM 2.1 turns grid points
into candidates, as the official ``SAM2AutomaticMaskGenerator`` (sam2 1.1.0) does through its image
predictor:

* a crop is stretched to the 1024x1024 square input and encoded to its three feature levels
  (:class:`~clicksam.model.sam2.Sam2ImageFeatures`); grid points go to that frame per axis,
  ``(x / w, y / h) * 1024`` in float32, and the records report them as float32;
* the decoder's output tokens are ``[obj_score, iou, mask...]`` and its upscaling adds the two
  high-resolution levels; the same factored :class:`~clicksam.model.automatic.GridDecoder` as SAM 1's
  runs it, IoU first, upscaling only points with a candidate above ``pred_iou_thresh``;
* ``multimask_output=False`` keeps one mask per point, chosen by the decoder's dynamic
  stability rule (token 0 if stable, else the best-scored candidate);
* ``use_m2m`` refines every candidate once more, prompting with its point and its own low-res logits
  (clamped to +-32) as ``mask_input``, single-mask output; the IoU filter then applies to the refined
  masks' scores;
* low-res logits go straight to the crop's size with one bilinear resize;
* ``min_mask_region_area`` > 0 does what the official generator asks its predictor for
  (``max_hole_area = max_sprinkle_area = min_mask_region_area``): in each candidate's low-res logits,
  8-connected background regions of at most that many low-res pixels become foreground (logit
  threshold + 10) and foreground regions that small become background (threshold - 10), before the
  resize. (The official code needs its CUDA extension for this and silently skips it without one, on
  CPU; here it always runs.) There is no second clean-up on full-size masks, unlike SAM 1.

Frames: ``point_coords`` in records are xy in original image pixels; ``bbox`` and ``crop_box`` XYWH in
original image pixels; the decoder sees points in the 1024x1024 square-input frame of their crop and
returns logits in the 256x256 low-res frame over that square.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, fields

import numpy as np
import numpy.typing as npt
import torch

from . import amg, frames
from .automatic import (
    DECODER_CHUNK,
    Candidates,
    CropDecoder,
    EverythingError,
    GridDecoder,
    MaskGeneratorBase,
    iou_filter,
)
from .sam2 import Sam2, Sam2ImageFeatures

__all__ = ["M2M_LOGIT_CLAMP", "SAM2AutomaticMaskGenerator"]

#: the official predictor clamps the low-res logits it returns (the m2m step's mask input) to this
M2M_LOGIT_CLAMP = 32.0
#: logit set on filled holes (threshold + this) and removed sprinkles (threshold - this), as official
FILL_LOGIT = 10.0


class _Sam2CropDecoder:
    """SAM 2.1's grid decoding on one crop's features (see the module docstring).

    Args:
        model: the SAM 2.1 model (eval mode for dynamic single-mask selection, as official).
        features: the crop's features, batch 1.
        crop_size: (h, w) of the crop in pixels.
        generator: the options (thresholds, ``multimask_output``, ``use_m2m``, clean-up area).
    """

    def __init__(
        self,
        model: Sam2,
        features: Sam2ImageFeatures,
        crop_size: tuple[int, int],
        generator: SAM2AutomaticMaskGenerator,
    ) -> None:
        self.model = model
        self.features = features
        self.crop_size = crop_size
        self.gen = generator
        dec = model.sam_mask_decoder
        pe = model.sam_prompt_encoder
        dense = pe.no_mask_embed.weight.reshape(1, -1, 1, 1)
        tokens = torch.cat([dec.obj_score_token.weight, dec.iou_token.weight, dec.mask_tokens.weight], dim=0)
        self.grid = GridDecoder(
            dec, tokens, features.image_embed + dense, pe.get_dense_pe(), self._upscale, iou_index=1
        )

    def _upscale(self, x: torch.Tensor) -> torch.Tensor:
        """(P, C, h, w) final image tokens -> (P, C/8, 4h, 4w), adding the (1, ...) high-res levels."""
        dc1, ln1, act1, dc2, act2 = self.model.sam_mask_decoder.output_upscaling
        x = act1(ln1(dc1(x) + self.features.high_res_feats_1))  # (P, C/4, 2h, 2w)
        return act2(dc2(x) + self.features.high_res_feats_0)

    def _square(self, points: torch.Tensor) -> torch.Tensor:
        """(..., 2) float32 xy crop pixels -> the square-input frame, as the official transform."""
        return frames.apply_coords_square(points, self.crop_size, self.model.image_size)

    def _first_pass(self, points: npt.NDArray[np.float64]) -> Candidates:
        """Per point, the multimask candidates (or the dynamically chosen single mask)."""
        n = len(points)
        pts = torch.as_tensor(points, dtype=torch.float32)  # as the official generator
        labels = torch.ones(n, 1, dtype=torch.int)
        sparse, _ = self.model.sam_prompt_encoder(
            points=(self._square(pts)[:, None, :], labels), boxes=None, masks=None
        )
        tokens, keys = self.grid.transformer_forward(sparse)
        iou_all, mask_tokens = self.grid.iou_and_mask_tokens(tokens)  # (B, 1 + 3), (B, 1 + 3, C)
        filter_now = not self.gen.use_m2m  # m2m filters on the refined scores
        thresh = self.gen.pred_iou_thresh if filter_now else 0.0
        if self.gen.multimask_output:
            # IoU first: only points with a candidate above the threshold are upscaled
            cand = iou_filter(iou_all[:, 1:], thresh)
            idx = cand.any(dim=1).nonzero().squeeze(1)
            token_sel = torch.zeros(len(idx), iou_all.shape[1], dtype=torch.bool)
            token_sel[:, 1:] = cand[idx]
            low_res = self._masks(keys[idx], mask_tokens[idx], token_sel)
            point_of, token_of = cand.nonzero(as_tuple=True)  # point-major, as official
            return Candidates(low_res, iou_all[:, 1:][point_of, token_of], pts[point_of], len(idx))
        # single mask: the stability rule needs token 0's mask, so every point is upscaled
        everything = torch.ones(n, iou_all.shape[1], dtype=torch.bool)
        all_masks = self._masks(keys, mask_tokens, everything).reshape(
            n, iou_all.shape[1], *self._low_res_hw()
        )
        masks, iou = self._single(all_masks, iou_all)  # (n, 1, h, w), (n, 1)
        keep = iou_filter(iou[:, 0], thresh)
        return Candidates(masks[keep, 0], iou[keep, 0], pts[keep], n)

    def _low_res_hw(self) -> tuple[int, int]:
        h, w = self.grid.grid_hw
        return 4 * h, 4 * w

    def _masks(self, keys: torch.Tensor, mask_tokens: torch.Tensor, token_sel: torch.Tensor) -> torch.Tensor:
        if len(keys) == 0:
            return torch.zeros(0, *self._low_res_hw())
        return self.grid.masks_for(keys, mask_tokens, token_sel)

    def _single(self, all_masks: torch.Tensor, iou_all: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, h, w), (B, T) -> the decoder's single-mask output (B, 1, h, w), (B, 1)."""
        dec = self.model.sam_mask_decoder
        if dec.dynamic_multimask_via_stability and not dec.training:
            return dec.dynamic_multimask_via_stability_select(all_masks, iou_all)
        return all_masks[:, 0:1], iou_all[:, 0:1]

    def _refine(self, first: Candidates) -> Candidates:
        """The m2m step: each candidate again, with its own clamped low-res logits as mask input."""
        masks, ious = [], []
        prompt = first.low_res.clamp(-M2M_LOGIT_CLAMP, M2M_LOGIT_CLAMP)
        for s in range(0, len(first.points), DECODER_CHUNK):
            pts = first.points[s : s + DECODER_CHUNK]
            labels = torch.ones(len(pts), 1, dtype=torch.int)
            low, iou = self.model.decode(
                self.features,
                self._square(pts)[:, None, :],
                labels,
                prompt[s : s + DECODER_CHUNK, None],
                multimask_output=False,
            )
            masks.append(low[:, 0])
            ious.append(iou[:, 0])
        if not masks:
            return first
        low_res, iou = torch.cat(masks), torch.cat(ious)
        keep = iou_filter(iou, self.gen.pred_iou_thresh)
        return Candidates(low_res[keep], iou[keep], first.points[keep], first.upscaled_points + len(iou))

    def candidates(self, points: npt.NDArray[np.float64]) -> Candidates:
        first = self._first_pass(points)
        return self._refine(first) if self.gen.use_m2m else first

    def upsample(self, low_res: torch.Tensor) -> torch.Tensor:
        area = self.gen.min_mask_region_area
        if area > 0:
            low_res = amg.fill_small_regions(low_res, self.model.mask_threshold, area, area, FILL_LOGIT)
        return frames.upsample_masks_to_original(low_res[:, None], self.crop_size)[:, 0]


@dataclass(eq=False)
class SAM2AutomaticMaskGenerator(MaskGeneratorBase[Sam2, Sam2ImageFeatures]):
    """Masks for everything in an image, with the options, defaults and records of SAM 2.1's generator.

    ``model`` is the SAM 2.1 model; the options are :class:`~clicksam.model.automatic.MaskGeneratorBase`'s
    with the official ``SAM2AutomaticMaskGenerator`` defaults (``pred_iou_thresh`` 0.8, the rest as SAM
    1's), plus:

    Attributes:
        mask_threshold: logit above which a pixel is in a mask (stability score and binarisation).
        use_m2m: refine every candidate once with its own low-res logits as mask input.
        multimask_output: three candidates per point; False keeps the dynamically chosen single mask.

    ``min_mask_region_area`` cleans low-res logits up before the resize (see the module docstring).
    ``image_embedding`` for :meth:`generate` is the whole image's
    :class:`~clicksam.model.sam2.Sam2ImageFeatures` (batch 1).
    """

    model: Sam2
    _: KW_ONLY
    pred_iou_thresh: float = 0.8
    mask_threshold: float = 0.0
    use_m2m: bool = False
    multimask_output: bool = True

    def _check_features(self, features: Sam2ImageFeatures) -> None:
        if not isinstance(features, Sam2ImageFeatures) or features.image_embed.shape[0] != 1:
            raise EverythingError(
                "image_embedding must be the Sam2ImageFeatures (batch 1) of the whole image, "
                f"got {type(features).__name__}"
            )

    def _threshold(self) -> float:
        return float(self.mask_threshold)

    def features_from_tensors(self, tensors: Mapping[str, torch.Tensor]) -> Sam2ImageFeatures:
        names = [f.name for f in fields(Sam2ImageFeatures)]
        if sorted(tensors) != sorted(names):
            raise EverythingError(f"SAM 2.1 takes the tensors {names}, got {sorted(tensors)}")
        features = Sam2ImageFeatures(**{name: tensors[name] for name in names})
        self._check_features(features)
        return features

    def _crop_decoder(self, crop: npt.NDArray[np.uint8], features: Sam2ImageFeatures | None) -> CropDecoder:
        model = self.model
        if features is None:
            features = model.encode_image(model.preprocess(crop))
        device = model.device
        features = Sam2ImageFeatures(
            features.image_embed.to(device),
            features.high_res_feats_0.to(device),
            features.high_res_feats_1.to(device),
        )
        return _Sam2CropDecoder(model, features, (int(crop.shape[0]), int(crop.shape[1])), self)
