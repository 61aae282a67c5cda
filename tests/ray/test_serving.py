"""``--engine ray`` on a real local Ray: 2 encoder replicas and 2 ingress replicas behind Serve's HTTP proxy.

The same API as the single-process server, checked against one (real uvicorn, same model and threads):
16 concurrent uploads all succeed with byte-equal embeddings; a second upload is a cache hit whichever
ingress replica answers (the Redis they share); killing an encoder replica through Ray's API loses no
request (200, or 503 + Retry-After) and Serve replaces it; readiness reports the replicas and the model
identity; a replica with other weights refuses to start. The model is ``vit_test`` (tiny, seeded).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from ray_helpers import free_port, png, ray_listening_sockets, redis_or_skip, run_uvicorn

from clicksam.server.loading import ModelSpec, resolve_model
from clicksam.server.scale.cluster import ClusterInfo, is_loopback, reported_addresses
from clicksam.server.settings import Settings

pytestmark = pytest.mark.slow

REDIS_URL = "redis://127.0.0.1:6379/0"


def _images(count: int, seed: int) -> list[bytes]:
    """``count`` distinct small PNGs of assorted sizes, new on every run (fresh content ids in Redis)."""
    rng = np.random.default_rng(seed)
    return [
        png(rng.integers(0, 256, (int(rng.integers(40, 90)), int(rng.integers(40, 90)), 3), dtype=np.uint8))
        for _ in range(count)
    ]


def _upload(client: httpx.Client, data: bytes) -> httpx.Response:
    return client.post("/api/embeddings", files={"image": ("x.png", data, "image/png")})


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    tmp: Path = tmp_path_factory.mktemp("ray-serve")
    return Settings(
        model="vit_test",
        cache_dir=tmp / "cache",
        data_dir=tmp / "data",
        web_dir=tmp / "no-web",
        host="127.0.0.1",
        port=free_port(),
        encoder="torch",
        torch_threads=1,
        engine="ray",
        replicas=2,
        ingress_replicas=2,
        cpus_per_replica=1,
        queue_size=8,
        redis_url=REDIS_URL,
        cache_ttl=600,
    )


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    return resolve_model("vit_test", None, 0)


@pytest.fixture(scope="module")
def ray_url(ray_cluster: ClusterInfo, settings: Settings, spec: ModelSpec) -> Iterator[str]:
    """The application deployed on the session's Ray; deleted after the module (the cluster stays)."""
    from clicksam.server.scale.serving import deploy, undeploy

    redis_or_skip(REDIS_URL)
    start = time.perf_counter()
    deploy(settings, spec)
    print(f"\nServe app with 2+2 replicas up in {time.perf_counter() - start:.1f} s")
    try:
        yield f"http://{settings.host}:{settings.port}"
    finally:
        undeploy()


@pytest.fixture(scope="module")
def local_url(settings: Settings, spec: ModelSpec) -> Iterator[str]:
    """The single-process server on the same settings (``--engine local``), under a real uvicorn."""
    from clicksam.server.app import create_app

    app = create_app(settings.model_copy(update={"engine": "local"}), spec=spec)
    with run_uvicorn(app) as url:
        yield url


def test_concurrent_uploads_match_the_single_process_server(ray_url: str, local_url: str) -> None:
    images = _images(16, seed=uuid.uuid4().int % 2**32)
    with httpx.Client(base_url=ray_url, timeout=120) as client:
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda data: _upload(client, data), images))
        assert [r.status_code for r in answers] == [200] * 16, [
            r.text for r in answers if r.status_code != 200
        ]
        metas = [r.json() for r in answers]
        assert len({m["id"] for m in metas}) == 16
        assert not any(m["cached"] for m in metas)
        ray_tensors = [client.get(m["url"], params={"dtype": "float32"}) for m in metas]
    with httpx.Client(base_url=local_url, timeout=120) as client:
        local_metas = [_upload(client, data).json() for data in images]
        local_tensors = [client.get(m["url"], params={"dtype": "float32"}) for m in local_metas]
    for meta, local_meta, tensor, local_tensor in zip(
        metas, local_metas, ray_tensors, local_tensors, strict=True
    ):
        assert meta["id"] == local_meta["id"] and meta["shape"] == local_meta["shape"]
        assert tensor.status_code == 200 and len(tensor.content) == 4 * int(np.prod(meta["shape"]))
        assert tensor.content == local_tensor.content  # byte-equal float32


