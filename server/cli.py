"""``clicksam serve``: the composition root that resolves the model, ensures its decoder export, and runs
uvicorn.

Every flag is a field of ``Settings`` (and so also a ``CLICKSAM_*`` environment variable); the help text
is generated from the fields, so flag, variable and default are stated once. This is the only module of
``clicksam.server`` that may import the exporter (lazily, inside ``serve``).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clicksam.model import Sam
    from clicksam.server.loading import ModelSpec

logger = logging.getLogger(__name__)

# flags that get a short description of their value in --help
_METAVARS = {
    "model": "NAME",
    "checkpoint": "PATH",
    "decoder_dir": "DIR",
    "web_dir": "DIR",
    "cache_dir": "DIR",
}


def register(subparsers: Any) -> None:
    """Add the ``serve`` subcommand."""
    # imported here, not at module import: ``clicksam --help`` must stay fast; pydantic is light enough
    from clicksam.server.settings import Settings

    parser = subparsers.add_parser(
        "serve",
        help="serve the API, the decoder and the page (http://127.0.0.1:8000)",
        description="Serve the embedding API, the decoder export of the served model and the web page. "
        "Each option can also be set by the environment variable shown; flags win.",
    )
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        env = f"CLICKSAM_{name.upper()}"
        help_text = f"{field.description} [env {env}]"
        default = field.default
        if field.annotation is bool:
            parser.add_argument(
                flag,
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{help_text} (default: {default})",
            )
        else:
            parser.add_argument(
                flag,
                dest=name,
                default=None,
                metavar=_METAVARS.get(name, name.upper()),
                help=f"{help_text} (default: {default})",
            )
    parser.set_defaults(func=serve)


def _settings_from_args(args: argparse.Namespace) -> Any:
    from clicksam.server.settings import Settings

    overrides = {
        name: getattr(args, name) for name in Settings.model_fields if getattr(args, name, None) is not None
    }
    return Settings(**overrides)


def ensure_decoder(decoder_dir: Path, spec: ModelSpec) -> Sam | None:
    """Make sure ``decoder_dir`` holds the decoder export of ``spec``; export it if not.

    Returns:
        The model built for the export (so the server does not load it a second time), or None when
        the existing export already matched.
    """
    from clicksam.server.decoder_files import manifest_mismatch, read_manifest
    from clicksam.server.loading import load_model

    problem = manifest_mismatch(read_manifest(decoder_dir), spec, decoder_dir)
    if problem is None:
        logger.info("decoder export for %s found in %s", spec.name, decoder_dir)
        return None
    logger.info(
        "%s: exporting the decoder of %s to %s (once; takes a minute)", problem, spec.name, decoder_dir
    )
    try:
        from clicksam.export.decoder import export_decoder
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            "cannot export the decoder: clicksam.export is not installed (pip install 'clicksam[export]'), "
            "or pass --decoder-dir with an existing export"
        ) from exc
    sam = load_model(spec)
    export_decoder(
        sam, decoder_dir, model_name=spec.name, checkpoint_sha256=spec.checkpoint_sha256, seed=spec.seed
    )
    return sam


def ensure_onnx_encoder(sam: Sam, spec: ModelSpec, directory: Path, *, threads: int) -> bool:
    """Make sure ``directory`` holds an ONNX export of ``sam.image_encoder`` verified against PyTorch.

    Uses ``clicksam.export.encoder.export_encoder(sam, path)`` when the exporter provides it, else the
    TorchScript-based ``torch.onnx.export``. The sidecar that marks the export usable is written only
    after ONNX Runtime matched PyTorch within ``MAX_ABS_ERR`` on a seeded random image.

    Returns:
        True when a verified export is there; False (reason logged) when the PyTorch encoder must be used.
    """
    import numpy as np
    import torch

    from clicksam.server.encoder import OnnxImageEncoder
    from clicksam.server.onnx_encoder import (
        ENCODER_FILE,
        MAX_ABS_ERR,
        SIDECAR_FILE,
        sidecar_problem,
        write_sidecar,
    )

    problem = sidecar_problem(directory, spec)
    if problem is None:
        return True
    logger.info("%s: exporting the %s image encoder to ONNX (once)", problem, spec.name)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / SIDECAR_FILE).unlink(missing_ok=True)
    path = directory / ENCODER_FILE
    size = int(sam.image_size)
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.integers(0, 256, (1, 3, size * 3 // 4, size), dtype=np.uint8))
    with torch.inference_mode():
        x = sam.preprocess(image.to(torch.float32))  # (1, 3, S, S) normalised, zero-padded
    try:
        try:
            from clicksam.export.encoder import export_encoder
        except ImportError:
            export_encoder = None
        start = time.perf_counter()
        if export_encoder is not None:
            export_encoder(sam, path)
        else:
            with torch.no_grad():
                torch.onnx.export(
                    sam.image_encoder, (x,), str(path), dynamo=False, opset_version=17,
                    input_names=["image"], output_names=["image_embeddings"],
                )  # fmt: skip
        export_s = time.perf_counter() - start
        start = time.perf_counter()
        with torch.inference_mode():
            reference = sam.image_encoder(x).numpy()
        torch_s = time.perf_counter() - start
        onnx = OnnxImageEncoder(path, threads=threads)
        onnx(x.numpy())  # the first run includes ORT's one-off allocations
        start = time.perf_counter()
        got = onnx(x.numpy())
        onnx_s = time.perf_counter() - start
    except Exception as exc:
        # the ONNX encoder is only an optimisation: any failure leaves the (always correct) PyTorch path
        logger.warning("ONNX export of the %s image encoder failed, using PyTorch: %r", spec.name, exc)
        return False
    err = float(np.abs(got - reference).max()) if got.shape == reference.shape else float("inf")
    if not err <= MAX_ABS_ERR:
        logger.warning("ONNX encoder differs from PyTorch by %.3g (> %g): using PyTorch", err, MAX_ABS_ERR)
        return False
    seconds = {"export": round(export_s, 2), "torch": round(torch_s, 3), "onnxruntime": round(onnx_s, 3)}
    write_sidecar(directory, spec, err, seconds)
    logger.info(
        "ONNX encoder verified: max abs err %.2g; one encode %.2f s with PyTorch, %.2f s with ONNX Runtime",
        err, torch_s, onnx_s,
    )  # fmt: skip
    return True


def serve(args: argparse.Namespace) -> int:
    """Run the server until interrupted; returns the exit code."""
    import uvicorn
    from pydantic import ValidationError

    from clicksam.server.app import create_app
    from clicksam.server.decoder_files import default_decoder_dir
    from clicksam.server.errors import DecoderMismatchError
    from clicksam.server.loading import resolve_model

    try:
        settings = _settings_from_args(args)
    except ValidationError as exc:
        logger.error("invalid settings:\n%s", exc)
        return 2
    try:
        spec = resolve_model(
            settings.model, settings.checkpoint, settings.seed, random_weights=settings.random_weights
        )
    except FileNotFoundError as exc:
        logger.error("%s", exc)
        return 2
    decoder_dir = settings.decoder_dir or default_decoder_dir(settings.cache_dir, spec)
    sam = ensure_decoder(decoder_dir, spec)
    if settings.encoder != "torch":
        from clicksam.server.loading import load_model
        from clicksam.server.onnx_encoder import AUTO_MAX_PARAMS, encoder_dir, sidecar_problem

        directory = encoder_dir(settings.cache_dir, spec)
        if sidecar_problem(directory, spec) is not None:
            sam = sam if sam is not None else load_model(spec)
            params = sum(p.numel() for p in sam.image_encoder.parameters())
            # auto: only real checkpoints of small encoders; random/demo weights start fast on PyTorch
            if settings.encoder == "onnxruntime" or (
                spec.checkpoint is not None and params < AUTO_MAX_PARAMS
            ):
                ensure_onnx_encoder(sam, spec, directory, threads=settings.resolved_torch_threads())
            else:
                logger.info(
                    "%s encoder (%.0fM parameters, %s): PyTorch (--encoder onnxruntime exports it to ONNX)",
                    spec.name, params / 1e6, "checkpoint" if spec.checkpoint else "random weights",
                )  # fmt: skip
    settings = settings.model_copy(update={"decoder_dir": decoder_dir})
    try:
        app = create_app(settings, spec=spec, sam=sam)
    except DecoderMismatchError as exc:
        logger.error("%s", exc)
        return 1
    # uvicorn picks uvloop and httptools when installed (uvicorn[standard]); one process holds the model
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level)
    return 0
