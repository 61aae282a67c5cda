"""The ``clicksam`` console script.

Each subcommand lives next to the code it drives, in a module with a ``register(subparsers)`` function
that adds its parser and sets ``func`` (taking the parsed namespace, returning an exit code). Heavy imports
(torch, onnx, fastapi) happen inside ``func`` so that ``clicksam --help`` stays fast.

Expected failures are ``ClickSamError`` subclasses, raised by the library code and the subcommands alike;
``main`` is the one place that reports them: one line on stderr (``clicksam <command>: error: <message>``)
and the exit code of ``clicksam.errors.exit_code`` (2 for bad input, 1 for a failure), never a traceback.
An ``OSError`` (a file that cannot be read or written) is reported the same way, with exit code 1.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from clicksam.errors import ClickSamError, exit_code

# subcommand modules, in the order ``--help`` lists them
_COMMAND_MODULES: tuple[str, ...] = (
    "clicksam.serve",
    "clicksam.model.weights_cli",
    "clicksam.export.cli",
    "clicksam.model.everything_cli",
    "clicksam.model.detect_cli",
    "clicksam.server.projects.cli",
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
    try:
        code: int = func(args)
    except ClickSamError as exc:
        print(f"clicksam {args.command}: error: {exc}", file=sys.stderr)
        return exit_code(exc)
    except OSError as exc:  # a file or folder that cannot be read or written: the environment, not a bug
        print(f"clicksam {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"clicksam {args.command}: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
