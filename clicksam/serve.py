"""``clicksam serve``: the composition root that resolves the model, makes sure its decoder (and, when
worthwhile, its ONNX image encoder) are exported, and runs the server under uvicorn.

It sits above both ``clicksam.export`` and ``clicksam.server``, which never import each other: the server
only reads the verified files that this module has the exporter write. Every flag is a field of
``Settings`` (and so also a ``CLICKSAM_*`` environment variable); the help text is generated from the
fields, so flag, variable and default are stated once. Failures raise ``ClickSamError`` subclasses, which
``clicksam.cli`` reports as one line.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clicksam.errors import ClickSamError, UsageError

if TYPE_CHECKING:
    from clicksam.model import Sam
    from clicksam.server.loading import ModelSpec
    from clicksam.server.settings import Settings

logger = logging.getLogger(__name__)

#: "auto" exports checkpoints of encoders below this many parameters: ViT-T (5.7M), where ONNX Runtime
#: measured ~1.6x faster than PyTorch here (bench/README.md). ViT-B/L/H (86M+) were not measured on this
#: shared machine and export slowly to large files, so they stay on PyTorch unless asked for
AUTO_MAX_PARAMS = 50_000_000

_HELP = "serve the API, the decoder and the page (http://127.0.0.1:8000)"
_DESCRIPTION = (
    "Serve the embedding API, the decoder export of the served model and the web page. "
    "Each option can also be set by the environment variable shown; flags win."
)

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

    parser = subparsers.add_parser("serve", help=_HELP, description=_DESCRIPTION)
    for name, field in Settings.model_fields.items():
        help_text = f"{field.description} [env CLICKSAM_{name.upper()}] (default: {field.default})"
        flag = "--" + name.replace("_", "-")
        if field.annotation is bool:
            parser.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            metavar = _METAVARS.get(name, name.upper())
            parser.add_argument(flag, dest=name, default=None, metavar=metavar, help=help_text)
    parser.set_defaults(func=serve)


def _settings_from_args(args: argparse.Namespace) -> Settings:
    from pydantic import ValidationError

    from clicksam.server.settings import Settings

    overrides = {
        name: getattr(args, name) for name in Settings.model_fields if getattr(args, name, None) is not None
    }
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise UsageError(f"invalid settings: {problems}") from exc


def ensure_decoder(decoder_dir: Path, spec: ModelSpec) -> Sam | None:
    """Make sure ``decoder_dir`` holds the decoder export of ``spec``; export it if not.

    Returns:
        The model built for the export (so the server does not load it a second time), or None when
        the existing export already matched.

    Raises:
        ClickSamError: the exporter is not installed; ``ExportError``: the export failed its checks.
    """
    from clicksam.server.decoder_files import manifest_mismatch
    from clicksam.server.loading import load_model

    problem = manifest_mismatch(decoder_dir, spec)
    if problem is None:
        logger.info("decoder export for %s found in %s", spec.name, decoder_dir)
        return None
    logger.info(
        "%s: exporting the decoder of %s to %s (once; takes a minute)", problem, spec.name, decoder_dir
    )
    try:
        from clicksam.export.decoder import export_decoder
    except ModuleNotFoundError as exc:
        raise ClickSamError(
            f"cannot export the decoder ({exc.name} is not installed): pip install 'clicksam[export]', "
            "or pass --decoder-dir with an existing export"
        ) from exc
    sam = load_model(spec)
    export_decoder(
        sam, decoder_dir, model_name=spec.name, checkpoint_sha256=spec.checkpoint_sha256, seed=spec.seed
    )
    return sam


def ensure_onnx_encoder(sam: Sam, spec: ModelSpec, directory: Path, *, threads: int) -> bool:
    """Make sure ``directory`` holds an ONNX export of ``sam.image_encoder`` verified against PyTorch.

    Returns:
        True when a verified export is there; False (reason logged) when the PyTorch encoder must be used:
        the ONNX encoder is only an optimisation, so a failed export is a warning, not an error.
    """
    from clicksam.server.onnx_encoder import sidecar_problem

    problem = sidecar_problem(directory, spec)
    if problem is None:
        return True
    logger.info("%s: exporting the %s image encoder to ONNX (once)", problem, spec.name)
    try:
        from clicksam.export.encoder import export_encoder

        export_encoder(
            sam,
            directory,
            model=spec.name,
            model_id=spec.model_id,
            checkpoint_sha256=spec.checkpoint_sha256,
            threads=threads,
        )
    except ImportError as exc:
        logger.warning("cannot export the ONNX encoder (%s), using PyTorch", exc)
        return False
    except ClickSamError as exc:
        logger.warning("%s: using PyTorch", exc)
        return False
    return True


def _prepare_onnx_encoder(settings: Settings, spec: ModelSpec, sam: Sam | None) -> Sam | None:
    """Export the ONNX encoder when the settings ask for it (or "auto" finds it worthwhile)."""
    from clicksam.model.build import is_sam2_model
    from clicksam.server.loading import load_model
    from clicksam.server.onnx_encoder import encoder_dir, sidecar_problem

    if is_sam2_model(spec.name):  # the ONNX encoder export covers SAM 1's single-output encoders only
        if settings.encoder == "onnxruntime":
            logger.warning("%s: no ONNX image encoder for SAM 2.1, using PyTorch", spec.name)
        return sam
    directory = encoder_dir(settings.cache_dir, spec)
    if settings.encoder == "torch" or sidecar_problem(directory, spec) is None:
        return sam
    sam = sam if sam is not None else load_model(spec)
    params = sum(p.numel() for p in sam.image_encoder.parameters())
    # auto: only real checkpoints of small encoders; random/demo weights start fast on PyTorch
    if settings.encoder == "onnxruntime" or (spec.checkpoint is not None and params < AUTO_MAX_PARAMS):
        ensure_onnx_encoder(sam, spec, directory, threads=settings.resolved_torch_threads())
    else:
        logger.info(
            "%s encoder (%.0fM parameters, %s): PyTorch (--encoder onnxruntime exports it to ONNX)",
            spec.name, params / 1e6, "checkpoint" if spec.checkpoint else "random weights",
        )  # fmt: skip
    return sam


def serve(args: argparse.Namespace) -> int:
    """Run the server until interrupted; returns the exit code."""
    import uvicorn

    from clicksam.server.app import create_app
    from clicksam.server.decoder_files import default_decoder_dir
    from clicksam.server.loading import resolve_model
    from clicksam.server.projects.runtime import ProjectsConfig, check_auth

    settings = _settings_from_args(args)
    # before any export: a server open beyond loopback with nobody's token is refused at once
    check_auth(ProjectsConfig.from_settings(settings))
    spec = resolve_model(
        settings.model, settings.checkpoint, settings.seed, random_weights=settings.random_weights
    )
    decoder_dir = settings.decoder_dir or default_decoder_dir(settings.cache_dir, spec)
    sam = ensure_decoder(decoder_dir, spec)
    sam = _prepare_onnx_encoder(settings, spec, sam)
    settings = settings.model_copy(update={"decoder_dir": decoder_dir})
    if settings.engine == "ray":  # the same app, its encodes on Ray Serve replicas (docs/scaling.md)
        from clicksam.server.scale.cluster import import_ray

        import_ray()  # RayNotInstalledError names the extra
        from clicksam.server.scale.serving import run as run_on_ray

        return run_on_ray(settings, spec, sam)
    app = create_app(settings, spec=spec, sam=sam)
    # uvicorn picks uvloop and httptools when installed (uvicorn[standard]); one process holds the model
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level)
    return 0
