"""Open-vocabulary detection: text queries and exemplar boxes in, labelled boxes in original pixels out.

The ``Detector`` protocol is what the server and ``clicksam detect`` use, so another detector can be added
later. ``Owlv2Detector`` is the first implementation: OWLv2 (CLIP-based, Apache-2.0 weights
``google/owlv2-base-patch16-ensemble`` and ``-large-``) on Hugging Face ``transformers`` (the optional
``clicksam[text]`` extra), whose model code it calls as is. It lives in ``model/`` because it is a model,
but ``model/`` needs only torch + numpy at import: ``transformers`` and ``scipy`` are imported inside
``Owlv2Detector`` (and ``preprocess_owlv2``), never at module level (tests/test_boundaries.py).

The work is split so that a server can cache each part:

- ``image_features(pixels)``: the image side (the ViT on the padded, resized image, the box head, and the
  class head's per-patch projection), once per image; the expensive part.
- ``text_embeddings(texts)``: the text side, one vector per string (cache them by string).
- ``exemplar_embeddings(pixels, boxes)``: one query vector per exemplar box.
- ``detect(features, queries, labels, threshold)``: a few matrix products per query set.

Frames. OWLv2 pads the image to a square with its long side (bottom and right) and resizes that square to
``input_size``; its boxes are relative to the padded square. They are mapped back by the long side (not by
(W, H)) and clipped to the image here, once: everything outside this module sees original pixels.

Pre-processing is our own (numpy + scipy), the same maths as transformers 5.24's
``Owlv2ImageProcessorPil``: rescale to [0, 1], pad with 0.0 (transformers 4.x padded with 0.5), an
anti-aliasing Gaussian (sigma = (factor - 1) / 2), linear ``scipy.ndimage.zoom`` (grid mode, mirror),
clip to the input's range, CLIP normalisation. It filters only the image plus the Gaussian's reach into the
padding (the rest of the padded square is exactly zero before and after filtering), so a 12 MP photo does
not allocate a 16 MP float square; no torchvision anywhere.

Exemplars follow transformers >= 5.20's image-guided detection: the exemplar box is cropped from the image
and used as a query image, and the query vector is the class embedding of the crop's patch with the
highest objectness (before 5.20: IoU with the whole crop + least mean similarity). Its scores are the
same sigmoid probabilities as text queries' (not ``post_process_image_guided_detection``'s display alphas).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt
import torch

if TYPE_CHECKING:
    from collections.abc import Sequence

logger = logging.getLogger(__name__)

#: CLIP's normalisation (OWLv2's preprocessor_config.json)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: label of detections found by exemplar boxes
EXEMPLAR_LABEL = "exemplar"
#: detections narrower or lower than this many original pixels are dropped by ``postprocess``
MIN_BOX_SIDE = 1.0


class DetectorError(Exception):
    """A detector cannot be loaded or run (missing extra, unreadable folder)."""


@dataclass(frozen=True)
class ImageFeatures:
    """The image side of one image, everything a query needs.

    Attributes:
        original_size: (H, W) of the image in original pixels.
        class_embeds: (N, D) float32, the class head's per-patch projections, L2-normalised.
        logit_shift: (N, 1) float32, the class head's per-patch shift.
        logit_scale: (N, 1) float32, the class head's per-patch scale (ELU + 1 applied).
        boxes: (N, 4) float32 x0, y0, x1, y1 of each patch's box in original pixels, clipped to the image.
    """

    original_size: tuple[int, int]
    class_embeds: torch.Tensor
    logit_shift: torch.Tensor
    logit_scale: torch.Tensor
    boxes: torch.Tensor

    @property
    def nbytes(self) -> int:
        """Bytes held by the tensors (for a cache's byte budget)."""
        tensors = (self.class_embeds, self.logit_shift, self.logit_scale, self.boxes)
        return sum(t.numel() * t.element_size() for t in tensors)


@dataclass(frozen=True)
class Detections:
    """Detections of one image, sorted by descending score.

    Attributes:
        boxes: (K, 4) float32 x0, y0, x1, y1 in original pixels.
        scores: (K,) float32 probabilities in [0, 1].
        labels: K labels (the text query, or ``EXEMPLAR_LABEL``).
    """

    boxes: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float32]
    labels: list[str]

    def __len__(self) -> int:
        return len(self.labels)


