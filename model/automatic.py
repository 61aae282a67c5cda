"""Segment-everything: the automatic mask generator's pipeline, shared by the families, and SAM 1's.

The algorithm and its options are SAM's: one foreground point per grid cell (per crop layer), the three
multimask candidates of each point, kept when the predicted IoU is above ``pred_iou_thresh`` and the
stability score (area of logits > threshold + offset over area of logits > threshold - offset, on the
logits upsampled to the image) is at least ``stability_score_thresh``; masks touching an inner crop edge
are dropped, duplicates removed by box NMS within each crop and then across crops (smaller crops win),
and optionally small holes and islands are cleaned up before a last NMS.

:class:`MaskGeneratorBase` holds that pipeline once; a family says how a crop is encoded and how grid
points become low-res candidates and full-size logits (a :class:`CropDecoder`).
:class:`SamAutomaticMaskGenerator` is SAM 1's (and MobileSAM's);
``clicksam.model.sam2_automatic.SAM2AutomaticMaskGenerator`` is SAM 2.1's. :func:`mask_generator`
picks the one that fits a model.

What differs from the official code is how the work is done, so that the records come out the same but
much sooner:

* The decoder runs in a factored form (:class:`GridDecoder`, the two-way transformer as
  :class:`~clicksam.model.two_way_forms.GridForm`). In the first transformer block the image tokens are
  the same for every point, so their projections are computed once, not once per point; in the
  attentions from tokens to image, the 7 tokens are projected into the image's channel space instead
  of projecting all 4096 image tokens into the attention space (and likewise for the image's queries
  against 7 token keys). The upscaling convolutions, the most expensive per-point step, only
  run for points with at least one candidate above ``pred_iou_thresh``: the IoU prediction does not
  need them.
* Only candidates that pass the IoU filter are upsampled to full resolution (in small chunks, which
  keeps memory flat), with the family's exact resizes; SAM 1's second resize is skipped when it is the
  identity.
* RLE encoding and NMS are vectorised (:mod:`clicksam.model.amg`).

Frames: ``point_coords`` in records are xy in original image pixels; ``bbox`` and ``crop_box`` are XYWH
in original image pixels; SAM 1's decoder sees points in the resized-input (1024) frame of their crop
and returns logits in the 256x256 low-res frame of the padded input.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field, fields
from typing import Any, Generic, Protocol, TypeVar, cast

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from clicksam.errors import UsageError

from . import amg, frames
from .predictor import SamPredictor
from .sam import Sam
from .transformer import TwoWayTransformer
from .two_way_forms import (
    DenseImage,
    GridForm,
    SharedImage,
    TwoWayForm,
    pe_tables,
    run_two_way,
    shared_image,
)

__all__ = [
    "OUTPUT_MODES",
    "Candidates",
    "CropDecoder",
    "EverythingError",
    "GridDecoder",
    "MaskGeneratorBase",
    "SamAutomaticMaskGenerator",
    "iou_filter",
    "mask_generator",
]

logger = logging.getLogger(__name__)

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")

#: points decoded at once, at most (``points_per_batch`` caps it further)
DECODER_CHUNK = 8

ProgressCallback = Callable[[int, int], None]
"""Called as ``progress(points_done, points_total)`` after every decoder batch."""


class EverythingError(UsageError, ValueError):
    """Invalid options or input for automatic mask generation."""


# --------------------------------------------------------------------------------- factored decoder


class GridDecoder:
    """A SAM-style mask decoder for many single-point prompts on one image, in factored form.

    Mathematically the same as the decoder module's multimask forward pass; float results agree to
    rounding. The two-way transformer runs as :class:`~clicksam.model.two_way_forms.GridForm`: the first
    block's image projections and the PE's projections are computed once per image. Both families use
    it: SAM 1 (:meth:`for_sam`) and SAM 2.1 (``clicksam.model.sam2_automatic``), whose decoders differ in
    their output tokens (SAM 2.1 adds an object-score token first) and their upscaling (SAM 2.1 adds the
    high-resolution features).

    Args:
        decoder: the mask decoder module (official attribute names: ``transformer``,
            ``output_hypernetworks_mlps``, ``iou_prediction_head``).
        output_tokens: (Nt, C) the decoder's output tokens in order; the IoU token is at ``iou_index``
            and the mask tokens follow it.
        src: (1, C, h, w) image embedding plus the dense "no mask" prompt (the same for every point).
        pe: (1, C, h, w) dense positional encoding of the embedding grid.
        upscale: (P, C, h, w) final image tokens -> (P, C/8, 4h, 4w) upscaled features.
        iou_index: index of the IoU token in ``output_tokens``.
    """

    def __init__(
        self,
        decoder: nn.Module,
        output_tokens: torch.Tensor,
        src: torch.Tensor,
        pe: torch.Tensor,
        upscale: Callable[[torch.Tensor], torch.Tensor],
        iou_index: int = 0,
    ) -> None:
        self.decoder = decoder
        self.transformer = cast(TwoWayTransformer, decoder.transformer)
        self.output_tokens = output_tokens
        self.iou_index = iou_index
        self.num_mask_tokens = len(cast(nn.ModuleList, decoder.output_hypernetworks_mlps))
        self.upscale = upscale
        self.grid_hw = (int(src.shape[-2]), int(src.shape[-1]))
        pos = pe.flatten(2).transpose(1, 2)  # (1, h*w, C)
        self.image = shared_image(self.transformer, src.flatten(2).transpose(1, 2), pos)
        self.tables = pe_tables(self.transformer, pos[0], first=1)

    @classmethod
    def for_sam(cls, sam: Sam, image_embedding: torch.Tensor) -> GridDecoder:
        """The grid decoder of a SAM 1 model on a (1, C, h, w) image embedding."""
        dec, pe = sam.mask_decoder, sam.prompt_encoder
        dense = pe.no_mask_embed.weight.reshape(1, -1, 1, 1)
        tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0)
        return cls(dec, tokens, image_embedding + dense, pe.get_dense_pe(), dec.output_upscaling)

    def transformer_forward(self, sparse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the two-way transformer for single-point prompts.

        Args:
            sparse: (B, M, C) sparse prompt embeddings.

        Returns:
            output tokens (B, Nt + M, C) and per-point image tokens (B, HW, C).
        """
        tokens = torch.cat([self.output_tokens[None].expand(sparse.shape[0], -1, -1), sparse], dim=1)
        form: TwoWayForm[SharedImage | DenseImage] = GridForm(int(sparse.shape[0]), self.tables)
        queries, image = run_two_way(self.transformer, tokens, self.image, form)
        if not isinstance(image, DenseImage):
            raise RuntimeError("a two-way transformer without blocks has no per-point image tokens")
        return queries, image.tokens

    def iou_and_mask_tokens(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, Nt + M, C) transformer outputs -> IoU predictions (B, T) and mask tokens (B, T, C)."""
        iou = cast(nn.Module, self.decoder.iou_prediction_head)(tokens[:, self.iou_index])
        start = self.iou_index + 1
        return iou, tokens[:, start : start + self.num_mask_tokens]

    def masks_for(
        self, keys: torch.Tensor, mask_tokens_out: torch.Tensor, token_idx: torch.Tensor
    ) -> torch.Tensor:
        """Low-res logits of chosen mask tokens.

        Args:
            keys: (P, HW, C) image tokens of the P points that need masks.
            mask_tokens_out: (P, T, C) mask token outputs of those points.
            token_idx: (P, T) bool, which tokens of each point to produce.

        Returns:
            (K, 4h, 4w) logits in the low-res frame, K = token_idx.sum(), point-major order.
        """
        p, _, c = keys.shape
        h, w = self.grid_hw
        upscaled = self.upscale(keys.transpose(1, 2).reshape(p, c, h, w))  # (P, C/8, 4h, 4w)
        mlps = cast(nn.ModuleList, self.decoder.output_hypernetworks_mlps)
        hyper = torch.stack([mlp(mask_tokens_out[:, t]) for t, mlp in enumerate(mlps)], dim=1)  # (P, T, C/8)
        logits = hyper @ upscaled.flatten(2)  # (P, T, 16hw)
        return logits[token_idx].reshape(-1, upscaled.shape[-2], upscaled.shape[-1])


# ------------------------------------------------------------------------------------ upsampling


def _upsample_logits(
    low_res: torch.Tensor, image_size: int, input_size: tuple[int, int], original_size: tuple[int, int]
) -> torch.Tensor:
    """Low-res logits (K, 256, 256) -> (K, H, W) in the original (crop) frame, as SAM postprocesses them.

    The same two bilinear resizes as ``Sam.postprocess_masks`` (to the padded input, crop the image part,
    to the original size), bit for bit; the second one is skipped when it is the identity (a resize to
    the same size copies its input exactly), which is the case for every image whose long side is
    ``image_size``.
    """
    x = F.interpolate(low_res[:, None], (image_size, image_size), mode="bilinear", align_corners=False)
    x = x[..., : input_size[0], : input_size[1]]
    if tuple(input_size) != tuple(original_size):
        x = F.interpolate(x, original_size, mode="bilinear", align_corners=False)
    return x[:, 0]


# ---------------------------------------------------------------------------------- the generator


@dataclass
class _Masks:
    """Kept masks of a crop or image, in concatenation order (SAM's order: point-major, token-minor)."""

    rles: list[amg.RLE] = field(default_factory=list)
    boxes: list[torch.Tensor] = field(default_factory=list)  # (n, 4) XYXY
    iou_preds: list[torch.Tensor] = field(default_factory=list)
    points: list[torch.Tensor] = field(default_factory=list)  # (n, 2) xy
    stability: list[torch.Tensor] = field(default_factory=list)

    def cat(self) -> dict[str, Any]:
        def c(xs: list[torch.Tensor], shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
            return torch.cat(xs) if xs else torch.zeros(shape, dtype=dtype)

        return {
            "rles": list(self.rles),
            "boxes": c(self.boxes, (0, 4), torch.int64),
            "iou_preds": c(self.iou_preds, (0,), torch.float32),
            "points": c(self.points, (0, 2), torch.float64),
            "stability": c(self.stability, (0,), torch.float32),
        }


def _select(data: dict[str, Any], keep: torch.Tensor) -> dict[str, Any]:
    idx = keep.tolist()
    out: dict[str, Any] = {k: v[keep] for k, v in data.items() if isinstance(v, torch.Tensor)}
    out["rles"] = [data["rles"][i] for i in idx]
    return out


@dataclass(frozen=True)
class Candidates:
    """Masks of a batch of grid points that passed the predicted-IoU filter, point-major.

    Attributes:
        low_res: (K, h, w) logits in the family's low-res frame.
        iou: (K,) predicted IoU of each.
        points: (K, 2) xy crop pixels, the prompt of each (in the dtype the records report).
        upscaled_points: points whose features were upscaled to make them (for the stats).
    """

    low_res: torch.Tensor
    iou: torch.Tensor
    points: torch.Tensor
    upscaled_points: int


class CropDecoder(Protocol):
    """What the shared pipeline needs from a model family for one crop (or the whole image)."""

    def candidates(self, points: npt.NDArray[np.float64]) -> Candidates:
        """Candidates of (n, 2) xy grid points in crop pixels, filtered by predicted IoU."""
        ...

    def upsample(self, low_res: torch.Tensor) -> torch.Tensor:
        """(k, h, w) low-res logits -> (k, H, W) logits over the crop's pixels."""
        ...


ModelT = TypeVar("ModelT")
FeaturesT = TypeVar("FeaturesT")


@dataclass(eq=False)
class MaskGeneratorBase(ABC, Generic[ModelT, FeaturesT]):
    """The automatic mask generator's pipeline, shared by the model families.

    Grid, crops, the IoU / stability / crop-edge filters, box NMS within and across crops, RLE and the
    records live here once; a family gives :meth:`_crop_decoder` (how a crop is encoded and how grid
    points become low-res candidates and full-size logits), :meth:`_threshold` and :meth:`_finish`.

    Options (keyword-only; the families' official defaults are set by the subclasses):
        points_per_side: grid points along each side of the image (layer 0); exclusive with
            ``point_grids``.
        points_per_batch: points decoded together (memory ~ 5 MB a point).
        pred_iou_thresh: keep candidates whose predicted IoU is above this (0 disables).
        stability_score_thresh: keep candidates whose stability score is at least this (0 disables).
        stability_score_offset: logit offset of the stability score.
        box_nms_thresh: box IoU above which NMS drops the lower-IoU duplicate within a crop.
        crop_n_layers: extra layers of crops; layer i has (2**i)**2 crops.
        crop_nms_thresh: box IoU for NMS across crops (smaller crops preferred).
        crop_overlap_ratio: overlap of first-layer crops as a fraction of the short side.
        crop_n_points_downscale_factor: layer i uses points_per_side / factor**i points a side.
        point_grids: explicit (N, 2) xy grids in [0, 1], one per crop layer.
        min_mask_region_area: small-region clean-up, in pixels (0 disables; what it does is the
            family's, see the subclasses).
        output_mode: ``"binary_mask"`` ((H, W) bool arrays), ``"uncompressed_rle"`` or ``"coco_rle"``
            (``{"size": [H, W], "counts": str}``, JSON-ready).
        upsample_chunk: candidates upsampled to full resolution at once (memory ~ 4*H*W bytes each).

    Raises:
        EverythingError: inconsistent or out-of-range options (at construction).
    """

    _: KW_ONLY
    points_per_side: int | None = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    point_grids: Sequence[npt.NDArray[np.floating[Any]]] | None = None
    min_mask_region_area: int = 0
    output_mode: str = "binary_mask"
    upsample_chunk: int = 8

    def __post_init__(self) -> None:
        self._check_options()
        self.grids = self._layer_grids()  # (N, 2) xy in [0, 1] per crop layer
        # counters of the last generate() call, for logs and benchmarks
        self.stats: dict[str, int] = {}

    def _check_options(self) -> None:
        if (self.points_per_side is None) == (self.point_grids is None):
            raise EverythingError("give exactly one of points_per_side and point_grids")
        if self.output_mode not in OUTPUT_MODES:
            raise EverythingError(
                f"output_mode must be one of {', '.join(OUTPUT_MODES)}; got {self.output_mode!r}"
            )
        if self.points_per_batch < 1 or self.upsample_chunk < 1:
            raise EverythingError("points_per_batch and upsample_chunk must be >= 1")
        if self.crop_n_layers < 0 or self.crop_n_points_downscale_factor < 1:
            raise EverythingError("crop_n_layers must be >= 0 and crop_n_points_downscale_factor >= 1")
        for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh", "crop_nms_thresh"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise EverythingError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.crop_overlap_ratio < 1.0:
            raise EverythingError(f"crop_overlap_ratio must lie in [0, 1), got {self.crop_overlap_ratio}")
        if self.min_mask_region_area < 0:
            raise EverythingError("min_mask_region_area must be >= 0")

    def _layer_grids(self) -> list[npt.NDArray[np.float64]]:
        layers, factor = self.crop_n_layers, self.crop_n_points_downscale_factor
        if self.points_per_side is not None:
            if self.points_per_side < 1:
                raise EverythingError(f"points_per_side must be >= 1, got {self.points_per_side}")
            if int(self.points_per_side / factor**layers) < 1:
                raise EverythingError("the last crop layer would have no points: lower the downscale factor")
            return amg.build_all_layer_point_grids(self.points_per_side, layers, factor)
        grids = [np.asarray(g, dtype=np.float64) for g in self.point_grids or ()]
        if len(grids) < layers + 1 or any(g.ndim != 2 or g.shape[1] != 2 for g in grids):
            raise EverythingError("point_grids needs one (N, 2) array per crop layer (crop_n_layers + 1)")
        return grids

    # ------------------------------------------------------------------------------ family hooks

    @abstractmethod
    def _crop_decoder(self, crop: npt.NDArray[np.uint8], features: FeaturesT | None) -> CropDecoder:
        """The decoder for one (H, W, 3) crop; ``features`` are its encoder outputs when the caller
        has them (the whole image's, from a cache), else the crop is encoded here."""

    @abstractmethod
    def _check_features(self, features: FeaturesT) -> None:
        """Raise :class:`EverythingError` when cached whole-image features have the wrong form."""

    @abstractmethod
    def features_from_tensors(self, tensors: Mapping[str, torch.Tensor]) -> FeaturesT:
        """The family's whole-image features from named tensors (as the server caches them: the
        decoder's per-image input names), for :meth:`generate`'s ``image_embedding``.

        Raises:
            EverythingError: the names or shapes do not fit the model.
        """

    @abstractmethod
    def _threshold(self) -> float:
        """The logit above which a pixel is in a mask."""

    def _finish(self, data: dict[str, Any]) -> dict[str, Any]:
        """Last step on the kept masks of the whole image (none by default)."""
        return data

    # ------------------------------------------------------------------------------ public API

    def total_points(self, image_size: tuple[int, int]) -> int:
        """Number of point prompts :meth:`generate` will decode for an image of (H, W)."""
        _, layers = amg.generate_crop_boxes(image_size, self.crop_n_layers, self.crop_overlap_ratio)
        return sum(len(self.grids[i]) for i in layers)

    @torch.no_grad()
    def generate(
        self,
        image: npt.NDArray[np.uint8],
        *,
        image_embedding: FeaturesT | None = None,
        progress: ProgressCallback | None = None,
    ) -> list[dict[str, Any]]:
        """Masks for everything in an image.

        Args:
            image: (H, W, 3) uint8 RGB.
            image_embedding: optional encoder outputs of the whole image (e.g. from a cache), in the
                family's form; crops are always encoded here.
            progress: called as ``progress(points_done, points_total)``.

        Returns:
            records with ``segmentation`` (per ``output_mode``), ``area`` (int pixels), ``bbox`` (XYWH),
            ``predicted_iou``, ``point_coords`` ([[x, y]] original pixels), ``stability_score`` and
            ``crop_box`` (XYWH), in the official generator's order.

        Raises:
            EverythingError: the image is not HxWx3 uint8 or an embedding has the wrong shape.
        """
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
            raise EverythingError(
                f"expected an HxWx3 uint8 RGB image, got shape {image.shape} dtype {image.dtype}"
            )
        orig_size = (int(image.shape[0]), int(image.shape[1]))
        if image_embedding is not None:
            self._check_features(image_embedding)
        self.stats = dict.fromkeys(("points", "candidates", "upscaled_points", "upsampled", "kept"), 0)
        crop_boxes, layer_idxs = amg.generate_crop_boxes(
            orig_size, self.crop_n_layers, self.crop_overlap_ratio
        )
        total = sum(len(self.grids[i]) for i in layer_idxs)
        done = [0]

        def step(n: int) -> None:
            done[0] += n
            if progress is not None:
                progress(done[0], total)

        parts: list[dict[str, Any]] = []
        for crop_box, layer in zip(crop_boxes, layer_idxs, strict=True):
            features = image_embedding if crop_box == [0, 0, orig_size[1], orig_size[0]] else None
            parts.append(self._process_crop(image, crop_box, layer, orig_size, features, step))
        data: dict[str, Any] = {
            "rles": [r for p in parts for r in p["rles"]],
            **{k: torch.cat([p[k] for p in parts]) for k in parts[0] if k != "rles"},
        }
        if len(crop_boxes) > 1 and len(data["rles"]) > 0:
            # prefer masks from smaller crops
            scores = 1 / amg.box_area(data["crop_boxes"])
            data = _select(data, amg.nms(data["boxes"].float(), scores, self.crop_nms_thresh))
        data = self._finish(data)
        self.stats["kept"] = len(data["rles"])
        logger.debug("everything: %s", self.stats)
        return self._records(data)

    # ------------------------------------------------------------------------------ internals

    def _process_crop(
        self,
        image: npt.NDArray[np.uint8],
        crop_box: list[int],
        layer: int,
        orig_size: tuple[int, int],
        features: FeaturesT | None,
        step: Callable[[int], None],
    ) -> dict[str, Any]:
        x0, y0, x1, y1 = crop_box
        crop = image[y0:y1, x0:x1, :]
        crop_size = (int(crop.shape[0]), int(crop.shape[1]))
        decoder = self._crop_decoder(crop, features)
        points = self.grids[layer] * np.array(crop_size)[None, ::-1]  # xy in crop pixels
        acc = _Masks()
        # the factored decoder streams (B, 4096, 256) tensors per step: small batches stay in memory
        # that is already mapped, large ones spend their time in fresh allocations
        step_size = min(self.points_per_batch, DECODER_CHUNK)
        for start in range(0, len(points), step_size):
            batch = points[start : start + step_size]
            self._process_batch(decoder, batch, crop_box, orig_size, acc)
            step(len(batch))
        data = acc.cat()
        data["stability"] = data["stability"].float()
        if len(data["rles"]):
            data = _select(data, amg.nms(data["boxes"].float(), data["iou_preds"], self.box_nms_thresh))
        data["boxes"] = amg.uncrop_boxes_xyxy(data["boxes"], crop_box)
        data["points"] = amg.uncrop_points(data["points"], crop_box)
        data["crop_boxes"] = torch.tensor([crop_box] * len(data["rles"]), dtype=torch.int64).reshape(-1, 4)
        return data

    def _process_batch(
        self,
        decoder: CropDecoder,
        points: npt.NDArray[np.float64],
        crop_box: list[int],
        orig_size: tuple[int, int],
        acc: _Masks,
    ) -> None:
        self.stats["points"] += len(points)
        cand = decoder.candidates(points)
        self.stats["candidates"] += len(cand.iou)
        self.stats["upscaled_points"] += cand.upscaled_points
        thr, off = self._threshold(), self.stability_score_offset
        orig_h, orig_w = orig_size
        for s in range(0, len(cand.low_res), self.upsample_chunk):
            chunk = cand.low_res[s : s + self.upsample_chunk]
            self.stats["upsampled"] += len(chunk)
            logits = decoder.upsample(chunk)  # (k, h, w) crop pixels
            stab = amg.calculate_stability_score(logits, thr, off)
            keep = (
                stab >= self.stability_score_thresh
                if self.stability_score_thresh > 0.0
                else torch.ones_like(stab, dtype=torch.bool)
            )
            if not keep.any():
                continue
            masks = logits[keep] > thr
            boxes = amg.batched_mask_to_box(masks)
            inner = ~amg.is_box_near_crop_edge(boxes, crop_box, [0, 0, orig_w, orig_h])
            if not inner.any():
                continue
            masks, boxes = masks[inner], boxes[inner]
            sel = keep.nonzero().squeeze(1)[inner]
            acc.rles.extend(amg.mask_to_rle(amg.uncrop_masks(masks, crop_box, orig_h, orig_w)))
            acc.boxes.append(boxes)
            acc.iou_preds.append(cand.iou[s : s + self.upsample_chunk][sel])
            acc.points.append(cand.points[s : s + self.upsample_chunk][sel])
            acc.stability.append(stab[sel])

    def _records(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        boxes = amg.box_xyxy_to_xywh(data["boxes"]).tolist()
        crops = amg.box_xyxy_to_xywh(data["crop_boxes"]).tolist()
        ious = data["iou_preds"].tolist()
        stab = data["stability"].tolist()
        points = data["points"].tolist()
        records = []
        for i, rle in enumerate(data["rles"]):
            seg: Any
            if self.output_mode == "coco_rle":
                seg = amg.coco_encode_rle(rle)
            elif self.output_mode == "binary_mask":
                seg = amg.rle_to_mask(rle)
            else:
                seg = rle
            records.append(
                {
                    "segmentation": seg,
                    "area": amg.area_from_rle(rle),
                    "bbox": boxes[i],
                    "predicted_iou": ious[i],
                    "point_coords": [points[i]],
                    "stability_score": stab[i],
                    "crop_box": crops[i],
                }
            )
        return records


def iou_filter(iou: torch.Tensor, thresh: float) -> torch.Tensor:
    """Which predicted IoUs pass ``> thresh`` (all of them when ``thresh`` is 0, as the official code)."""
    return iou > thresh if thresh > 0.0 else torch.ones_like(iou, dtype=torch.bool)


# ------------------------------------------------------------------------------------------ SAM 1


class _SamCropDecoder:
    """SAM 1's grid decoding on one crop: IoU first, then masks only for the candidates that pass."""

    def __init__(
        self, sam: Sam, embedding: torch.Tensor, crop_size: tuple[int, int], pred_iou_thresh: float
    ) -> None:
        self.sam = sam
        self.grid = GridDecoder.for_sam(sam, embedding.to(sam.device))
        self.crop_size = crop_size
        self.input_size = frames.get_preprocess_shape(crop_size[0], crop_size[1], sam.image_size)
        self.pred_iou_thresh = pred_iou_thresh

    def candidates(self, points: npt.NDArray[np.float64]) -> Candidates:
        sam = self.sam
        n = len(points)
        coords = torch.as_tensor(
            frames.apply_coords(points, self.crop_size, sam.image_size), dtype=torch.float32
        )
        labels = torch.ones(n, 1, dtype=torch.int)
        sparse, _ = sam.prompt_encoder(points=(coords[:, None, :], labels), boxes=None, masks=None)
        tokens, keys = self.grid.transformer_forward(sparse)
        iou_all, mask_tokens = self.grid.iou_and_mask_tokens(tokens)  # (B, 1 + 3), (B, 1 + 3, C)
        # filter by predicted IoU before any mask exists: it needs no upscaling
        cand = iou_filter(iou_all[:, 1:], self.pred_iou_thresh)  # the three multimask candidates
        pts = cand.any(dim=1).nonzero().squeeze(1)
        token_sel = torch.zeros(len(pts), iou_all.shape[1], dtype=torch.bool)
        token_sel[:, 1:] = cand[pts]
        if len(pts):
            low_res = self.grid.masks_for(keys[pts], mask_tokens[pts], token_sel)  # (K, 256, 256)
        else:
            h, w = self.grid.grid_hw
            low_res = torch.zeros(0, 4 * h, 4 * w)
        point_of, token_of = cand.nonzero(as_tuple=True)  # point-major, as SAM flattens
        return Candidates(
            low_res, iou_all[:, 1:][point_of, token_of], torch.as_tensor(points)[point_of], len(pts)
        )

    def upsample(self, low_res: torch.Tensor) -> torch.Tensor:
        return _upsample_logits(low_res, self.sam.image_size, self.input_size, self.crop_size)


@dataclass(eq=False)
class SamAutomaticMaskGenerator(MaskGeneratorBase[Sam, torch.Tensor]):
    """Masks for everything in an image, with the options, defaults and records of SAM 1's generator.

    ``sam`` is the model (its decoder must have SAM's layout; any official checkpoint does); the
    options are :class:`MaskGeneratorBase`'s with SAM 1's defaults. ``min_mask_region_area`` > 0 fills
    holes and removes islands smaller than that many pixels in the full-size masks, then runs NMS once
    more, preferring masks that did not change. ``image_embedding`` for :meth:`generate` is the
    (1, C, 64, 64) embedding of the whole image.
    """

    sam: Sam

    def __post_init__(self) -> None:
        super().__post_init__()
        self.predictor = SamPredictor(self.sam)

    def _check_features(self, features: torch.Tensor) -> None:
        if features.ndim != 4 or features.shape[0] != 1:
            raise EverythingError(f"image_embedding must be (1, C, h, w), got {tuple(features.shape)}")

    def _threshold(self) -> float:
        return float(self.sam.mask_threshold)

    def features_from_tensors(self, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if len(tensors) != 1:
            raise EverythingError(f"SAM 1 takes one image embedding, got tensors {sorted(tensors)}")
        (embedding,) = tensors.values()
        self._check_features(embedding)
        return embedding

    def _crop_decoder(self, crop: npt.NDArray[np.uint8], features: torch.Tensor | None) -> CropDecoder:
        if features is None:
            self.predictor.set_image(crop)
            assert self.predictor.features is not None
            features = self.predictor.features
            self.predictor.reset_image()
        crop_size = (int(crop.shape[0]), int(crop.shape[1]))
        return _SamCropDecoder(self.sam, features, crop_size, self.pred_iou_thresh)

    def _finish(self, data: dict[str, Any]) -> dict[str, Any]:
        if self.min_mask_region_area > 0:
            return self._postprocess_small_regions(data)
        return data

    def _postprocess_small_regions(self, data: dict[str, Any]) -> dict[str, Any]:
        """Fill small holes, remove small islands, then NMS preferring masks that did not change."""
        if len(data["rles"]) == 0:
            return data
        area = self.min_mask_region_area
        masks, scores = [], []
        for rle in data["rles"]:
            mask = amg.rle_to_mask(rle)
            mask, changed_holes = amg.remove_small_regions(mask, area, "holes")
            mask, changed_islands = amg.remove_small_regions(mask, area, "islands")
            masks.append(torch.as_tensor(mask))
            scores.append(0.0 if changed_holes or changed_islands else 1.0)
        stacked = torch.stack(masks)
        boxes = amg.batched_mask_to_box(stacked)
        keep = amg.nms(boxes.float(), torch.tensor(scores), max(self.box_nms_thresh, self.crop_nms_thresh))
        for i in keep.tolist():
            if scores[i] == 0.0:
                data["rles"][i] = amg.mask_to_rle(stacked[i : i + 1])[0]
                data["boxes"][i] = boxes[i]
        return _select(data, keep)


def mask_generator(model: nn.Module, **options: Any) -> MaskGeneratorBase[Any, Any]:
    """The automatic mask generator of ``model``'s family, with that family's official defaults.

    Args:
        model: a SAM 1 / MobileSAM :class:`~clicksam.model.sam.Sam` or a SAM 2.1
            :class:`~clicksam.model.sam2.Sam2`.
        options: generator options (keyword arguments of the family's generator).

    Raises:
        EverythingError: an unknown model type or bad options.
    """
    from .sam2 import Sam2
    from .sam2_automatic import SAM2AutomaticMaskGenerator

    family: type[MaskGeneratorBase[Any, Any]]
    if isinstance(model, Sam):
        family = SamAutomaticMaskGenerator
    elif isinstance(model, Sam2):
        family = SAM2AutomaticMaskGenerator
    else:
        raise EverythingError(f"no automatic mask generator for a {type(model).__name__}")
    known = {f.name for f in fields(family) if f.init and f.kw_only}
    unknown = sorted(set(options) - known)
    if unknown:
        raise EverythingError(
            f"{family.__name__} has no option {', '.join(unknown)}; it takes {', '.join(sorted(known))}"
        )
    return family(model, **options)  # type: ignore[arg-type]  # the family fits the model, checked above
