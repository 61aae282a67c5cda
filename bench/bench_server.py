"""Load benchmark of the embedding server: a real uvicorn in a subprocess, clients on loopback only.

Phases (each bounded in count and time; the whole run stops by itself):

1. uploads: ``--clients`` concurrent clients upload ``--uploads`` images each, drawn from ``--distinct``
   different pictures (so most are repeats that the cache and the shared encode answer); a 503 is the
   intended back-pressure: the client waits ``Retry-After`` and tries again (at most 5 times). Reports
   throughput, p50/p95 latency, status counts, the server's encodes.
2. cached fetch: ``GET /api/embeddings/{id}`` (2 MiB float16) for ``--seconds`` with keep-alive clients,
   once with a raw-socket client and once with httpx; plus 304 revalidations and cached re-uploads.
3. 12 MP JPEG: upload -> embedding bytes received, end to end, for distinct 4000x3000 photos.
4. gzip on the tensors: compressed size and time, to justify not compressing them.

Peak RSS is the server process's VmHWM. Usage::

    .venv/bin/python bench/bench_server.py                # vit_t with random weights (real encoder cost)
    .venv/bin/python bench/bench_server.py --model vit_test --seconds 5   # quick
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image, ImageDraw

HOST = "127.0.0.1"  # loopback only


def photo_like(width: int, height: int, seed: int) -> Image.Image:
    """A deterministic picture with smooth gradients, shapes and mild noise (JPEG-sized like a photo)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            127 + 100 * np.sin(xx / (width / rng.uniform(2, 6)) + rng.uniform(0, 6)),
            127 + 100 * np.cos(yy / (height / rng.uniform(2, 6)) + rng.uniform(0, 6)),
            127 + 60 * np.sin((xx + yy) / (width / rng.uniform(3, 9))),
        ],
        axis=-1,
    )
    base += rng.normal(0, 6, base.shape).astype(np.float32)
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, width - 10)), int(rng.integers(0, height - 10))
        x1, y1 = x0 + int(rng.integers(10, width // 3)), y0 + int(rng.integers(10, height // 3))
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
    return image


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values), q))


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class RawHttpClient:
    """A minimal keep-alive HTTP/1.1 GET client that reads bodies into one reusable buffer."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray(8 * 1024 * 1024)
        self.pending = b""

    def get(self, path: str, extra: str = "") -> tuple[int, int]:
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n{extra}\r\n".encode())
        data = self.pending
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = rest[:length]
        self.pending = rest[length:]
        view = memoryview(self.buffer)
        got = len(body)
        while got < length:
            n = self.sock.recv_into(view[: min(length - got, len(view))])
            if n == 0:
                raise ConnectionError("server closed the connection mid-body")
            got += n
        return status, length

    def close(self) -> None:
        self.sock.close()


def prepare_onnx_encoder(args: argparse.Namespace, cache_dir: Path) -> float:
    """Export + verify the ONNX encoder into the server's cache folder, as ``clicksam serve`` would."""
    from clicksam.serve import ensure_onnx_encoder
    from clicksam.server.loading import load_model, resolve_model
    from clicksam.server.onnx_encoder import encoder_dir

    spec = resolve_model(args.model, None, 0, random_weights=True)
    t0 = time.perf_counter()
    if not ensure_onnx_encoder(load_model(spec), spec, encoder_dir(cache_dir, spec), threads=2):
        raise RuntimeError("the ONNX encoder could not be exported and verified")
    return round(time.perf_counter() - t0, 1)


def start_server(args: argparse.Namespace, port: int, cache_dir: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        CLICKSAM_MODEL=args.model,
        CLICKSAM_RANDOM_WEIGHTS="1",
        CLICKSAM_QUEUE_SIZE=str(args.queue_size),
        CLICKSAM_ENCODER=args.encoder,
        CLICKSAM_CACHE_DIR=str(cache_dir),
        CLICKSAM_WEB_DIR=str(cache_dir / "no-web"),
    )
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "clicksam.server.app:app_from_env",
        "--host", HOST, "--port", str(port), "--log-level", "warning",
        "--loop", args.loop, "--http", args.http, "--no-access-log",
    ]  # fmt: skip
    log = open(cache_dir / "server.log", "wb")  # noqa: SIM115 -- lives as long as the server
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_ready(base: str, process: subprocess.Popen[bytes], timeout: float) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if process.poll() is not None:
            raise RuntimeError("the server exited during start-up; see server.log")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return time.perf_counter() - start
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server did not become ready in time")