class Detector(Protocol):
    """An open-vocabulary detector split into cacheable parts (see the module docstring)."""

    name: str
    #: the longest text query in tokens (start and end tokens included)
    max_text_tokens: int

    def image_features(self, pixels: npt.NDArray[np.uint8]) -> ImageFeatures:
        """(H, W, 3) uint8 RGB, original frame -> the image side."""
        ...

    def text_token_count(self, text: str) -> int:
        """Tokens of ``text`` as the text side reads it (start and end tokens included)."""
        ...

    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """Q strings -> (Q, D) float32 query vectors."""
        ...

    def exemplar_embeddings(
        self, pixels: npt.NDArray[np.uint8], boxes: npt.NDArray[np.float64]
    ) -> torch.Tensor:
        """(H, W, 3) uint8 image and (E, 4) x0, y0, x1, y1 boxes in its pixels -> (E, D) query vectors."""
        ...

    def detect(
        self, features: ImageFeatures, queries: torch.Tensor, labels: Sequence[str], threshold: float
    ) -> Detections:
        """Every patch whose best query scores above ``threshold``, labelled with that query, no NMS."""
        ...


# --- pre-processing ---------------------------------------------------------------------------------


def preprocess_owlv2(
    pixels: npt.NDArray[np.uint8],
    input_size: int,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
) -> npt.NDArray[np.float32]:
    """OWLv2's input for an image: pad to a square (bottom/right, 0.0), anti-aliased resize, normalise.

    Args:
        pixels: (H, W, 3) uint8 RGB, original frame.
        input_size: side S of the model's square input.
        mean, std: per-channel normalisation of [0, 1] values.

    Returns:
        (3, S, S) float32; pixel (x, y) of the input covers original pixels (x, y) * max(H, W) / S.
    """
    from scipy import ndimage

    height, width = pixels.shape[:2]
    side = max(height, width)
    image = pixels.astype(np.float32) * np.float32(1 / 255)  # (H, W, 3) in [0, 1]
    factor = side / input_size
    if factor > 1:
        sigma = (factor - 1) / 2
        # scipy's kernel radius (truncate=4); rows/columns more than a radius past the image stay 0 after
        # filtering, and a region of two radii (+2) past it never mirrors image pixels back at its far edge
        radius = int(4.0 * sigma + 0.5)
        reach = 2 * radius + 2
        region = np.zeros((min(side, height + reach), min(side, width + reach), 3), np.float32)
        region[:height, :width] = image
        # a region that reaches the square's far edge has the same mirror boundary there as the square
        filtered = ndimage.gaussian_filter(region, (sigma, sigma, 0), cval=0, mode="mirror")
        square = np.zeros((side, side, 3), np.float32)
        square[: region.shape[0], : region.shape[1]] = filtered
    else:
        square = np.zeros((side, side, 3), np.float32)
        square[:height, :width] = image
    zoom = input_size / side
    out = ndimage.zoom(square, (zoom, zoom, 1), order=1, mode="mirror", cval=0, grid_mode=True)
    low = float(image.min()) if height == width else min(0.0, float(image.min()))  # the padded square's range
    out = np.clip(out, low, float(image.max()))
    out = (out - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float32)  # (3, S, S)


def crop_box(pixels: npt.NDArray[np.uint8], box: Sequence[float]) -> npt.NDArray[np.uint8]:
    """The pixels of ``box`` (x0, y0, x1, y1 in original pixels): floor of the start, ceil of the end."""
    height, width = pixels.shape[:2]
    x0 = min(max(math.floor(box[0]), 0), width - 1)
    y0 = min(max(math.floor(box[1]), 0), height - 1)
    x1 = max(min(math.ceil(box[2]), width), x0 + 1)
    y1 = max(min(math.ceil(box[3]), height), y0 + 1)
    return np.ascontiguousarray(pixels[y0:y1, x0:x1])


# --- post-processing ----------------------------------------------------------------------------------


def box_iou(box: npt.NDArray[np.float32], boxes: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """IoU of one (4,) x0, y0, x1, y1 box with each of (K, 4) boxes -> (K,)."""
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0).astype(np.float32)


