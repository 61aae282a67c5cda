"""Text and exemplar detection on the server: the detector's image side once per image, then cheap queries.

``DetectionService`` is built in ``lifespan`` when ``--text-model`` names a usable detector. It keeps:

- the pixels of every uploaded image (``remember``, called for each ``POST /api/embeddings``), so the
  detector's image side can run later, lazily, on the first query for that image;
- the image side (``clicksam.model.detection.ImageFeatures``, ~7.5 MB for OWLv2 base), computed once per
  image: one shared computation when several first queries arrive together (single flight), run on the
  embedding service's encoder worker (one thread owns the CPU; its bounded queue answers 503 +
  Retry-After when full, exactly like an embedding);
- exemplar query vectors per (image, box) (each is a vision pass over the crop, on the same worker).

Pixels, image sides and exemplar vectors share one LRU under ``detector_cache_bytes``; text embeddings are
cached by string (small: a few KB each) in an LRU of ``TEXT_CACHE_ENTRIES``. A second text query on a
cached image is a text-tower pass per new string plus a few matrix products.

Errors are ``ServerError``s (one ``detail`` string): 404 unknown image, 409 no detector (with how to turn
it on), 422 bad input (the exact messages are below), 503 busy.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import anyio
import numpy as np
import torch

from clicksam.server.errors import EmbeddingNotFoundError, ServerError

if TYPE_CHECKING:
    from clicksam.model.detection import Detector, ImageFeatures
    from clicksam.server.encoder import Encoder
    from clicksam.server.service import EmbeddingService

logger = logging.getLogger(__name__)

#: the most queries (text and exemplars together) in one request
MAX_QUERIES = 32
#: the longest text query in characters (the detector's token limit is checked too)
MAX_TEXT_CHARS = 200
#: the most detections a request may ask for
MAX_DETECTIONS = 1000
#: IoU above which a lower-scored detection with the same label is dropped
NMS_IOU = 0.5
#: text embeddings kept (by string)
TEXT_CACHE_ENTRIES = 4096

NOT_HELD = (
    "no image with this id on this server for detection (unknown, uploaded before the server started, "
    "or dropped from the detector's cache); upload the image to POST /api/embeddings and use the id it "
    "returns"
)


class DetectorUnavailableError(ServerError):
    """The server runs without a detector; the message says how to turn it on."""

    status_code = 409


class DetectInputError(ServerError):
    """A detect request that cannot be run as sent; the message says what to fix."""

    status_code = 422


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T")


class ByteLRU(Generic[K, V]):
    """LRU under a byte budget (``size(value)`` bytes per entry); a value over the budget is not kept.

    Used from the event loop only (no lock).
    """

    def __init__(self, max_bytes: int, size: Callable[[V], int]) -> None:
        self.max_bytes = max_bytes
        self._size = size
        self._entries: OrderedDict[K, V] = OrderedDict()
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        size = self._size(value)
        old = self._entries.pop(key, None)
        if old is not None:
            self.nbytes -= self._size(old)
        if size > self.max_bytes:
            return
        self._entries[key] = value
        self.nbytes += size
        while self.nbytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.nbytes -= self._size(evicted)


class SingleFlight(Generic[K, T]):
    """One running computation per key: later callers await the first one's task (shielded, so a
    client that goes away does not cancel work others wait for)."""

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Task[T]] = {}
        self.joined = 0

    async def run(self, key: K, make: Callable[[], Any]) -> T:
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(make())
            self._running[key] = task
            task.add_done_callback(lambda _t: self._running.pop(key, None))
        else:
            self.joined += 1
        return await asyncio.shield(task)


def _value_bytes(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    return int(value.nbytes)


@dataclass(frozen=True)
class Detection:
    """One detection: label, box x0, y0, x1, y1 in original pixels, score in [0, 1]."""

    label: str
    box: tuple[float, float, float, float]
    score: float


@dataclass(frozen=True)
class DetectOutcome:
    """The answer to one query, with where the server's time went (milliseconds)."""

    detections: list[Detection]
    image_ms: float
    query_ms: float
    image_cached: bool


