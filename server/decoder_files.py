"""The decoder export the page downloads: where it lives and whether it belongs to the served model.

The server only reads ``manifest.json`` (written by ``clicksam export``); making an export is the job of
``clicksam serve``'s composition root (``server/cli.py``), so this package never imports the exporter.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clicksam.server.errors import DecoderMismatchError
from clicksam.server.loading import ModelSpec

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "clicksam-decoder"
MANIFEST_VERSION = 2  # the version the page reads (clicksam.export.manifest.MANIFEST_VERSION)


def default_decoder_dir(cache_dir: Path, spec: ModelSpec) -> Path:
    """``<cache_dir>/decoders/<model>-<hash12>/``: one folder per model and weights."""
    return cache_dir / "decoders" / f"{spec.name}-{spec.short_hash}"


def read_manifest(decoder_dir: Path) -> dict[str, Any] | None:
    """The parsed manifest of ``decoder_dir``, or None when there is none or it is unreadable JSON."""
    path = decoder_dir / MANIFEST_NAME
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def manifest_mismatch(manifest: dict[str, Any] | None, spec: ModelSpec, decoder_dir: Path) -> str | None:
    """Why this manifest cannot serve ``spec`` (a message), or None when it matches.

    It matches when it is a clicksam decoder manifest for the same preset and the same weights: the
    same checkpoint sha256, or for random weights a null hash and (if recorded) the same seed, and every
    variant's file is present.
    """
    if manifest is None:
        return f"no decoder manifest at {decoder_dir / MANIFEST_NAME}"
    if manifest.get("format") != MANIFEST_FORMAT:
        return f"{decoder_dir / MANIFEST_NAME} is not a {MANIFEST_FORMAT} manifest"
    if manifest.get("version") != MANIFEST_VERSION:
        return (
            f"{decoder_dir / MANIFEST_NAME} has manifest version {manifest.get('version')!r}, "
            f"this clicksam serves version {MANIFEST_VERSION}"
        )
    if manifest.get("model") != spec.name:
        exported = manifest.get("model")
        return f"the decoder in {decoder_dir} was exported for model {exported!r}, not {spec.name!r}"
    if manifest.get("checkpoint_sha256") != spec.checkpoint_sha256:
        return (
            f"the decoder in {decoder_dir} was exported from checkpoint sha256 "
            f"{manifest.get('checkpoint_sha256')}, but the served weights have {spec.checkpoint_sha256}"
        )
    if spec.checkpoint_sha256 is None and "seed" in manifest and manifest["seed"] != spec.seed:
        return f"the decoder in {decoder_dir} was exported with seed {manifest['seed']}, not {spec.seed}"
    variants = manifest.get("variants")
    if not isinstance(variants, dict) or not variants:
        return f"{decoder_dir / MANIFEST_NAME} lists no decoder variants"
    for name, variant in variants.items():
        files = [variant.get("file")] if isinstance(variant, dict) else [None]
        prep = variant.get("prep") if isinstance(variant, dict) else None
        if prep is not None:  # the per-image graph of a precompute_image export
            files.append(prep.get("file") if isinstance(prep, dict) else None)
        for file in files:
            if not isinstance(file, str) or Path(file).name != file or not (decoder_dir / file).is_file():
                return f"decoder variant {name!r} in {decoder_dir} has no file {file!r}"
    return None


def check_decoder_dir(decoder_dir: Path, spec: ModelSpec) -> dict[str, Any]:
    """The manifest of ``decoder_dir`` if it belongs to ``spec``.

    Raises:
        DecoderMismatchError: with a message that names the mismatch and how to fix it.
    """
    manifest = read_manifest(decoder_dir)
    problem = manifest_mismatch(manifest, spec, decoder_dir)
    if problem is not None:
        raise DecoderMismatchError(
            f"{problem}. Export the decoder for this model (`clicksam export --model {spec.name}"
            f"{' --checkpoint ' + str(spec.checkpoint) if spec.checkpoint else ''} --out {decoder_dir}`), "
            "or start `clicksam serve` without --decoder-dir to let it export one."
        )
    assert manifest is not None
    return manifest
