"""``clicksam detect IMAGE... --text "dog,cat" [--exemplar x0,y0,x1,y1] --out DIR``: text/exemplar prompts
without a server.

The open-vocabulary detector (``clicksam.model.detection``, OWLv2) finds boxes for the words and/or
objects like the exemplar boxes; SAM turns each box into a mask (a box prompt, single mask). Output, as
``clicksam everything`` writes it: ``DIR/<image stem>/mask_000.png`` ... (8-bit, 255 inside; highest score
first) with ``DIR/<image stem>/masks.csv`` (file, label, score, box, mask IoU prediction), and/or one
``DIR/detect.json`` in COCO format whose categories are the labels (``exemplar`` for exemplar matches):
each annotation has the compressed RLE ``segmentation``, the mask's ``bbox`` (XYWH) and ``area``, the
detector's ``score`` and box (``detection_box``, x0, y0, x1, y1) and SAM's ``predicted_iou``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from pathlib import Path
from typing import Any

from clicksam.errors import ClickSamError, UsageError
from clicksam.model.everything_cli import (
    add_common_arguments,
    build_model,
    image_paths,
    load_image,
    unique_stem,
)

logger = logging.getLogger(__name__)

#: IoU above which a lower-scored detection with the same label is dropped (as on the server)
NMS_IOU = 0.5


def register(subparsers: Any) -> None:
    """Add the ``detect`` subcommand."""
    p = subparsers.add_parser(
        "detect",
        help="find objects by text or example boxes (OWLv2) and segment them (SAM); PNGs and/or COCO JSON",
        description="Detect objects named by --text (and/or like the --exemplar boxes) with an "
        "open-vocabulary detector, then segment each detection with SAM from its box.",
    )
    add_common_arguments(p)
    p.add_argument("--text", default="", help='comma-separated queries, e.g. "dog,red car"')
    p.add_argument(
        "--exemplar",
        action="append",
        default=[],
        metavar="X0,Y0,X1,Y1",
        help="an example object's box in original pixels (repeatable): find objects like it",
    )
    p.add_argument(
        "--text-model",
        default="owlv2-base",
        metavar="NAME|PATH",
        help="owlv2-base, owlv2-large (from 'clicksam weights download NAME') or a Hugging Face OWLv2 "
        "folder (default owlv2-base)",
    )
    p.add_argument("--threshold", type=float, default=0.1, help="keep detections scoring above this")
    p.add_argument("--max-detections", type=int, default=100, help="at most this many per image")
    p.set_defaults(func=run)


def _parse_box(text: str) -> tuple[float, float, float, float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4:
        raise UsageError(f"--exemplar {text!r}: give four numbers x0,y0,x1,y1 in image pixels")
    x0, y0, x1, y1 = values
    return x0, y0, x1, y1


def _detector_folder(text_model: str) -> Path:
    from clicksam.model.weights_hf import HF_MODELS, find_model

    if text_model in HF_MODELS:
        folder = find_model(text_model)
        if folder is None:
            raise UsageError(
                f"the {text_model} weights are not in the cache (or not accepted): run "
                f"'clicksam weights download {text_model}', or pass --text-model PATH"
            )
        return folder
    path = Path(text_model).expanduser()
    if not (path / "config.json").is_file():
        raise UsageError(f"--text-model {text_model}: neither {', '.join(HF_MODELS)} nor a model folder")
    return path


def _check_boxes(boxes: list[tuple[float, float, float, float]], path: Path, height: int, width: int) -> None:
    for x0, y0, x1, y1 in boxes:
        inside = 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        if not inside or x1 - x0 < 1 or y1 - y0 < 1:
            raise UsageError(
                f"--exemplar {x0:g},{y0:g},{x1:g},{y1:g} does not fit {path} ({width}x{height}): "
                "x0 < x1 <= width, y0 < y1 <= height, at least 1 pixel each way"
            )


def run(args: argparse.Namespace) -> int:
    """Detect and segment every image; returns the exit code.

    Raises:
        ClickSamError: bad input (no query, missing image, bad box, missing weights or extra).
    """
    import numpy as np
    import torch
    from PIL import Image

    from clicksam.model import SamPredictor, amg
    from clicksam.model.detection import EXEMPLAR_LABEL, DetectorError, load_detector, postprocess

    texts = [t.strip() for t in args.text.split(",") if t.strip()]
    boxes = [_parse_box(b) for b in args.exemplar]
    if not texts and not boxes:
        raise UsageError('give --text "dog,cat" and/or --exemplar x0,y0,x1,y1')
    if not 0 <= args.threshold < 1 or args.max_detections < 1:
        raise UsageError("--threshold must be in [0, 1) and --max-detections at least 1")
    paths = image_paths(args)
    try:
        detector = load_detector(_detector_folder(args.text_model))
    except DetectorError as exc:
        raise ClickSamError(str(exc)) from exc
    too_long = [t for t in texts if detector.text_token_count(t) > detector.max_text_tokens]
    if too_long:
        raise UsageError(
            f"text queries longer than {detector.max_text_tokens} tokens: {too_long}; shorten them"
        )
    predictor = SamPredictor(build_model(args))
    text_queries = detector.text_embeddings(texts) if texts else None

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    categories = [*texts, EXEMPLAR_LABEL] if boxes else list(texts)
    category_ids = {name: i for i, name in enumerate(categories, start=1)}
    coco: dict[str, Any] = {
        "info": {"description": f"clicksam detect ({detector.name} + {args.model})"},
        "images": [],
        "annotations": [],
        "categories": [{"id": i, "name": name} for name, i in category_ids.items()],
    }
    used: set[str] = set()
    for image_id, path in enumerate(paths, start=1):
        image = load_image(path)
        height, width = image.shape[:2]
        _check_boxes(boxes, path, height, width)
        features = detector.image_features(image)
        queries, labels = [], []
        if boxes:
            queries.append(detector.exemplar_embeddings(image, np.asarray(boxes, dtype=np.float64)))
            labels += [EXEMPLAR_LABEL] * len(boxes)
        if text_queries is not None:
            queries.append(text_queries)
            labels += texts
        found = detector.detect(features, torch.cat(queries), labels, args.threshold)
        kept = postprocess(
            found, threshold=args.threshold, iou_threshold=0.5, max_detections=args.max_detections
        )
        predictor.set_image(image)
        stem = unique_stem(path, used)
        folder = out / stem
        rows = []
        coco["images"].append({"id": image_id, "file_name": path.name, "height": height, "width": width})
        for i, (label, box, score) in enumerate(zip(kept.labels, kept.boxes, kept.scores, strict=True)):
            masks, ious, _ = predictor.predict(box=np.asarray(box, dtype=np.float64), multimask_output=False)
            mask = np.asarray(masks[0], dtype=bool)
            ys, xs = np.nonzero(mask)
            bbox = (
                [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
                if len(xs)
                else [0, 0, 0, 0]
            )
            record = {
                "id": len(coco["annotations"]) + 1,
                "image_id": image_id,
                "category_id": category_ids[label],
                "iscrowd": 0,
                "segmentation": amg.coco_encode_rle(amg.mask_to_rle(torch.from_numpy(mask)[None])[0]),
                "area": int(mask.sum()),
                "bbox": bbox,
                "score": float(score),
                "detection_box": [round(float(v), 2) for v in box],
                "predicted_iou": float(ious[0]),
            }
            coco["annotations"].append(record)
            if args.format in ("png", "both"):
                folder.mkdir(parents=True, exist_ok=True)
                name = f"mask_{i:03d}.png"
                Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(folder / name)
                rows.append(
                    [name, label, f"{score:.6f}", *record["detection_box"], f"{ious[0]:.6f}", record["area"]]
                )
        if args.format in ("png", "both"):
            folder.mkdir(parents=True, exist_ok=True)
            with (folder / "masks.csv").open("w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["file", "label", "score", "x0", "y0", "x1", "y1", "predicted_iou", "area"])
                writer.writerows(rows)
        logger.info("%s: %d detections", path, len(kept))
    if args.format in ("coco", "both"):
        (out / "detect.json").write_text(json.dumps(coco))
        logger.info("wrote %s", out / "detect.json")
    return 0