def validate_query(
    text: Sequence[str],
    exemplars: Sequence[Sequence[float]],
    threshold: float,
    max_detections: int,
    original_size: tuple[int, int],
    token_count: Callable[[str], int],
    max_tokens: int,
) -> tuple[list[str], np.ndarray]:
    """Check a detect request against the image; returns the stripped texts and (E, 4) float64 boxes.

    Raises:
        DetectInputError: with the message the API answers (tests compare it exactly).
    """
    if not text and not exemplars:
        raise DetectInputError('give at least one text query ("text": ["dog"]) or one exemplar box')
    if len(text) + len(exemplars) > MAX_QUERIES:
        raise DetectInputError(
            f"too many queries: {len(text)} text + {len(exemplars)} exemplars; at most {MAX_QUERIES} together"
        )
    if not (math.isfinite(threshold) and 0.0 <= threshold < 1.0):
        raise DetectInputError(
            f"threshold must be a number from 0 to below 1 (a score must exceed it); got {threshold}"
        )
    if not 1 <= max_detections <= MAX_DETECTIONS:
        raise DetectInputError(f"max_detections must be from 1 to {MAX_DETECTIONS}; got {max_detections}")
    texts: list[str] = []
    for i, raw in enumerate(text, start=1):
        query = " ".join(raw.split())
        if not query:
            raise DetectInputError(f'text query {i} is empty: type what to find, e.g. "dog"')
        if len(query) > MAX_TEXT_CHARS:
            raise DetectInputError(
                f"text query {i} has {len(query)} characters; at most {MAX_TEXT_CHARS}: shorten it"
            )
        tokens = token_count(query)
        if tokens > max_tokens:
            raise DetectInputError(
                f"text query {i} is {tokens} tokens long; the detector reads at most {max_tokens} "
                "(a few words): shorten it"
            )
        texts.append(query)
    height, width = original_size
    boxes = np.zeros((len(exemplars), 4), dtype=np.float64)
    for i, box in enumerate(exemplars, start=1):
        if len(box) != 4 or not all(math.isfinite(v) for v in box):
            raise DetectInputError(f"exemplar {i} must be four numbers [x0, y0, x1, y1] in image pixels")
        x0, y0, x1, y1 = (float(v) for v in box)
        if not (0 <= x0 <= width and 0 <= x1 <= width and 0 <= y0 <= height and 0 <= y1 <= height):
            raise DetectInputError(
                f"exemplar {i} {[x0, y0, x1, y1]} is outside the {width}x{height} image: boxes are "
                f"[x0, y0, x1, y1] in original pixels within 0..{width} and 0..{height}"
            )
        if x1 - x0 < 1 or y1 - y0 < 1:
            raise DetectInputError(
                f"exemplar {i} {[x0, y0, x1, y1]} has no area: x1 must exceed x0 and y1 exceed y0 by at "
                "least 1 pixel; draw a box around one example object"
            )
        boxes[i - 1] = (x0, y0, x1, y1)
    return texts, boxes


