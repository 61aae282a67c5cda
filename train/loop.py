"""The training loop: SAM's interactive training recipe for any registry model.

One step takes one image, encodes it once, and simulates an interactive session for up to
``prompts_per_image`` of its instances at once (the decoder runs the prompts as a batch on the shared
embedding):

- round 0: a point drawn uniformly inside each object, or (with ``box_prob``) its box with noise;
  a single point is ambiguous, so the decoder gives its three multimask candidates and the mask loss
  is taken on the best of them (the IoU head learns all three);
- rounds 1..: a corrective click drawn from the error region of the previous prediction (positive in
  a missed part, negative in a spilled one), added to the previous prompts, with the previous low-res
  logits fed back as ``mask_input``; the decoder's single-mask output is used.

To fit two shared CPU cores, each step back-propagates through one round only (round 0 with
probability ``first_round_prob``, otherwise one of the later rounds uniformly); the rounds before it
run without gradients, only to produce its clicks and mask input. Loss = 20 * focal + dice on the
256x256 low-res logits + MSE between predicted and actual IoU. AdamW with linear warm-up and cosine
decay; every step is a pure function of ``(seed, step)``, so a resumed run continues the same stream.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from clicksam.errors import UsageError
from clicksam.model import MODEL_CONFIGS, Sam, build_sam
from clicksam.model.build import SamConfig, build_sam_from_config

from .config import TrainConfig
from .data import FramedSample, InstanceSource, frame_sample, instance_codes, masks_to_low_res
from .losses import MaskLosses, grouping_loss, leaf_labels, mask_losses
from .prompts import next_click, noisy_box, sample_point

__all__ = [
    "StepResult",
    "TrainConfig",
    "Trainer",
    "build_model",
    "export_weights",
    "lr_at",
    "set_resolution",
]

logger = logging.getLogger(__name__)


class TrainingError(UsageError, RuntimeError):
    """A training run that cannot start or resume; the message says what to change."""


# the demo preset, used before (or without) its registry entry so a run can always build it
def _demo_config() -> SamConfig:
    from clicksam.model.demo_encoder import DemoEncoderConfig

    return SamConfig("demo", DemoEncoderConfig())


def build_model(name: str, checkpoint: str | Path | None = None, seed: int = 0) -> Sam:
    """A registry model, seeded-random or from ``checkpoint`` (strict load)."""
    if name in MODEL_CONFIGS:
        if checkpoint is not None:
            return build_sam(name, checkpoint=checkpoint)
        return build_sam(name, seed=seed)
    if name == "demo":
        model = build_sam_from_config(_demo_config(), seed=seed)
        if checkpoint is not None:
            from clicksam.model.build import load_checkpoint

            load_checkpoint(model, checkpoint, model_name=name)
        return model
    raise TrainingError(f"unknown model {name!r}; choose one of {', '.join([*MODEL_CONFIGS, 'demo'])}")


def set_resolution(model: Sam, image_size: int) -> None:
    """Make ``model`` run at another input size (in place); only sizes change, never weights.

    The image encoder is convolutional / windowed and the decoder's positional encoding takes
    coordinates normalised by the input size, so the same weights serve every multiple of the
    embedding stride. Sets ``image_size``, the prompt encoder's ``input_image_size``,
    ``image_embedding_size`` (image_size / 16) and ``mask_input_size`` (4x the grid).
    """
    if getattr(model.image_encoder, "pos_embed", None) is not None and image_size != model.image_size:
        # a ViT's absolute position embedding has one fixed grid: only convolutional encoders resize
        raise TrainingError(
            "this model's image encoder has a fixed-size position embedding; train it at its size"
        )
    grid0 = model.prompt_encoder.image_embedding_size[0]
    stride = model.image_size // grid0
    if image_size % stride:
        raise TrainingError(f"image size {image_size} must be a multiple of the embedding stride {stride}")
    grid = image_size // stride
    model.image_size = image_size
    model.prompt_encoder.input_image_size = (image_size, image_size)
    model.prompt_encoder.image_embedding_size = (grid, grid)
    model.prompt_encoder.mask_input_size = (4 * grid, 4 * grid)


def align_cross_attention(model: Sam, gain: float = 2.0, content_scale: float = 0.25) -> None:
    """A from-scratch initialisation in which a prompt attends to its own position from step 0.

    Queries and keys of SAM's decoder cross attentions are (content + positional encoding). With tied
    query/key projections (a scaled orthogonal matrix) the attention logits contain PE(point) . PE(pixel),
    which peaks where the pixel is the clicked position, so a click reads the image content under it
    before anything is learned; with random projections that alignment has to be learned first, which
    takes far more steps than a CPU budget allows. ``content_scale`` shrinks the initial prompt label
    embeddings and the image embedding's output scale so the positional term dominates at first.
    Only initial values change; shapes and modules are the standard ones.
    """
    transformer = model.mask_decoder.transformer
    attns = [transformer.final_attn_token_to_image]
    for layer in transformer.layers:
        attns += [layer.cross_attn_token_to_image, layer.cross_attn_image_to_token]
    with torch.no_grad():
        for attn in attns:
            weight = torch.empty_like(attn.q_proj.weight)
            torch.nn.init.orthogonal_(weight, gain=gain)
            attn.q_proj.weight.copy_(weight)
            attn.k_proj.weight.copy_(weight)
            attn.q_proj.bias.zero_()
            attn.k_proj.bias.zero_()
        for emb in model.prompt_encoder.point_embeddings:
            emb.weight.mul_(content_scale)
        neck = getattr(model.image_encoder, "neck", None)
        last = neck[-1] if isinstance(neck, torch.nn.Sequential) else None
        last_weight = getattr(last, "weight", None)
        if isinstance(last_weight, torch.Tensor):
            last_weight.mul_(content_scale)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """LR of ``step`` (0-based): linear warm-up to ``lr``, then cosine decay to ``min_lr_ratio * lr``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def export_weights(model: Sam, path: str | Path) -> Path:
    """Save the model's state dict in fp16 (the form shipped in the package); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.detach().half() if v.is_floating_point() else v.detach()) for k, v in model.state_dict().items()
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    return path


@dataclass
class StepResult:
    """What one training step measured."""

    step: int
    loss: float
    focal: float
    dice: float
    iou_mse: float
    iou: float
    group: float
    round: int
    lr: float
    seconds: float


def make_source(cfg: TrainConfig) -> InstanceSource:
    """The training data of ``cfg``: procedural scenes or a COCO file."""
    if cfg.data == "scenes":
        from .scenes import ProceduralScenes, SceneConfig

        scenes = SceneConfig(long_side=cfg.scene_long_side, large_object_prob=cfg.large_object_prob)
        return ProceduralScenes(cfg.seed, scenes)
    from .coco import CocoInstances

    return CocoInstances(cfg.data, cfg.image_dir)


class Trainer:
    """Runs :class:`TrainConfig`; ``run()`` trains to the end (or the time limit) with checkpoints."""

    def __init__(self, cfg: TrainConfig, source: InstanceSource | None = None, resume: bool = False) -> None:
        if cfg.prompts_per_image < 1 or cfg.max_rounds < 1 or cfg.steps < 1:
            raise TrainingError("prompts_per_image, max_rounds and steps must all be >= 1")
        self.cfg = cfg
        torch.set_num_threads(cfg.threads)
        self.out_dir = Path(cfg.out_dir)
        self.source = source if source is not None else make_source(cfg)
        self.model = build_model(cfg.model, cfg.init_checkpoint, seed=cfg.seed)
        if cfg.aligned_init and cfg.init_checkpoint is None and not resume:
            align_cross_attention(self.model)
        self.model.train()
        self.native_size = self.model.image_size
        self.source_is_default = source is None
        if cfg.train_image_size is not None:
            set_resolution(self.model, cfg.train_image_size)
        if cfg.freeze_image_encoder or cfg.oracle_embedding:
            self.model.image_encoder.requires_grad_(False)
            self.model.image_encoder.eval()
        if cfg.iou_head_only:
            self.model.requires_grad_(False)
            self.model.mask_decoder.iou_prediction_head.requires_grad_(True)
        decay: list[torch.nn.Parameter] = []
        no_decay: list[torch.nn.Parameter] = []
        for _, p in self.model.named_parameters():
            if p.requires_grad:
                (decay if p.ndim >= 2 else no_decay).append(p)
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr,
            betas=(0.9, 0.999),
        )
        self.step = 0
        if resume:
            self._load(self.out_dir / "last.pt")
        self._update_frames()
        if cfg.native_from_step is not None and self.step >= cfg.native_from_step:
            self._go_native()

    def _update_frames(self) -> None:
        self.low_res = self.model.prompt_encoder.mask_input_size[0]
        self.image_size = self.model.image_size
        # low-res pixel -> resized-input frame, the same scaling apply_coords gives a scene's pixel
        self.frame_scale = self.image_size / self.low_res

    def _go_native(self) -> None:
        """Switch a reduced-resolution run to the model's native input size (and scenes to match)."""
        if self.model.image_size == self.native_size:
            return
        factor = self.native_size / self.model.image_size
        set_resolution(self.model, self.native_size)
        if self.source_is_default and self.cfg.data == "scenes":
            from .scenes import ProceduralScenes, SceneConfig

            long_side = round(self.cfg.scene_long_side * factor)
            self.source = ProceduralScenes(self.cfg.seed, SceneConfig(long_side=long_side))
        self._update_frames()
        logger.info("step %d: training at the native input size %d from now on", self.step, self.native_size)

    # ------------------------------------------------------------------ checkpoints

    def save(self, path: Path | None = None) -> Path:
        """Write model + optimiser + step atomically (default ``out_dir/last.pt``)."""
        path = path or self.out_dir / "last.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "config": json.dumps(asdict(self.cfg)),
        }
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(path)
        return path

    def _load(self, path: Path) -> None:
        if not path.is_file():
            raise TrainingError(f"cannot resume: {path} does not exist (start without --resume)")
        state = torch.load(path, map_location="cpu", weights_only=True)
        saved = json.loads(state["config"])
        for key in ("model", "data", "seed", "prompts_per_image"):
            if saved.get(key) != getattr(self.cfg, key):
                raise TrainingError(
                    f"cannot resume {path}: it was trained with {key}={saved.get(key)!r}, not "
                    f"{getattr(self.cfg, key)!r}"
                )
        self.model.load_state_dict(state["model"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        logger.info("resumed %s at step %d", path, self.step)

    # ------------------------------------------------------------------ one step

    def _sample(
        self, rng: np.random.Generator
    ) -> tuple[FramedSample, tuple[torch.Tensor, torch.Tensor] | None, torch.Tensor | None] | None:
        """The step's image and objects in the model's frames, the embedding cells' leaf-part labels
        for the grouping loss (None when it is off) and the ground-truth embedding (None unless
        ``oracle_embedding``); None when no instance is usable."""
        n = len(self.source)
        index = self.step if self.cfg.data == "scenes" else int(rng.integers(n))
        item = self.source[index % n]
        masks = item.masks
        if masks.shape[0] == 0:
            return None
        k = min(self.cfg.prompts_per_image, masks.shape[0])
        # larger objects more often (p ~ sqrt(area)): small parts stay in the mix, but most targets
        # are big enough that "all background" is never a good answer
        weights = np.sqrt(masks.reshape(masks.shape[0], -1).sum(1).astype(np.float64)) + 1.0
        chosen = np.sort(rng.choice(masks.shape[0], size=k, replace=False, p=weights / weights.sum()))
        framed = frame_sample(item.image, masks[chosen], self.image_size, self.low_res)
        # an instance can vanish when a large image is brought down to the low-res frame
        keep = framed.masks.flatten(1).sum(1) > 0
        if not bool(keep.any()):
            return None
        framed.masks = framed.masks[keep]
        framed.original_masks = framed.original_masks[keep.numpy()]
        # the grouping loss trains the encoder, which an oracle embedding replaces
        grouping = self.cfg.group_loss_weight > 0 and not self.cfg.oracle_embedding
        cells = self._cell_labels(masks, framed.original_size) if grouping else None
        oracle = None
        if self.cfg.oracle_embedding:
            grid = self.model.prompt_encoder.image_embedding_size[0]
            oracle = instance_codes(masks, framed.original_size, self.image_size, grid, rng)
        return framed, cells, oracle

    def _cell_labels(
        self, masks: np.ndarray, original_size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Leaf-part label of each embedding cell and which cells are usable (on the image, one part)."""
        leaf = leaf_labels(masks)
        onehot = leaf[None] == np.arange(masks.shape[0] + 1)[:, None, None]
        grid = self.model.prompt_encoder.image_embedding_size[0]
        cells, on_image = masks_to_low_res(onehot, original_size, self.image_size, grid)
        cells = cells[:, 0]  # (K + 1, G, G) majority vote per cell
        return cells.argmax(0), on_image & (cells.sum(0) > 0)

    def _decode(
        self,
        embedding: torch.Tensor,
        coords: torch.Tensor | None,
        labels: torch.Tensor | None,
        boxes: torch.Tensor | None,
        mask_input: torch.Tensor | None,
        multimask: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        points = (coords, labels) if coords is not None and labels is not None else None
        sparse, dense = self.model.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        logits, iou_pred = self.model.mask_decoder(
            image_embeddings=embedding,
            image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )
        return logits, iou_pred

    def train_step(self) -> StepResult | None:
        """One optimiser step; None when the drawn image had no usable instance (the step still counts)."""
        cfg = self.cfg
        if cfg.native_from_step is not None and self.step == cfg.native_from_step:
            self._go_native()
        start = time.perf_counter()
        rng = np.random.default_rng([cfg.seed, 0x7EA1, self.step])
        lr = lr_at(self.step, cfg)
        drawn = self._sample(rng)
        if drawn is None:
            self.step += 1
            return None
        sample, cells, oracle = drawn
        targets = sample.masks  # (P, 1, L, L)
        gt = targets[:, 0].numpy() > 0.5
        valid = sample.valid.numpy()
        p = targets.shape[0]
        graded = (
            0
            if (cfg.max_rounds == 1 or rng.random() < cfg.first_round_prob)
            else int(rng.integers(1, cfg.max_rounds))
        )

        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16)
        train_encoder = not (cfg.freeze_image_encoder or cfg.iou_head_only or cfg.oracle_embedding)
        if oracle is not None:
            embedding = oracle
        else:
            with torch.set_grad_enabled(train_encoder), autocast:
                embedding = self.model.image_encoder(self.model.preprocess(sample.image))  # (1, 256, 64, 64)
        group_loss = embedding.new_zeros(()).float()
        if cells is not None and train_encoder:
            group_loss = grouping_loss(embedding[0], *cells)

        # first prompt: the same kind for all P objects, so their prompts batch into one decoder call
        use_box = rng.random() < cfg.box_prob
        coords: torch.Tensor | None = None
        labels: torch.Tensor | None = None
        boxes: torch.Tensor | None = None
        if use_box:
            box_list = [noisy_box(rng, gt[i], frame_scale=self.frame_scale) for i in range(p)]
            boxes = torch.from_numpy(np.stack([b for b in box_list if b is not None])) * self.frame_scale
        else:
            pts = [sample_point(rng, gt[i]) for i in range(p)]
            coords = torch.tensor([[pt] for pt in pts], dtype=torch.float32) * self.frame_scale  # (P, 1, 2)
            labels = torch.ones((p, 1), dtype=torch.int)
        mask_input: torch.Tensor | None = None
        result: MaskLosses | None = None
        for rnd in range(graded + 1):
            multimask = rnd == 0 and not use_box
            with torch.set_grad_enabled(rnd == graded), autocast:
                emb = embedding if rnd == graded else embedding.detach()
                logits, iou_pred = self._decode(emb, coords, labels, boxes, mask_input, multimask)
            logits, iou_pred = logits.float(), iou_pred.float()
            if rnd == graded:
                result = mask_losses(logits, targets, iou_pred)
                break
            # feed back the candidate the user would see (highest predicted IoU), then click on its errors
            best = iou_pred.argmax(dim=1)
            chosen = logits[torch.arange(p), best][:, None].detach()  # (P, 1, L, L)
            mask_input = chosen
            pred = (chosen[:, 0] > self.model.mask_threshold).numpy() & valid
            new_xy, new_label = [], []
            for i in range(p):
                click = next_click(rng, pred[i], gt[i], mode="sample")
                if click is None:  # already exact: a padding point keeps the batch rectangular
                    new_xy.append((0.0, 0.0))
                    new_label.append(-1)
                else:
                    new_xy.append((click.x * self.frame_scale, click.y * self.frame_scale))
                    new_label.append(click.label)
            xy = torch.tensor(new_xy, dtype=torch.float32)[:, None]
            lab = torch.tensor(new_label, dtype=torch.int)[:, None]
            coords = xy if coords is None else torch.cat([coords, xy], dim=1)
            labels = lab if labels is None else torch.cat([labels, lab], dim=1)
        assert result is not None
        # best-of-candidates mask loss for the ambiguous round, the IoU head on every candidate
        ramp = 1.0 if cfg.focal_ramp_steps <= 0 else min(1.0, self.step / cfg.focal_ramp_steps)
        weighted = cfg.focal_weight * ramp * result.focal + result.dice
        mask_term, best_idx = weighted.min(dim=1)
        loss = mask_term.mean() + result.iou_mse.mean() + cfg.group_loss_weight * group_loss
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        pick = torch.arange(p)
        out = StepResult(
            step=self.step,
            loss=float(loss.detach()),
            focal=float(result.focal.detach()[pick, best_idx].mean()),
            dice=float(result.dice.detach()[pick, best_idx].mean()),
            iou_mse=float(result.iou_mse.mean().detach()),
            iou=float(result.iou[pick, best_idx].mean()),
            group=float(group_loss.detach()),
            round=graded,
            lr=lr,
            seconds=time.perf_counter() - start,
        )
        self.step += 1
        return out

    # ------------------------------------------------------------------ the run

    def run(self, progress: bool = True) -> list[StepResult]:
        """Train until ``cfg.steps`` (or the time limit); checkpoints to ``out_dir/last.pt``."""
        from tqdm import tqdm

        cfg = self.cfg
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
        log = (self.out_dir / "log.jsonl").open("a")
        results: list[StepResult] = []
        started = last_save = time.monotonic()
        ema: dict[str, float] = {}
        bar = tqdm(
            total=cfg.steps, initial=self.step, disable=not progress, dynamic_ncols=True, mininterval=5
        )
        try:
            while self.step < cfg.steps:
                res = self.train_step()
                bar.update(1)
                if res is not None:
                    results.append(res)
                    log.write(json.dumps(asdict(res)) + "\n")
                    key = "iou0" if res.round == 0 else "iouN"
                    for name, value in (("loss", res.loss), (key, res.iou)):
                        ema[name] = value if name not in ema else 0.95 * ema[name] + 0.05 * value
                    bar.set_postfix({k: f"{v:.3f}" for k, v in ema.items()}, refresh=False)
                now = time.monotonic()
                if now - last_save >= cfg.checkpoint_every_s:
                    log.flush()
                    self.save()
                    last_save = now
                if cfg.time_limit_min is not None and now - started >= cfg.time_limit_min * 60:
                    logger.info("time limit of %.1f min reached at step %d", cfg.time_limit_min, self.step)
                    break
        finally:
            bar.close()
            log.close()
            self.save()
        return results
