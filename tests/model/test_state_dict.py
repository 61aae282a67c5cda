"""``build_sam(name).state_dict()`` has exactly the official keys, shapes and dtypes, in order.

The listings in tests/data/ were taken from the official checkpoints. The big models are built on the
meta device, so no memory is allocated and the check is instant.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from clicksam.model import MODEL_CONFIGS, build_sam

DATA = Path(__file__).resolve().parents[1] / "data"
ROOT = Path(__file__).resolve().parents[2]


def _listing(name: str) -> list[tuple[str, str, str]]:
    rows = []
    for line in (DATA / f"sam_state_dict_{name}.tsv").read_text().splitlines():
        if line.strip():
            key, shape, dtype = line.split("\t")
            rows.append((key, shape, dtype))
    return rows


def _ours(name: str, *, meta: bool = True) -> list[tuple[str, str, str]]:
    if meta:
        # seeded: a preset that ships weights (demo) would otherwise load them into meta tensors
        with torch.device("meta"):
            model = build_sam(name, seed=0)
    else:
        model = build_sam(name, seed=0)
    return [
        (k, str(list(v.shape)), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()
    ]


def _tiny_vit_landed() -> bool:
    """True once model/tiny_vit.py is committed: from then on vit_t must build, never be skipped."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--error-unmatch", "model/tiny_vit.py"],
            cwd=ROOT,
            capture_output=True,
            check=False,
        )
    except OSError:
        return True
    return out.returncode == 0


@pytest.mark.parametrize("name", ["vit_b", "vit_l", "vit_h"])
def test_vit_state_dict_matches_official_listing(name: str) -> None:
    expected = _listing(name)
    ours = _ours(name)
    assert [k for k, _, _ in ours] == [k for k, _, _ in expected]
    assert ours == expected


def test_vit_t_state_dict_matches_official_listing() -> None:
    try:
        import clicksam.model.tiny_vit  # noqa: F401
    except ModuleNotFoundError:
        if _tiny_vit_landed():
            raise
        pytest.skip("model/tiny_vit.py has not landed yet")
    expected = _listing("vit_t")
    ours = _ours("vit_t", meta=False)  # small enough to build for real
    assert {k for k, _, _ in ours} == {k for k, _, _ in expected}
    assert sorted(ours) == sorted(expected)


def test_prompt_encoder_and_decoder_are_shared_by_all_presets() -> None:
    """Everything outside the image encoder is the same for every preset, including vit_test."""
    reference = [row for row in _listing("vit_b") if not row[0].startswith("image_encoder.")]
    for name in MODEL_CONFIGS:
        if name == "vit_t":
            continue
        rows = [row for row in _ours(name) if not row[0].startswith("image_encoder.")]
        assert rows == reference, name


def test_registry_configs_are_frozen_and_official() -> None:
    import dataclasses

    cfg = MODEL_CONFIGS["vit_b"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.image_size = 512  # type: ignore[misc]
    assert cfg.image_embedding_size == 64 and cfg.low_res_size == 256
    assert {n: MODEL_CONFIGS[n].encoder.global_attn_indexes for n in ("vit_b", "vit_l", "vit_h")} == {  # type: ignore[union-attr]
        "vit_b": (2, 5, 8, 11),
        "vit_l": (5, 11, 17, 23),
        "vit_h": (7, 15, 23, 31),
    }


def test_vit_test_preset_embedding_shape(tiny_sam: torch.nn.Module) -> None:
    with torch.no_grad():
        emb = tiny_sam.image_encoder(torch.zeros(1, 3, 1024, 1024))
    assert emb.shape == (1, 256, 64, 64)
