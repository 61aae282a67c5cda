"""Official SAM / MobileSAM / SAM 2.1 checkpoints: the table of files, a verifying downloader and the cache.

A checkpoint is only ever handed out after its size and sha256 matched the table. Downloads stream into
``<file>.part`` next to the destination, resume a partial file with an HTTP ``Range`` request (and start
over when the server ignores it), and move the file into place atomically once verified. Without network
access :class:`WeightsDownloadError` says where to put a file fetched by other means.

The cache directory follows the platform's conventions (``platformdirs.user_cache_dir("clicksam")``,
e.g. ``~/.cache/clicksam`` on Linux) unless ``CLICKSAM_CACHE_DIR`` is set; checkpoints live in its
``weights/`` subdirectory. ``CLICKSAM_WEIGHTS_BASE_URL`` replaces the download location of every file
(``<base>/<file>``), for a mirror or an air-gapped file server.

**Unpinned entries.** The SAM 2.1 checkpoints have no sha256 we could check against a published one
(``sha256`` and, where unknown, ``bytes`` are ``None`` in the table: never a guessed value). Such a file
is downloaded, its sha256 computed and reported, and it is handed out only once the user *accepted* it:
by passing the hash they expect (``sha256=HEX``: the download must match it) or by accepting whatever
was downloaded (``accept_unpinned=True``, trust on first use). The acceptance is recorded beside the
file (``.<file>.accepted``: sha256 and size); from then on the file is checked against that record as
strictly as a pinned one. Pinned entries ignore neither: a ``sha256`` that differs from the pin is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from clicksam.errors import ClickSamError, UsageError

__all__ = [
    "CACHE_DIR_ENV",
    "WEIGHTS",
    "WEIGHTS_BASE_URL_ENV",
    "UnknownWeightsError",
    "WeightsDownloadError",
    "WeightsError",
    "WeightsInfo",
    "WeightsUnpinnedError",
    "WeightsVerificationError",
    "accepted_sha256",
    "cache_dir",
    "download",
    "expected_path",
    "find_checkpoint",
    "get_info",
    "sha256_file",
    "trusted_sha256",
    "verify",
    "weights_dir",
]

logger = logging.getLogger(__name__)

CACHE_DIR_ENV = "CLICKSAM_CACHE_DIR"
WEIGHTS_BASE_URL_ENV = "CLICKSAM_WEIGHTS_BASE_URL"

_CHUNK = 1 << 20  # bytes per read while streaming and hashing
_TIMEOUT_S = 30.0  # per socket operation, not for the whole transfer


@dataclass(frozen=True)
class WeightsInfo:
    """One downloadable checkpoint: model name, file name, URL, exact size in bytes and sha256 (hex).

    ``sha256`` is ``None`` for an unpinned entry (no published hash known), ``bytes`` ``None`` where the
    size is not known: such a file needs the user's acceptance (see the module docstring).
    """

    name: str
    file: str
    url: str
    bytes: int | None
    sha256: str | None

    @property
    def pinned(self) -> bool:
        """True when the table holds the file's sha256 (it is checked strictly)."""
        return self.sha256 is not None


_SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
_SAM2_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
#: registry name -> the size part of Meta's SAM 2.1 file names
_SAM2_FILES = {
    "sam2.1_hiera_t": "tiny",
    "sam2.1_hiera_s": "small",
    "sam2.1_hiera_b+": "base_plus",
    "sam2.1_hiera_l": "large",
}

