"""``--engine ray`` against the single-process server, in one run on this machine (loopback only).

Configurations, each serving the same model with the same images:

- ``local``: ``create_app`` under a real uvicorn in this process, the encoder on all cores;
- ``ray 1x2``: one encoder replica with 2 CPUs (2 torch threads);
- ``ray 2x1``: two encoder replicas with 1 CPU each (the same 2 cores, split);
- ``ray 1x2 batch 4``: one replica, ``@serve.batch`` up to 4 images (does batching pay on CPU?).

For each: ``--images`` distinct images uploaded by ``--clients`` concurrent clients (throughput in images
per minute, every encode a miss), then the latency of the cached path, which the Ray path lengthens by a
hop through Serve's proxy and the ingress replica: ``POST`` of an already-encoded image (decode, hash,
cache hit) and ``GET`` of its float16 tensor, p50 over ``--repeats`` x images sequential requests.
Each Ray configuration runs between two ``local`` runs and its ratio is against their mean (the
machine's load drifts). Usage::

    .venv/bin/python bench/bench_ray.py                    # vit_t with random weights (real encoder cost)
    .venv/bin/python bench/bench_ray.py --model vit_test   # quick
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "ray"))
from ray_helpers import free_port, run_uvicorn

from clicksam.server.loading import resolve_model
from clicksam.server.settings import Settings

HOST = "127.0.0.1"


def images(count: int, seed: int) -> list[bytes]:
    """Distinct 640x480 JPEGs with some structure (a real decode, not a trivial one)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        yy, xx = np.mgrid[0:480, 0:640].astype(np.float32)
        base = np.stack([127 + 100 * np.sin(xx / rng.uniform(20, 90) + rng.uniform(0, 6)) + 0 * yy] * 3, -1)
        base += rng.normal(0, 20, base.shape)
        buf = io.BytesIO()
        Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def upload(client: httpx.Client, data: bytes) -> httpx.Response:
    for _ in range(20):  # a 503 is back-pressure: wait as told and try again
        response = client.post("/api/embeddings", files={"image": ("x.jpg", data, "image/jpeg")})
        if response.status_code != 503:
            return response
        time.sleep(float(response.headers.get("Retry-After", "1")))
    return response


def measure(
    url: str, batch: list[bytes], warmup: list[bytes], clients: int, repeats: int
) -> dict[str, float]:
    with httpx.Client(base_url=url, timeout=600) as client:
        for data in warmup:  # first calls (torch's, every replica's) are not what is measured
            assert upload(client, data).status_code == 200
        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            answers = list(pool.map(lambda d: upload(client, d), batch))
        elapsed = time.perf_counter() - start
        bad = [r.status_code for r in answers if r.status_code != 200]
        if bad:
            raise RuntimeError(f"uploads failed: {bad}")
        metas = [r.json() for r in answers]
        assert not any(m["cached"] for m in metas), "the throughput run must encode every image"
        post_ms, get_ms = [], []
        for _ in range(repeats):
            for data, meta in zip(batch, metas, strict=True):
                t0 = time.perf_counter()
                r = upload(client, data)
                t1 = time.perf_counter()
                assert r.json()["cached"] is True
                g = client.get(meta["url"])
                t2 = time.perf_counter()
                assert g.status_code == 200
                post_ms.append((t1 - t0) * 1000)
                get_ms.append((t2 - t1) * 1000)
    return {
        "images_per_min": len(batch) / elapsed * 60,
        "cached_post_p50_ms": statistics.median(post_ms),
        "cached_get_p50_ms": statistics.median(get_ms),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="vit_t")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from clicksam.server.app import create_app
    from clicksam.server.scale.cluster import shutdown, start_or_join
    from clicksam.server.scale.serving import deploy, undeploy

    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    spec = resolve_model(args.model, None, 0, random_weights=True)
    base = Settings(
        model=args.model,
        random_weights=True,
        cache_dir=tmp / "cache",
        data_dir=tmp / "data",
        web_dir=tmp / "no-web",
        host=HOST,
        port=free_port(),
        encoder="torch",
        queue_size=16,
        cache_ttl=600,
    )
    results: dict[str, dict[str, float]] = {}
    seed = uuid.uuid4().int % 2**32  # new content ids each run: nothing cached in Redis from before

    def run_local(name: str, offset: int) -> None:
        app = create_app(base.model_copy(update={"torch_threads": 2}), spec=spec)
        with run_uvicorn(app) as url:
            batch = images(args.images + 2, seed + offset)
            results[name] = measure(url, batch[2:], batch[:2], args.clients, args.repeats)
        print(name, results[name], flush=True)

    start = time.perf_counter()
    info = start_or_join(None, num_cpus=2)
    print(f"Ray up in {time.perf_counter() - start:.1f} s", flush=True)
    configs: list[tuple[str, dict[str, Any]]] = [
        ("ray 1x2", {"replicas": 1, "cpus_per_replica": 2}),
        ("ray 2x1", {"replicas": 2, "cpus_per_replica": 1}),
        ("ray 1x2 batch 4", {"replicas": 1, "cpus_per_replica": 2, "batch_size": 4}),
    ]
    # the machine's load drifts: every Ray configuration is measured between two local runs, and
    # compared with their mean (the Ray cluster stays up, idle, during the local runs)
    try:
        run_local("local 0", 0)
        for i, (name, update) in enumerate(configs, start=1):
            settings = base.model_copy(update={"engine": "ray", "torch_threads": 1, **update})
            start = time.perf_counter()
            deploy(settings, spec)
            print(f"{name}: deployed in {time.perf_counter() - start:.1f} s", flush=True)
            url = f"http://{HOST}:{base.port}"
            batch = images(args.images + 2, seed + 100 * i)
            results[name] = measure(url, batch[2:], batch[:2], args.clients, args.repeats)
            print(name, results[name], flush=True)
            undeploy()
            run_local(f"local {i}", 100 * i + 50)
    finally:
        shutdown(info)

    print(f"\nmodel {args.model} (random weights), {args.images} images x {args.clients} clients")
    print("| config | images/min | vs local around it | cached POST p50 ms | cached GET p50 ms |")
    print("|---|---|---|---|---|")
    for i, (name, _) in enumerate([("local 0", {}), *configs]):
        r = results[name]
        if name.startswith("local"):
            ratio = "-"
        else:
            around = [results[f"local {i - 1}"]["images_per_min"], results[f"local {i}"]["images_per_min"]]
            ratio = f"{r['images_per_min'] / statistics.mean(around):.2f}x"
        print(
            f"| {name} | {r['images_per_min']:.1f} | {ratio} | "
            f"{r['cached_post_p50_ms']:.1f} | {r['cached_get_p50_ms']:.1f} |"
        )
    for i in range(1, len(configs) + 1):
        r = results[f"local {i}"]
        row = f"{r['images_per_min']:.1f} | - | {r['cached_post_p50_ms']:.1f} | {r['cached_get_p50_ms']:.1f}"
        print(f"| local {i} | {row} |")


if __name__ == "__main__":
    main()
