"""``clicksam train`` and ``clicksam eval``: thin command lines over ``loop.Trainer`` and ``evaluate``.

Bad input (unknown model, unreadable checkpoint or COCO file) raises ``ClickSamError`` subclasses
(``TrainingError``, ``CheckpointError``, ``CocoFormatError``), which ``clicksam.cli`` reports.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the ``train`` and ``eval`` subcommands."""
    from .config import TrainConfig

    d = TrainConfig()
    tp = subparsers.add_parser(
        "train",
        help="train or fine-tune a model with SAM's interactive recipe",
        description=(
            "Train a registry model (default: the small demo model) with SAM's loss (20*focal + dice, "
            "IoU-head MSE) and simulated interactive prompts, on procedural scenes or a COCO instances "
            "file. Checkpoints go to OUT/last.pt; --resume continues from there. See docs/training.md."
        ),
    )
    tp.add_argument("--model", default=d.model, help="registry preset (demo, vit_t, vit_b, ...)")
    tp.add_argument("--checkpoint", default=None, help="weights to start from (fine-tuning)")
    tp.add_argument(
        "--data",
        default=d.data,
        help="'scenes' for procedural scenes, the path of a COCO instances JSON, or project:NAME for the "
        "annotated images of a clicksam project",
    )
    tp.add_argument(
        "--image-dir", default=None, help="folder of the COCO images (default: the JSON's folder)"
    )
    tp.add_argument("--out", default=d.out_dir, help="run folder for last.pt, log.jsonl, config.json")
    tp.add_argument("--seed", type=int, default=d.seed)
    tp.add_argument("--steps", type=int, default=d.steps)
    tp.add_argument(
        "--time-limit-min", type=float, default=None, help="stop (with a checkpoint) after N minutes"
    )
    tp.add_argument("--lr", type=float, default=d.lr)
    tp.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    tp.add_argument("--weight-decay", type=float, default=d.weight_decay)
    tp.add_argument("--prompts-per-image", type=int, default=d.prompts_per_image)
    tp.add_argument("--max-rounds", type=int, default=d.max_rounds, help="interactive rounds per session")
    tp.add_argument("--first-round-prob", type=float, default=d.first_round_prob)
    tp.add_argument("--box-prob", type=float, default=d.box_prob)
    tp.add_argument("--freeze-image-encoder", action="store_true", help="train prompt encoder + decoder only")
    tp.add_argument(
        "--iou-head-only",
        action="store_true",
        help="train only the IoU head (masks unchanged): calibrates which candidate is shown first",
    )
    tp.add_argument("--checkpoint-every-s", type=float, default=d.checkpoint_every_s)
    tp.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads (default 1)")
    tp.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the forward passes")
    tp.add_argument(
        "--train-image-size",
        type=int,
        default=None,
        help="train at this input size (e.g. 512; default native)",
    )
    tp.add_argument("--focal-weight", type=float, default=d.focal_weight, help="focal:dice weight (SAM: 20)")
    tp.add_argument(
        "--focal-ramp-steps", type=int, default=d.focal_ramp_steps, help="ramp the focal weight up from 0"
    )
    tp.add_argument(
        "--aligned-init",
        action="store_true",
        help="from scratch: tied q/k init of the decoder cross attentions",
    )
    tp.add_argument(
        "--group-loss-weight",
        type=float,
        default=d.group_loss_weight,
        help="weight of the auxiliary embedding grouping loss (helps encoders trained from scratch)",
    )
    tp.add_argument(
        "--native-from-step", type=int, default=None, help="switch back to the native input size at this step"
    )
    tp.add_argument(
        "--scene-long-side", type=int, default=d.scene_long_side, help="procedural scene size (px)"
    )
    tp.add_argument(
        "--large-object-prob",
        type=float,
        default=d.large_object_prob,
        help="chance that a procedural scene's first object is large (0: the generator's own mix)",
    )
    tp.add_argument(
        "--oracle-embedding",
        action="store_true",
        help="diagnostic: train the decoder on ground-truth instance codes instead of the image "
        "encoder's embedding (how fast can the decoder learn with a perfect embedding?)",
    )
    tp.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    tp.add_argument("--export", default=None, help="also write the final weights in fp16 to this .pt file")
    tp.add_argument("--no-progress", action="store_true", help="no progress bar")
    tp.set_defaults(func=_train)

    ep = subparsers.add_parser(
        "eval",
        help="measure interactive segmentation quality (mIoU@1/3/5 clicks, box mIoU, NoC@85/90)",
        description=(
            "Simulate clicks (each at the centre of the larger error region) on a dataset and report "
            "mIoU after 1, 3 and 5 clicks, box mIoU and NoC@85/90 (clicks needed to reach 85/90% IoU, "
            "at most --max-clicks)."
        ),
    )
    ep.add_argument("--model", default="demo", help="registry preset")
    ep.add_argument(
        "--checkpoint", default=None, help="weights (default: the demo model's shipped weights for 'demo')"
    )
    ep.add_argument(
        "--data", default="scenes", help="'scenes' (held-out procedural set) or a COCO instances JSON"
    )
    ep.add_argument("--image-dir", default=None)
    ep.add_argument("--seed", type=int, default=None, help="procedural set seed (default: the held-out seed)")
    ep.add_argument("--images", type=int, default=100, help="number of images")
    ep.add_argument("--max-clicks", type=int, default=20)
    ep.add_argument("--threads", type=int, default=1)
    ep.add_argument(
        "--oracle-embedding",
        action="store_true",
        help="diagnostic: feed the decoder ground-truth instance codes instead of the image embedding "
        "(for checkpoints trained with --oracle-embedding)",
    )
    ep.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    ep.add_argument("--no-progress", action="store_true")
    ep.set_defaults(func=_eval)