@dataclass(eq=False)
class DetectionService:
    """The detector, its caches and the shared encoder worker (see the module docstring).

    Attributes:
        detector: the loaded detector.
        encoder: the embedding service's worker (one CPU owner, bounded queue).
        cache_bytes: byte budget of pixels + image sides + exemplar vectors.
        image_runs: image sides computed (not counting cache hits or joined computations).
        exemplar_runs: exemplar crops run through the vision tower.
        text_runs: strings run through the text tower.
    """

    detector: Detector
    encoder: Encoder
    cache_bytes: int
    image_runs: int = field(default=0, init=False)
    exemplar_runs: int = field(default=0, init=False)
    text_runs: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._cache: ByteLRU[tuple[str, ...], Any] = ByteLRU(self.cache_bytes, _value_bytes)
        self._texts: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._image_flight: SingleFlight[str, ImageFeatures] = SingleFlight()
        self._exemplar_flight: SingleFlight[tuple[str, ...], torch.Tensor] = SingleFlight()
        # text tower and scoring run off the loop, one at a time (each is a few ms; they use torch threads)
        self._query_limiter = anyio.CapacityLimiter(1)

    @property
    def info(self) -> dict[str, Any]:
        """What ``GET /api/config`` says about the detector."""
        return {"model": self.detector.name, "text": True, "exemplars": True}

    def watch(self, service: EmbeddingService) -> None:
        """Remember the pixels of every image ``service.embed`` decodes (uploads, project images), so
        nothing is decoded twice."""
        service.image_observers.append(self.remember)

    def remember(self, image_id: str, pixels: np.ndarray) -> None:
        """Keep an image's (H, W, 3) uint8 RGB pixels (original frame) for its later detector queries."""
        if self._cache.get(("features", image_id)) is None and self._cache.get(("pixels", image_id)) is None:
            self._cache.put(("pixels", image_id), pixels)

    def _size_of(self, image_id: str) -> tuple[int, int]:
        features = self._cache.get(("features", image_id))
        if features is not None:
            return cast("tuple[int, int]", features.original_size)
        pixels = self._cache.get(("pixels", image_id))
        if pixels is None:
            raise EmbeddingNotFoundError(NOT_HELD)
        return int(pixels.shape[0]), int(pixels.shape[1])

    async def detect(
        self,
        image_id: str,
        text: Sequence[str],
        exemplars: Sequence[Sequence[float]],
        threshold: float,
        max_detections: int,
    ) -> DetectOutcome:
        """Detections for text queries and/or exemplar boxes on an uploaded image.

        Raises:
            EmbeddingNotFoundError: no pixels or image side for ``image_id`` (404).
            DetectInputError: bad input (422).
            EncoderBusyError: the worker's queue is full (503 + Retry-After).
        """
        from clicksam.model.detection import EXEMPLAR_LABEL, postprocess

        size = self._size_of(image_id)
        texts, boxes = validate_query(
            text,
            exemplars,
            threshold,
            max_detections,
            size,
            self.detector.text_token_count,
            self.detector.max_text_tokens,
        )
        start = time.perf_counter()
        features = self._cache.get(("features", image_id))
        image_cached = features is not None
        if features is None:
            features = await self._image_flight.run(image_id, lambda: self._image_side(image_id))
        image_ms = (time.perf_counter() - start) * 1000.0
        start = time.perf_counter()
        exemplar_queries = [await self._exemplar(image_id, box) for box in boxes]
        labels = [EXEMPLAR_LABEL] * len(exemplar_queries) + texts
        known = {t: self._texts[t] for t in texts if t in self._texts}
        missing = list(dict.fromkeys(t for t in texts if t not in known))

        def embed_and_score() -> tuple[Any, torch.Tensor | None]:
            # one trip off the event loop per query: the text tower for new strings, then the scoring
            new = self.detector.text_embeddings(missing) if missing else None
            vectors = dict(known)
            if new is not None:
                vectors.update(zip(missing, new, strict=True))
            parts = [q.reshape(-1, q.shape[-1]) for q in exemplar_queries]
            if texts:
                parts.append(torch.stack([vectors[t] for t in texts]))
            found = self.detector.detect(features, torch.cat(parts), labels, threshold)
            kept = postprocess(
                found, threshold=threshold, iou_threshold=NMS_IOU, max_detections=max_detections
            )
            return kept, new

        kept, new = await anyio.to_thread.run_sync(embed_and_score, limiter=self._query_limiter)
        self._remember_texts(texts, missing, new)
        query_ms = (time.perf_counter() - start) * 1000.0
        detections = [
            Detection(label, (float(b[0]), float(b[1]), float(b[2]), float(b[3])), float(s))
            for label, b, s in zip(kept.labels, kept.boxes, kept.scores, strict=True)
        ]
        logger.info(
            "detect %s: %d text, %d exemplars -> %d detections (image side %s %.0f ms, query %.0f ms)",
            image_id[:12],
            len(texts),
            len(boxes),
            len(detections),
            "cached" if image_cached else "computed",
            image_ms,
            query_ms,
        )
        return DetectOutcome(detections, image_ms, query_ms, image_cached)

    async def _image_side(self, image_id: str) -> ImageFeatures:
        pixels = self._cache.get(("pixels", image_id))
        if pixels is None:
            raise EmbeddingNotFoundError(NOT_HELD)
        features = await self.encoder.run(lambda: self.detector.image_features(pixels))
        self.image_runs += 1
        self._cache.put(("features", image_id), features)
        return features

    async def _exemplar(self, image_id: str, box: np.ndarray) -> torch.Tensor:
        key = ("exemplar", image_id, *(f"{v:.2f}" for v in box))
        cached = self._cache.get(key)
        if cached is not None:
            return cast("torch.Tensor", cached)

        async def compute() -> torch.Tensor:
            pixels = self._cache.get(("pixels", image_id))
            if pixels is None:
                raise EmbeddingNotFoundError(NOT_HELD)
            vector = await self.encoder.run(lambda: self.detector.exemplar_embeddings(pixels, box[None]))
            self.exemplar_runs += 1
            self._cache.put(key, vector)
            return vector

        return await self._exemplar_flight.run(key, compute)

    def _remember_texts(self, texts: list[str], missing: list[str], new: torch.Tensor | None) -> None:
        """Cache the new strings' embeddings (LRU by string, ``TEXT_CACHE_ENTRIES``)."""
        if new is not None:
            self.text_runs += len(missing)
            for text, vector in zip(missing, new, strict=True):
                self._texts[text] = vector
        for text in texts:
            self._texts.move_to_end(text)
        while len(self._texts) > TEXT_CACHE_ENTRIES:
            self._texts.popitem(last=False)


