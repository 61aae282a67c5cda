"""MobileSAM (``vit_t``) end to end: the registry's model against the official ``mobile_sam`` package.

Both get the same perturbed weights (every tensor, BN statistics and attention biases included); the
official model is switched to eval mode after loading, because its TinyViT caches the attention biases
when eval() is called (its own builder does that before loading a checkpoint).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_tiny_vit import LISTING, import_official_tiny_vit, perturb_

from clicksam.model import SamPredictor, build_sam

TOL = 1e-4


def test_build_sam_vit_t_state_dict_equals_listing() -> None:
    expected: dict[str, tuple[list[int], str]] = {}
    for line in LISTING.read_text().splitlines():
        name, shape, dtype = line.split("\t")
        expected[name] = ([int(d) for d in shape.strip("[]").split(",") if d.strip()], dtype)
    assert len(expected) == 439
    state = build_sam("vit_t", seed=0).state_dict()
    got = {k: (list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in state.items()}
    assert set(got) == set(expected), (sorted(set(expected) - set(got)), sorted(set(got) - set(expected)))
    assert got == expected


def _image(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth random RGB image (uint8 HxWx3) with some structure for the decoder to respond to."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(h // 32 + 2, w // 32 + 2, 3)).astype(np.uint8)
    from PIL import Image

    img = Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC)
    noise = rng.integers(-12, 13, size=(h, w, 3))
    return np.clip(np.asarray(img).astype(np.int64) + noise, 0, 255).astype(np.uint8)


@pytest.mark.slow
def test_predictor_matches_official_mobile_sam(tmp_path: Path) -> None:
    import_official_tiny_vit()  # installs the timm/torchvision stand-ins
    from mobile_sam import SamPredictor as OfficialPredictor
    from mobile_sam import build_sam_vit_t

    torch.manual_seed(0)
    theirs = build_sam_vit_t(None)
    state = perturb_(theirs, seed=30)
    theirs.eval()  # after the weights changed: refreshes its cached attention biases
    ckpt = tmp_path / "mobile_sam_perturbed.pt"
    torch.save(state, ckpt)
    ours = build_sam("vit_t", checkpoint=ckpt)  # strict load through the registry

    image = _image(700, 1000, seed=1)  # landscape: resized to 717x1024 and padded
    ref_pred, our_pred = OfficialPredictor(theirs), SamPredictor(ours)
    with torch.no_grad():
        t0 = time.perf_counter()
        ref_pred.set_image(image)
        t1 = time.perf_counter()
        our_pred.set_image(image)
        t2 = time.perf_counter()
    print(f"set_image: official {t1 - t0:.2f} s, ours {t2 - t1:.2f} s")
    assert our_pred.input_size == ref_pred.input_size == (717, 1024)
    assert our_pred.original_size == ref_pred.original_size == (700, 1000)
    emb_err = (our_pred.get_image_embedding() - ref_pred.get_image_embedding()).abs().max().item()
    assert emb_err <= TOL, emb_err

    prompts = {
        "one click": dict(point_coords=np.array([[420.0, 310.0]]), point_labels=np.array([1])),
        "box": dict(box=np.array([150.0, 120.0, 780.0, 560.0])),
        "box + clicks": dict(
            point_coords=np.array([[400.0, 300.0], [200.0, 500.0]]),
            point_labels=np.array([1, 0]),
            box=np.array([150.0, 120.0, 780.0, 560.0]),
        ),
    }
    for label, prompt in prompts.items():
        for multimask in (True, False):
            m_ref, s_ref, l_ref = ref_pred.predict(**prompt, multimask_output=multimask, return_logits=True)
            m_our, s_our, l_our = our_pred.predict(**prompt, multimask_output=multimask, return_logits=True)
            assert l_our.shape == l_ref.shape and s_our.shape == s_ref.shape, label
            assert np.abs(l_our - l_ref).max() <= TOL, (label, multimask, np.abs(l_our - l_ref).max())
            assert np.abs(s_our - s_ref).max() <= TOL, (label, multimask, np.abs(s_our - s_ref).max())
            # full-size logits: same upsampling and crop to the original frame
            assert m_our.shape == m_ref.shape == (s_ref.shape[0], 700, 1000)
            assert np.abs(m_our - m_ref).max() <= 10 * TOL, (label, multimask)
        # the previous low-res logits as mask_input
        _, s_ref2, l_ref2 = ref_pred.predict(**prompt, mask_input=l_ref[:1], multimask_output=False)
        _, s_our2, l_our2 = our_pred.predict(**prompt, mask_input=l_ref[:1], multimask_output=False)
        assert np.abs(l_our2 - l_ref2).max() <= TOL and np.abs(s_our2 - s_ref2).max() <= TOL, label
