"""Helpers of the Ray tests: the processes of a Ray session and the sockets they listen on."""

from __future__ import annotations

import os
from pathlib import Path

import psutil

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