def postprocess(
    detections: Detections, *, threshold: float, iou_threshold: float, max_detections: int
) -> Detections:
    """Score threshold, greedy NMS within each label, at most ``max_detections``, sorted by score.

    Boxes under ``MIN_BOX_SIDE`` pixels wide or high (boxes that clipping to the image flattened: the
    patch predicted an object mostly outside it) are dropped. ``iou_threshold`` >= 1 turns NMS off.
    """
    sides = detections.boxes[:, 2:] - detections.boxes[:, :2]
    order = np.argsort(-detections.scores, kind="stable")
    order = order[(detections.scores[order] > threshold) & (sides[order].min(axis=1) >= MIN_BOX_SIDE)]
    kept: list[int] = []
    kept_by_label: dict[str, list[int]] = {}
    for i in order:
        label = detections.labels[i]
        same = kept_by_label.setdefault(label, [])
        overlaps = same and iou_threshold < 1
        if overlaps and float(box_iou(detections.boxes[i], detections.boxes[same]).max()) > iou_threshold:
            continue
        same.append(int(i))
        kept.append(int(i))
        if len(kept) >= max_detections:
            break
    index = np.asarray(kept, dtype=np.int64)
    return Detections(
        boxes=detections.boxes[index].reshape(-1, 4),
        scores=detections.scores[index],
        labels=[detections.labels[i] for i in kept],
    )


# --- OWLv2 ----------------------------------------------------------------------------------------


def _require_transformers() -> Any:
    try:
        import transformers
    except ImportError as exc:
        raise DetectorError(
            "text and exemplar prompts need the 'text' extra: pip install 'clicksam[text]'"
        ) from exc
    return transformers


