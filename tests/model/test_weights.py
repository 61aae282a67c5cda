"""The checkpoint downloader against a real HTTP server on 127.0.0.1 serving a file the test makes."""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from clicksam.cli import main
from clicksam.errors import UsageError
from clicksam.model import weights
from clicksam.model.weights import (
    WeightsDownloadError,
    WeightsInfo,
    WeightsUnpinnedError,
    WeightsVerificationError,
    download,
    find_checkpoint,
    verify,
)

PAYLOAD = os.urandom(3 * (1 << 20) + 12345)  # a few chunks, and not a multiple of the chunk size
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@dataclass
class ServerState:
    """What the handler serves and how it misbehaves; records what it was asked."""

    body: bytes = PAYLOAD
    support_range: bool = True
    # per request (in order): cut the body after this many bytes and drop the connection
    drop_after: list[int] = field(default_factory=list)
    # send the body in pieces with a pause between them (to overlap two clients)
    slow: bool = False
    ranges: list[str | None] = field(default_factory=list)


class _Handler(http.server.BaseHTTPRequestHandler):
    state: ServerState

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        state = self.server.state  # type: ignore[attr-defined]
        header = self.headers.get("Range")
        state.ranges.append(header)
        if not self.path.startswith("/files/"):
            self.send_error(404, "no such file")
            return
        body = state.body
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", header or "")
        if state.support_range and match:
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        chunk = body[start:]
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        if state.drop_after:
            cut = state.drop_after.pop(0)
            self.wfile.write(chunk[:cut])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if state.slow:
            step = len(chunk) // 8 + 1
            for i in range(0, len(chunk), step):
                self.wfile.write(chunk[i : i + step])
                self.wfile.flush()
                time.sleep(0.05)
            return
        self.wfile.write(chunk)


@pytest.fixture
def server() -> Iterator[tuple[str, ServerState]]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    state = ServerState()
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv(weights.CACHE_DIR_ENV, str(cache))
    monkeypatch.delenv(weights.WEIGHTS_BASE_URL_ENV, raising=False)
    return cache


def _info(base: str, sha: str = SHA, size: int = len(PAYLOAD)) -> WeightsInfo:
    return WeightsInfo("test", "test_model.pth", f"{base}/files/test_model.pth", size, sha)


SAM2_NAMES = ("sam2.1_hiera_t", "sam2.1_hiera_s", "sam2.1_hiera_b+", "sam2.1_hiera_l")


def test_official_table() -> None:
    assert set(weights.WEIGHTS) == {"vit_b", "vit_l", "vit_h", "vit_t", *SAM2_NAMES}
    vit_b = weights.WEIGHTS["vit_b"]
    assert vit_b.url == "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"
    assert vit_b.bytes == 375042383
    vit_t = weights.WEIGHTS["vit_t"]
    assert vit_t.url == "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt"
    assert vit_t.sha256 == "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f"
    assert all(len(weights.WEIGHTS[n].sha256 or "") == 64 for n in ("vit_b", "vit_l", "vit_h", "vit_t"))
    # SAM 2.1: Meta's URLs; no hash and no size, rather than guessed ones
    for name, size in zip(SAM2_NAMES, ("tiny", "small", "base_plus", "large"), strict=True):
        info = weights.WEIGHTS[name]
        assert info.url == f"https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_{size}.pt"
        assert info.file == f"sam2.1_hiera_{size}.pt"
        assert (info.sha256, info.bytes, info.pinned) == (None, None, False)


