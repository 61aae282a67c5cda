"""The decoder manifest (``manifest.json``) that the page reads instead of hard-coding anything.

Format ``clicksam-decoder`` version 2::

    {"format": "clicksam-decoder", "version": 2, "model": "vit_b", "checkpoint_sha256": hex | null,
     "seed": int | null, "image_size": 1024, "low_res_size": 256, "mask_threshold": 0.0, "opset": 17,
     "embedding": {"shape": [1, 256, 64, 64]}, "default_variant": "browser",
     "variants": {"official": {...}, "browser": {...}}}

Each variant names its ONNX file, size, sha256, the export options, the input/output tensors (name,
dtype, shape with ``"num_points"`` as the dynamic prompt axis) and the frame of its masks
(``"original"`` pixels or the ``"low_res"`` 256x256 frame over the padded 1024 input). A variant
exported with ``precompute_image`` also has ``"prep"``: the per-image graph (file, size, sha256,
inputs, outputs) that runs once on ``image_embeddings``; its outputs are inputs of every click.
Version 2 added ``prep`` (a version-1 reader would feed the embedding to a graph that no longer
takes it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_FORMAT = "clicksam-decoder"
MANIFEST_VERSION = 2
MANIFEST_NAME = "manifest.json"

Dim = int | str


class ManifestError(ValueError):
    """A manifest file is missing, malformed or of an unsupported format/version."""


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: name, element type (``float32``/``float16``/...) and shape."""

    name: str
    dtype: str
    shape: list[Dim]


@dataclass(frozen=True)
class PrepEntry:
    """The per-image graph of a variant: run once per embedding, its outputs feed every click."""

    file: str
    bytes: int
    sha256: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


@dataclass(frozen=True)
class VariantEntry:
    """One exported decoder file and its interface."""

    file: str
    bytes: int
    sha256: str
    options: dict[str, Any]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    masks_frame: str  # "original" or "low_res"
    mask_tokens: dict[str, Any] | None = None
    prep: PrepEntry | None = None


@dataclass(frozen=True)
class Manifest:
    """The whole ``manifest.json``."""

    model: str
    checkpoint_sha256: str | None
    image_size: int
    low_res_size: int
    mask_threshold: float
    opset: int
    embedding_shape: list[int]
    default_variant: str
    variants: dict[str, VariantEntry] = field(default_factory=dict)
    seed: int | None = None
    format: str = MANIFEST_FORMAT
    version: int = MANIFEST_VERSION

    def to_json(self) -> dict[str, Any]:
        """The JSON document (plain dicts/lists), keys in the documented order."""
        variants: dict[str, Any] = {}
        for name, entry in self.variants.items():
            d = asdict(entry)
            for optional in ("mask_tokens", "prep"):
                if d[optional] is None:
                    del d[optional]
            variants[name] = d
        return {
            "format": self.format,
            "version": self.version,
            "model": self.model,
            "checkpoint_sha256": self.checkpoint_sha256,
            "seed": self.seed,
            "image_size": self.image_size,
            "low_res_size": self.low_res_size,
            "mask_threshold": self.mask_threshold,
            "opset": self.opset,
            "embedding": {"shape": list(self.embedding_shape)},
            "default_variant": self.default_variant,
            "variants": variants,
        }

    def write(self, out_dir: str | Path) -> Path:
        """Write ``out_dir/manifest.json`` and return its path."""
        path = Path(out_dir) / MANIFEST_NAME
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Manifest:
        """Parse a manifest document; raises :class:`ManifestError` on anything unexpected."""
        if doc.get("format") != MANIFEST_FORMAT:
            raise ManifestError(f"not a {MANIFEST_FORMAT} manifest (format={doc.get('format')!r})")
        if doc.get("version") != MANIFEST_VERSION:
            raise ManifestError(
                f"unsupported manifest version {doc.get('version')!r}; this build reads version "
                f"{MANIFEST_VERSION}: re-export the decoder with `clicksam export`"
            )
        try:
            variants = {
                name: VariantEntry(
                    file=v["file"],
                    bytes=int(v["bytes"]),
                    sha256=v["sha256"],
                    options=dict(v["options"]),
                    inputs=_specs(v["inputs"]),
                    outputs=_specs(v["outputs"]),
                    masks_frame=v["masks_frame"],
                    mask_tokens=v.get("mask_tokens"),
                    prep=_prep_entry(v["prep"]) if v.get("prep") is not None else None,
                )
                for name, v in doc["variants"].items()
            }
            manifest = cls(
                model=doc["model"],
                checkpoint_sha256=doc["checkpoint_sha256"],
                seed=doc.get("seed"),
                image_size=int(doc["image_size"]),
                low_res_size=int(doc["low_res_size"]),
                mask_threshold=float(doc["mask_threshold"]),
                opset=int(doc["opset"]),
                embedding_shape=[int(x) for x in doc["embedding"]["shape"]],
                default_variant=doc["default_variant"],
                variants=variants,
            )
        except (KeyError, TypeError) as exc:
            raise ManifestError(f"malformed decoder manifest: missing or bad field {exc}") from exc
        if manifest.default_variant not in manifest.variants:
            raise ManifestError(f"default_variant {manifest.default_variant!r} is not among the variants")
        return manifest

    @classmethod
    def read(cls, path: str | Path) -> Manifest:
        """Read ``path`` (a ``manifest.json`` or the folder holding it)."""
        p = Path(path)
        if p.is_dir():
            p = p / MANIFEST_NAME
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ManifestError(f"no decoder manifest at {p}: run `clicksam export` first") from exc
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{p} is not valid JSON: {exc}") from exc
        return cls.from_json(doc)


def _specs(values: list[dict[str, Any]]) -> list[TensorSpec]:
    return [TensorSpec(t["name"], t["dtype"], list(t["shape"])) for t in values]


def _prep_entry(v: dict[str, Any]) -> PrepEntry:
    return PrepEntry(
        file=v["file"],
        bytes=int(v["bytes"]),
        sha256=v["sha256"],
        inputs=_specs(v["inputs"]),
        outputs=_specs(v["outputs"]),
    )


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
