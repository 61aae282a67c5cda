"""Server settings: one pydantic-settings model read from ``CLICKSAM_*`` environment variables.

``clicksam serve`` builds its ``--help`` from these fields, so a flag, its environment variable and its
default are stated once, here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

#: the project's per-user cache (the same folder ``clicksam weights`` uses); weights, decoder exports and
#: the optional embedding disk cache live below it
DEFAULT_CACHE_DIR = Path(platformdirs.user_cache_dir("clicksam", appauthor=False))
#: what people make (projects: their database and image files) is data, not cache: it lives apart
DEFAULT_DATA_DIR = Path(platformdirs.user_data_dir("clicksam", appauthor=False))


class Settings(BaseSettings):
    """Everything ``clicksam serve`` can be told; each field is also ``CLICKSAM_<FIELD>`` in the env."""

    model_config = SettingsConfigDict(env_prefix="CLICKSAM_", extra="ignore")

    model: str = Field(
        "vit_t", description="model preset to serve (vit_b, vit_l, vit_h, vit_t, demo, vit_test)"
    )
    checkpoint: Path | None = Field(
        None,
        description="checkpoint file; without one a verified official checkpoint from the weights cache "
        "is used, else the built-in demo model",
    )
    seed: int = Field(0, description="seed of the random weights when no checkpoint is found")
    random_weights: bool = Field(
        False,
        description="serve the requested preset with seeded random weights instead of the demo model "
        "when no checkpoint is found (benchmarks and tests: real speed, meaningless masks)",
    )
    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8000, ge=0, le=65535, description="port to listen on")
    decoder_dir: Path | None = Field(
        None,
        description="folder with the decoder export (manifest.json + ONNX files) for the served model; "
        "default <cache_dir>/decoders/<model>-<hash12>/, exported there on first start",
    )
    web_dir: Path | None = Field(None, description="built page to serve at / (default: web/dist of the repo)")
    cache_dir: Path = Field(
        DEFAULT_CACHE_DIR, description="clicksam's cache folder (weights, decoder exports, disk cache)"
    )
    disk_cache: bool = Field(
        False,
        description="also keep embeddings on disk, in <cache_dir>/embeddings/<model>-<hash12>/ "
        "(survives restarts)",
    )
    cache_bytes: int = Field(
        512 * 1024 * 1024, ge=0, description="byte budget of the in-memory embedding cache (LRU)"
    )
    max_upload_bytes: int = Field(50 * 1024 * 1024, gt=0, description="largest accepted upload in bytes")
    max_pixels: int = Field(
        100_000_000, gt=0, description="largest accepted image (width x height, read from the header)"
    )
    queue_size: int = Field(
        8, ge=0, description="encodes that may wait behind the running one; more get 503 + Retry-After"
    )
    encoder: Literal["auto", "torch", "onnxruntime"] = Field(
        "auto",
        description="image encoder backend: onnxruntime runs a verified ONNX export of the encoder "
        "(made once in <cache_dir>/encoders/, max abs err <= 1e-3 vs PyTorch); auto does so for checkpoints "
        "of encoders under 50M parameters (vit_t) and uses PyTorch otherwise",
    )
    torch_threads: int = Field(
        0, ge=0, description="intra-op threads of the encoder (0: one per CPU core the process may use)"
    )
    text_model: str | None = Field(
        None,
        description="turns text and exemplar prompts on: owlv2-base or owlv2-large (from the weights cache, "
        "`clicksam weights download NAME`) or the path of a Hugging Face OWLv2 folder; needs "
        "pip install 'clicksam[text]'",
    )
    detector_cache_bytes: int = Field(
        512 * 1024 * 1024,
        ge=0,
        description="byte budget of the detector's cache (images awaiting a query, image sides, exemplars)",
    )
    log_level: str = Field("info", description="uvicorn log level")
    data_dir: Path = Field(
        DEFAULT_DATA_DIR,
        description="projects folder: the SQLite database (unless database_url is set) and the image files "
        "(back it up: it holds people's work)",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the projects database, e.g. postgresql+psycopg://user@host/db "
        "(default: SQLite in data_dir)",
    )
    token: SecretStr | None = Field(
        None,
        description="bearer token every /api/projects request must carry; needed to listen beyond loopback "
        "(prefer the environment variable to the flag)",
    )
    no_auth: bool = Field(
        False, description="listen beyond loopback with no token: anyone who reaches it can change projects"
    )
    # --engine ray (the clicksam[ray] extra; docs/scaling.md)
    engine: Literal["local", "ray"] = Field(
        "local",
        description="local: this process encodes; ray: encoder replicas on Ray Serve behind the same app "
        "(pip install 'clicksam[ray]')",
    )
    ray_address: str | None = Field(
        None, description="Ray cluster to join (host:port); default: start a local one on 127.0.0.1"
    )
    replicas: int = Field(1, ge=1, description="ray: encoder replicas (the minimum when autoscaling)")
    max_replicas: int = Field(
        0, ge=0, description="ray: autoscale the encoder up to this many replicas (0: a fixed count)"
    )
    cpus_per_replica: float = Field(1.0, gt=0, description="ray: CPUs (torch threads) of an encoder replica")
    gpus_per_replica: float = Field(0.0, ge=0, description="ray: GPUs of an encoder replica (0: CPU)")
    ingress_replicas: int = Field(
        1, ge=1, description="ray: replicas of the HTTP app in front of the encoders"
    )
    batch_size: int = Field(
        1, ge=1, description="ray: batch concurrent encodes on a replica up to this many (1: no batching)"
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="ray: the Redis the replicas share embeddings through ('' keeps each replica's own)",
    )
    cache_ttl: int = Field(
        86400, ge=0, description="ray: seconds an embedding lives in Redis (0: until evicted)"
    )

    def resolved_torch_threads(self) -> int:
        """The thread count to give torch: the setting, or the usable CPU cores."""
        if self.torch_threads:
            return self.torch_threads
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not on Linux
            return max(1, os.cpu_count() or 1)
