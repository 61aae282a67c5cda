"""Benchmark of the projects API on SQLite: a real uvicorn in a subprocess, one client on loopback.

1. listing: a project of ``--images`` images (10,000 by default, rows written straight into the database
   first), ``GET /api/projects/{pid}/images?offset=&limit=100`` for pages spread over the whole project
   (first, middle, last, filtered by status).
2. saving: ``PUT .../annotations`` of ``--annotations`` masks (50 by default) on a 1024x768 image, each
   save replacing the previous one (version n -> n + 1), then ``GET`` of the same annotations.

The reference in the same run is ``GET /healthz`` (the HTTP round trip with no work), so the ratios say
what the database and the RLE checks add. Usage::

    .venv/bin/python bench/bench_projects.py
    .venv/bin/python bench/bench_projects.py --images 2000 --repeats 10   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

HOST = "127.0.0.1"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from loopback import free_port, wait_ready  # noqa: E402  (the tests' helpers, as other benches use them)

SERVER = """
import sys
from pathlib import Path
import uvicorn
from clicksam.server.app import create_app
from clicksam.server.settings import Settings
port, data = int(sys.argv[1]), Path(sys.argv[2])
app = create_app(Settings(model="vit_test", cache_dir=data / "cache", web_dir=data / "no-web", data_dir=data))
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
"""


def timed(fn: Callable[[], httpx.Response], repeats: int) -> list[float]:
    """Milliseconds of ``repeats`` calls (after one warm-up), each asserted to succeed."""
    fn().raise_for_status()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        r = fn()
        out.append((time.perf_counter() - start) * 1000)
        r.raise_for_status()
    return out


def summary(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
        "max_ms": round(ordered[-1], 2),
    }


def fill(data_dir: Path, pid_name: str, n: int) -> None:
    """``n`` image rows in a new project, written straight into the SQLite file (one transaction)."""
    from sqlalchemy import insert
    from sqlalchemy.orm import Session

    from clicksam.server.projects.db import create_db_engine, default_url, upgrade
    from clicksam.server.projects.models import Category, ImageRecord, Project

    engine = create_db_engine(default_url(data_dir))
    upgrade(engine)
    with Session(engine) as session, session.begin():
        project = Project(name=pid_name, categories=[Category(name="object", position=0)])
        session.add(project)
        session.flush()
        statuses = ("new", "in_progress", "done", "skipped")
        rows = [
            {"project_id": project.id, "sha256": f"{i:064x}", "file_name": f"img_{i:05d}.jpg",
             "format": "JPEG", "width": 1024, "height": 768, "status": statuses[i % 4]}
            for i in range(n)
        ]  # fmt: skip
        session.execute(insert(ImageRecord), rows)
    engine.dispose()


def blobs(n: int, height: int, width: int, seed: int) -> list[np.ndarray]:
    """``n`` blob-shaped masks (ellipses) as people draw objects."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    out = []
    for _ in range(n):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        ry, rx = rng.uniform(10, height / 4), rng.uniform(10, width / 4)
        out.append(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--annotations", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()

    from clicksam.server.projects.masks import mask_to_counts

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        fill(data_dir, "bench", args.images)
        port = free_port()
        log = data_dir / "server.log"
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(port), str(data_dir)],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://{HOST}:{port}"
        try:
            wait_ready(url + "/", proc, log, 120, "the projects server")
            client = httpx.Client(base_url=url, timeout=60)
            pid = client.get("/api/projects").json()["projects"][0]["id"]
            results: dict[str, Any] = {"images": args.images}
            results["healthz (reference)"] = summary(timed(lambda: client.get("/healthz"), args.repeats))
            last = args.images - 100
            pages = {"first": 0, "middle": args.images // 2, "last": last}
            for label, offset in pages.items():
                params = {"offset": offset, "limit": 100}
                results[f"list page of 100 ({label})"] = summary(
                    timed(lambda p=params: client.get(f"/api/projects/{pid}/images", params=p), args.repeats)
                )
            params = {"offset": args.images // 8, "limit": 100, "status": "done"}
            results["list page of 100 (status=done, middle)"] = summary(
                timed(lambda: client.get(f"/api/projects/{pid}/images", params=params), args.repeats)
            )

            # one real image to annotate: 1024x768
            import io

            from PIL import Image

            buf = io.BytesIO()
            Image.fromarray(np.full((768, 1024, 3), 90, np.uint8)).save(buf, "PNG")
            image = client.post(
                f"/api/projects/{pid}/images", files=[("image", ("a.png", buf.getvalue(), "image/png"))]
            ).json()["images"][0]
            path = f"/api/projects/{pid}/images/{image['id']}/annotations"
            anns = [
                {"category": "object", "segmentation": {"size": [768, 1024], "counts": mask_to_counts(m)},
                 "source": "manual", "prompts": {"points": [[10.0, 20.0, 1]], "box": None}}
                for m in blobs(args.annotations, 768, 1024, seed=0)
            ]  # fmt: skip
            body_bytes = len(json.dumps({"version": 0, "annotations": anns}))
            version = {"v": 0}

            def save() -> httpx.Response:
                r = client.put(path, json={"version": version["v"], "annotations": anns})
                if r.status_code == 200:
                    version["v"] = r.json()["version"]
                return r

            results[f"save {args.annotations} annotations ({body_bytes / 1024:.0f} KiB body)"] = summary(
                timed(save, args.repeats)
            )
            results[f"get {args.annotations} annotations"] = summary(
                timed(lambda: client.get(path), args.repeats)
            )
            ref = results["healthz (reference)"]["p50_ms"]
            for key, value in list(results.items()):
                if isinstance(value, dict) and key != "healthz (reference)":
                    value["x_healthz"] = round(value["p50_ms"] / ref, 1)
            print(json.dumps(results, indent=2))
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
