"""No data lost: SIGKILL the server in the middle of a stream of saves, restart it, check every image.

Two writers stream annotation saves over four images. After the kill, each image holds either the last
save that was acknowledged (200) for it, or the one that was in flight when the process died (committed,
but the answer never left); never an older one, never a mix. On SQLite the file passes
``PRAGMA integrity_check`` and ``foreign_key_check``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from projects_helpers import annotation, image_bytes

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "e2e"))
from loopback import free_port, wait_ready

SIDE = 128
IMAGES = 4


def start(data_dir: Path, database: str | None, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    args = [sys.executable, str(Path(__file__).with_name("projects_server.py")), str(port), str(data_dir)]
    proc = subprocess.Popen(
        [*args, *([database] if database else [])],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/"
    wait_ready(url, proc, log, 120, "the projects server")
    return proc, url


def body_for(version: int, writer: int) -> dict[str, Any]:
    """A save whose content says which save it is (score = writer, mask seeded by version and writer)."""
    rng = np.random.default_rng(1000 * writer + version)
    anns = [annotation(rng.random((SIDE, SIDE)) < 0.3, score=float(writer)) for _ in range(8)]
    return {"version": version, "annotations": anns}


@pytest.mark.slow
def test_sigkill_during_saves_loses_nothing_acknowledged(
    tmp_path: Path, database: str | None, data_dir: Path
) -> None:
    log = tmp_path / "server.log"
    proc, url = start(data_dir, database, log)
    try:
        client = httpx.Client(base_url=url, timeout=30)
        pid = client.post("/api/projects", json={"name": "crash", "categories": ["cat"]}).json()["id"]
        files = [("image", (f"{i}.png", image_bytes(SIDE, SIDE, i), "image/png")) for i in range(IMAGES)]
        ids = [im["id"] for im in client.post(f"/api/projects/{pid}/images", files=files).json()["images"]]
        acked: dict[int, tuple[int, dict[str, Any]]] = {iid: (0, {"annotations": []}) for iid in ids}
        in_flight: dict[int, list[tuple[int, dict[str, Any]]]] = {iid: [] for iid in ids}
        lock = threading.Lock()
        stop = threading.Event()

        def write(writer: int) -> None:
            own = httpx.Client(base_url=url, timeout=30)
            k = 0
            while not stop.is_set():
                iid = ids[(k + writer) % IMAGES]
                k += 1
                with lock:
                    version = acked[iid][0]
                body = body_for(version, writer)
                with lock:
                    in_flight[iid].append((version + 1, body))
                try:
                    r = own.put(f"/api/projects/{pid}/images/{iid}/annotations", json=body)
                except httpx.TransportError:
                    return  # the server is gone
                if r.status_code == 200:
                    with lock:
                        assert r.json() == {"version": version + 1}
                        acked[iid] = max(acked[iid], (version + 1, body), key=lambda a: a[0])
                else:
                    assert r.status_code == 409, r.text  # the other writer saved this image first

        writers = [threading.Thread(target=write, args=(w,)) for w in (1, 2)]
        for t in writers:
            t.start()
        deadline = time.monotonic() + 60
        while min(v for v, _ in acked.values()) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # mid-stream: both writers have requests on the wire
        proc.wait(timeout=30)
        stop.set()
        for t in writers:
            t.join(timeout=60)
        assert min(v for v, _ in acked.values()) >= 5, "too few saves before the kill"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    proc, url = start(data_dir, database, log)
    try:
        client = httpx.Client(base_url=url, timeout=30)
        for iid in ids:
            stored = client.get(f"/api/projects/{pid}/images/{iid}/annotations").json()
            version, body = acked[iid]
            # a save can commit and die before its answer: then it is the newer one, never an older
            candidates = [(version, body)] + [(v, b) for v, b in in_flight[iid] if v == version + 1]

            def keyed(annotations: list[dict[str, Any]]) -> list[tuple[str, Any, Any]]:
                return [(a["category"], a["segmentation"], a["score"]) for a in annotations]

            got = (stored["version"], keyed(stored["annotations"]))
            assert got in [(v, keyed(b["annotations"])) for v, b in candidates], (stored["version"], version)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    if database is None:
        import sqlite3

        with sqlite3.connect(data_dir / "clicksam.sqlite3") as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
