"""Helpers of the browser tests: a free loopback port and waiting for a started server's /readyz."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
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