def upload_phase(base: str, args: argparse.Namespace) -> dict[str, Any]:
    pictures = [jpeg(photo_like(640, 480, seed)) for seed in range(args.distinct)]
    plan = [[(c * 7 + i * 3) % args.distinct for i in range(args.uploads)] for c in range(args.clients)]
    latencies: list[float] = []
    image_latencies: list[float] = []
    statuses: Counter[int] = Counter()
    cached = Counter[bool]()
    gave_up = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + args.phase_timeout

    def client(indices: list[int]) -> None:
        with httpx.Client(base_url=base, timeout=120) as http:
            for index in indices:
                image_start = time.perf_counter()
                for _attempt in range(5):
                    if time.perf_counter() > deadline:
                        return
                    t0 = time.perf_counter()
                    response = http.post(
                        "/api/embeddings", files={"image": (f"{index}.jpg", pictures[index], "image/jpeg")}
                    )
                    elapsed = time.perf_counter() - t0
                    with lock:
                        statuses[response.status_code] += 1
                    if response.status_code == 503:
                        time.sleep(min(float(response.headers.get("retry-after", "1")), 5.0))
                        continue
                    with lock:
                        latencies.append(elapsed)
                        image_latencies.append(time.perf_counter() - image_start)
                        cached[bool(response.json().get("cached"))] += 1
                    break
                else:
                    with lock:
                        gave_up[0] += 1  # five 503s in a row: the client stops asking for this image

    start = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        list(pool.map(client, plan))
    wall = time.perf_counter() - start
    ok = statuses.get(200, 0)
    ready = httpx.get(f"{base}/readyz").json()
    return {
        "clients": args.clients,
        "uploads": args.clients * args.uploads,
        "distinct_images": args.distinct,
        "wall_s": round(wall, 2),
        "throughput_rps": round(ok / wall, 2),
        "statuses": dict(statuses),
        "gave_up_after_5_503s": gave_up[0],
        "cached_answers": cached.get(True, 0),
        "encoded_answers": cached.get(False, 0),
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p95_ms": round(percentile(latencies, 95) * 1000, 1),
        "per_image_p95_ms_incl_retries": round(percentile(image_latencies, 95) * 1000, 1),
        "server_cached_embeddings": ready["cached_embeddings"],
    }


