"""The shipped demo model: loads by default, is small, and a click really selects the clicked object."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from clicksam.model import SamPredictor, build_sam
from clicksam.model.build import DEMO_WEIGHTS
from clicksam.train.evaluate import HELD_OUT_SEED
from clicksam.train.prompts import distance_to_boundary
from clicksam.train.scenes import ProceduralScenes

ROOT = Path(__file__).resolve().parents[2]


def test_demo_weights_are_shipped_fp16_and_small() -> None:
    assert DEMO_WEIGHTS == ROOT / "model" / "weights" / "demo.pt"
    assert DEMO_WEIGHTS.stat().st_size < 20_000_000
    state = torch.load(DEMO_WEIGHTS, map_location="cpu", weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    meta = json.loads((ROOT / "model" / "weights" / "demo.json").read_text())
    assert meta["model"] == "demo" and "clicksam train" in meta["command"]
    assert {"miou@1", "miou@5", "box_miou", "noc@90"} <= set(meta["metrics"])


def test_build_sam_demo_loads_the_shipped_weights() -> None:
    model = build_sam("demo")
    state = torch.load(DEMO_WEIGHTS, map_location="cpu", weights_only=True)
    for key in ("mask_decoder.iou_token.weight", "image_encoder.coord_proj.weight"):
        torch.testing.assert_close(model.state_dict()[key], state[key].float())
    emb = model.image_encoder(model.preprocess(torch.zeros(1, 3, 1024, 768)))
    assert tuple(emb.shape) == (1, 256, 64, 64)


@pytest.mark.slow
def test_a_click_selects_the_clicked_object() -> None:
    """On held-out scenes, a click at an object's centre gives a mask that overlaps that object most."""
    predictor = SamPredictor(build_sam("demo"))
    scenes = ProceduralScenes(HELD_OUT_SEED)
    hits, total, ious = 0, 0, []
    for index in (1, 2, 3):
        scene = scenes[index]
        predictor.set_image(scene.image)
        areas = scene.masks.reshape(len(scene.masks), -1).sum(1)
        for k in np.argsort(-areas)[:2]:  # the two largest objects of each scene
            d = distance_to_boundary(scene.masks[k])
            y, x = np.unravel_index(int(d.argmax()), d.shape)
            masks, scores, _ = predictor.predict(np.array([[x, y]]), np.array([1]))
            mask = masks[int(scores.argmax())]
            overlap = [(mask & m).sum() / max(1, (mask | m).sum()) for m in scene.masks]
            hits += int(np.argmax(overlap) == k or overlap[k] > 0.5)
            ious.append(overlap[k])
            total += 1
    assert hits >= total - 1, (hits, total, ious)
    assert float(np.mean(ious)) > MIN_CLICK_IOU, ious


# the shipped weights (2026-11-24, global-attention encoder) give a mean IoU of 0.56 on this check
# (six clicks: 0.16-0.80); the conv-only model before them gave 0.42, the first demo model about 0.25
MIN_CLICK_IOU = 0.45
