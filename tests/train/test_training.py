"""A short training run lowers the loss; checkpoints resume; weights export; eval and CLI run end to end."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from clicksam.cli import main
from clicksam.model import Sam
from clicksam.train.data import frame_sample
from clicksam.train.evaluate import AREA_BUCKETS, EvalConfig, _noc, evaluate, format_breakdown, format_table
from clicksam.train.loop import (
    StepResult,
    TrainConfig,
    Trainer,
    build_model,
    export_weights,
    lr_at,
    set_resolution,
)
from clicksam.train.losses import mask_losses
from clicksam.train.prompts import distance_to_boundary
from clicksam.train.scenes import ProceduralScenes, Scene, SceneConfig


class OneScene:
    """A data source that always returns the same scene (to overfit it)."""

    def __init__(self, scene: Scene) -> None:
        self.scene = scene

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> Scene:
        return self.scene


def _scene() -> Scene:
    cfg = SceneConfig(long_side=256, min_objects=3, max_objects=3, composite_prob=0.0)
    return ProceduralScenes(seed=5, config=cfg)[0]


def _short_run(out_dir: Path, **changes: Any) -> TrainConfig:
    """A two-step ``vit_test`` run (two prompts per image, one click round) writing to ``out_dir``."""
    base = TrainConfig(model="vit_test", steps=2, prompts_per_image=2, max_rounds=1, out_dir=str(out_dir))
    return dataclasses.replace(base, **changes)


@torch.no_grad()
def _fixed_loss(model: Sam, scene: Scene) -> float:
    """Round-0 loss for a click at the centre of each object, with fixed weights (a deterministic probe)."""
    model.eval()
    sample = frame_sample(scene.image, scene.masks)
    emb = model.image_encoder(model.preprocess(sample.image))
    gt = sample.masks[:, 0].numpy() > 0.5
    pts = []
    for m in gt:
        d = distance_to_boundary(m)
        y, x = np.unravel_index(int(d.argmax()), d.shape)
        pts.append([[x * 4.0, y * 4.0]])
    coords = torch.tensor(pts)
    sparse, dense = model.prompt_encoder(
        points=(coords, torch.ones(len(pts), 1, dtype=torch.int)), boxes=None, masks=None
    )
    logits, iou_pred = model.mask_decoder(
        image_embeddings=emb,
        image_pe=model.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=True,
    )
    terms = mask_losses(logits, sample.masks, iou_pred)
    model.train()
    return float(terms.mask.min(dim=1).values.mean() + terms.iou_mse.mean())


@pytest.mark.slow
def test_short_training_run_lowers_the_loss(tmp_path: Path) -> None:
    scene = _scene()
    cfg = TrainConfig(
        model="vit_test",
        seed=0,
        steps=14,
        lr=2e-3,
        warmup_steps=2,
        prompts_per_image=3,
        max_rounds=2,
        out_dir=str(tmp_path / "run"),
        checkpoint_every_s=1e9,
    )
    trainer = Trainer(cfg, source=OneScene(scene))
    before = _fixed_loss(trainer.model, scene)
    results = trainer.run(progress=False)
    after = _fixed_loss(trainer.model, scene)
    assert len(results) == 14
    assert after < 0.9 * before, (before, after)
    assert all(np.isfinite(r.loss) for r in results)
    assert {r.round for r in results} == {0, 1}
    # the run left a resumable checkpoint and a log
    assert (tmp_path / "run" / "last.pt").is_file()
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 14


def test_steps_are_reproducible_and_resume(tmp_path: Path) -> None:
    scene = _scene()
    cfg = _short_run(tmp_path / "a", steps=3, max_rounds=2)
    a = Trainer(cfg, source=OneScene(scene))
    ra = [a.train_step() for _ in range(2)]
    a.save()
    b = Trainer(TrainConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "b")}), source=OneScene(scene))
    rb = [b.train_step() for _ in range(2)]
    assert [r.loss for r in ra if r] == pytest.approx([r.loss for r in rb if r], rel=1e-5)
    # resume continues at the saved step with the saved weights
    c = Trainer(cfg, source=OneScene(scene), resume=True)
    assert c.step == 2
    for k, v in a.model.state_dict().items():
        torch.testing.assert_close(c.model.state_dict()[k], v)
    with pytest.raises(RuntimeError, match="does not exist"):
        Trainer(
            TrainConfig(model="vit_test", out_dir=str(tmp_path / "none")), source=OneScene(scene), resume=True
        )
    other = TrainConfig(**{**cfg.__dict__, "seed": 1})
    with pytest.raises(RuntimeError, match="seed"):
        Trainer(other, source=OneScene(scene), resume=True)


def test_grouping_loss_enters_the_step_only_when_asked(tmp_path: Path) -> None:
    scene = _scene()
    base = _short_run(tmp_path / "a")
    plain = Trainer(base, source=OneScene(scene)).train_step()
    grouped_cfg = TrainConfig(**{**base.__dict__, "group_loss_weight": 1.0, "out_dir": str(tmp_path / "b")})
    grouped = Trainer(grouped_cfg, source=OneScene(scene)).train_step()
    assert plain is not None and grouped is not None
    assert plain.group == 0.0
    assert grouped.group > 0.0  # random embeddings do not already group the scene's parts
    # same seed, same draw: the mask losses agree, the total differs by the weighted grouping term
    assert grouped.focal == pytest.approx(plain.focal, rel=1e-5)
    assert grouped.loss == pytest.approx(plain.loss + grouped.group, rel=1e-4)


def _step_moves_the_decoder_only(trainer: Trainer) -> StepResult | None:
    """One step; the image encoder's weights stay, the mask decoder's move."""
    enc_before = {k: v.clone() for k, v in trainer.model.image_encoder.state_dict().items()}
    dec_before = {k: v.clone() for k, v in trainer.model.mask_decoder.state_dict().items()}
    result = trainer.train_step()
    for k, v in trainer.model.image_encoder.state_dict().items():
        torch.testing.assert_close(v, enc_before[k])
    assert any(not torch.equal(v, dec_before[k]) for k, v in trainer.model.mask_decoder.state_dict().items())
    return result


def test_frozen_encoder_does_not_move(tmp_path: Path) -> None:
    cfg = _short_run(tmp_path, freeze_image_encoder=True)
    _step_moves_the_decoder_only(Trainer(cfg, source=OneScene(_scene())))


def test_iou_head_only_moves_nothing_else(tmp_path: Path) -> None:
    cfg = _short_run(tmp_path, iou_head_only=True)
    trainer = Trainer(cfg, source=OneScene(_scene()))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert trainer.train_step() is not None
    moved = {k for k, v in trainer.model.state_dict().items() if not torch.equal(v, before[k])}
    assert moved, "the IoU head did not train"
    assert all(k.startswith("mask_decoder.iou_prediction_head.") for k in moved), moved


def test_oracle_embedding_trains_the_decoder_without_running_the_encoder(tmp_path: Path) -> None:
    cfg = _short_run(tmp_path, oracle_embedding=True, group_loss_weight=1.0)
    trainer = Trainer(cfg, source=OneScene(_scene()))

    def refuse(*_: object) -> None:
        raise AssertionError("the image encoder ran")

    trainer.model.image_encoder.forward = refuse  # type: ignore[method-assign]
    result = _step_moves_the_decoder_only(trainer)
    assert result is not None and result.group == 0.0 and np.isfinite(result.loss)


def test_lr_schedule_warms_up_and_decays() -> None:
    cfg = TrainConfig(steps=100, warmup_steps=10, lr=1e-3, min_lr_ratio=0.1)
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in itertools.pairwise(lrs[9:]))
    assert lrs[-1] == pytest.approx(1e-4, rel=0.01)


def test_fp16_export_loads_back_strictly(tmp_path: Path) -> None:
    model = build_model("vit_test", seed=0)
    path = export_weights(model, tmp_path / "w.pt")
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    loaded = build_model("vit_test", checkpoint=path)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v, atol=2e-3, rtol=1e-3)


def test_noc_and_eval_table() -> None:
    ious = np.array([[0.5, 0.86, 0.95], [0.2, 0.3, 0.4], [0.91, 0.92, 0.93]])
    assert _noc(ious, 0.85, 3) == pytest.approx((2 + 3 + 1) / 3)
    assert _noc(ious, 0.90, 3) == pytest.approx((3 + 3 + 1) / 3)
    metrics = evaluate(build_model("vit_test", seed=0), EvalConfig(images=1, max_clicks=3, seed=123))
    assert metrics["instances"] >= 1 and metrics["max_clicks"] == 3
    for key in ("miou@1", "miou@3", "miou@5", "box_miou"):
        assert 0.0 <= float(metrics[key]) <= 1.0
    assert 1.0 <= float(metrics["noc@90"]) <= 3.0
    # the first click shows one of the three candidates: the best of them can only be as good or better
    assert metrics["miou@1"] <= metrics["oracle@1"] <= 1.0
    assert "| miou@1 |" in format_table(metrics) and "| oracle@1 |" in format_table(metrics)
    # the size breakdown covers every instance once, and its means recombine to the overall ones
    by_area = metrics["by_area"]
    assert set(by_area) <= {name for name, _, _ in AREA_BUCKETS}
    assert sum(m["instances"] for m in by_area.values()) == metrics["instances"]
    weighted = sum(m["miou@1"] * m["instances"] for m in by_area.values()) / metrics["instances"]
    assert weighted == pytest.approx(metrics["miou@1"])
    table = format_breakdown(metrics)
    assert all(name in table for name in by_area)


def test_eval_with_oracle_embedding_ignores_the_pixels() -> None:
    scene = _scene()
    blank = Scene(**{**scene.__dict__, "image": np.zeros_like(scene.image)})
    model = build_model("vit_test", seed=0)
    cfg = EvalConfig(images=1, max_clicks=2)

    def run(s: Scene, oracle: bool) -> dict[str, float]:
        m = evaluate(model, EvalConfig(**{**cfg.__dict__, "oracle_embedding": oracle}), source=OneScene(s))
        return {k: m[k] for k in ("miou@1", "miou@3", "box_miou", "oracle@1")}

    # the decoder sees the ground-truth codes, not the image: blanking the pixels changes nothing
    assert run(scene, True) == run(blank, True)
    assert run(scene, False) != run(blank, False)
    assert evaluate(model, EvalConfig(images=1, max_clicks=2, oracle_embedding=True), OneScene(scene))[
        "oracle_embedding"
    ]


@pytest.mark.slow
def test_cli_train_then_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--model",
            "vit_test",
            "--steps",
            "2",
            "--prompts-per-image",
            "2",
            "--out",
            str(out),
            "--export",
            str(tmp_path / "w.pt"),
            "--no-progress",
        ]
    )
    assert code == 0 and (tmp_path / "w.pt").is_file()
    assert json.loads((out / "config.json").read_text())["model"] == "vit_test"
    code = main(
        [
            "eval",
            "--model",
            "vit_test",
            "--checkpoint",
            str(tmp_path / "w.pt"),
            "--images",
            "1",
            "--max-clicks",
            "2",
            "--json",
            str(tmp_path / "m.json"),
            "--no-progress",
        ]
    )
    assert code == 0
    assert "miou@1" in capsys.readouterr().out
    assert set(json.loads((tmp_path / "m.json").read_text())) >= {"miou@1", "box_miou", "noc@90"}
    assert main(["train", "--model", "nope", "--out", str(out), "--steps", "1"]) == 2


def test_training_at_a_reduced_resolution_keeps_the_weights_interchangeable(tmp_path: Path) -> None:
    """Progressive resizing: a step at 512 input, then the same weights run at the native 1024."""
    cfg = _short_run(tmp_path, model="demo", train_image_size=512, native_from_step=1, scene_long_side=128)
    trainer = Trainer(cfg)
    assert trainer.low_res == 128 and trainer.model.prompt_encoder.image_embedding_size == (32, 32)
    res = trainer.train_step()
    assert res is None or np.isfinite(res.loss)
    trainer.train_step()  # step 1 switches to the native size, scenes included
    assert trainer.low_res == 256 and trainer.image_size == 1024
    path = export_weights(trainer.model, tmp_path / "w.pt")
    native = build_model("demo", checkpoint=path)
    assert native.image_size == 1024
    emb = native.image_encoder(native.preprocess(torch.zeros(1, 3, 1024, 1024)))
    assert tuple(emb.shape) == (1, 256, 64, 64)
    with pytest.raises(RuntimeError, match="fixed-size position embedding"):
        set_resolution(build_model("vit_test", seed=0), 512)
