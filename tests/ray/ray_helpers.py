"""Helpers of the Ray tests: a Ray session's processes and listening sockets, a real uvicorn, PNGs, Redis."""

from __future__ import annotations

import io
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from PIL import Image

from clicksam.server.scale.cluster import ClusterInfo


def session_processes(session_dir: str) -> list[psutil.Process]:
    """The live processes of a Ray session: those naming its folder on their command line, their children."""
    name = Path(session_dir).name
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(name in part for part in proc.info["cmdline"] or []):
                found[proc.pid] = proc
                for child in proc.children(recursive=True):
                    found[child.pid] = child
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return [p for p in found.values() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def ray_listening_sockets(info: ClusterInfo) -> list[tuple[str, int, str]]:
    """(ip, port, process name) of every TCP socket a process of the session (or this one) listens on."""
    procs = {p.pid: p for p in session_processes(info.session_dir)}
    procs[os.getpid()] = psutil.Process()
    sockets = []
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in procs:
            try:
                name = procs[conn.pid].name()
            except psutil.NoSuchProcess:
                continue
            sockets.append((str(conn.laddr.ip), int(conn.laddr.port), name))
    return sockets


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def run_uvicorn(app: Any) -> Iterator[str]:
    """Serve ``app`` with a real uvicorn on 127.0.0.1 in a thread; yields the base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def png(pixels: np.ndarray) -> bytes:
    """PNG bytes of (H, W, 3) uint8 RGB."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def redis_or_skip(url: str) -> Any:
    """A client of the Redis at ``url``, or skip the test saying why."""
    import pytest
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at {url} ({exc}): the shared-cache tests need one (redis-server)")
    return client