def fetch_phase(base: str, port: int, embedding_id: str, args: argparse.Namespace) -> dict[str, Any]:
    path = f"/api/embeddings/{embedding_id}"
    results: dict[str, Any] = {}

    def run_raw(extra: str, expect: int) -> dict[str, Any]:
        counts: list[int] = []
        errors: list[str] = []
        latencies: list[float] = []
        lock = threading.Lock()
        stop = time.perf_counter() + args.seconds

        def worker() -> None:
            client = RawHttpClient(port)
            n = 0
            mine: list[float] = []
            try:
                while time.perf_counter() < stop and n < args.max_requests:
                    t0 = time.perf_counter()
                    status, _ = client.get(path, extra)
                    mine.append(time.perf_counter() - t0)
                    if status != expect:
                        errors.append(str(status))
                    n += 1
            except OSError as exc:
                errors.append(repr(exc))
            finally:
                client.close()
            with lock:
                counts.append(n)
                latencies.extend(mine)

        start = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(args.fetch_clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        return {
            "requests": sum(counts),
            "rps": round(sum(counts) / wall, 1),
            "p50_ms": round(percentile(latencies, 50) * 1000, 2),
            "p95_ms": round(percentile(latencies, 95) * 1000, 2),
            "errors": errors[:5],
        }

    results["raw_socket_float16_200"] = run_raw("", 200)
    results["raw_socket_revalidate_304"] = run_raw(f'If-None-Match: "{embedding_id}-float16"\r\n', 304)

    # the same fetch with httpx (a typical Python client), for comparison
    stop = time.perf_counter() + args.seconds
    n = 0
    t0 = time.perf_counter()
    with httpx.Client(base_url=base, timeout=30) as http:
        while time.perf_counter() < stop and n < args.max_requests:
            response = http.get(path)
            assert response.status_code == 200 and len(response.content) == 2 * 256 * 64 * 64
            n += 1
    results["httpx_1_client_float16_200"] = {"requests": n, "rps": round(n / (time.perf_counter() - t0), 1)}
    results["fetch_clients"] = args.fetch_clients
    return results


def cached_upload_phase(base: str, picture: bytes, args: argparse.Namespace) -> dict[str, Any]:
    """Re-uploads of an already encoded 640x480 JPEG: decode + hash + lookup, no encode."""
    stop = time.perf_counter() + args.seconds
    n = 0
    t0 = time.perf_counter()
    with httpx.Client(base_url=base, timeout=30) as http:
        while time.perf_counter() < stop and n < args.max_requests:
            response = http.post("/api/embeddings", files={"image": ("a.jpg", picture, "image/jpeg")})
            assert response.status_code == 200 and response.json()["cached"] is True
            n += 1
    return {"requests": n, "rps": round(n / (time.perf_counter() - t0), 1)}


def twelve_mp_phase(base: str, args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    with httpx.Client(base_url=base, timeout=300) as http:
        for seed in range(100, 100 + args.big_images):
            data = jpeg(photo_like(4000, 3000, seed), quality=92)
            t0 = time.perf_counter()
            response = http.post("/api/embeddings", files={"image": ("big.jpg", data, "image/jpeg")})
            t_meta = time.perf_counter() - t0
            assert response.status_code == 200, response.text
            meta = response.json()
            tensor = http.get(meta["url"])
            total = time.perf_counter() - t0
            assert tensor.status_code == 200 and len(tensor.content) == 2 * 256 * 64 * 64
            runs.append(
                {
                    "jpeg_mb": round(len(data) / 1e6, 2),
                    "upload_to_meta_ms": round(t_meta * 1000),
                    "server_encode_ms": meta["encode_ms"],
                    "upload_to_bytes_ms": round(total * 1000),
                }
            )
    return {"size": "4000x3000", "runs": runs}


def gzip_phase(base: str, embedding_id: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with httpx.Client(base_url=base, timeout=30) as http:
        bodies = {
            "float16": http.get(f"/api/embeddings/{embedding_id}").content,
            "float32": http.get(f"/api/embeddings/{embedding_id}?dtype=float32").content,
            "openapi.json": http.get("/openapi.json", headers={"Accept-Encoding": "identity"}).content,
        }
    for name, body in bodies.items():
        t0 = time.perf_counter()
        packed = gzip.compress(body, compresslevel=6)
        out[name] = {
            "bytes": len(body),
            "gzip6_ratio": round(len(packed) / len(body), 3),
            "gzip6_ms": round((time.perf_counter() - t0) * 1000, 1),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vit_t", help="preset, served with random weights")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--uploads", type=int, default=4, help="uploads per client")
    parser.add_argument("--distinct", type=int, default=6, help="different pictures among the uploads")
    parser.add_argument("--queue-size", type=int, default=2, help="server encoder queue (small: shows 503s)")
    parser.add_argument("--fetch-clients", type=int, default=2, help="one per core: more only contend")
    parser.add_argument("--seconds", type=float, default=8.0, help="duration of each fetch phase")
    parser.add_argument("--max-requests", type=int, default=20000, help="cap per client per fetch phase")
    parser.add_argument("--big-images", type=int, default=2, help="12 MP JPEGs to time end to end")
    parser.add_argument("--phase-timeout", type=float, default=300.0)
    parser.add_argument(
        "--encoder", choices=["torch", "onnxruntime"], default="torch", help="server's image encoder backend"
    )
    parser.add_argument("--loop", default="uvloop")
    parser.add_argument("--http", default="httptools")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
    from loopback import free_port, stop  # the browser tests' loopback helpers

    port = free_port()
    base = f"http://{HOST}:{port}"
    results: dict[str, Any] = {
        "model": f"{args.model} (random weights)",
        "loop": args.loop,
        "http": args.http,
    }
    with tempfile.TemporaryDirectory(prefix="clicksam-bench-") as tmp:
        if args.encoder == "onnxruntime":
            results["onnx_export_s"] = prepare_onnx_encoder(args, Path(tmp))
        process = start_server(args, port, Path(tmp))
        try:
            results["startup_s"] = round(wait_ready(base, process, 300), 2)
            print(f"server up in {results['startup_s']} s (pid {process.pid})", flush=True)
            results["uploads"] = upload_phase(base, args)
            print("uploads:", json.dumps(results["uploads"]), flush=True)
            picture = jpeg(photo_like(640, 480, 0))
            meta = httpx.post(
                f"{base}/api/embeddings", files={"image": ("a.jpg", picture, "image/jpeg")}
            ).json()
            results["cached_fetch"] = fetch_phase(base, port, meta["id"], args)
            print("cached fetch:", json.dumps(results["cached_fetch"]), flush=True)
            results["cached_reupload_640x480"] = cached_upload_phase(base, picture, args)
            print("cached re-upload:", json.dumps(results["cached_reupload_640x480"]), flush=True)
            results["twelve_mp"] = twelve_mp_phase(base, args)
            print("12 MP:", json.dumps(results["twelve_mp"]), flush=True)
            results["gzip"] = gzip_phase(base, meta["id"])
            print("gzip:", json.dumps(results["gzip"]), flush=True)
            results["server_peak_rss_mib"] = round(peak_rss_mib(process.pid), 1)
            results["server_exit_code_before_stop"] = process.poll()
        finally:
            stop(process, 30)
            log = (Path(tmp) / "server.log").read_text(errors="replace")
        results["server_log_errors"] = [
            line for line in log.splitlines() if "ERROR" in line or "Traceback" in line
        ]
    statuses = results["uploads"]["statuses"]
    unexpected = {code: n for code, n in statuses.items() if code not in (200, 503)}
    results["unexpected_statuses"] = unexpected
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if unexpected or results["server_log_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
