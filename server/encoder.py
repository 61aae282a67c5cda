"""The image encoder behind a bounded queue, run off the event loop on one worker thread.

One thread owns the model: encodes run one after another, each with all of torch's intra-op threads
(several encodes at once on a small CPU would only fight over the same cores and multiply peak memory).
Work waiting for that thread is bounded by ``queue_size``; a submit beyond it raises ``EncoderBusyError``
(503 + Retry-After) at once instead of letting memory grow, and the server serves the rest as usual.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch

from clicksam.server.errors import EncoderBusyError

if TYPE_CHECKING:
    from clicksam.model import Sam
    from clicksam.model.sam2 import Sam2

logger = logging.getLogger(__name__)

T = TypeVar("T")


class OnnxImageEncoder:
    """SAM's image encoder as an ONNX Runtime session (CPU), a faster drop-in for ``sam.image_encoder``.

    Args:
        path: ONNX file with one input, the preprocessed image (1, 3, S, S) float32 (normalised, zero-padded,
            as ``Sam.preprocess`` returns it), and one output, the embedding (1, 256, 64, 64) float32.
        threads: intra-op threads.
    """

    def __init__(self, path: Path, *, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(1, 3, S, S) float32 preprocessed image -> (1, 256, 64, 64) float32 embedding."""
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})
        return np.asarray(out[0], dtype=np.float32)


#: name of SAM 1's one per-image tensor (the decoder graphs' input of that name)
SAM1_EMBEDDING_NAME = "image_embeddings"


def input_size(sam: Sam | Sam2, height: int, width: int) -> tuple[int, int]:
    """(h, w) of an (height, width) image inside the model's square input frame: SAM 1 scales the long
    side to ``sam.image_size`` (aspect kept, padded); SAM 2.1 stretches it to the whole square."""
    from clicksam.model.frames import get_preprocess_shape
    from clicksam.model.sam2 import Sam2

    if isinstance(sam, Sam2):
        return int(sam.image_size), int(sam.image_size)
    newh, neww = get_preprocess_shape(height, width, int(sam.image_size))
    return int(newh), int(neww)


def model_input(sam: Sam | Sam2, pixels: np.ndarray) -> torch.Tensor:
    """The encoder's input for an image: (1, 3, S, S) float32, resized, normalised (and for SAM 1
    zero-padded), exactly as the model's predictor prepares it.

    Args:
        sam: the model.
        pixels: (H, W, 3) uint8 RGB in the original frame.
    """
    from clicksam.model.frames import resize_to_long_side
    from clicksam.model.sam2 import Sam2

    with torch.inference_mode():
        if isinstance(sam, Sam2):
            # stretched to the square (antialiased bilinear) and normalised; a writable copy, as below
            return sam.preprocess(np.array(pixels, dtype=np.uint8))
        resized = resize_to_long_side(pixels, int(sam.image_size))  # Pillow bilinear, as SAM's predictor
        # a writable copy: torch refuses to wrap read-only numpy views safely
        x = (
            torch.from_numpy(np.array(resized, dtype=np.uint8)).permute(2, 0, 1).contiguous()[None]
        )  # (1,3,h,w)
        return sam.preprocess(x.to(torch.float32))  # (1, 3, S, S), normalised, zero-padded


def encode_input(
    sam: Sam | Sam2, x: torch.Tensor, onnx_encoder: OnnxImageEncoder | None = None
) -> dict[str, np.ndarray]:
    """Run the model's image encoder on ``model_input``'s tensor.

    Args:
        sam: the model (eval mode).
        x: (1, 3, S, S) float32 from :func:`model_input`.
        onnx_encoder: a verified ONNX Runtime export of SAM 1's ``sam.image_encoder`` to run instead of
            PyTorch (SAM 2.1 has none: refused).

    Returns:
        The per-image tensors the decoder needs, float32, by decoder input name, in wire order (the
        decoder manifest's ``image_inputs``): for SAM 1 ``{"image_embeddings": (1, 256, 64, 64)}``, the
        same numbers as ``SamPredictor.set_image`` + ``get_image_embedding`` on the original image
        (exactly with the PyTorch encoder, within 1e-3 with a verified ONNX one); for SAM 2.1 the fields
        of ``Sam2ImageFeatures`` in their order: ``image_embed`` (1, 256, 64, 64), ``high_res_feats_0``
        (1, 32, 256, 256), ``high_res_feats_1`` (1, 64, 128, 128).
    """
    from clicksam.model.sam2 import Sam2

    with torch.inference_mode():
        if isinstance(sam, Sam2):
            if onnx_encoder is not None:
                raise ValueError("no ONNX image encoder for SAM 2.1: serve it with the PyTorch encoder")
            features = sam.encode_image(x)
            return {
                f.name: getattr(features, f.name).to(torch.float32).numpy().copy()
                for f in dataclasses.fields(features)
            }
        if onnx_encoder is not None:
            return {SAM1_EMBEDDING_NAME: onnx_encoder(x.numpy())}
        embedding = sam.image_encoder(x)  # (1, 256, 64, 64)
        return {SAM1_EMBEDDING_NAME: embedding.to(torch.float32).numpy().copy()}


class Encoder:
    """A single worker thread with a bounded backlog.

    Args:
        queue_size: jobs that may wait while one runs; one more submit raises ``EncoderBusyError``.
        threads: torch intra-op threads for the encodes.
    """

    def __init__(self, *, queue_size: int, threads: int) -> None:
        self.queue_size = queue_size
        self.threads = threads
        # set the thread count on the worker itself too: OpenMP keeps it per thread
        self._executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="clicksam-encoder",
            initializer=torch.set_num_threads,
            initargs=(threads,),
        )
        self._lock = threading.Lock()
        self._pending = 0  # running + waiting
        self.jobs_done = 0
        self._mean_seconds = 1.0  # exponential moving average of a job's time, for Retry-After
        torch.set_num_threads(threads)

    @property
    def pending(self) -> int:
        """Jobs running or waiting now."""
        return self._pending

    @property
    def mean_job_seconds(self) -> float:
        return self._mean_seconds

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the worker thread and await its result.

        Raises:
            EncoderBusyError: the backlog is full; nothing was queued.
        """
        with self._lock:
            if self._pending > self.queue_size:
                wait = self._mean_seconds * self._pending
                raise EncoderBusyError(
                    f"the encoder is busy ({self._pending} images in progress); retry in a few seconds",
                    retry_after=wait,
                )
            self._pending += 1
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._executor, self._timed, fn)
        except BaseException:
            self._release()
            raise
        return await future

    def _timed(self, fn: Callable[[], T]) -> T:
        start = time.perf_counter()
        try:
            return fn()
        finally:
            elapsed = time.perf_counter() - start
            with self._lock:
                self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * elapsed
                self.jobs_done += 1
            self._release()

    def _release(self) -> None:
        with self._lock:
            self._pending -= 1

    def shutdown(self) -> None:
        """Stop accepting work; waiting jobs are dropped, a running one finishes."""
        self._executor.shutdown(wait=False, cancel_futures=True)
