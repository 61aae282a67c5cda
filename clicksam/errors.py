"""The one base of every expected clicksam failure, and how a command line reports it.

Library code raises a subclass of :class:`ClickSamError` whose message says what went wrong and what to
do; it never prints or exits. ``clicksam.cli.main`` catches them for every subcommand and turns them into
one line on stderr and an exit code (:func:`exit_code`), so no expected failure ends in a traceback.
The HTTP server maps its own subclasses (``clicksam.server.errors.ServerError``) to status codes.
"""

from __future__ import annotations


class ClickSamError(Exception):
    """Something the user can fix went wrong (a failed export, download, check...): exit code 1."""


class UsageError(ClickSamError):
    """The command was given bad input (unknown model, missing file, option out of range): exit code 2."""


def exit_code(exc: ClickSamError) -> int:
    """The process exit code of a command that failed with ``exc``: 2 for bad input, 1 otherwise."""
    return 2 if isinstance(exc, UsageError) else 1
