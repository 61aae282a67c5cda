"""``clicksam serve --engine ray``: the image encoder as Ray Serve replicas behind the same FastAPI app.

One Serve application, composed by handles (no HTTP between the parts)::

    Serve HTTP proxy (settings.host:port)
      -> Ingress (``ingress_replicas``): ``create_app`` as it is, its model's image encoder swapped for
         ``RemoteImageEncoder``; decoding, content ids, the cache, segment-everything, projects, the page
         -> DeploymentHandle -> ImageEncoderReplica (``replicas``, or autoscaling between bounds;
            ``cpus_per_replica`` / ``gpus_per_replica`` each): runs the image encoder only

What carries over from the single-process server, and how:

- **Same API, page and settings**: the ingress *is* ``create_app(settings)``; only its ``ServingEngine``
  differs (``RayEngine``: the encoder queue and the cache below).
- **Embeddings across replicas**: ``SharedEmbeddingCache`` (Redis, see ``shared_cache``), so any ingress
  replica answers any embedding id and a second upload of an image is a hit wherever it lands.
- **Backpressure**: each encoder replica runs ``max_ongoing`` encodes at once (1, or a batch) and the
  handle keeps at most ``queue_size`` per replica waiting (``max_queued_requests``); beyond that Serve
  raises ``BackPressureError`` at once, which becomes the usual 503 + ``Retry-After``.
- **A replica that dies** (a crash, a node lost, ``ray.kill``): its in-flight encodes are sent again to
  another replica (``ENCODE_ATTEMPTS``); if none can take them the request gets 503 + ``Retry-After``,
  never a 500. Serve's controller starts a replacement.
- **Same weights everywhere**: the driver fingerprints the encoder's weights (sha256 over every tensor)
  after loading; each replica (and each ingress) loads the model itself, re-hashes the checkpoint file it
  found and refuses to start unless both equal the driver's. ``/readyz`` reports the identity and how
  many encoder replicas run, and is 503 while none does.
- **The encoder backend** follows ``--encoder`` as in the single-process server: a replica runs the
  verified ONNX Runtime export ``clicksam serve`` made for the model when there is one on its node
  (unbatched, CPU), else PyTorch; the ingress never encodes.
- **Dynamic batching** (``@serve.batch``) is there (``batch_size`` > 1) but off by default: on CPU the
  encoder already uses every core for one image, so a batch only adds waiting (bench/README.md,
  "bench_ray"); on a GPU it pays.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle

from clicksam.errors import ClickSamError
from clicksam.server.encoder import Encoder
from clicksam.server.errors import EncoderBusyError
from clicksam.server.loading import ModelSpec, load_model
from clicksam.server.scale.cluster import bind_serve_replica_grpc_to_loopback
from clicksam.server.scale.shared_cache import SharedEmbeddingCache, connect_redis

if TYPE_CHECKING:
    from fastapi import FastAPI

    from clicksam.model import Sam
    from clicksam.server.cache import EmbeddingCache
    from clicksam.server.encoder import OnnxImageEncoder
    from clicksam.server.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

APP_NAME = "clicksam"
ENCODER_DEPLOYMENT = "ImageEncoder"
INGRESS_DEPLOYMENT = "Ingress"
#: response header naming the ingress replica that answered
REPLICA_HEADER = "X-Clicksam-Replica"
#: tries of one encode when the replica it went to dies under it
ENCODE_ATTEMPTS = 3
#: an encode that takes longer than this is abandoned (503): a hung replica must not hold a request forever
ENCODE_TIMEOUT_S = 600.0


class ReplicaMismatchError(ClickSamError):
    """A replica loaded other weights than the driver."""


@dataclass(frozen=True)
class ModelIdentity:
    """What the weights served are; equal on every replica or the replica does not start.

    Attributes:
        model_id: ``ModelSpec.model_id`` (preset + checkpoint sha256 or seed).
        checkpoint_sha256: sha256 of the checkpoint file, None for seeded random weights.
        encoder_sha256: sha256 over the image encoder's tensors (names, dtypes, shapes, bytes).
    """

    model_id: str
    checkpoint_sha256: str | None
    encoder_sha256: str


def weights_fingerprint(module: torch.nn.Module) -> str:
    """sha256 over every tensor of ``module.state_dict()``, in order: name, dtype, shape, bytes."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())  # raw bytes, any dtype
    return digest.hexdigest()


