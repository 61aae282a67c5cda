"""The app under a real uvicorn on 127.0.0.1: streamed upload limit, concurrent clients, no 5xx."""

from __future__ import annotations

import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
from PIL import Image
from server_helpers import StatusRecorder, encode, random_rgb, run_uvicorn

from clicksam.model import Sam
from clicksam.server.app import MULTIPART_SLACK_BYTES, create_app
from clicksam.server.loading import ModelSpec
from clicksam.server.settings import Settings


def _read_response_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_chunked_upload_is_cut_off_while_streaming(
    make_settings: Callable[..., Settings], spec: ModelSpec, sam: Sam
) -> None:
    """A body without Content-Length that never ends gets its 413 long before it is all sent."""
    statuses: list[int] = []
    limit = 100_000
    app = create_app(make_settings(max_upload_bytes=limit), spec=spec, sam=sam)
    app.add_middleware(StatusRecorder, statuses=statuses)
    with run_uvicorn(app) as url:
        port = int(url.rsplit(":", 1)[1])
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        boundary = "b0undary"
        sock.sendall(
            (
                "POST /api/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
            ).encode()
        )
        part_head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        chunks = [part_head] + [b"\x89PNG" + bytes(16_380)] * 2000  # would be ~33 MB
        sent = 0
        answer = b""
        sock.settimeout(0.05)
        for chunk in chunks:
            try:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
            try:
                answer = sock.recv(65536)
            except (TimeoutError, BlockingIOError):
                continue
            if answer:
                break
        sock.settimeout(10)
        answer += _read_response_head(sock) if b"\r\n\r\n" not in answer else b""
        sock.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert answer.endswith(
        b'{"detail": "upload too large: the limit is 100,000 bytes; send a smaller or more compressed image"}'
    )
    # answered right after the limit (+ the multipart slack, + what sat in socket buffers), not at 33 MB
    assert sent < limit + MULTIPART_SLACK_BYTES + 256 * 1024, sent
    assert statuses == [413]


def test_concurrent_clients_distinct_and_repeated_images(
    make_settings: Callable[..., Settings], spec: ModelSpec, sam: Sam
) -> None:
    statuses: list[int] = []
    app = create_app(make_settings(queue_size=16), spec=spec, sam=sam)
    app.add_middleware(StatusRecorder, statuses=statuses)
    images = [encode(Image.fromarray(random_rgb(64, 80, seed)), "PNG") for seed in range(4)]
    uploads = [images[i % 4] for i in range(12)]  # 4 distinct, each uploaded 3 times at once
    with run_uvicorn(app) as url, httpx.Client(base_url=url, timeout=120) as client:

        def upload(data: bytes) -> tuple[int, dict[str, object]]:
            response = client.post("/api/embeddings", files={"image": ("a.png", data, "image/png")})
            return response.status_code, response.json()

        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(upload, uploads))
        assert [status for status, _ in results] == [200] * 12
        ids = {body["id"] for _, body in results}
        assert len(ids) == 4
        assert app.state.service.encodes == 4
        tensor = client.get(f"/api/embeddings/{results[0][1]['id']}")
        assert tensor.status_code == 200 and len(tensor.content) == 256 * 64 * 64 * 2
        assert np.isfinite(np.frombuffer(tensor.content, "<f2")).all()
    assert all(status < 500 for status in statuses)
