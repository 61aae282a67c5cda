"""Every wire format of clicksam, defined once: typed models that write and read their JSON.

- the decoder manifest (``manifest.json`` next to the exported ONNX decoder, read by the server and the
  page) and its version;
- the encoder sidecar (``encoder.json`` next to an exported ONNX image encoder: which weights it was
  verified against, and how closely);
- the embedding metadata (what ``POST /api/embeddings`` answers, what the cache stores beside the tensors:
  their names, shapes and places in the one body ``GET /api/embeddings/{id}`` sends);
- the segment-everything result (what ``POST /api/everything`` answers).

This module needs only the standard library, so ``clicksam.export``, ``clicksam.server`` and tools can
all import it. The models are plain frozen dataclasses: FastAPI uses them as response models directly
(``field(metadata={"description": ...})`` becomes the field's description in the OpenAPI document).
The page's parsers (``web/src/manifest.ts``, ``web/src/api.ts``) are tested against documents written
by these classes (``web/src/testdata/*_python.json``, kept equal to what Python writes by
``tests/export/test_manifest.py`` and ``tests/server/test_wire_fixtures.py``).

Decoder manifest, format ``clicksam-decoder`` version 3::

    {"format": "clicksam-decoder", "version": 3, "model": "vit_b", "checkpoint_sha256": hex | null,
     "seed": int | null, "image_size": 1024, "resize": "longest_side", "low_res_size": 256,
     "mask_threshold": 0.0, "opset": 17,
     "image_inputs": [{"name": "image_embeddings", "dtype": "float16", "shape": [1, 256, 64, 64]}],
     "default_variant": "browser", "variants": {"official": {...}, "browser": {...}}}

``image_inputs`` lists the per-image tensors the image encoder produces, in wire order (the order the
server concatenates them in), each with its graph input name, wire dtype and shape: one tensor for SAM 1
(``image_embeddings``), three for SAM 2.1 (``image_embed`` 1x256x64x64, ``high_res_feats_0``
1x32x256x256, ``high_res_feats_1`` 1x64x128x128). A reader feeds each one to the graph input of the
same name (in the prep graph if the variant has one, else in the click graph), cast to that input's
dtype. ``resize`` says how an image enters the ``image_size`` square input frame: ``"longest_side"``
(SAM 1: the long side scaled to ``image_size``, aspect kept, padded bottom/right; low-res masks cover the
padded square) or ``"stretch"`` (SAM 2.1: each axis scaled to ``image_size`` on its own; low-res masks
cover the whole image and go straight to its original size).

Each variant names its ONNX file, size, sha256, the export options, the input/output tensors (name,
dtype, shape with ``"num_points"`` as the dynamic prompt axis) and the frame of its masks
(``"original"`` pixels or the ``"low_res"`` frame over the input square). ``mask_tokens`` says which
output channel is the single-mask answer and which are the multimask candidates, and how the single
answer was chosen (``"selection"``: ``"token"``, SAM 1's single-mask token; ``"stability"``, SAM 2.1's
dynamic choice made in the graph: the single-mask token when its stability score is high enough, else
the best-scoring candidate). A variant exported with ``precompute_image`` also has ``"prep"``: the
per-image graph (file, size, sha256, inputs, outputs) that runs once on the image inputs; its outputs
are inputs of every click. Version 2 added ``prep`` (a version-1 reader would feed the embedding to a
graph that no longer takes it); version 3 replaced ``"embedding": {"shape": ...}`` by
``image_inputs``, added ``resize`` and ``mask_tokens.selection`` (a version-2 reader would fetch one
tensor where SAM 2.1 sends three).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeAlias, TypeVar

from clicksam.errors import ClickSamError

#: any JSON value (what ``json.loads`` returns)
JsonValue: TypeAlias = str | int | float | bool | None | list["JsonValue"] | dict[str, "JsonValue"]
JsonObject: TypeAlias = dict[str, JsonValue]

MANIFEST_FORMAT = "clicksam-decoder"
MANIFEST_VERSION = 3
MANIFEST_NAME = "manifest.json"
#: how an image enters the square input frame (see the module docstring)
RESIZE_MODES = ("longest_side", "stretch")

SIDECAR_FORMAT = "clicksam-encoder"
SIDECAR_VERSION = 1
SIDECAR_NAME = "encoder.json"
ENCODER_FILE = "encoder.onnx"
#: largest difference to the PyTorch encoder's float32 output with which an ONNX encoder may be used
ENCODER_MAX_ABS_ERR = 1e-3

Dim = int | str
T = TypeVar("T")


class FormatError(ClickSamError, ValueError):
    """A document is missing, malformed, or of another format or version than this clicksam reads."""


class ManifestError(FormatError):
    """A decoder manifest is missing, malformed or of an unsupported format/version."""


class ManifestVersionError(ManifestError):
    """A decoder manifest of another version (``found``): it must be re-exported."""

    def __init__(self, found: object) -> None:
        super().__init__(
            f"unsupported manifest version {found!r} (this clicksam reads version {MANIFEST_VERSION}): "
            "re-export the decoder with `clicksam export`"
        )
        self.found = found


def _doc(text: str) -> dict[str, str]:
    """``field`` metadata that FastAPI / pydantic show as the field's description."""
    return {"description": text}