def test_second_upload_is_a_cache_hit_on_either_ingress_replica(ray_url: str) -> None:
    from clicksam.server.scale.serving import REPLICA_HEADER

    (data,) = _images(1, seed=uuid.uuid4().int % 2**32)
    seen: dict[str, list[bool]] = {}
    with httpx.Client(base_url=ray_url, timeout=60) as client:
        first = _upload(client, data)
        assert first.status_code == 200 and first.json()["cached"] is False
        for _ in range(60):  # Serve picks the replica: go on until both have answered the same image
            again = _upload(client, data)
            assert again.status_code == 200
            seen.setdefault(again.headers[REPLICA_HEADER], []).append(again.json()["cached"])
            if len(seen) == 2:
                break
        assert len(seen) == 2, f"only {list(seen)} answered"
        assert all(all(hits) for hits in seen.values()), seen
        tensors = {client.get(first.json()["url"]).content for _ in range(6)}
        assert len(tensors) == 1


def test_readiness_reports_replicas_and_the_model_identity(
    ray_url: str, spec: ModelSpec, ray_cluster: ClusterInfo
) -> None:
    with httpx.Client(base_url=ray_url, timeout=30) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    engine = body["engine"]
    assert engine["engine"] == "ray" and engine["encoder_replicas"] == 2
    assert engine["model_id"] == spec.model_id and len(engine["encoder_sha256"]) == 64
    addresses = reported_addresses()
    assert sum(".node_ip" in key for key in addresses) >= 4 + 1  # 4 replicas and the proxy
    assert {k: v for k, v in addresses.items() if not is_loopback(v)} == {}
    # the replicas' own servers too (Serve binds their inter-deployment gRPC to [::] unless told)
    sockets = ray_listening_sockets(ray_cluster)
    assert any(name.startswith("ray::ServeReplica") for _, _, name in sockets), sockets
    assert [s for s in sockets if not is_loopback(s[0])] == []


def _encoder_replica_actors() -> list[str]:
    import ray

    from clicksam.server.scale.serving import APP_NAME, ENCODER_DEPLOYMENT

    names = ray.util.list_named_actors(all_namespaces=True)
    return sorted(
        entry["name"]
        for entry in names
        if entry["namespace"] == "serve" and f"{APP_NAME}#{ENCODER_DEPLOYMENT}#" in entry["name"]
    )


def _running_encoders() -> int:
    from ray import serve

    from clicksam.server.scale.serving import APP_NAME, ENCODER_DEPLOYMENT

    states: dict[Any, int] = dict(
        serve.status().applications[APP_NAME].deployments[ENCODER_DEPLOYMENT].replica_states
    )
    return int(states.get("RUNNING", 0))


def test_killing_an_encoder_replica_loses_no_request(ray_url: str) -> None:
    import ray

    before = _encoder_replica_actors()
    assert len(before) == 2, before
    images = _images(24, seed=uuid.uuid4().int % 2**32)
    with httpx.Client(base_url=ray_url, timeout=120) as client, ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(_upload, client, data) for data in images]
        time.sleep(0.3)  # requests in flight on both replicas
        ray.kill(ray.get_actor(before[0], namespace="serve"), no_restart=True)
        answers = [f.result() for f in futures]
    statuses = [r.status_code for r in answers]
    assert set(statuses) <= {200, 503}, [r.text for r in answers if r.status_code not in (200, 503)]
    for r in answers:
        if r.status_code == 503:
            assert int(r.headers["Retry-After"]) >= 1 and r.json()["detail"]
    assert statuses.count(200) >= 12, statuses
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        after = _encoder_replica_actors()
        if before[0] not in after and len(after) == 2 and _running_encoders() == 2:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"the killed replica was not replaced: {before} -> {_encoder_replica_actors()}")
    with httpx.Client(base_url=ray_url, timeout=60) as client:
        assert _upload(client, _images(1, seed=uuid.uuid4().int % 2**32)[0]).status_code == 200


