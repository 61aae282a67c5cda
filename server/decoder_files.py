"""The decoder export the page downloads: where it lives and whether it belongs to the served model.

The server only reads ``manifest.json`` (format: ``clicksam.formats.Manifest``); making an export is the
job of the composition root above this package (``clicksam.serve``), so this package never imports the
exporter.
"""

from __future__ import annotations

from pathlib import Path

from clicksam.formats import MANIFEST_NAME, MANIFEST_VERSION, Manifest, ManifestError, ManifestVersionError
from clicksam.server.errors import DecoderMismatchError
from clicksam.server.loading import ModelSpec


def default_decoder_dir(cache_dir: Path, spec: ModelSpec) -> Path:
    """``<cache_dir>/decoders/<model>-<hash12>/``: one folder per model and weights."""
    return cache_dir / "decoders" / f"{spec.name}-{spec.short_hash}"


def manifest_mismatch(decoder_dir: Path, spec: ModelSpec) -> str | None:
    """Why the export in ``decoder_dir`` cannot serve ``spec`` (a message), or None when it matches.

    It matches when its manifest is one this clicksam reads, for the same preset and the same weights
    (the same checkpoint sha256, or for random weights a null hash and the same seed), and every
    variant's files are present.
    """
    path = decoder_dir / MANIFEST_NAME
    if not path.is_file():
        return f"no decoder manifest at {path}"
    try:
        manifest = Manifest.read(path)
    except ManifestVersionError as exc:
        return f"{path} has manifest version {exc.found!r}, this clicksam serves version {MANIFEST_VERSION}"
    except ManifestError as exc:
        return f"{path}: {exc}"
    if manifest.model != spec.name:
        return f"the decoder in {decoder_dir} was exported for model {manifest.model!r}, not {spec.name!r}"
    if manifest.checkpoint_sha256 != spec.checkpoint_sha256:
        return (
            f"the decoder in {decoder_dir} was exported from checkpoint sha256 "
            f"{manifest.checkpoint_sha256}, but the served weights have {spec.checkpoint_sha256}"
        )
    if spec.checkpoint_sha256 is None and manifest.seed != spec.seed:
        return f"the decoder in {decoder_dir} was exported with seed {manifest.seed}, not {spec.seed}"
    for name, variant in manifest.variants.items():
        for file in variant.files():
            if Path(file).name != file or not (decoder_dir / file).is_file():
                return f"decoder variant {name!r} in {decoder_dir} has no file {file!r}"
    return None


def check_decoder_dir(decoder_dir: Path, spec: ModelSpec) -> None:
    """Make sure ``decoder_dir`` holds the decoder export of ``spec``.

    Raises:
        DecoderMismatchError: with a message that names the mismatch and how to fix it.
    """
    problem = manifest_mismatch(decoder_dir, spec)
    if problem is not None:
        raise DecoderMismatchError(
            f"{problem}. Export the decoder for this model (`clicksam export --model {spec.name}"
            f"{' --checkpoint ' + str(spec.checkpoint) if spec.checkpoint else ''} --out {decoder_dir}`), "
            "or start `clicksam serve` without --decoder-dir to let it export one."
        )