def test_cache_dir_env_override(isolated_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert weights.cache_dir() == isolated_cache
    assert weights.expected_path("vit_t") == isolated_cache / "weights" / "mobile_sam.pt"
    monkeypatch.delenv(weights.CACHE_DIR_ENV)
    assert weights.cache_dir().name == "clicksam"


def test_full_download(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    path = download(_info(base), progress=False)
    assert path == weights.weights_dir() / "test_model.pth"
    assert path.read_bytes() == PAYLOAD
    assert not path.with_name("test_model.pth.part").exists()
    assert state.ranges == [None]
    assert find_checkpoint(_info(base)) == path
    # a second call reuses the verified file without a request
    assert download(_info(base), progress=False) == path
    assert len(state.ranges) == 1
    # --dir
    other = download(_info(base), tmp_path / "elsewhere", progress=False)
    assert other == tmp_path / "elsewhere" / "test_model.pth" and other.read_bytes() == PAYLOAD


def test_resume_after_dropped_connection(server: tuple[str, ServerState]) -> None:
    base, state = server
    state.drop_after = [1_000_000]
    path = download(_info(base), progress=False)
    assert path.read_bytes() == PAYLOAD
    # the first request was cut short; the retry asked only for the rest
    assert state.ranges[0] is None
    assert state.ranges[1] is not None
    offset = int(state.ranges[1].removeprefix("bytes=").rstrip("-"))
    assert 0 < offset <= 1_000_000


def test_resume_of_partial_file_from_an_earlier_run(server: tuple[str, ServerState]) -> None:
    base, state = server
    state.drop_after = [500_000, 0]
    with pytest.raises(WeightsDownloadError) as excinfo:
        download(_info(base), progress=False, retries=1)
    part = weights.weights_dir() / "test_model.pth.part"
    assert part.exists() and 0 < part.stat().st_size <= 500_000
    assert str(weights.weights_dir() / "test_model.pth") in str(excinfo.value)
    have = part.stat().st_size
    path = download(_info(base), progress=False)
    assert path.read_bytes() == PAYLOAD
    assert state.ranges[-1] == f"bytes={have}-"


def test_server_without_range_support_restarts(server: tuple[str, ServerState]) -> None:
    base, state = server
    state.support_range = False
    part = weights.weights_dir() / "test_model.pth.part"
    part.parent.mkdir(parents=True)
    # a partial file that is NOT a prefix of the payload: a 200 reply must overwrite it, not append
    part.write_bytes(b"x" * 700_000)
    path = download(_info(base), progress=False)
    assert path.read_bytes() == PAYLOAD
    assert state.ranges == ["bytes=700000-"]


def test_wrong_hash_deletes_part_and_raises(server: tuple[str, ServerState]) -> None:
    base, _ = server
    bad = _info(base, sha="0" * 64)
    with pytest.raises(WeightsVerificationError, match="sha256") as excinfo:
        download(bad, progress=False)
    assert "deleted" in str(excinfo.value)
    d = weights.weights_dir()
    assert not (d / "test_model.pth").exists()
    assert not (d / "test_model.pth.part").exists()
    assert find_checkpoint(bad) is None


def test_wrong_size_is_rejected(server: tuple[str, ServerState]) -> None:
    base, _ = server
    with pytest.raises(WeightsVerificationError, match="bytes"):
        download(_info(base, size=len(PAYLOAD) - 10), progress=False)
    assert not (weights.weights_dir() / "test_model.pth").exists()


def test_http_404_is_a_download_error(server: tuple[str, ServerState]) -> None:
    base, state = server
    info = WeightsInfo("test", "test_model.pth", f"{base}/missing/test_model.pth", len(PAYLOAD), SHA)
    with pytest.raises(WeightsDownloadError, match="HTTP 404") as excinfo:
        download(info, progress=False)
    assert str(weights.weights_dir() / "test_model.pth") in str(excinfo.value)
    assert len(state.ranges) == 1  # a 404 is not retried


def _refused_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()  # nobody listens there now
    return port


def test_offline_error_says_where_to_put_the_file() -> None:
    url = f"http://127.0.0.1:{_refused_port()}/mobile_sam.pt"
    info = WeightsInfo("vit_t", "mobile_sam.pt", url, 40728226, weights.WEIGHTS["vit_t"].sha256)
    with pytest.raises(WeightsDownloadError) as excinfo:
        download(info, progress=False)
    msg = str(excinfo.value)
    assert "refused" in msg.lower()
    assert url in msg
    assert str(weights.weights_dir() / "mobile_sam.pt") in msg
    assert "40728226 bytes" in msg


def test_base_url_env_and_cli_offline(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _refused_port()
    monkeypatch.setenv(weights.WEIGHTS_BASE_URL_ENV, f"http://127.0.0.1:{port}/mirror/")
    assert weights.get_info("vit_b").url == f"http://127.0.0.1:{port}/mirror/sam_vit_b_01ec64.pth"
    assert main(["weights", "download", "vit_b", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"http://127.0.0.1:{port}/mirror/sam_vit_b_01ec64.pth" in err
    assert str(weights.weights_dir() / "sam_vit_b_01ec64.pth") in err


def test_cli_unknown_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["weights", "download", "vit_x"]) == 2
    err = capsys.readouterr().err
    assert "vit_x" in err and "vit_b, vit_l, vit_h, vit_t" in err


def test_verify_good_and_bad_files(tmp_path: Path) -> None:
    info = WeightsInfo("test", "test_model.pth", "http://unused", len(PAYLOAD), SHA)
    good = tmp_path / "good.pth"
    good.write_bytes(PAYLOAD)
    assert verify(good, info) == info
    flipped = bytearray(PAYLOAD)
    flipped[len(flipped) // 2] ^= 1
    bad = tmp_path / "bad.pth"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(WeightsVerificationError, match="sha256"):
        verify(bad, info)
    short = tmp_path / "short.pth"
    short.write_bytes(PAYLOAD[:-1])
    with pytest.raises(WeightsVerificationError, match="bytes"):
        verify(short, info)
    with pytest.raises(FileNotFoundError):
        verify(tmp_path / "absent.pth", info)
    # without a name, a file that matches no official entry by name or size
    with pytest.raises(WeightsVerificationError, match="matches no official checkpoint"):
        verify(good)


def test_find_checkpoint_rejects_a_hand_placed_wrong_file(tmp_path: Path) -> None:
    info = WeightsInfo("test", "test_model.pth", "http://unused", len(PAYLOAD), SHA)
    path = weights.expected_path(info)
    path.parent.mkdir(parents=True)
    path.write_bytes(PAYLOAD)
    assert find_checkpoint(info) == path  # hand-placed, verified, stamped
    # a changed file (same size, new mtime) is hashed again and refused
    corrupted = bytearray(PAYLOAD)
    corrupted[0] ^= 0xFF
    path.write_bytes(bytes(corrupted))
    os.utime(path, ns=(1, 1))
    assert find_checkpoint(info) is None
    with pytest.raises(WeightsVerificationError, match="force"):
        download(info, progress=False)


def test_cli_verify_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = tmp_path / "mobile_sam.pt"
    fake.write_bytes(b"not a checkpoint")
    assert main(["weights", "verify", str(fake)]) == 1  # picked by file name: vit_t, wrong size
    assert "mobile_sam.pt" in capsys.readouterr().err
    assert main(["weights", "verify", str(fake), "--name", "vit_t"]) == 1
    assert "40728226" in capsys.readouterr().err
    assert main(["weights", "verify", str(tmp_path / "absent.pt")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("vit_b", "vit_l", "vit_h", "vit_t"):
        assert name in out
    assert "not downloaded" in out


def test_concurrent_downloads_share_one_transfer(server: tuple[str, ServerState]) -> None:
    base, state = server
    state.slow = True
    results: list[Path | BaseException] = []

    def run() -> None:
        try:
            results.append(download(_info(base), progress=False))
        except BaseException as exc:  # reported below
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 2 and all(isinstance(r, Path) for r in results), results
    assert results[0] == results[1]
    assert Path(results[0]).read_bytes() == PAYLOAD  # type: ignore[arg-type]
    assert len(state.ranges) == 1  # the second caller waited for the lock and found the verified file


def test_force_downloads_again(server: tuple[str, ServerState]) -> None:
    base, state = server
    path = download(_info(base), progress=False)
    assert download(_info(base), progress=False, force=True) == path
    assert len(state.ranges) == 2 and path.read_bytes() == PAYLOAD


def test_unwritable_directory_is_a_clear_error(tmp_path: Path, server: tuple[str, ServerState]) -> None:
    base, _ = server
    blocker = tmp_path / "a_file"
    blocker.write_bytes(b"")
    with pytest.raises(WeightsDownloadError, match="cannot write checkpoints to"):
        download(_info(base), blocker / "sub", progress=False)


# ------------------------------------------------------------------ entries without a pinned sha256


def _unpinned(base: str) -> WeightsInfo:
    return WeightsInfo("test", "test_model.pth", f"{base}/files/test_model.pth", None, None)


def test_unpinned_download_is_not_used_until_accepted_by_hash(server: tuple[str, ServerState]) -> None:
    base, state = server
    with pytest.raises(WeightsUnpinnedError) as excinfo:
        download(_unpinned(base), progress=False)
    assert excinfo.value.sha256 == SHA
    assert SHA in str(excinfo.value) and "--sha256" in str(excinfo.value)
    path = weights.expected_path(_unpinned(base))
    assert path.read_bytes() == PAYLOAD  # downloaded, kept, but not handed out
    assert find_checkpoint(_unpinned(base)) is None
    assert weights.trusted_sha256(_unpinned(base)) is None
    # accepting with the hash: checks the file in place, no second transfer
    assert download(_unpinned(base), progress=False, sha256=SHA.upper()) == path
    assert len(state.ranges) == 1
    assert find_checkpoint(_unpinned(base)) == path
    assert weights.trusted_sha256(_unpinned(base)) == weights.accepted_sha256(_unpinned(base)) == SHA
    # once accepted, the file is held to that hash as strictly as a pinned one
    corrupted = bytearray(PAYLOAD)
    corrupted[-1] ^= 0xFF
    path.write_bytes(bytes(corrupted))
    os.utime(path, ns=(1, 1))
    assert find_checkpoint(_unpinned(base)) is None
    with pytest.raises(WeightsVerificationError, match="force"):
        download(_unpinned(base), progress=False)


def test_unpinned_with_a_wrong_sha256_is_deleted(server: tuple[str, ServerState]) -> None:
    base, _ = server
    with pytest.raises(WeightsVerificationError, match="deleted"):
        download(_unpinned(base), progress=False, sha256="ab" * 32)
    path = weights.expected_path(_unpinned(base))
    assert not path.exists() and not path.with_name(path.name + ".part").exists()
    assert weights.accepted_sha256(_unpinned(base)) is None


def test_accept_unpinned_trusts_the_file_and_a_new_download_forgets_it(
    server: tuple[str, ServerState],
) -> None:
    base, state = server
    path = download(_unpinned(base), progress=False, accept_unpinned=True)
    assert find_checkpoint(_unpinned(base)) == path
    assert weights.accepted_sha256(_unpinned(base)) == SHA
    # the server now has another file: a forced download is not covered by the old acceptance
    state.body = PAYLOAD[::-1]
    with pytest.raises(WeightsUnpinnedError) as excinfo:
        download(_unpinned(base), progress=False, force=True)
    assert excinfo.value.sha256 == hashlib.sha256(PAYLOAD[::-1]).hexdigest()
    assert find_checkpoint(_unpinned(base)) is None


def test_unpinned_download_of_unknown_size_resumes(server: tuple[str, ServerState]) -> None:
    base, state = server
    state.drop_after = [1_500_000]
    path = download(_unpinned(base), progress=False, sha256=SHA)
    assert path.read_bytes() == PAYLOAD
    assert state.ranges[0] is None and state.ranges[1] is not None


def test_a_pinned_entry_refuses_another_sha256() -> None:
    with pytest.raises(UsageError, match="pinned"):
        download("vit_t", progress=False, sha256="ab" * 32)
    with pytest.raises(UsageError, match="64 hexadecimal"):
        download("sam2.1_hiera_t", progress=False, sha256="abc")


def test_cli_sam2_download_list_verify_and_serve_lookup(
    server: tuple[str, ServerState], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from clicksam.server.loading import resolve_model

    base, _ = server
    monkeypatch.setenv(weights.WEIGHTS_BASE_URL_ENV, f"{base}/files")
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "sam2.1_hiera_b+" in out and "sam2.1_hiera_tiny.pt" in out and "unknown" in out
    assert "[no pinned sha256] not downloaded" in out
    # downloaded but not accepted: exit 1, the hash and how to accept it on stderr; serve does not use it
    assert main(["weights", "download", "sam2.1_hiera_t", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert SHA in err and "--accept-unpinned" in err
    assert resolve_model("sam2.1_hiera_t").demo  # the demo model, not the unaccepted file
    assert main(["weights", "list"]) == 0
    assert "NOT accepted" in capsys.readouterr().out
    path = weights.expected_path("sam2.1_hiera_t")
    assert main(["weights", "verify", str(path)]) == 1  # found by file name; no hash to check against
    assert SHA in capsys.readouterr().err
    assert main(["weights", "verify", str(path), "--sha256", SHA]) == 0
    assert "not pinned" in capsys.readouterr().out
    # accepted with the hash
    assert main(["weights", "download", "sam2.1_hiera_t", "--quiet", "--sha256", SHA]) == 0
    out = capsys.readouterr().out
    assert str(path) in out and SHA in out
    assert main(["weights", "list"]) == 0
    assert f"ok (accepted sha256 {SHA})" in capsys.readouterr().out
    spec = resolve_model("sam2.1_hiera_t")
    assert (spec.checkpoint, spec.checkpoint_sha256, spec.demo) == (path, SHA, False)
    assert main(["weights", "download", "sam2.1_hiera_s", "--sha256", "xyz"]) == 2