WEIGHTS: dict[str, WeightsInfo] = {
    info.name: info
    for info in (
        WeightsInfo(
            "vit_b",
            "sam_vit_b_01ec64.pth",
            _SAM_URL + "sam_vit_b_01ec64.pth",
            375042383,
            "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        ),
        WeightsInfo(
            "vit_l",
            "sam_vit_l_0b3195.pth",
            _SAM_URL + "sam_vit_l_0b3195.pth",
            1249524607,
            "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        ),
        WeightsInfo(
            "vit_h",
            "sam_vit_h_4b8939.pth",
            _SAM_URL + "sam_vit_h_4b8939.pth",
            2564550879,
            "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        ),
        WeightsInfo(
            "vit_t",
            "mobile_sam.pt",
            "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
            40728226,
            "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
        ),
        # SAM 2.1: no published sha256 and no size we could check from here; unpinned, never guessed
        *(
            WeightsInfo(name, f"sam2.1_hiera_{size}.pt", f"{_SAM2_URL}sam2.1_hiera_{size}.pt", None, None)
            for name, size in _SAM2_FILES.items()
        ),
    )
}


class WeightsError(ClickSamError):
    """Base class of the checkpoint errors; the message says what to do."""


class UnknownWeightsError(WeightsError, UsageError, ValueError):
    """A model name that has no official checkpoint."""


class WeightsVerificationError(WeightsError):
    """A file whose size or sha256 does not match the official checkpoint."""


class WeightsDownloadError(WeightsError):
    """The download failed (offline, refused, HTTP error, interrupted too often)."""


class WeightsUnpinnedError(WeightsVerificationError):
    """A file of an unpinned entry that the user has not accepted; the message gives its sha256."""

    def __init__(self, message: str, sha256: str) -> None:
        super().__init__(message)
        self.sha256 = sha256


def _checked_hex(sha256: str) -> str:
    value = sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise UsageError(f"{sha256!r} is not a sha256: expected 64 hexadecimal digits")
    return value


def _accept_hint(info: WeightsInfo, digest: str) -> str:
    return (
        f"{info.name} has no pinned sha256 (none is published that we could check): compare {digest} "
        f"with a source you trust, then accept it with `clicksam weights download {info.name} "
        f"--sha256 {digest}` (or --accept-unpinned to trust this file as it is)"
    )


def cache_dir() -> Path:
    """The clicksam cache directory: ``$CLICKSAM_CACHE_DIR`` if set, else the platform's user cache."""
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("clicksam", appauthor=False))


def weights_dir() -> Path:
    """Where downloaded checkpoints live: ``cache_dir() / "weights"``."""
    return cache_dir() / "weights"


def get_info(name: str | WeightsInfo) -> WeightsInfo:
    """Look up a checkpoint by model name (``vit_b``...); a :class:`WeightsInfo` passes through.

    ``$CLICKSAM_WEIGHTS_BASE_URL`` (if set) replaces the URL of table entries by ``<base>/<file>``.
    """
    if isinstance(name, WeightsInfo):
        return name
    info = WEIGHTS.get(name)
    if info is None:
        raise UnknownWeightsError(
            f"no official checkpoint named {name!r}; choose one of {', '.join(WEIGHTS)}"
        )
    base = os.environ.get(WEIGHTS_BASE_URL_ENV)
    if base:
        info = replace(info, url=f"{base.rstrip('/')}/{info.file}")
    return info


def expected_path(name: str | WeightsInfo, dest_dir: str | Path | None = None) -> Path:
    """The path a checkpoint is downloaded to (and where to put one fetched by hand)."""
    info = get_info(name)
    return (Path(dest_dir) if dest_dir is not None else weights_dir()) / info.file


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(
    path: str | Path, name: str | WeightsInfo | None = None, *, sha256: str | None = None
) -> WeightsInfo:
    """Check a file's size and sha256 against the official table (or the given entry).

    Args:
        path: the checkpoint file.
        name: model name or entry to check against; ``None`` picks the entry whose file name matches
            ``path``'s, else any entry of the same size.
        sha256: the hash the user expects; required for an unpinned entry, and for a pinned one it
            must equal the pin.

    Returns:
        The matching entry, with ``sha256`` (and ``bytes``) filled in for an unpinned one.

    Raises:
        FileNotFoundError: no such file.
        WeightsVerificationError: size or hash differ, or no entry could be chosen;
            ``WeightsUnpinnedError`` (with the file's sha256) for an unpinned entry without ``sha256``.
        UsageError: ``sha256`` is not a hash, or differs from a pinned entry's.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    size = path.stat().st_size
    if name is None:
        by_file = [i for i in WEIGHTS.values() if i.file == path.name]
        candidates = by_file or [i for i in WEIGHTS.values() if i.bytes == size]
        if not candidates:
            raise WeightsVerificationError(
                f"{path} ({size} bytes) matches no official checkpoint by name or size; "
                f"pass the model name ({', '.join(WEIGHTS)}) to check it against"
            )
        info = candidates[0]
    else:
        info = get_info(name)
    if sha256 is not None:
        info = _expecting(info, sha256)
    if info.sha256 is None:
        digest = sha256_file(path)
        raise WeightsUnpinnedError(f"{path}: {_accept_hint(info, digest)}", digest)
    if info.bytes is not None and size != info.bytes:
        raise WeightsVerificationError(
            f"{path} has {size} bytes but {info.name} ({info.file}) has {info.bytes}; "
            "the file is incomplete or a different checkpoint"
        )
    digest = sha256_file(path)
    if digest != info.sha256:
        raise WeightsVerificationError(
            f"{path} has sha256 {digest} but {info.name} ({info.file}) has {info.sha256}; "
            "the file is corrupt or a different checkpoint"
        )
    return info


def _expecting(info: WeightsInfo, sha256: str) -> WeightsInfo:
    """``info`` checked against the hash the user passed (refused if it contradicts a pin)."""
    value = _checked_hex(sha256)
    if info.sha256 is not None and info.sha256 != value:
        raise UsageError(
            f"{info.name} is pinned to sha256 {info.sha256}; the --sha256 given ({value}) differs. "
            "Pinned checkpoints are only accepted with their published hash."
        )
    return replace(info, sha256=value)


def _stamp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.verified")


def _accepted_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.accepted")


def accepted_sha256(name: str | WeightsInfo, dest_dir: str | Path | None = None) -> str | None:
    """The sha256 the user accepted for an unpinned entry's file in the cache (or ``dest_dir``), if any."""
    return _accepted(get_info(name), expected_path(name, dest_dir))[0]


def _accepted(info: WeightsInfo, path: Path) -> tuple[str | None, int | None]:
    """(sha256, bytes) of the acceptance record beside ``path``, or (None, None) without a valid one."""
    try:
        record = json.loads(_accepted_path(path).read_text())
    except (OSError, ValueError):
        return None, None
    sha, size = record.get("sha256"), record.get("bytes")
    if record.get("name") != info.name or not isinstance(sha, str) or not isinstance(size, int):
        return None, None
    return sha, size


def _write_accepted(path: Path, info: WeightsInfo, how: str) -> None:
    record = {"name": info.name, "sha256": info.sha256, "bytes": path.stat().st_size, "how": how}
    _accepted_path(path).write_text(json.dumps(record))
    logger.info("accepted %s (%s): sha256 %s", path, how, info.sha256)


def _trusted(info: WeightsInfo, path: Path) -> WeightsInfo | None:
    """``info`` with the hash a file must have (the pin, else the accepted one), or None if unaccepted."""
    if info.sha256 is not None:
        return info
    sha, size = _accepted(info, path)
    if sha is None:
        return None
    return replace(info, sha256=sha, bytes=info.bytes if info.bytes is not None else size)


def trusted_sha256(name: str | WeightsInfo, dest_dir: str | Path | None = None) -> str | None:
    """The sha256 a checkpoint must have: the pinned one, else the one the user accepted, else None."""
    info = get_info(name)
    trusted = _trusted(info, expected_path(info, dest_dir))
    return None if trusted is None else trusted.sha256


def _write_stamp(path: Path, info: WeightsInfo) -> None:
    st = path.stat()
    stamp = {"sha256": info.sha256, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
    with contextlib.suppress(OSError):  # a read-only cache only costs a re-hash next time
        _stamp_path(path).write_text(json.dumps(stamp))


def _stamp_is_current(path: Path, info: WeightsInfo) -> bool:
    if info.sha256 is None:
        return False
    try:
        stamp = json.loads(_stamp_path(path).read_text())
        st = path.stat()
    except (OSError, ValueError):
        return False
    return bool(
        stamp.get("sha256") == info.sha256
        and stamp.get("bytes") == st.st_size
        and info.bytes in (None, st.st_size)
        and stamp.get("mtime_ns") == st.st_mtime_ns
    )


def find_checkpoint(name: str | WeightsInfo, dest_dir: str | Path | None = None) -> Path | None:
    """The verified checkpoint for ``name`` in the cache (or ``dest_dir``), or ``None`` if absent.

    A file is hashed once; a stamp file beside it (size, mtime, hash) spares the next calls the re-hash
    of up to 2.5 GB as long as the file is unchanged. A file that fails verification is reported in
    the log and not returned; so is the file of an unpinned entry that the user has not accepted.
    """
    info = get_info(name)
    path = expected_path(info, dest_dir)
    if not path.is_file():
        return None
    trusted = _trusted(info, path)
    if trusted is None:
        logger.warning(
            "ignoring %s: %s has no pinned sha256 and the file was not accepted; run "
            "`clicksam weights download %s --sha256 HEX` (or --accept-unpinned)",
            path, info.name, info.name,
        )  # fmt: skip
        return None
    info = trusted
    if _stamp_is_current(path, info):
        return path
    try:
        verify(path, info)
    except WeightsVerificationError as exc:
        logger.warning("ignoring cached checkpoint: %s", exc)
        return None
    _write_stamp(path, info)
    return path


def _manual_hint(info: WeightsInfo, dest: Path) -> str:
    size = "size unknown" if info.bytes is None else f"{info.bytes} bytes"
    sha = (
        info.sha256
        if info.sha256 is not None
        else "no pinned hash: accept it with --sha256 or --accept-unpinned"
    )
    return (
        f"Download {info.url} by other means and place it at {dest} ({size}, sha256 {sha}), or point "
        f"{CACHE_DIR_ENV} at a directory whose weights/ subdirectory holds {info.file}."
    )


def _request(url: str, offset: int) -> http.client.HTTPResponse:
    """GET ``url``, asking for the bytes from ``offset`` on when ``offset > 0``."""
    headers = {"User-Agent": "clicksam-weights", "Accept-Encoding": "identity"}
    if offset > 0:
        headers["Range"] = f"bytes={offset}-"
    response: http.client.HTTPResponse = urllib.request.urlopen(
        urllib.request.Request(url, headers=headers), timeout=_TIMEOUT_S
    )
    return response


def _body_start(response: http.client.HTTPResponse) -> int:
    """Offset in the whole file of the response body's first byte (0 unless it is a 206 range)."""
    if response.status != 206:
        return 0
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    if match is None:
        raise http.client.HTTPException("partial response without a usable Content-Range header")
    return int(match.group(1))


def download(
    name: str | WeightsInfo,
    dest_dir: str | Path | None = None,
    progress: bool = True,
    *,
    force: bool = False,
    retries: int = 3,
    sha256: str | None = None,
    accept_unpinned: bool = False,
) -> Path:
    """Download a checkpoint, verify it and return its path (an already verified file is reused).

    For an unpinned entry (``sha256`` ``None`` in the table) the file is verified against ``sha256`` if
    given and then accepted; with ``accept_unpinned`` it is accepted as downloaded; with neither it is
    downloaded (or found) but not accepted, and :class:`WeightsUnpinnedError` reports its sha256.

    Args:
        name: model name from :data:`WEIGHTS`, or a :class:`WeightsInfo` (another URL/size/hash).
        dest_dir: directory for the file; default :func:`weights_dir`.
        progress: show a tqdm progress bar on stderr.
        force: download again even if a verified file is present.
        retries: how many times an interrupted transfer is resumed before giving up.
        sha256: the hash the user expects (an unpinned entry is accepted with it; a pinned one must
            equal its pin).
        accept_unpinned: accept an unpinned entry's file whatever its hash (trust on first use).

    Raises:
        UnknownWeightsError: unknown model name.
        WeightsDownloadError: offline, HTTP error, or the transfer kept failing; the partial file is
            kept so the next call resumes, and the message says where to place the file by hand.
        WeightsVerificationError: the complete download has the wrong size or hash (the partial file
            is deleted), or an existing destination file is not the official one (use ``force``).
        WeightsUnpinnedError: an unpinned file is in place but not accepted (the message has its hash).
        UsageError: ``sha256`` is malformed or contradicts a pinned entry.
    """
    table = get_info(name)
    dest = expected_path(table, dest_dir)
    info = _expecting(table, sha256) if sha256 is not None else table
    if info.sha256 is None and not accept_unpinned and not force and dest.is_file():
        info = _trusted(info, dest) or info  # a file accepted earlier is checked against its record
    if dest.is_file() and not force:
        return _checked_existing(dest, info, unpinned=not table.pinned, accept=accept_unpinned)
    with contextlib.ExitStack() as stack:
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(_exclusive(dest.with_name(dest.name + ".lock")))
        except OSError as exc:
            raise WeightsDownloadError(
                f"cannot write checkpoints to {dest.parent}: {exc}. Choose another directory (--dir) or "
                f"set {CACHE_DIR_ENV}."
            ) from exc
        # another process may have finished the same download while we waited for the lock
        if not (dest.is_file() and not force):
            _download_locked(info, dest, progress, retries)
        return _checked_existing(dest, info, unpinned=not table.pinned, accept=accept_unpinned)


def _checked_existing(dest: Path, info: WeightsInfo, *, unpinned: bool = False, accept: bool = False) -> Path:
    """Verify a file in place (against ``info.sha256``) and return it; see :func:`download`.

    ``unpinned``: the table has no hash for this file, so a successful check is recorded as the user's
    acceptance. Without any hash (``info.sha256`` None) the file is hashed and accepted if ``accept``,
    else :class:`WeightsUnpinnedError` reports its hash.
    """
    if info.sha256 is None:
        digest = sha256_file(dest)
        if not accept:
            raise WeightsUnpinnedError(
                f"{dest} is downloaded but not accepted: {_accept_hint(info, digest)}", digest
            )
        info = replace(info, sha256=digest)
        _write_accepted(dest, info, "accept-unpinned")
        _write_stamp(dest, info)
        return dest
    if not _stamp_is_current(dest, info):
        try:
            verify(dest, info)
        except WeightsVerificationError as exc:
            raise WeightsVerificationError(f"{exc}. Delete it or download again with force.") from exc
        _write_stamp(dest, info)
    if unpinned and _accepted(info, dest)[0] != info.sha256:
        _write_accepted(dest, info, "sha256")
    return dest


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``lock_path`` (POSIX ``flock``; a no-op where unavailable).

    Two processes downloading the same checkpoint (a server starting while ``clicksam weights download``
    runs) would otherwise write into the same ``.part`` file.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; concurrent downloads are the user's call
        yield
        return
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _download_locked(info: WeightsInfo, dest: Path, progress: bool, retries: int) -> None:
    """Fetch ``dest`` (through ``<dest>.part``), check it when a hash is known, move it into place."""
    part = dest.with_name(dest.name + ".part")
    attempts = 0
    while True:
        try:
            _fetch_into(info, part, progress)
            break
        except urllib.error.HTTPError as exc:
            # a server error may pass; a 403/404 will not
            if exc.code >= 500 and attempts < retries:
                attempts += 1
                continue
            raise WeightsDownloadError(
                f"could not download {info.name} from {info.url}: HTTP {exc.code} {exc.reason}. "
                f"{_manual_hint(info, dest)}"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            # refused, reset, timed out, cut short (urllib's URLError is an OSError)
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else repr(exc)
            if attempts < retries:
                attempts += 1
                have = part.stat().st_size if part.exists() else 0
                logger.warning(
                    "download of %s failed at byte %d (%s); retry %d of %d",
                    info.file,
                    have,
                    reason,
                    attempts,
                    retries,
                )
                continue
            raise WeightsDownloadError(
                f"could not download {info.name} from {info.url}: {reason}. {_manual_hint(info, dest)}"
            ) from exc
        except ValueError as exc:  # a malformed URL
            raise WeightsDownloadError(f"cannot download from {info.url!r}: {exc}") from exc
    if info.sha256 is not None:
        try:
            verify(part, info)
        except WeightsVerificationError as exc:
            part.unlink(missing_ok=True)
            raise WeightsVerificationError(
                f"downloaded {info.file} failed verification and was deleted: {exc}. "
                f"{_manual_hint(info, dest)}"
            ) from exc
    _accepted_path(dest).unlink(missing_ok=True)  # a record of an earlier file says nothing of this one
    os.replace(part, dest)
    if info.sha256 is not None:
        _write_stamp(dest, info)
    logger.info("downloaded %s to %s", info.name, dest)


def _fetch_into(info: WeightsInfo, part: Path, progress: bool) -> None:
    """Bring ``part`` up to ``info.bytes`` bytes, resuming from its current size when the server allows."""
    from tqdm import tqdm

    offset = part.stat().st_size if part.exists() else 0
    if info.bytes is not None and offset > info.bytes:  # not a prefix of this file: start over
        part.unlink()
        offset = 0
    if offset == info.bytes:
        return
    try:
        response = _request(info.url, offset)
    except urllib.error.HTTPError as exc:
        if exc.code != 416 or offset == 0:
            raise
        # the server cannot serve from our offset: the part file is not a prefix of its file
        part.unlink(missing_ok=True)
        offset = 0
        response = _request(info.url, 0)
    with response:
        if response.status not in (200, 206):
            raise http.client.HTTPException(f"unexpected HTTP status {response.status}")
        start = _body_start(response)
        length = response.headers.get("Content-Length")
        # the file's size: the table's, else what this response says (None if it does not)
        total = info.bytes if info.bytes is not None else (start + int(length) if length else None)
        if start != offset:
            # Range ignored (200) or a range from elsewhere: write the body where it belongs
            logger.info("server did not resume %s at byte %d; starting from %d", info.file, offset, start)
            if start > offset:
                raise http.client.HTTPException(f"server sent bytes from {start}, we have only {offset}")
            offset = start
        with (
            open(part, "r+b" if part.exists() else "wb") as out,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=info.file,
                disable=not progress,
            ) as bar,
        ):
            out.seek(offset)
            out.truncate()
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
                offset += len(chunk)
                if total is not None and offset > total:
                    break  # longer than the table says: verification rejects it
    if total is not None and offset < total:
        raise http.client.IncompleteRead(b"", total - offset)
