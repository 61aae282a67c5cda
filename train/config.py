"""The settings of a training run (a plain dataclass: no torch, so ``clicksam --help`` stays fast)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in its checkpoints and in ``demo.json``).

    Attributes:
        model: registry preset name (``demo``, ``vit_t``, ``vit_b``, ...).
        init_checkpoint: weights to start from (fine-tuning), or None for a seeded random init.
        data: ``"scenes"`` for procedural scenes, or the path of a COCO instances JSON.
        image_dir: folder of the COCO images (default: the JSON's folder).
        seed: seeds the model init and every step's randomness.
        steps: optimiser steps; the cosine schedule spans them.
        time_limit_min: stop early (with a checkpoint) after this many minutes; None for no limit.
        lr: peak learning rate (AdamW).
        min_lr_ratio: final learning rate as a fraction of ``lr``.
        warmup_steps: linear warm-up length.
        weight_decay: AdamW weight decay on matrices and conv kernels.
        grad_clip: max global gradient norm.
        prompts_per_image: objects prompted in parallel on one image embedding.
        max_rounds: interactive rounds per simulated session (first prompt + corrective clicks).
        first_round_prob: chance that the trained round is the first prompt.
        box_prob: chance that the first prompt is a box rather than a point.
        freeze_image_encoder: train only the prompt encoder and mask decoder.
        iou_head_only: train only the IoU prediction head (everything else frozen, so the masks do
            not change): a short final phase that calibrates which of the three candidates the page
            shows first.
        checkpoint_every_s: seconds between checkpoints.
        out_dir: where ``last.pt`` and ``log.jsonl`` go.
        scene_long_side: long side of procedural scenes in pixels.
        large_object_prob: chance that a procedural scene's first object is large
            (:class:`~clicksam.train.scenes.SceneConfig`; 0 keeps the generator's own mix, which is
            also the held-out evaluation set's).
        threads: torch CPU threads.
        bf16: run forward passes under bfloat16 autocast (about 25% faster on CPUs with AVX512-BF16;
            weights, optimiser and losses stay float32).
        train_image_size: train at this input size instead of the model's own (e.g. 512 for a 1024
            model: a 32x32 embedding grid and 128x128 low-res masks, about 4x cheaper per step); the
            weights do not depend on it (progressive resizing: finish at the native size).
        native_from_step: from this step on, train at the model's native size again (and procedural
            scenes at ``native / train_image_size`` times their long side), so a run that starts small
            finishes where the model is used.
        focal_weight: weight of the focal term against dice (SAM: 20).
        focal_ramp_steps: ramp the focal weight linearly from 0 to ``focal_weight`` over this many
            steps (0: SAM's fixed 20:1 from the start). Training from scratch, the 20x focal term
            first drives every pixel to "background", a state the weak dice gradient escapes slowly;
            a dice-led start avoids it.
        aligned_init: for a model trained from scratch, start the decoder's image<->token cross
            attentions with tied query/key projections (see :func:`align_cross_attention`).
        group_loss_weight: weight of the auxiliary grouping loss on the image embedding
            (:func:`~clicksam.train.losses.grouping_loss`; 0 = SAM's losses only). It helps an
            encoder trained from scratch; pointless with a frozen or pre-trained encoder.
        oracle_embedding: a diagnostic, not a way to train a usable model: the image encoder's output
            is replaced by ground-truth instance codes (:func:`~clicksam.train.data.instance_codes`)
            and only the prompt encoder and decoder train on them, which shows how fast the decoder
            learns when the embedding separates every object perfectly.
    """

    model: str = "demo"
    init_checkpoint: str | None = None
    data: str = "scenes"
    image_dir: str | None = None
    seed: int = 0
    steps: int = 1000
    time_limit_min: float | None = None
    lr: float = 6e-4
    min_lr_ratio: float = 0.02
    warmup_steps: int = 50
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    prompts_per_image: int = 4
    max_rounds: int = 6
    first_round_prob: float = 0.4
    box_prob: float = 0.5
    freeze_image_encoder: bool = False
    iou_head_only: bool = False
    checkpoint_every_s: float = 180.0
    out_dir: str = "runs/train"
    scene_long_side: int = 256
    large_object_prob: float = 0.0
    threads: int = 1
    bf16: bool = False
    train_image_size: int | None = None
    native_from_step: int | None = None
    focal_weight: float = 20.0
    focal_ramp_steps: int = 0
    aligned_init: bool = False
    group_loss_weight: float = 0.0
    oracle_embedding: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
