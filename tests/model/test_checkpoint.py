"""Checkpoints load strictly with ``weights_only=True``; every kind of mismatch is a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from clicksam.model import CheckpointError, CheckpointMismatchError, UnknownModelError, build_sam


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    model = build_sam("vit_test", seed=3)
    state = {k: v + 0.01 * torch.randn_like(v) for k, v in model.state_dict().items()}
    path = tmp_path_factory.mktemp("ckpt") / "vit_test.pth"
    torch.save(state, path)
    return path, state


def _assert_loaded(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    got = model.state_dict()
    assert got.keys() == state.keys()
    assert all(torch.equal(got[k], state[k]) for k in state)


def test_loads_plain_state_dict(saved: tuple[Path, dict[str, torch.Tensor]]) -> None:
    path, state = saved
    model = build_sam("vit_test", checkpoint=path)
    _assert_loaded(model, state)
    assert not model.training


@pytest.mark.parametrize("wrapper", ["model", "state_dict"])
def test_loads_wrapped_state_dict(
    saved: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path, wrapper: str
) -> None:
    _, state = saved
    path = tmp_path / "wrapped.pth"
    torch.save({wrapper: state, "epoch": torch.tensor(3)}, path)
    _assert_loaded(build_sam("vit_test", checkpoint=str(path)), state)


def test_missing_and_unexpected_keys_are_named(
    saved: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path
) -> None:
    _, state = saved
    broken = dict(state)
    del broken["mask_decoder.iou_token.weight"]
    del broken["image_encoder.blocks.1.attn.rel_pos_h"]
    broken["image_encoder.blocks.7.attn.qkv.weight"] = torch.zeros(3)
    path = tmp_path / "broken.pth"
    torch.save(broken, path)
    with pytest.raises(CheckpointMismatchError) as info:
        build_sam("vit_test", checkpoint=path)
    err = info.value
    assert err.missing == ["image_encoder.blocks.1.attn.rel_pos_h", "mask_decoder.iou_token.weight"]
    assert err.unexpected == ["image_encoder.blocks.7.attn.qkv.weight"]
    message = str(err)
    assert "2 missing key(s): image_encoder.blocks.1.attn.rel_pos_h, mask_decoder.iou_token.weight" in message
    assert "1 unexpected key(s): image_encoder.blocks.7.attn.qkv.weight" in message
    assert "'vit_test'" in message


def test_shape_mismatch_is_named(saved: tuple[Path, dict[str, torch.Tensor]], tmp_path: Path) -> None:
    _, state = saved
    broken = dict(state)
    broken["mask_decoder.iou_token.weight"] = torch.zeros(1, 128)
    path = tmp_path / "shape.pth"
    torch.save(broken, path)
    with pytest.raises(CheckpointMismatchError) as info:
        build_sam("vit_test", checkpoint=path)
    assert info.value.shape_mismatches == [("mask_decoder.iou_token.weight", (1, 128), (1, 256))]
    assert "mask_decoder.iou_token.weight (checkpoint [1, 128] vs model [1, 256])" in str(info.value)


def test_checkpoint_of_another_model_is_rejected(saved: tuple[Path, dict[str, torch.Tensor]]) -> None:
    """A vit_test file loaded as vit_b: a mismatch error (long key lists are summarised)."""
    path, _ = saved
    with torch.device("meta"):
        model = build_sam("vit_b")
    from clicksam.model.build import load_checkpoint

    with pytest.raises(CheckpointMismatchError, match=r"more\)") as info:
        load_checkpoint(model, path, model_name="vit_b")
    assert "image_encoder.blocks.11.attn.qkv.weight" in info.value.missing


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist; download it with `clicksam weights download"):
        build_sam("vit_test", checkpoint=tmp_path / "nope.pth")


def test_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        build_sam("vit_test", checkpoint=path)


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    """weights_only=True: a checkpoint that would run code on load is refused, not executed."""
    path = tmp_path / "evil.pth"
    torch.save({"model": Path("x")}, path)  # an arbitrary Python object, not a tensor
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        build_sam("vit_test", checkpoint=path)


def test_non_tensor_state_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(CheckpointError, match="does not hold a state dict"):
        build_sam("vit_test", checkpoint=path)


def test_unknown_model_name() -> None:
    with pytest.raises(
        UnknownModelError, match="unknown model 'vit_x'; choose one of vit_h, vit_l, vit_b, vit_t"
    ):
        build_sam("vit_x")


def test_seed_is_reproducible_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    a = build_sam("vit_test", seed=7).state_dict()
    assert torch.equal(torch.random.get_rng_state(), before)
    b = build_sam("vit_test", seed=7).state_dict()
    c = build_sam("vit_test", seed=8).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["mask_decoder.iou_token.weight"], c["mask_decoder.iou_token.weight"])
