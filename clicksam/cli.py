"""The ``clicksam`` console script.

Each subcommand lives next to the code it drives, in a module with a ``register(subparsers)`` function
that adds its parser and sets ``func`` (taking the parsed namespace, returning an exit code). Heavy imports
(torch, onnx, fastapi) happen inside ``func`` so that ``clicksam --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# subcommand modules, in the order ``--help`` lists them
_COMMAND_MODULES: tuple[str, ...] = (
    "clicksam.server.cli",
    "clicksam.model.weights_cli",
    "clicksam.export.cli",
    "clicksam.model.everything_cli",
    "clicksam.train.cli",
)


def build_parser() -> argparse.ArgumentParser:
    from clicksam import __version__

    parser = argparse.ArgumentParser(
        prog="clicksam",
        description="Interactive Segment Anything: encoder on the server, decoder in the browser.",
    )
    parser.add_argument("--version", action="version", version=f"clicksam {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # a module of this package that is not written yet; a missing third-party module is a bug
            if exc.name is not None and exc.name.startswith("clicksam"):
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    code: int = func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