class _Reader:
    """Typed access to one JSON object; every problem raises ``error`` naming the field's path."""

    def __init__(self, value: object, where: str, error: type[FormatError]) -> None:
        if not isinstance(value, dict):
            raise error(f"{where} must be a JSON object, not {type(value).__name__}")
        self.doc: dict[str, object] = value
        self.where = where
        self.error = error

    def bad(self, key: str, what: str) -> FormatError:
        return self.error(f"missing or bad field {self.where}.{key}: expected {what}")

    def raw(self, key: str) -> object:
        return self.doc.get(key)

    def _get(self, key: str, kind: type[T], what: str) -> T:
        value = self.doc.get(key)
        if isinstance(value, kind) and not isinstance(value, bool):  # JSON true is no number
            return value
        raise self.bad(key, what)

    def text(self, key: str) -> str:
        return self._get(key, str, "a string")

    def opt_text(self, key: str) -> str | None:
        return None if self.doc.get(key) is None else self.text(key)

    def integer(self, key: str) -> int:
        return self._get(key, int, "an integer")

    def opt_integer(self, key: str) -> int | None:
        return None if self.doc.get(key) is None else self.integer(key)

    def number(self, key: str) -> float:
        value = self.doc.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise self.bad(key, "a number")
        return float(value)

    def ints(self, key: str, length: int | None = None) -> tuple[int, ...]:
        value = self.doc.get(key)
        if (
            not isinstance(value, list)
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            or (length is not None and len(value) != length)
        ):
            raise self.bad(key, f"a list of {length or 'some'} integers")
        return tuple(value)

    def obj(self, key: str) -> _Reader:
        return _Reader(self.doc.get(key), f"{self.where}.{key}", self.error)

    def objs(self, key: str) -> list[_Reader]:
        value = self.doc.get(key)
        if not isinstance(value, list):
            raise self.bad(key, "a list")
        return [_Reader(v, f"{self.where}.{key}[{i}]", self.error) for i, v in enumerate(value)]

    def json_object(self, key: str) -> JsonObject:
        value: JsonObject = self._get(key, dict, "an object")
        return value


def _read_json(path: Path, error: type[FormatError], missing: str) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise error(missing) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path} is not valid JSON: {exc}") from exc


