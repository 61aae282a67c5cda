"""Procedural scenes: seeded, varied, with consistent instance masks and a part hierarchy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clicksam.train.data import frame_sample, instance_codes, masks_to_low_res
from clicksam.train.scenes import ProceduralScenes, SceneConfig


def test_scenes_are_a_pure_function_of_seed_and_index() -> None:
    a, b = ProceduralScenes(seed=7), ProceduralScenes(seed=7)
    for i in (0, 5, 123456):
        sa, sb = a[i], b[i]
        np.testing.assert_array_equal(sa.image, sb.image)
        np.testing.assert_array_equal(sa.masks, sb.masks)
    other = ProceduralScenes(seed=8)[0]
    assert other.image.shape != a[0].image.shape or not np.array_equal(other.image, a[0].image)
    with pytest.raises(IndexError):
        a[-1]
    with pytest.raises(ValueError):
        ProceduralScenes(seed=-1)


def test_scene_contents() -> None:
    scenes = ProceduralScenes(seed=11, config=SceneConfig(long_side=128))
    kinds: set[str] = set()
    n_parts = 0
    for i in range(25):
        s = scenes[i]
        h, w = s.image.shape[:2]
        assert s.image.dtype == np.uint8 and max(h, w) == 128 and min(h, w) >= int(128 * 0.6) - 1
        assert s.masks.dtype == bool and s.masks.shape[1:] == (h, w)
        assert len(s.kinds) == len(s.parents) == s.masks.shape[0]
        assert (s.masks.reshape(len(s.masks), -1).sum(1) >= 0.0015 * h * w).all()
        kinds.update(s.kinds)
        for k, parent in enumerate(s.parents):
            if parent >= 0:
                n_parts += 1
                # a part (or sub-part) lies inside its whole: the part/whole ambiguity is real
                assert not (s.masks[k] & ~s.masks[parent]).any()
                assert s.masks[parent].sum() > s.masks[k].sum()
    assert n_parts > 0
    assert len(kinds) >= 7, kinds
    assert "whole" in kinds


def test_masks_to_low_res_frames() -> None:
    # a 256 px scene is the low-res frame itself, padded
    mask = np.zeros((1, 200, 256), dtype=bool)
    mask[0, 10:20, 30:40] = True
    low, valid = masks_to_low_res(mask, (200, 256))
    assert low.shape == (1, 1, 256, 256) and low.sum() == 100 and low[0, 0, 10:20, 30:40].all()
    assert valid[:200].all() and not valid[200:].any()
    # a 512 px image is halved
    big = np.zeros((1, 512, 384), dtype=bool)
    big[0, 100:300, 40:200] = True
    low, valid = masks_to_low_res(big, (512, 384))
    assert low[0, 0, 50:150, 20:100].all() and low.sum() == 100 * 80
    assert valid.sum() == 256 * 192
    sample = frame_sample(np.zeros((512, 384, 3), np.uint8), big)
    assert tuple(sample.image.shape) == (1, 3, 1024, 768) and sample.input_size == (1024, 768)


def test_large_object_option_adds_large_instances() -> None:
    def huge_share(prob: float) -> float:
        scenes = ProceduralScenes(seed=5, config=SceneConfig(long_side=96, large_object_prob=prob))
        fractions = np.concatenate(
            [s.masks.reshape(len(s.masks), -1).mean(1) for s in (scenes[i] for i in range(60))]
        )
        return float((fractions > 0.15).mean())

    with_large, without = huge_share(1.0), huge_share(0.0)
    assert with_large > 2 * without, (with_large, without)


def test_instance_codes_separate_objects_and_mix_parts_with_wholes() -> None:
    # a 128x96 image at a 512 input: the 32x32 grid has 4x4 image px per cell, 24 rows on the image
    masks = np.zeros((3, 96, 128), dtype=bool)
    masks[0, 0:48, 0:64] = True  # a whole
    masks[1, 0:24, 0:32] = True  # its part
    masks[2, 48:96, 64:128] = True  # another object
    codes = instance_codes(masks, (96, 128), 512, 32, np.random.default_rng(0))
    assert codes.shape == (1, 256, 32, 32)
    cells = codes[0]
    assert torch.allclose(cells[:, :24].norm(dim=0), torch.full((24, 32), 4.0), atol=1e-4)
    assert not cells[:, 24:].any()  # padding below the image
    unit = torch.nn.functional.normalize(cells, dim=0)

    def cos(a: tuple[int, int], b: tuple[int, int]) -> float:
        return float(unit[:, a[0], a[1]] @ unit[:, b[0], b[1]])

    assert cos((1, 1), (4, 6)) == pytest.approx(1.0, abs=1e-5)  # two cells of the part
    assert cos((8, 12), (10, 14)) == pytest.approx(1.0, abs=1e-5)  # two cells of the whole outside the part
    assert 0.5 < cos((1, 1), (10, 14)) < 0.9  # part and whole share the whole's vector
    assert abs(cos((1, 1), (20, 30))) < 0.3  # different objects: independent random vectors
    assert abs(cos((10, 14), (2, 28))) < 0.3  # the whole and the background
