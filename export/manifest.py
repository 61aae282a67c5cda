"""The decoder manifest as the exporter writes it: the format lives in ``clicksam.formats``.

Re-exported here so that the export code reads ``from clicksam.export.manifest import Manifest``;
``sha256_file`` hashes the exported files (the same function that verifies checkpoints).
"""

from __future__ import annotations

from clicksam.formats import (
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    MANIFEST_VERSION,
    Dim,
    Manifest,
    ManifestError,
    MaskTokens,
    PrepEntry,
    TensorSpec,
    VariantEntry,
)
from clicksam.model.weights import sha256_file

__all__ = [
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "Dim",
    "Manifest",
    "ManifestError",
    "MaskTokens",
    "PrepEntry",
    "TensorSpec",
    "VariantEntry",
    "sha256_file",
]