def _write_json(path: Path, doc: JsonObject) -> Path:
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------- decoder manifest


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: name, element type (``float32``/``float16``/...) and shape."""

    name: str
    dtype: str
    shape: list[Dim]

    @classmethod
    def from_json(cls, r: _Reader) -> TensorSpec:
        shape = r.raw("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int | str) for d in shape):
            raise r.bad("shape", "a list of integers and axis names")
        return cls(r.text("name"), r.text("dtype"), list(shape))


@dataclass(frozen=True)
class PrepEntry:
    """The per-image graph of a variant: run once per embedding, its outputs feed every click."""

    file: str
    bytes: int
    sha256: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    @classmethod
    def from_json(cls, r: _Reader) -> PrepEntry:
        return cls(
            file=r.text("file"),
            bytes=r.integer("bytes"),
            sha256=r.text("sha256"),
            inputs=[TensorSpec.from_json(t) for t in r.objs("inputs")],
            outputs=[TensorSpec.from_json(t) for t in r.objs("outputs")],
        )


@dataclass(frozen=True)
class MaskTokens:
    """Which output channel is the single-mask answer and which are the multimask candidates."""

    single: int
    multi: list[int]
    #: how channel ``single`` was chosen: "token" (the single-mask token) or "stability" (SAM 2.1's
    #: dynamic choice in the graph: that token if stable, else the best-scoring candidate)
    selection: str = "token"


@dataclass(frozen=True)
class VariantEntry:
    """One exported decoder file and its interface."""

    file: str
    bytes: int
    sha256: str
    options: JsonObject
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    masks_frame: str  # "original" or "low_res"
    mask_tokens: MaskTokens | None = None
    prep: PrepEntry | None = None

    @classmethod
    def from_json(cls, r: _Reader) -> VariantEntry:
        tokens = None
        if r.raw("mask_tokens") is not None:
            t = r.obj("mask_tokens")
            tokens = MaskTokens(t.integer("single"), list(t.ints("multi")), t.text("selection"))
        return cls(
            file=r.text("file"),
            bytes=r.integer("bytes"),
            sha256=r.text("sha256"),
            options=r.json_object("options"),
            inputs=[TensorSpec.from_json(t) for t in r.objs("inputs")],
            outputs=[TensorSpec.from_json(t) for t in r.objs("outputs")],
            masks_frame=r.text("masks_frame"),
            mask_tokens=tokens,
            prep=PrepEntry.from_json(r.obj("prep")) if r.raw("prep") is not None else None,
        )

    def files(self) -> list[str]:
        """The ONNX files this variant needs: its own and its per-image graph's."""
        return [self.file] if self.prep is None else [self.file, self.prep.file]


@dataclass(frozen=True)
class Manifest:
    """The whole ``manifest.json``.

    ``image_inputs``: the per-image tensors in wire order (name, wire dtype, shape); ``resize``:
    ``"longest_side"`` or ``"stretch"`` (see the module docstring).
    """

    model: str
    checkpoint_sha256: str | None
    image_size: int
    low_res_size: int
    mask_threshold: float
    opset: int
    image_inputs: list[TensorSpec]
    default_variant: str
    variants: dict[str, VariantEntry] = field(default_factory=dict)
    seed: int | None = None
    resize: str = "longest_side"
    format: str = MANIFEST_FORMAT
    version: int = MANIFEST_VERSION

    def to_json(self) -> JsonObject:
        """The JSON document (plain dicts/lists), keys in the documented order."""
        variants: JsonObject = {}
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
            "resize": self.resize,
            "low_res_size": self.low_res_size,
            "mask_threshold": self.mask_threshold,
            "opset": self.opset,
            "image_inputs": [asdict(t) for t in self.image_inputs],
            "default_variant": self.default_variant,
            "variants": variants,
        }

    def write(self, out_dir: str | Path) -> Path:
        """Write ``out_dir/manifest.json`` and return its path."""
        return _write_json(Path(out_dir) / MANIFEST_NAME, self.to_json())

    @classmethod
    def from_json(cls, doc: object) -> Manifest:
        """Parse a manifest document.

        Raises:
            ManifestVersionError: a clicksam manifest of another version.
            ManifestError: anything else unexpected (the message names the field).
        """
        r = _Reader(doc, "manifest", ManifestError)
        if r.raw("format") != MANIFEST_FORMAT:
            raise ManifestError(f"not a {MANIFEST_FORMAT} manifest (format={r.raw('format')!r})")
        if r.raw("version") != MANIFEST_VERSION:
            raise ManifestVersionError(r.raw("version"))
        variants = r.obj("variants")
        manifest = cls(
            model=r.text("model"),
            checkpoint_sha256=r.opt_text("checkpoint_sha256"),
            seed=r.opt_integer("seed"),
            image_size=r.integer("image_size"),
            resize=r.text("resize"),
            low_res_size=r.integer("low_res_size"),
            mask_threshold=r.number("mask_threshold"),
            opset=r.integer("opset"),
            image_inputs=[TensorSpec.from_json(t) for t in r.objs("image_inputs")],
            default_variant=r.text("default_variant"),
            variants={name: VariantEntry.from_json(variants.obj(name)) for name in variants.doc},
        )
        if manifest.resize not in RESIZE_MODES:
            raise ManifestError(
                f"manifest.resize must be one of {', '.join(RESIZE_MODES)}, not {manifest.resize!r}"
            )
        if not manifest.image_inputs:
            raise ManifestError(
                "manifest.image_inputs is empty: the decoder needs at least one per-image tensor"
            )
        if manifest.default_variant not in manifest.variants:
            raise ManifestError(f"default_variant {manifest.default_variant!r} is not among the variants")
        return manifest

    @classmethod
    def read(cls, path: str | Path) -> Manifest:
        """Read ``path`` (a ``manifest.json`` or the folder holding it); raises :class:`ManifestError`."""
        p = Path(path)
        if p.is_dir():
            p = p / MANIFEST_NAME
        doc = _read_json(p, ManifestError, f"no decoder manifest at {p}: run `clicksam export` first")
        return cls.from_json(doc)