def model_identity(spec: ModelSpec, sam: Sam) -> ModelIdentity:
    return ModelIdentity(spec.model_id, spec.checkpoint_sha256, weights_fingerprint(sam.image_encoder))


def check_identity(spec: ModelSpec, sam: Sam, expected: ModelIdentity, where: str) -> ModelIdentity:
    """The identity of the model loaded here, checked against the driver's.

    Raises:
        ReplicaMismatchError: another checkpoint file or other weights than the driver's.
    """
    from clicksam.model.weights import sha256_file

    if spec.checkpoint is not None:
        found = sha256_file(spec.checkpoint)  # this node's file at that path, not the driver's word for it
        if found != expected.checkpoint_sha256:
            raise ReplicaMismatchError(
                f"{where}: {spec.checkpoint} has sha256 {found[:12]}, the driver serves "
                f"{(expected.checkpoint_sha256 or '-')[:12]}: put the same checkpoint on every node"
            )
    identity = model_identity(spec, sam)
    if identity != expected:
        raise ReplicaMismatchError(
            f"{where}: loaded {identity.model_id} (encoder {identity.encoder_sha256[:12]}), the driver "
            f"serves {expected.model_id} (encoder {expected.encoder_sha256[:12]})"
        )
    return identity


def _to_numpy(value: Any) -> Any:
    """Tensors -> float32 numpy arrays, through tuples, lists and dicts (the encoder's output structure)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float32).numpy().copy()
    if isinstance(value, dict):
        return {k: _to_numpy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_numpy(v) for v in value)
    return value


def _to_torch(value: Any) -> Any:
    if isinstance(value, np.ndarray):  # Ray hands over read-only arrays from its object store
        return torch.from_numpy(value if value.flags.writeable else value.copy())
    if isinstance(value, dict):
        return {k: _to_torch(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_torch(v) for v in value)
    return value


def _split_batch(value: Any, count: int) -> list[Any]:
    """A batched output structure (leading dim ``count``) -> ``count`` structures with a leading dim of 1."""
    if isinstance(value, np.ndarray):
        return [value[i : i + 1] for i in range(count)]
    if isinstance(value, dict):
        parts = {k: _split_batch(v, count) for k, v in value.items()}
        return [{k: parts[k][i] for k in value} for i in range(count)]
    if isinstance(value, list | tuple):
        columns = [_split_batch(v, count) for v in value]
        return [type(value)(col[i] for col in columns) for i in range(count)]
    return [value] * count


class ImageEncoderReplica:
    """One encoder replica (a Serve deployment): the model's image encoder and nothing else.

    Args:
        spec: the model to load (the same ``ModelSpec`` as the driver's).
        expected: the driver's ``ModelIdentity``; a replica that loads anything else refuses to start.
        threads: torch intra-op threads (its CPUs).
        batch_size: > 1 batches concurrent requests (``@serve.batch``) up to this many images.
        batch_wait_s: how long a batch waits to fill.
        onnx_dir: folder of a verified ONNX Runtime export of the encoder to run instead of PyTorch, as the
            single-process server does (``--encoder``); used when it checks out on this node and
            unbatched, else PyTorch.
    """

    def __init__(
        self,
        spec: ModelSpec,
        expected: ModelIdentity,
        threads: int,
        batch_size: int,
        batch_wait_s: float,
        onnx_dir: Path | None = None,
    ) -> None:
        bind_serve_replica_grpc_to_loopback()
        torch.set_num_threads(threads)
        sam = load_model(spec)
        self.identity = check_identity(spec, sam, expected, "encoder replica")
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.image_encoder = sam.image_encoder.to(self.device)
        self.threads = threads
        self.batch_size = batch_size
        self.onnx_encoder: OnnxImageEncoder | None = None
        if onnx_dir is not None and batch_size == 1 and self.device.type == "cpu":
            from clicksam.server.onnx_encoder import load_onnx_encoder

            self.onnx_encoder = load_onnx_encoder(onnx_dir, spec, threads=threads)
        if batch_size > 1:
            batched: Any = self._encode_batch  # serve.batch's wrapper, typed as the plain method
            batched.set_max_batch_size(batch_size)
            batched.set_batch_wait_timeout_s(batch_wait_s)
        # the replica's event loop stays free for health checks while torch runs on this thread
        self._executor = ThreadPoolExecutor(
            max_workers=1, initializer=torch.set_num_threads, initargs=(threads,)
        )
        del sam

    def _forward(self, x: np.ndarray) -> Any:
        if self.onnx_encoder is not None:
            return self.onnx_encoder(x)  # (1, 3, S, S) -> (1, 256, 64, 64) float32
        with torch.inference_mode():
            out = self.image_encoder(torch.from_numpy(x).to(self.device))  # (B, 3, S, S) -> per-image tensors
        return _to_numpy(out)

    async def encode(self, x: np.ndarray) -> Any:
        """(1, 3, S, S) float32 preprocessed image -> the image encoder's output as numpy (float32)."""
        if self.batch_size > 1:
            return await self._encode_batch(x)
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._forward, x)

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.01)
    async def _encode_batch(self, xs: list[np.ndarray]) -> list[Any]:
        batch = np.concatenate(xs, axis=0)
        out = await asyncio.get_running_loop().run_in_executor(self._executor, self._forward, batch)
        return _split_batch(out, len(xs))

    def model_identity(self) -> dict[str, Any]:
        return asdict(self.identity)


