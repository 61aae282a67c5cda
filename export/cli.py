"""``clicksam export``: write the ONNX decoder variants and their ``manifest.json``.

clicksam export --model vit_b --checkpoint sam_vit_b_01ec64.pth --out decoder/
clicksam export --model vit_test --seed 0 --out /tmp/dec --variant browser
clicksam export --model sam2.1_hiera_t --checkpoint sam2.1_hiera_tiny.pt --out decoder/

A SAM 2.1 model gets its own graphs (``clicksam.export.sam2``); ``--quantize`` and ``--browser-weights``
apply to SAM 1's browser variant only.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clicksam.export.decoder import VariantConfig

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the ``export`` subcommand to the ``clicksam`` parser."""
    p = subparsers.add_parser(
        "export",
        help="export the prompt encoder + mask decoder to ONNX (+ manifest.json)",
        description=(
            "Export SAM's prompt encoder + mask decoder as ONNX: 'official' (decoder.onnx, Meta's "
            "interface, full-size masks) and 'browser' (decoder_browser.onnx + decoder_browser_prep.onnx, "
            "a per-image and a per-click graph with low-res masks for the page). Every file is "
            "checked against PyTorch before the manifest is written."
        ),
    )
    p.add_argument(
        "--model",
        required=True,
        help="model preset: vit_b, vit_l, vit_h, vit_t, vit_test, sam2.1_hiera_t/s/b+/l, sam2_tiny",
    )
    p.add_argument(
        "--checkpoint", type=Path, default=None, help="official checkpoint (.pth) to load strictly"
    )
    p.add_argument(
        "--seed", type=int, default=None, help="seed of random weights when there is no checkpoint"
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (created if missing)")
    p.add_argument(
        "--variant",
        action="append",
        choices=["official", "browser"],
        default=None,
        help="variant to export (repeatable; default: both)",
    )
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument(
        "--quantize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="int8 dynamic weight quantisation of the browser variant (default: off, see bench/README.md)",
    )
    p.add_argument(
        "--browser-weights",
        choices=["float32", "float16", "int8"],
        default=None,
        help="how the browser variant stores its weights (default float16; int8: per-channel, ~half again)",
    )
    p.add_argument(
        "--single-mask",
        action="store_true",
        help="official variant returns one mask chosen by the official single-mask rule",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the model, export, print where the files went. Returns the exit code.

    Raises:
        ClickSamError: bad arguments, an unreadable checkpoint, a failed export (``clicksam.cli`` reports it).
    """
    from clicksam.errors import UsageError
    from clicksam.export.decoder import export_decoder
    from clicksam.model import build_sam
    from clicksam.model.weights import sha256_file

    if args.checkpoint is not None and args.seed is not None:
        raise UsageError("--seed only applies to random weights; drop it or drop --checkpoint")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        raise UsageError(
            f"checkpoint {args.checkpoint} does not exist (download it with `clicksam weights download`)"
        )
    seed = args.seed
    if args.checkpoint is None and seed is None and args.model != "demo":
        seed = 0
        logger.warning("no --checkpoint: exporting seeded random weights (seed 0); masks will be meaningless")
    sam = build_sam(args.model, checkpoint=args.checkpoint, seed=seed if args.checkpoint is None else None)
    checkpoint_sha = sha256_file(args.checkpoint) if args.checkpoint is not None else None
    if args.model == "demo" and args.checkpoint is None and seed is None:
        from clicksam.model.build import DEMO_WEIGHTS  # the trained weights build_sam loaded

        checkpoint_sha = sha256_file(DEMO_WEIGHTS)
    manifest = export_decoder(
        sam,
        args.out,
        model_name=args.model,
        checkpoint_sha256=checkpoint_sha,
        seed=seed if args.checkpoint is None else None,
        variants=_variants(args),
        opset=args.opset,
    )
    for name, entry in manifest.variants.items():
        print(f"{name}: {args.out / entry.file} ({entry.bytes} bytes, sha256 {entry.sha256[:12]}...)")
    print(f"manifest: {args.out / 'manifest.json'}")
    return 0


def _variants(args: argparse.Namespace) -> dict[str, VariantConfig]:
    """The presets named by ``--variant`` (default: all), with ``--quantize``, ``--browser-weights``
    and ``--single-mask`` applied to the variant they concern."""
    from clicksam.export.decoder import DEFAULT_CONFIGS

    configs = {
        name: DEFAULT_CONFIGS[name]
        for name in (dict.fromkeys(args.variant) if args.variant else DEFAULT_CONFIGS)
    }
    if "browser" in configs:
        browser = configs["browser"]
        if args.quantize is not None:
            browser = replace(browser, quantize=args.quantize)
        if args.browser_weights is not None:
            browser = browser.with_weights(args.browser_weights)
        configs["browser"] = browser
    if args.single_mask and "official" in configs:
        configs["official"] = configs["official"].with_single_mask()
    return configs