# ------------------------------------------------------------------------------------ encoder sidecar


@dataclass(frozen=True)
class EncoderSidecar:
    """``encoder.json``: an ONNX image encoder export and the check it passed against PyTorch."""

    model: str
    model_id: str
    checkpoint_sha256: str | None
    max_abs_err: float
    verify_seconds: dict[str, float]
    file: str = ENCODER_FILE
    format: str = SIDECAR_FORMAT
    version: int = SIDECAR_VERSION

    def write(self, directory: Path) -> Path:
        """Write ``directory/encoder.json`` and return its path."""
        return _write_json(directory / SIDECAR_NAME, asdict(self))

    @classmethod
    def read(cls, directory: Path) -> EncoderSidecar:
        """The sidecar in ``directory``; raises :class:`FormatError` when missing or not one."""
        path = directory / SIDECAR_NAME
        r = _Reader(_read_json(path, FormatError, f"no encoder sidecar at {path}"), "sidecar", FormatError)
        if r.raw("format") != SIDECAR_FORMAT or r.raw("version") != SIDECAR_VERSION:
            raise FormatError(f"{path} is not a {SIDECAR_FORMAT} sidecar of version {SIDECAR_VERSION}")
        seconds = r.obj("verify_seconds")
        return cls(
            model=r.text("model"),
            model_id=r.text("model_id"),
            checkpoint_sha256=r.opt_text("checkpoint_sha256"),
            max_abs_err=r.number("max_abs_err"),
            verify_seconds={key: seconds.number(key) for key in seconds.doc},
            file=r.text("file"),
        )


# ---------------------------------------------------------------------------------- embedding metadata


@dataclass(frozen=True)
class EmbeddingTensor:
    """Where one tensor lies in an embedding's body (the bytes of ``GET /api/embeddings/{id}``)."""

    name: str = field(metadata=_doc("the decoder input it feeds (the manifest's image_inputs name)"))
    shape: tuple[int, ...] = field(metadata=_doc("tensor shape, e.g. [1, 256, 64, 64]"))
    offset: int = field(
        metadata=_doc("first element in the body, counted in elements: bytes = offset x 2 (float16) or x 4")
    )
    size: int = field(metadata=_doc("number of elements (the product of shape)"))

    @staticmethod
    def layout(shapes: Sequence[tuple[str, Sequence[int]]]) -> tuple[EmbeddingTensor, ...]:
        """The tensors ``(name, shape)`` laid out one after the other in the given order."""
        tensors: list[EmbeddingTensor] = []
        offset = 0
        for name, shape in shapes:
            dims = tuple(int(d) for d in shape)
            size = math.prod(dims)
            tensors.append(EmbeddingTensor(name, dims, offset, size))
            offset += size
        return tuple(tensors)