def resolve_text_model(text_model: str | None) -> tuple[Path | None, str, str | None]:
    """Where the detector named by ``--text-model`` is: (folder or None, model name, hint when None).

    A registry name (``owlv2-base``, ``owlv2-large``) is looked up in the weights cache (complete and
    verified); anything else is a path to a Hugging Face-format folder.
    """
    from clicksam.model.weights_hf import HF_MODELS, find_model

    how = (
        "start the server with --text-model owlv2-base (after `clicksam weights download owlv2-base`) or "
        "--text-model PATH of a Hugging Face OWLv2 folder; it needs pip install 'clicksam[text]'"
    )
    if not text_model:
        return None, "", f"text and exemplar prompts are off: {how}"
    if text_model in HF_MODELS:
        folder = find_model(text_model)
        if folder is None:
            return (
                None,
                text_model,
                f"text and exemplar prompts are off: the {text_model} weights are not in the cache (or not "
                f"accepted); run `clicksam weights download {text_model}` and restart the server",
            )
        return folder, text_model, None
    path = Path(text_model).expanduser()
    if not (path / "config.json").is_file():
        return (
            None,
            path.name,
            f"text and exemplar prompts are off: {path} is not a model folder (no config.json); {how}",
        )
    return path, path.name, None


def load_detection(text_model: str | None) -> tuple[Detector | None, str | None]:
    """The detector for ``--text-model`` or (None, why it is off and how to turn it on); never raises
    for a missing model or extra (the server runs without text prompts and says why)."""
    from clicksam.model.detection import DetectorError, load_detector

    folder, name, hint = resolve_text_model(text_model)
    if folder is None:
        if text_model:
            logger.warning("%s", hint)
        return None, hint
    try:
        start = time.perf_counter()
        detector = load_detector(folder, name=name)
    except DetectorError as exc:
        hint = f"text and exemplar prompts are off: {exc}"
        logger.warning("%s", hint)
        return None, hint
    logger.info("detector %s loaded from %s in %.1f s", name, folder, time.perf_counter() - start)
    return detector, None