class RemoteImageEncoder(torch.nn.Module):
    """Stands in for ``sam.image_encoder`` in the ingress: ``forward`` encodes on an encoder replica.

    Called on one of ``RayEncoder``'s threads (never on the event loop): it waits for the replica's
    answer there. Serve's backpressure becomes ``EncoderBusyError`` (503 + Retry-After); a replica that
    dies under the request is retried on another, then answered with 503 too.
    """

    def __init__(self, handle: DeploymentHandle, retry_after: Callable[[], float]) -> None:
        super().__init__()
        self.handle = handle.options(method_name="encode")
        self.retry_after = retry_after
        self.retries = 0

    def forward(self, x: torch.Tensor) -> Any:
        array = x.detach().to("cpu", torch.float32).numpy()
        for attempt in range(1, ENCODE_ATTEMPTS + 1):
            try:
                return _to_torch(self.handle.remote(array).result(timeout_s=ENCODE_TIMEOUT_S))
            except BackPressureError as exc:
                raise EncoderBusyError(
                    "every encoder replica is busy; retry in a few seconds", retry_after=self.retry_after()
                ) from exc
            except (RayActorError, DeploymentUnavailableError, TimeoutError) as exc:
                self.retries += 1
                logger.warning("encode attempt %d/%d failed: %s", attempt, ENCODE_ATTEMPTS, exc)
                last = exc
        raise EncoderBusyError(
            "the encoder replicas are restarting; retry in a few seconds", retry_after=self.retry_after()
        ) from last


