"""``clicksam everything IMAGE... --out DIR``: automatic masks for whole images, as PNGs and/or COCO JSON.

PNG output: ``DIR/<image stem>/mask_000.png`` ... (8-bit, 255 inside the mask), largest mask first, and
``DIR/<image stem>/masks.csv`` with one row of metadata per PNG. COCO output: one ``DIR/everything.json``
with ``images``, ``annotations`` (compressed RLE ``segmentation``, ``area``, ``bbox`` XYWH, ``score`` =
predicted IoU, plus SAM's ``predicted_iou``, ``stability_score``, ``point_coords`` and ``crop_box``) and a
single category ``object``.

Works with either family (``--model vit_b`` ... or ``--model sam2.1_hiera_t`` ...): the generator is the
model's (:func:`clicksam.model.automatic.mask_generator`) with that family's official defaults; an option
left out keeps the default (``--pred-iou-thresh``: 0.88 for SAM 1, 0.8 for SAM 2.1). ``--use-m2m`` and
``--single-mask`` are SAM 2.1's options.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path
from typing import Any

from clicksam.errors import UsageError

logger = logging.getLogger(__name__)

#: generator options exposed as flags: (flag name, type, help)
_OPTIONS: tuple[tuple[str, type, str], ...] = (
    ("points_per_side", int, "grid points along each side of the image"),
    ("points_per_batch", int, "points decoded together (memory ~5 MB each)"),
    ("pred_iou_thresh", float, "keep masks whose predicted IoU is above this"),
    ("stability_score_thresh", float, "keep masks whose stability score is at least this"),
    ("stability_score_offset", float, "logit offset of the stability score"),
    ("box_nms_thresh", float, "box IoU above which duplicates are removed"),
    ("crop_n_layers", int, "extra layers of image crops (0: whole image only)"),
    ("crop_nms_thresh", float, "box IoU for duplicates across crops"),
    ("crop_overlap_ratio", float, "overlap of first-layer crops, fraction of the short side"),
    ("crop_n_points_downscale_factor", int, "points per side shrink by this factor per crop layer"),
    ("min_mask_region_area", int, "fill holes / remove islands smaller than this many pixels"),
)
#: SAM 2.1's switches: (flag, option name, value when given, help)
_SAM2_FLAGS: tuple[tuple[str, str, bool, str], ...] = (
    ("--use-m2m", "use_m2m", True, "SAM 2.1: refine every mask once with its own logits as mask input"),
    ("--single-mask", "multimask_output", False, "SAM 2.1: one (dynamically chosen) mask per point, not 3"),
)


def register(subparsers: Any) -> None:
    """Add the ``everything`` subcommand."""
    p = subparsers.add_parser(
        "everything",
        help="segment everything in images (automatic masks) and write PNGs and/or COCO JSON",
        description="Prompt SAM with a grid of points and keep the confident, stable, non-duplicate masks "
        "(SAM's automatic mask generator). Defaults are SAM's.",
    )
    add_common_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    for name, typ, help_text in _OPTIONS:
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=typ, default=None, help=help_text)
    for flag, name, value, help_text in _SAM2_FLAGS:
        p.add_argument(flag, dest=name, action="store_const", const=value, default=None, help=help_text)
    p.set_defaults(func=run)


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments every offline image command takes: images, output, and the SAM model to run."""
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (any format Pillow reads)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created if missing)")
    p.add_argument("--format", choices=("png", "coco", "both"), default="both", help="what to write")
    p.add_argument(
        "--model",
        default="vit_b",
        metavar="NAME",
        help="SAM model: vit_b, vit_l, vit_h, vit_t, sam2.1_hiera_t/s/b+/l (default vit_b)",
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        metavar="PATH",
        help="checkpoint file (default: the verified one from 'clicksam weights download NAME')",
    )
    p.add_argument(
        "--random-weights",
        type=int,
        default=None,
        metavar="SEED",
        help="use seeded random weights instead of a checkpoint (for trying the pipeline; masks are noise)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def image_paths(args: argparse.Namespace) -> list[Path]:
    """The IMAGE arguments as paths; raises ``UsageError`` naming the ones that are not files."""
    paths = [Path(p) for p in args.images]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise UsageError(f"no such image file: {', '.join(missing)}")
    return paths


def build_model(args: argparse.Namespace) -> Any:
    """The SAM model of ``--model`` in eval mode, from ``--checkpoint``, the cache or ``--random-weights``.

    Also applies ``--threads``. Raises ``UsageError`` when no checkpoint is found, saying how to get one.
    """
    import torch

    from clicksam.model import build_sam, weights

    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    if args.random_weights is not None:
        checkpoint = None
    elif args.checkpoint is not None:
        checkpoint = Path(args.checkpoint)
    else:
        checkpoint = weights.find_checkpoint(args.model)
        if checkpoint is None:
            raise UsageError(
                f"no checkpoint for {args.model}: run 'clicksam weights download {args.model}', pass "
                "--checkpoint PATH, or --random-weights SEED to try the pipeline"
            )
    return build_sam(args.model, checkpoint, seed=args.random_weights).eval()


def load_image(path: Path) -> Any:
    """(H, W, 3) uint8 RGB, EXIF-oriented; raises ``UsageError`` when the file is not an image."""
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            upright = ImageOps.exif_transpose(im)
            return np.array(upright.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise UsageError(f"{path}: cannot read it as an image ({exc})") from exc


def unique_stem(path: Path, used: set[str]) -> str:
    stem, i = path.stem or "image", 1
    name = stem
    while name in used:
        i += 1
        name = f"{stem}_{i}"
    used.add(name)
    return name


def _write_pngs(records: list[dict[str, Any]], folder: Path) -> None:
    import numpy as np
    from PIL import Image

    from clicksam.model import amg

    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "masks.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["file", "area", "bbox_x", "bbox_y", "bbox_w", "bbox_h", "predicted_iou", "stability_score",
             "point_x", "point_y", "crop_x", "crop_y", "crop_w", "crop_h"]
        )  # fmt: skip
        for i, rec in enumerate(sorted(records, key=lambda r: -r["area"])):
            name = f"mask_{i:03d}.png"
            mask = amg.rle_to_mask(rec["segmentation"])
            Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(folder / name)
            writer.writerow(
                [name, rec["area"], *rec["bbox"], f"{rec['predicted_iou']:.6f}",
                 f"{rec['stability_score']:.6f}", *rec["point_coords"][0], *rec["crop_box"]]
            )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Run the generator on every image; returns the exit code.

    Raises:
        ClickSamError: bad input (missing or unreadable image, unknown model, no checkpoint, options out
            of range); ``clicksam.cli`` reports it.
    """
    from tqdm import tqdm

    from clicksam.model.automatic import mask_generator

    paths = image_paths(args)
    names = [name for name, _, _ in _OPTIONS] + [name for _, name, _, _ in _SAM2_FLAGS]
    options = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    sam = build_model(args)
    generator = mask_generator(sam, output_mode="uncompressed_rle", **options)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    coco: dict[str, Any] = {
        "info": {"description": f"clicksam everything ({args.model})"},
        "images": [],
        "annotations": [],
        "categories": [{"id": 1, "name": "object"}],
    }
    used: set[str] = set()
    from clicksam.model import amg

    for image_id, path in enumerate(paths, start=1):
        image = load_image(path)
        total = generator.total_points(image.shape[:2])
        with tqdm(total=total, desc=path.name, unit="pt", disable=args.quiet) as bar:
            records = generator.generate(image, progress=lambda done, _total: bar.update(done - bar.n))
        stem = unique_stem(path, used)
        if args.format in ("png", "both"):
            _write_pngs(records, out / stem)
        coco["images"].append(
            {"id": image_id, "file_name": path.name, "height": image.shape[0], "width": image.shape[1]}
        )
        for rec in records:
            coco["annotations"].append(
                {
                    "id": len(coco["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "iscrowd": 0,
                    "segmentation": amg.coco_encode_rle(rec["segmentation"]),
                    "area": rec["area"],
                    "bbox": rec["bbox"],
                    "score": rec["predicted_iou"],
                    "predicted_iou": rec["predicted_iou"],
                    "stability_score": rec["stability_score"],
                    "point_coords": rec["point_coords"],
                    "crop_box": rec["crop_box"],
                }
            )
        logger.info("%s: %d masks", path, len(records))
    if args.format in ("coco", "both"):
        (out / "everything.json").write_text(json.dumps(coco))
        logger.info("wrote %s", out / "everything.json")
    return 0
