"""``clicksam weights``: list, download and verify the official checkpoints.

    clicksam weights list
    clicksam weights download NAME [--dir D] [--force] [--sha256 HEX | --accept-unpinned]
    clicksam weights verify PATH [--name NAME] [--sha256 HEX]

Entries without a pinned sha256 (SAM 2.1) are downloaded, their sha256 printed, and used only once
accepted: ``--sha256 HEX`` (the file must have that hash) or ``--accept-unpinned`` (trust it as it is).

Exit codes: 0 success, 1 download or verification failed (or an unpinned file not accepted), 2 bad
arguments (unknown name, no such file, malformed hash); the errors are ``WeightsError`` subclasses,
reported by ``clicksam.cli``.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``weights`` subcommand and its ``list``/``download``/``verify`` actions."""
    parser = subparsers.add_parser(
        "weights",
        help="list, download and verify official SAM / MobileSAM / SAM 2.1 checkpoints",
        description="Official checkpoints with their sizes and sha256; downloads resume and are verified.",
    )
    actions = parser.add_subparsers(dest="weights_action", metavar="ACTION", required=True)

    p_list = actions.add_parser("list", help="show the official checkpoints and which are in the cache")
    p_list.set_defaults(func=_cmd_list)

    p_dl = actions.add_parser("download", help="download a checkpoint (resumes a partial download)")
    p_dl.add_argument("name", metavar="NAME", help="model name (see `clicksam weights list`)")
    p_dl.add_argument("--dir", dest="dest_dir", default=None, help="target directory (default: the cache)")
    p_dl.add_argument("--force", action="store_true", help="download again even if a verified file exists")
    p_dl.add_argument("--quiet", action="store_true", help="no progress bar")
    accept = p_dl.add_mutually_exclusive_group()
    accept.add_argument(
        "--sha256",
        metavar="HEX",
        default=None,
        help="the sha256 you expect (from a source you trust): the file must match it; accepts an "
        "entry without a pinned hash",
    )
    accept.add_argument(
        "--accept-unpinned",
        action="store_true",
        help="accept the downloaded file of an entry without a pinned hash as it is (its sha256 is printed)",
    )
    p_dl.set_defaults(func=_cmd_download)

    p_verify = actions.add_parser("verify", help="check a file's size and sha256 against the official table")
    p_verify.add_argument("path", metavar="PATH", help="checkpoint file")
    p_verify.add_argument("--name", default=None, help="model name to check against (default: by file name)")
    p_verify.add_argument(
        "--sha256", metavar="HEX", default=None, help="the sha256 expected (needed for unpinned entries)"
    )
    p_verify.set_defaults(func=_cmd_verify)


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{n} B"
        size /= 1024
    raise AssertionError("unreachable")


def _cmd_list(args: argparse.Namespace) -> int:
    from clicksam.model import weights

    print(f"cache: {weights.weights_dir()}")
    print(f"{'name':<15}  {'file':<25}  {'size':>10}  status")
    unpinned = False
    for name in weights.WEIGHTS:
        info = weights.get_info(name)
        path = weights.expected_path(info)
        accepted = None if info.pinned else weights.accepted_sha256(info)
        if weights.find_checkpoint(info) is not None:
            status = f"ok  {path}" if accepted is None else f"ok (accepted sha256 {accepted})  {path}"
        elif path.exists() and not info.pinned and accepted is None:
            status = f"downloaded, NOT accepted (run download with --sha256 or --accept-unpinned)  {path}"
        elif path.exists():
            status = f"INVALID (size or sha256 differ)  {path}"
        elif path.with_name(path.name + ".part").exists():
            status = "partial download (run download to resume)"
        else:
            status = "not downloaded"
        if not info.pinned:
            unpinned = True
            status = f"[no pinned sha256] {status}"
        size = "unknown" if info.bytes is None else _human(info.bytes)
        print(f"{info.name:<15}  {info.file:<25}  {size:>10}  {status}")
    _list_hf()
    if unpinned:
        print(
            "[no pinned sha256]: no published hash is known to clicksam; `download` prints the file's "
            "sha256, and the file is used only once you accept it (--sha256 HEX or --accept-unpinned)."
        )
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from clicksam.model import weights, weights_hf

    if args.name in weights_hf.HF_MODELS:
        return _download_hf(args)
    info = weights.get_info(args.name)
    path = weights.download(
        info,
        args.dest_dir,
        progress=not args.quiet,
        force=args.force,
        sha256=args.sha256,
        accept_unpinned=args.accept_unpinned,
    )
    print(path)
    if not info.pinned:
        digest = weights.accepted_sha256(info, args.dest_dir)
        print(f"sha256 {digest} (accepted; no pinned hash to check against)")
    return 0


def _download_hf(args: argparse.Namespace) -> int:
    """A Hugging Face model folder (the OWLv2 detectors): every file at the pinned revision."""
    from clicksam.errors import UsageError
    from clicksam.model import weights, weights_hf

    if args.sha256 is not None:
        raise UsageError(f"{args.name} is several files: accept its unpinned files with --accept-unpinned")
    folder = weights_hf.download_model(
        args.name, args.dest_dir, not args.quiet, accept_unpinned=args.accept_unpinned, force=args.force
    )
    print(folder)
    model = weights_hf.get_model(args.name)
    for file in model.files:
        sha = file.sha256 or weights.accepted_sha256(weights_hf.file_info(model, file), folder)
        print(f"  {file.path}: sha256 {sha} ({'pinned' if file.sha256 else 'accepted, not pinned'})")
    return 0


def _list_hf() -> None:
    from clicksam.model import weights_hf

    for model in weights_hf.HF_MODELS.values():
        folder = weights_hf.model_dir(model)
        if weights_hf.find_model(model.name) is not None:
            status = f"ok  {folder}"
        elif folder.is_dir():
            status = f"incomplete or not accepted (run download; --accept-unpinned)  {folder}"
        else:
            status = "not downloaded"
        revision = model.revision[:12] if model.revision else "main, no pinned revision"
        print(f"{model.name:<15}  {model.repo} @ {revision}  {status}")


def _cmd_verify(args: argparse.Namespace) -> int:
    from clicksam.errors import UsageError
    from clicksam.model import weights

    try:
        info = weights.verify(args.path, args.name, sha256=args.sha256)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from exc
    size = "size not pinned" if weights.get_info(info.name).bytes is None else f"{info.bytes} bytes"
    pin = "pinned" if weights.get_info(info.name).pinned else "the sha256 you passed; not pinned"
    print(f"OK: {args.path} is {info.name} ({info.file}, {size}, sha256 {info.sha256}, {pin})")
    return 0