class RayEncoder(Encoder):
    """The ingress's side of the encoder: ``Encoder``'s interface, the encodes done by the replicas.

    ``run(fn)`` runs ``fn`` (which calls ``RemoteImageEncoder``) on a thread of its own pool, so as many
    encodes are in flight as the replicas can take; the queue that bounds them is Serve's
    (``max_queued_requests``), so ``pending`` here counts what this ingress has in flight.

    Args:
        capacity: encodes this ingress may have in flight (replicas x (running + queued)).
        threads: torch threads of what runs here besides the encoder (segment-everything, detection).
    """

    def __init__(self, *, capacity: int, threads: int) -> None:
        super().__init__(queue_size=max(0, capacity - 1), threads=threads)
        super().shutdown()  # the base class's single encoder thread is not used
        self._pool = ThreadPoolExecutor(max_workers=capacity, thread_name_prefix="clicksam-ray-encode")
        self._count_lock = threading.Lock()
        self._in_flight = 0
        self._ray_mean_seconds = 1.0

    @property
    def pending(self) -> int:
        return self._in_flight

    @property
    def mean_job_seconds(self) -> float:
        return self._ray_mean_seconds

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on a pool thread; ``EncoderBusyError`` from the replicas' queues passes through."""
        with self._count_lock:
            self._in_flight += 1
        start = time.perf_counter()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn)
        finally:
            with self._count_lock:
                self._in_flight -= 1
                self._ray_mean_seconds = 0.8 * self._ray_mean_seconds + 0.2 * (time.perf_counter() - start)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class RayServeOptions:
    """How the Serve application is laid out (from the ``Settings`` of ``--engine ray``).

    Attributes:
        replicas: encoder replicas (the minimum when ``max_replicas`` is larger: autoscaling).
        max_replicas: autoscaling's upper bound; <= ``replicas`` means a fixed count.
        cpus_per_replica: CPUs each encoder replica reserves (and its torch threads).
        gpus_per_replica: GPUs each encoder replica reserves (0: CPU).
        ingress_replicas: replicas of the FastAPI app.
        queue_size: encodes that may wait per encoder replica; beyond that 503 + Retry-After.
        batch_size: ``@serve.batch`` size of an encoder replica (1: no batching).
        batch_wait_s: how long a batch waits to fill.
        redis_url: the shared embedding cache; None keeps each ingress's cache to itself.
        cache_ttl_s: lifetime of an embedding in Redis (0: until Redis evicts it).
    """

    replicas: int = 1
    max_replicas: int = 0
    cpus_per_replica: float = 1.0
    gpus_per_replica: float = 0.0
    ingress_replicas: int = 1
    queue_size: int = 8
    batch_size: int = 1
    batch_wait_s: float = 0.01
    redis_url: str | None = "redis://127.0.0.1:6379/0"
    cache_ttl_s: int = 86400

    @classmethod
    def from_settings(cls, settings: Settings) -> RayServeOptions:
        return cls(
            replicas=settings.replicas,
            max_replicas=settings.max_replicas,
            cpus_per_replica=settings.cpus_per_replica,
            gpus_per_replica=settings.gpus_per_replica,
            ingress_replicas=settings.ingress_replicas,
            queue_size=settings.queue_size,
            batch_size=settings.batch_size,
            redis_url=settings.redis_url or None,
            cache_ttl_s=settings.cache_ttl,
        )

    @property
    def max_ongoing(self) -> int:
        """Encodes one replica runs at once: one, or one batch."""
        return max(1, self.batch_size)

    @property
    def most_replicas(self) -> int:
        return max(self.replicas, self.max_replicas)

    def threads(self) -> int:
        return max(1, round(self.cpus_per_replica))


