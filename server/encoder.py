"""The image encoder behind a bounded queue, run off the event loop on one worker thread.

One thread owns the model: encodes run one after another, each with all of torch's intra-op threads
(several encodes at once on a small CPU would only fight over the same cores and multiply peak memory).
Work waiting for that thread is bounded by ``queue_size``; a submit beyond it raises ``EncoderBusyError``
(503 + Retry-After) at once instead of letting memory grow, and the server serves the rest as usual.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch

from clicksam.server.errors import EncoderBusyError

if TYPE_CHECKING:
    from clicksam.model import Sam

logger = logging.getLogger(__name__)

T = TypeVar("T")


def encode_resized(sam: Sam, image: np.ndarray) -> np.ndarray:
    """Run SAM's image encoder on an image already resized to the model's long side.

    Args:
        sam: the model (eval mode).
        image: (h, w, 3) uint8 RGB in the resized input frame, max(h, w) == sam.image_size.

    Returns:
        (1, C, He, We) float32 embedding, (1, 256, 64, 64) for every SAM preset; the same numbers as
        ``SamPredictor.set_image`` + ``get_image_embedding`` on the original image.
    """
    with torch.inference_mode():
        # a writable copy: torch refuses to wrap read-only numpy views safely
        x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()[None]  # (1,3,h,w)
        x = sam.preprocess(x.to(torch.float32))  # (1, 3, S, S), normalised, zero-padded
        embedding = sam.image_encoder(x)  # (1, 256, 64, 64)
        return embedding.to(torch.float32).numpy().copy()


class Encoder:
    """A single worker thread with a bounded backlog.

    Args:
        queue_size: jobs that may wait while one runs; one more submit raises ``EncoderBusyError``.
        threads: torch intra-op threads for the encodes.
    """

    def __init__(self, *, queue_size: int, threads: int) -> None:
        self.queue_size = queue_size
        self.threads = threads
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clicksam-encoder")
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