def test_a_replica_with_other_weights_refuses_to_start(spec: ModelSpec) -> None:
    from clicksam.server.loading import load_model
    from clicksam.server.scale.serving import ReplicaMismatchError, check_identity, model_identity

    sam = load_model(spec)
    expected = model_identity(spec, sam)
    assert check_identity(spec, sam, expected, "here") == expected
    other = load_model(replace(spec, seed=1))
    with pytest.raises(ReplicaMismatchError, match="encoder"):
        check_identity(spec, other, expected, "here")


def test_full_replica_queues_are_a_503_with_retry_after(ray_cluster: ClusterInfo) -> None:
    import torch
    from ray import serve

    from clicksam.server.errors import EncoderBusyError
    from clicksam.server.scale.serving import RemoteImageEncoder

    class SlowEncoder:  # defined here so that Ray ships it by value (this module is not importable there)
        """A stand-in encoder replica that takes a while: the queue fills."""

        async def encode(self, x: np.ndarray) -> np.ndarray:
            import asyncio

            await asyncio.sleep(1.5)
            return x[:, :1]

    deployment = serve.deployment(
        name="SlowEncoder", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1, max_queued_requests=1
    )(SlowEncoder)
    handle = serve.run(deployment.bind(), name="clicksam-backpressure", route_prefix=None)
    try:
        remote = RemoteImageEncoder(handle, retry_after=lambda: 7.0)
        x = torch.zeros(1, 3, 4, 4)

        def encode() -> float | str:
            try:
                return float(remote(x).sum())
            except EncoderBusyError as exc:
                return f"busy {exc.retry_after}"

        with ThreadPoolExecutor(5) as pool:
            outcomes = list(pool.map(lambda _: encode(), range(5)))
        # what the replica and its one queue slot take succeeds; the rest is refused at once, with the
        # engine's estimate of the wait (how many got in depends on timing: Serve counts a request as
        # queued until a replica accepts it)
        assert outcomes.count(0.0) >= 1 and outcomes.count("busy 7.0") >= 1, outcomes
        assert set(outcomes) <= {0.0, "busy 7.0"}
    finally:
        serve.delete("clicksam-backpressure")


def test_the_weights_fingerprint_covers_every_tensor_and_buffer() -> None:
    import torch

    from clicksam.server.scale.serving import weights_fingerprint

    norm = torch.nn.BatchNorm2d(3)  # a 0-dim int64 buffer (num_batches_tracked) among float tensors
    before = weights_fingerprint(norm)
    assert before == weights_fingerprint(norm) and len(before) == 64
    with torch.no_grad():
        norm.running_var[1] += 1e-6  # a buffer, not a parameter
    assert weights_fingerprint(norm) != before


def test_an_encoder_replica_runs_the_models_image_encoder(ray_cluster: ClusterInfo, spec: ModelSpec) -> None:
    import asyncio

    import torch

    from clicksam.server.loading import load_model
    from clicksam.server.scale.serving import ImageEncoderReplica, model_identity

    sam = load_model(spec)
    # the class itself, in this process; no ONNX export in that folder: PyTorch, exactly
    replica = ImageEncoderReplica(spec, model_identity(spec, sam), 1, 1, 0.0, Path("/nonexistent"))
    assert replica.onnx_encoder is None
    x = np.random.default_rng(0).standard_normal((1, 3, sam.image_size, sam.image_size)).astype(np.float32)
    got = asyncio.run(replica.encode(x))
    torch.set_num_threads(1)
    with torch.inference_mode():
        expected = sam.image_encoder(torch.from_numpy(x)).numpy()
    assert got.dtype == np.float32 and got.tobytes() == expected.tobytes()