def _train(args: argparse.Namespace) -> int:
    from .loop import TrainConfig, Trainer, export_weights

    data, image_dir = args.data, args.image_dir
    if data.startswith("project:"):  # written out as COCO + images in the run folder, then read as any COCO
        from clicksam.server.projects.cli import training_data

        coco, images = training_data(data.removeprefix("project:"), Path(args.out) / "project-data")
        data, image_dir = str(coco), str(images)
    cfg = TrainConfig(
        model=args.model,
        init_checkpoint=args.checkpoint,
        data=data,
        image_dir=image_dir,
        seed=args.seed,
        steps=args.steps,
        time_limit_min=args.time_limit_min,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay,
        prompts_per_image=args.prompts_per_image,
        max_rounds=args.max_rounds,
        first_round_prob=args.first_round_prob,
        box_prob=args.box_prob,
        freeze_image_encoder=args.freeze_image_encoder,
        iou_head_only=args.iou_head_only,
        checkpoint_every_s=args.checkpoint_every_s,
        out_dir=args.out,
        threads=args.threads,
        bf16=args.bf16,
        train_image_size=args.train_image_size,
        native_from_step=args.native_from_step,
        focal_weight=args.focal_weight,
        focal_ramp_steps=args.focal_ramp_steps,
        aligned_init=args.aligned_init,
        group_loss_weight=args.group_loss_weight,
        scene_long_side=args.scene_long_side,
        large_object_prob=args.large_object_prob,
        oracle_embedding=args.oracle_embedding,
        extra={"command": " ".join(["clicksam", *sys.argv[1:]])},
    )
    trainer = Trainer(cfg, resume=args.resume)
    results = trainer.run(progress=not args.no_progress)
    tail = results[-50:]
    if tail:
        logger.info(
            "stopped at step %d: mean loss %.4f, mean IoU %.3f over the last %d steps",
            trainer.step,
            sum(r.loss for r in tail) / len(tail),
            sum(r.iou for r in tail) / len(tail),
            len(tail),
        )
    if args.export:
        path = export_weights(trainer.model, args.export)
        logger.info("wrote fp16 weights to %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return 0


def _eval(args: argparse.Namespace) -> int:
    import torch

    from clicksam.errors import UsageError

    from .evaluate import HELD_OUT_SEED, EvalConfig, evaluate, format_breakdown, format_table
    from .loop import build_model

    if args.images < 1 or args.max_clicks < 1:
        raise UsageError("--images and --max-clicks must be at least 1")
    torch.set_num_threads(args.threads)
    if args.checkpoint is None and args.model == "demo":
        from clicksam.model import build_sam

        model = build_sam("demo")
    else:
        model = build_model(args.model, args.checkpoint)
    cfg = EvalConfig(
        data=args.data,
        image_dir=args.image_dir,
        seed=HELD_OUT_SEED if args.seed is None else args.seed,
        images=args.images,
        max_clicks=args.max_clicks,
        oracle_embedding=args.oracle_embedding,
    )
    metrics = evaluate(model, cfg, progress=not args.no_progress)
    print(format_table(metrics))
    print()
    print(format_breakdown(metrics))
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=2) + "\n")
    return 0