class RayEngine:
    """The ``ServingEngine`` of an ingress replica: ``RayEncoder`` + ``SharedEmbeddingCache``, and readiness.

    Args:
        handle: the encoder deployment.
        options: the application's layout.
        identity: the model identity every replica was checked against.
    """

    def __init__(self, handle: DeploymentHandle, options: RayServeOptions, identity: ModelIdentity) -> None:
        self.handle = handle
        self.options = options
        self.identity = identity
        self.encoder: RayEncoder | None = None
        self._status_at = 0.0
        self._running = 0
        self._target = options.replicas

    def make_encoder(self, settings: Settings, threads: int) -> Encoder:
        capacity = self.options.most_replicas * (self.options.max_ongoing + self.options.queue_size)
        self.encoder = RayEncoder(capacity=capacity, threads=threads)
        return self.encoder

    def make_cache(self, settings: Settings, spec: ModelSpec) -> EmbeddingCache:
        from clicksam.server.cache import EmbeddingCache

        if self.options.redis_url is None:
            return EmbeddingCache(settings.cache_bytes, None)
        client = connect_redis(self.options.redis_url)
        return SharedEmbeddingCache(settings.cache_bytes, client, ttl_seconds=self.options.cache_ttl_s)

    def retry_after(self) -> float:
        """Seconds until an encode slot frees up, roughly: queue length x mean time / replicas."""
        mean = self.encoder.mean_job_seconds if self.encoder is not None else 1.0
        running = max(1, self._running)
        return max(1.0, mean * (self.options.queue_size + 1) / running)

    def replica_counts(self) -> tuple[int, int]:
        """(running, target) encoder replicas, from Serve's controller (read at most once a second)."""
        now = time.monotonic()
        if now - self._status_at > 1.0:
            app = serve.status().applications.get(APP_NAME)
            deployment = app.deployments.get(ENCODER_DEPLOYMENT) if app is not None else None
            if deployment is not None:
                states: dict[Any, int] = dict(deployment.replica_states)  # ReplicaState (a str enum) -> n
                self._running = int(states.get("RUNNING", 0))
                self._target = max(self._running, int(sum(states.values())), self.options.replicas)
            else:
                self._running = 0
            self._status_at = now
        return self._running, self._target

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, what ``/readyz`` adds): ready while at least one encoder replica runs."""
        running, target = self.replica_counts()
        return running > 0, {
            "engine": "ray",
            "encoder_replicas": running,
            "encoder_replicas_target": target,
            "model_id": self.identity.model_id,
            "checkpoint_sha256": self.identity.checkpoint_sha256,
            "encoder_sha256": self.identity.encoder_sha256,
        }


@serve.ingress()
class Ingress:
    """The FastAPI app (``create_app``) as the application's ingress; built on the replica.

    Args:
        settings: the server's settings (the app's own, as in the single-process server).
        spec: the model (the ingress needs its prompt encoder and mask decoder for segment-everything).
        expected: the driver's model identity; checked here too.
        options: the application's layout.
        encoder: handle of the encoder deployment.
    """

    def __init__(
        self,
        settings: Settings,
        spec: ModelSpec,
        expected: ModelIdentity,
        options: RayServeOptions,
        encoder: DeploymentHandle,
    ) -> None:
        bind_serve_replica_grpc_to_loopback()
        self.settings = settings
        self.spec = spec
        self.expected = expected
        self.options = options
        self.encoder = encoder

    def __serve_build_asgi_app__(self) -> FastAPI:
        from clicksam.server.app import create_app

        torch.set_num_threads(self.settings.resolved_torch_threads())
        sam = load_model(self.spec)
        check_identity(self.spec, sam, self.expected, "ingress replica")
        engine = RayEngine(self.encoder, self.options, self.expected)
        # the encoder's weights leave this process: its encodes go to the replicas
        sam.image_encoder = RemoteImageEncoder(self.encoder, engine.retry_after)
        # the ingress runs no image encoder of its own, so never an ONNX Runtime one either
        settings = self.settings.model_copy(update={"encoder": "torch"})
        app = create_app(settings, spec=self.spec, sam=sam, engine=engine)
        replica_id = serve.get_replica_context().replica_id.unique_id
        app.add_middleware(ReplicaHeaderMiddleware, replica_id=replica_id)
        return app


class ReplicaHeaderMiddleware:
    """Adds ``X-Clicksam-Replica: <ingress replica id>`` to every response (which replica answered)."""

    def __init__(self, app: Any, replica_id: str) -> None:
        self.app = app
        self.header = (REPLICA_HEADER.lower().encode(), replica_id.encode())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, send_with_header)


def build_application(settings: Settings, spec: ModelSpec, expected: ModelIdentity) -> Any:
    """The Serve application (bound deployment graph) for ``settings``."""
    options = RayServeOptions.from_settings(settings)
    actor: dict[str, Any] = {"num_cpus": options.cpus_per_replica}
    if options.gpus_per_replica > 0:
        actor["num_gpus"] = options.gpus_per_replica
    scaling: dict[str, Any] = {}
    if options.max_replicas > options.replicas:
        scaling["autoscaling_config"] = {
            "min_replicas": options.replicas,
            "max_replicas": options.max_replicas,
            "target_ongoing_requests": options.max_ongoing,
        }
    else:
        scaling["num_replicas"] = options.replicas
    encoder = serve.deployment(
        name=ENCODER_DEPLOYMENT,
        ray_actor_options=actor,
        max_ongoing_requests=options.max_ongoing,
        max_queued_requests=options.queue_size * options.most_replicas,
        health_check_period_s=2.0,
        **scaling,
    )(ImageEncoderReplica)
    ingress = serve.deployment(
        name=INGRESS_DEPLOYMENT,
        num_replicas=options.ingress_replicas,
        ray_actor_options={"num_cpus": 0},
        # async HTTP work: many requests at once; the encoder's queue is where backpressure happens
        max_ongoing_requests=256,
    )(Ingress)
    onnx_dir = None
    if settings.encoder != "torch":  # the export clicksam serve made (or found) for this model, if any
        from clicksam.server.onnx_encoder import encoder_dir

        onnx_dir = encoder_dir(settings.cache_dir, spec)
    encoder_app = encoder.bind(
        spec, expected, options.threads(), options.batch_size, options.batch_wait_s, onnx_dir
    )
    return ingress.bind(settings, spec, expected, options, encoder_app)


def deploy(settings: Settings, spec: ModelSpec, sam: Sam | None = None) -> ModelIdentity:
    """Start Serve's HTTP proxy on ``settings.host:port`` and run the application; returns once it is up.

    Needs a connected Ray (``cluster.start_or_join``).

    Raises:
        ClickSamError: Redis unreachable (when asked for), or a replica refused its weights.
    """
    model = sam if sam is not None else load_model(spec)
    expected = model_identity(spec, model)
    options = RayServeOptions.from_settings(settings)
    if options.redis_url is not None:
        connect_redis(options.redis_url)  # fail now, with what to do, rather than in every replica
    serve.start(http_options={"host": settings.host, "port": settings.port})
    try:
        serve.run(
            build_application(settings, spec, expected), name=APP_NAME, route_prefix="/", blocking=False
        )
    except RuntimeError as exc:  # Serve reports a replica that failed its constructor this way
        raise ClickSamError(f"the Serve application did not start: {exc}") from exc
    logger.info(
        "clicksam on Ray Serve at http://%s:%d: %d encoder replica(s)%s, %d ingress, cache %s",
        settings.host,
        settings.port,
        options.replicas,
        f" (autoscaling to {options.max_replicas})" if options.max_replicas > options.replicas else "",
        options.ingress_replicas,
        options.redis_url or "per ingress",
    )
    return expected


def undeploy() -> None:
    """Delete the application (the HTTP proxy and the cluster keep running)."""
    serve.delete(APP_NAME)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(settings: Settings, spec: ModelSpec, sam: Sam | None = None) -> int:
    """``clicksam serve --engine ray``: start or join Ray, deploy, serve until interrupted, stop."""
    from clicksam.server.scale.cluster import is_loopback, reported_addresses, shutdown, start_or_join

    info = start_or_join(settings.ray_address)
    # a container stop (SIGTERM) shuts Serve and Ray down as Ctrl-C does; set after ray.init, whose
    # own handler would otherwise just abort the process
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        deploy(settings, spec, sam)
        if settings.ray_address is None:
            stray = {k: v for k, v in reported_addresses().items() if not is_loopback(v)}
            if stray and is_loopback(settings.host):
                raise ClickSamError(f"the local Ray cluster reports non-loopback addresses: {stray}")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        logger.info("stopping")
    finally:
        if info.started_here:
            shutdown(info)
        else:
            undeploy()
    return 0
