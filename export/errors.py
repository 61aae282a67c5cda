"""The export's failures: a bad request (:class:`ExportError`) and a file that does not reproduce the
PyTorch model (:class:`ExportVerificationError`)."""

from __future__ import annotations

from clicksam.errors import ClickSamError


class ExportError(ClickSamError, RuntimeError):
    """The export could not be done as asked (bad option, unknown variant, ...)."""


class ExportVerificationError(ExportError):
    """An exported file does not reproduce the PyTorch model within tolerance."""
