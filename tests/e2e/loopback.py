"""Helpers of the browser tests: a free loopback port, waiting for a started server's /readyz,
``clicksam serve`` on loopback for as long as a ``with`` block, and stopping a server process (the
benchmarks import this module too, with ``tests/e2e`` on ``sys.path``)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class NotReadyError(RuntimeError):
    """The server process exited, or did not answer /readyz in time; the message ends with its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float, what: str) -> None:
    """Poll ``url``/readyz until 200 while ``proc`` (named ``what`` in errors) runs.

    Raises:
        NotReadyError: ``proc`` exited or ``timeout_s`` passed, with the log's last 3000 characters.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise NotReadyError(f"{what} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise NotReadyError(f"{what} not ready after {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


@contextmanager
def clicksam_serve(args: list[str], log: Path, cwd: Path, timeout_s: float = 300) -> Iterator[str]:
    """``clicksam serve ARGS`` on a free 127.0.0.1 port with its output in ``log``; yields its URL.

    The first start of a model exports its decoder, hence the long default ``timeout_s``.

    Raises:
        NotReadyError: the server exited or did not get ready (the message ends with its log).
    """
    port = free_port()
    cmd = [sys.executable, "-m", "clicksam.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *args]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_ready(url, proc, log, timeout_s, "clicksam serve")
        yield url
    finally:
        stop(proc, 20)


def stop(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Terminate ``proc`` and wait for it to exit; kill it if it is still running after ``timeout_s``."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