class Owlv2Detector:
    """OWLv2 from a Hugging Face-format folder (config.json, model.safetensors, tokenizer, preprocessor).

    Args:
        folder: the model folder (``clicksam weights download owlv2-base`` puts one in the cache).
        name: the name reported to clients (default: the folder's name).

    Raises:
        DetectorError: the ``text`` extra is missing or the folder does not hold an OWLv2 model.
    """

    def __init__(self, folder: Path, *, name: str | None = None) -> None:
        transformers = _require_transformers()
        self.folder = folder
        self.name = name or folder.name
        try:
            self.model = transformers.Owlv2ForObjectDetection.from_pretrained(folder).eval()
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        except (OSError, ValueError) as exc:
            raise DetectorError(f"{folder} does not hold a loadable OWLv2 model: {exc}") from exc
        vision = self.model.config.vision_config
        self.input_size = int(vision.image_size)
        self.patch_size = int(vision.patch_size)
        self.max_text_tokens = int(self.model.config.text_config.max_position_embeddings)
        self.mean, self.std = CLIP_MEAN, CLIP_STD
        prep_path = folder / "preprocessor_config.json"
        if prep_path.is_file():
            prep = json.loads(prep_path.read_text())
            self.mean = tuple(prep.get("image_mean", CLIP_MEAN))
            self.std = tuple(prep.get("image_std", CLIP_STD))
            size = prep.get("size", {})
            if size and (size.get("height"), size.get("width")) != (self.input_size, self.input_size):
                raise DetectorError(
                    f"{prep_path}: size {size} differs from the model's image_size {self.input_size}"
                )
        params = sum(p.numel() for p in self.model.parameters())
        logger.info("OWLv2 %s: %.1fM parameters, input %d px", self.name, params / 1e6, self.input_size)

    @classmethod
    def from_parts(cls, model: Any, tokenizer: Any, *, name: str) -> Owlv2Detector:
        """A detector over an already built ``Owlv2ForObjectDetection`` and tokenizer (benchmarks:
        the real base configuration with random weights, without writing 620 MB to disk)."""
        detector = cls.__new__(cls)
        detector.folder = Path()
        detector.name = name
        detector.model = model.eval()
        detector.tokenizer = tokenizer
        vision = model.config.vision_config
        detector.input_size = int(vision.image_size)
        detector.patch_size = int(vision.patch_size)
        detector.max_text_tokens = int(model.config.text_config.max_position_embeddings)
        detector.mean, detector.std = CLIP_MEAN, CLIP_STD
        return detector

    def _pixel_values(self, pixels: npt.NDArray[np.uint8]) -> torch.Tensor:
        x = preprocess_owlv2(pixels, self.input_size, self.mean, self.std)
        return torch.from_numpy(x)[None]  # (1, 3, S, S)

    def _feature_map(self, pixels: npt.NDArray[np.uint8]) -> tuple[torch.Tensor, torch.Tensor]:
        """The vision tower: (1, N, C) patch features and their (1, h, w, C) map (N = h * w)."""
        feature_map = self.model.image_embedder(pixel_values=self._pixel_values(pixels))[0]
        b, h, w, c = feature_map.shape
        return feature_map.reshape(b, h * w, c), feature_map

    @torch.inference_mode()
    def image_features(self, pixels: npt.NDArray[np.uint8]) -> ImageFeatures:
        """(H, W, 3) uint8 RGB, original frame -> the image side (see ``ImageFeatures``)."""
        height, width = pixels.shape[:2]
        feats, feature_map = self._feature_map(pixels)  # (1, N, C)
        head = self.model.class_head
        class_embeds = head.dense0(feats)[0]  # (N, D)
        class_embeds = class_embeds / (torch.linalg.norm(class_embeds, dim=-1, keepdim=True) + 1e-6)
        shift = head.logit_shift(feats)[0]  # (N, 1)
        scale = head.elu(head.logit_scale(feats)[0]) + 1  # (N, 1)
        cxcywh = self.model.box_predictor(feats, feature_map)[0]  # (N, 4) relative to the padded square
        boxes = torch.cat([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], dim=1)
        boxes = boxes * max(height, width)  # padded square -> original pixels (same origin, same scale)
        limit = torch.tensor([width, height, width, height], dtype=boxes.dtype)
        boxes = torch.minimum(boxes.clamp(min=0), limit)
        return ImageFeatures(
            original_size=(height, width),
            class_embeds=class_embeds.float().contiguous(),
            logit_shift=shift.float().contiguous(),
            logit_scale=scale.float().contiguous(),
            boxes=boxes.float().contiguous(),
        )

    def text_token_count(self, text: str) -> int:
        # tokenize() (no start/end tokens, no over-length warning) + the start and end tokens
        return len(self.tokenizer.tokenize(text)) + 2

    @torch.inference_mode()
    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """Q strings (each at most ``max_text_tokens`` tokens) -> (Q, D) float32 query vectors."""
        tokens = self.tokenizer(
            list(texts), padding="max_length", max_length=self.max_text_tokens, return_tensors="pt"
        )
        out = self.model.owlv2.get_text_features(
            input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
        )
        return out.pooler_output.float()  # (Q, D)

    @torch.inference_mode()
    def exemplar_embeddings(
        self, pixels: npt.NDArray[np.uint8], boxes: npt.NDArray[np.float64]
    ) -> torch.Tensor:
        """(E, 4) exemplar boxes in original pixels -> (E, D): the most object-like patch of each crop."""
        queries = []
        for box in boxes:
            feats, _ = self._feature_map(crop_box(pixels, box))  # (1, N, C)
            class_embeds = self.model.class_head.dense0(feats)[0]  # (N, D), not normalised
            objectness = self.model.objectness_predictor(feats)[0]  # (N,)
            queries.append(class_embeds[int(objectness.argmax())])
        return torch.stack(queries).float()  # (E, D)

    @torch.inference_mode()
    def detect(
        self, features: ImageFeatures, queries: torch.Tensor, labels: Sequence[str], threshold: float
    ) -> Detections:
        """Each patch's best query (``post_process_object_detection``'s rule): score, label, box; no NMS.

        Args:
            features: the image side.
            queries: (Q, D) query vectors (text and/or exemplar).
            labels: Q labels, one per query.
            threshold: keep scores strictly above it.
        """
        q = queries / (torch.linalg.norm(queries, dim=-1, keepdim=True) + 1e-6)
        logits = (features.class_embeds @ q.T + features.logit_shift) * features.logit_scale  # (N, Q)
        best = logits.max(dim=1)
        scores = torch.sigmoid(best.values)
        keep = scores > threshold
        order = torch.argsort(scores[keep], descending=True, stable=True)
        index = torch.nonzero(keep).flatten()[order]
        return Detections(
            boxes=features.boxes[index].numpy().astype(np.float32).reshape(-1, 4),
            scores=scores[index].numpy().astype(np.float32),
            labels=[labels[int(i)] for i in best.indices[index]],
        )


def load_detector(folder: Path, *, name: str | None = None) -> Detector:
    """The detector in a Hugging Face-format folder (only OWLv2 for now: ``model_type`` "owlv2").

    Raises:
        DetectorError: no such folder, not an OWLv2 model, or the ``text`` extra is missing.
    """
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise DetectorError(f"{folder} has no config.json: not a Hugging Face model folder")
    model_type = json.loads(config_path.read_text()).get("model_type")
    if model_type != "owlv2":
        raise DetectorError(f"{folder} holds a {model_type!r} model; only OWLv2 ('owlv2') is supported")
    return Owlv2Detector(folder, name=name)
