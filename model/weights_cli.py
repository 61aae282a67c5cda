"""``clicksam weights``: list, download and verify the official checkpoints.

    clicksam weights list
    clicksam weights download NAME [--dir D] [--force]
    clicksam weights verify PATH [--name NAME]

Exit codes: 0 success, 1 download or verification failed, 2 bad arguments (unknown name, no such file);
the errors are ``WeightsError`` subclasses, reported by ``clicksam.cli``.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``weights`` subcommand and its ``list``/``download``/``verify`` actions."""
    parser = subparsers.add_parser(
        "weights",
        help="list, download and verify official SAM / MobileSAM checkpoints",
        description="Official checkpoints with their sizes and sha256; downloads resume and are verified.",
    )
    actions = parser.add_subparsers(dest="weights_action", metavar="ACTION", required=True)

    p_list = actions.add_parser("list", help="show the official checkpoints and which are in the cache")
    p_list.set_defaults(func=_cmd_list)

    p_dl = actions.add_parser("download", help="download a checkpoint (resumes a partial download)")
    p_dl.add_argument("name", metavar="NAME", help="model name: vit_b, vit_l, vit_h or vit_t")
    p_dl.add_argument("--dir", dest="dest_dir", default=None, help="target directory (default: the cache)")
    p_dl.add_argument("--force", action="store_true", help="download again even if a verified file exists")
    p_dl.add_argument("--quiet", action="store_true", help="no progress bar")
    p_dl.set_defaults(func=_cmd_download)

    p_verify = actions.add_parser("verify", help="check a file's size and sha256 against the official table")
    p_verify.add_argument("path", metavar="PATH", help="checkpoint file")
    p_verify.add_argument("--name", default=None, help="model name to check against (default: by file name)")
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
    print(f"{'name':<6}  {'file':<22}  {'size':>10}  status")
    for name in weights.WEIGHTS:
        info = weights.get_info(name)
        path = weights.expected_path(info)
        if weights.find_checkpoint(info) is not None:
            status = f"ok  {path}"
        elif path.exists():
            status = f"INVALID (size or sha256 differ)  {path}"
        elif path.with_name(path.name + ".part").exists():
            status = "partial download (run download to resume)"
        else:
            status = "not downloaded"
        print(f"{info.name:<6}  {info.file:<22}  {_human(info.bytes):>10}  {status}")
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from clicksam.model import weights

    print(weights.download(args.name, args.dest_dir, progress=not args.quiet, force=args.force))
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from clicksam.errors import UsageError
    from clicksam.model import weights

    try:
        info = weights.verify(args.path, args.name)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from exc
    print(f"OK: {args.path} is {info.name} ({info.file}, {info.bytes} bytes, sha256 {info.sha256})")
    return 0