@dataclass(frozen=True)
class EmbeddingMeta:
    """Metadata of one image embedding, as the cache stores it beside the tensors.

    The body (``GET url``) is the tensors of ``tensors`` concatenated in that order, each little-endian
    and C order, in one dtype (``float16``, or ``float32`` with ``?dtype=float32``). ``shape`` repeats the
    first tensor's shape: for SAM 1 that is the whole body, so a reader of the one-tensor format keeps
    working.
    """

    id: str = field(metadata=_doc("content id: sha256 of the decoded RGB pixels, their shape and the model"))
    model: str = field(metadata=_doc("model preset that computed it (must match the decoder manifest)"))
    original_size: tuple[int, int] = field(
        metadata=_doc("[H, W] of the image in pixels, after EXIF orientation")
    )
    input_size: tuple[int, int] = field(
        metadata=_doc("[h, w] of the image resized into the model's input frame")
    )
    shape: tuple[int, ...] = field(
        metadata=_doc("shape of the first tensor, [1, 256, 64, 64] (the whole body for SAM 1)")
    )
    tensors: tuple[EmbeddingTensor, ...] = field(
        metadata=_doc("every tensor of the body in body order: name, shape, element offset and size")
    )
    dtype: str = field(metadata=_doc("default wire dtype of GET url (float16; ?dtype=float32 on request)"))
    url: str = field(metadata=_doc("where to GET the raw little-endian tensor bytes"))
    encode_ms: float = field(metadata=_doc("time the image encoder took for this image, in milliseconds"))

    def element_count(self) -> int:
        """Elements in the body (all tensors)."""
        return sum(t.size for t in self.tensors)

    def to_json(self) -> JsonObject:
        doc: JsonObject = asdict(self)
        return doc

    @classmethod
    def from_json(cls, doc: object) -> EmbeddingMeta:
        """Parse stored metadata; raises :class:`FormatError` naming the bad field."""
        r = _Reader(doc, "embedding", FormatError)
        h, w = r.ints("original_size", 2)
        ih, iw = r.ints("input_size", 2)
        tensors = tuple(
            EmbeddingTensor(t.text("name"), t.ints("shape"), t.integer("offset"), t.integer("size"))
            for t in r.objs("tensors")
        )
        if not tensors or tensors != EmbeddingTensor.layout([(t.name, t.shape) for t in tensors]):
            raise r.bad("tensors", "at least one tensor, laid out one after the other from offset 0")
        shape = r.ints("shape")
        if shape != tensors[0].shape:
            raise r.bad("shape", f"the first tensor's shape {list(tensors[0].shape)}")
        return cls(
            id=r.text("id"),
            model=r.text("model"),
            original_size=(h, w),
            input_size=(ih, iw),
            shape=shape,
            tensors=tensors,
            dtype=r.text("dtype"),
            url=r.text("url"),
            encode_ms=r.number("encode_ms"),
        )

    def response(self, *, cached: bool) -> EmbeddingResponse:
        """The API's answer for this embedding."""
        return EmbeddingResponse(**vars(self), cached=cached)


@dataclass(frozen=True)
class EmbeddingResponse(EmbeddingMeta):
    """Metadata of one image embedding (``POST /api/embeddings`` and ``GET .../meta``)."""

    cached: bool = field(metadata=_doc("true when no encode was needed for this request"))


# ----------------------------------------------------------------------------------- segment everything


@dataclass(frozen=True)
class RleMask:
    """A mask as COCO compressed RLE."""

    size: tuple[int, int] = field(metadata=_doc("[H, W]"))
    counts: str = field(metadata=_doc("COCO compressed RLE string (column-major runs)"))


@dataclass(frozen=True)
class EverythingMask:
    """One automatic mask and SAM's scores for it."""

    segmentation: RleMask
    area: int = field(metadata=_doc("pixels in the mask"))
    bbox: tuple[float, float, float, float] = field(metadata=_doc("[x, y, w, h] in original image pixels"))
    predicted_iou: float = field(metadata=_doc("the decoder's IoU estimate"))
    stability_score: float = field(metadata=_doc("IoU of the mask thresholded at +-1 logit"))
    point_coords: list[tuple[float, float]] = field(
        metadata=_doc("[[x, y]] prompt point in original image pixels")
    )
    crop_box: tuple[float, float, float, float] = field(
        metadata=_doc("[x, y, w, h] of the crop the mask came from")
    )


@dataclass(frozen=True)
class EverythingResult:
    """The answer of ``POST /api/everything``."""

    id: str = field(metadata=_doc("the image's embedding id (as POST /api/embeddings)"))
    original_size: tuple[int, int] = field(metadata=_doc("[H, W] after EXIF orientation"))
    masks: list[EverythingMask] = field(metadata=_doc("the masks, in the generator's order"))
