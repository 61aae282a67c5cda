"""SAM 2.1: our state dicts equal the official ``SAM2Base``'s minus exactly the named video-only keys,
and official-layout checkpoints load strictly.

The listings in tests/data/sam2_state_dict_*.tsv are the official models' full state dicts (keys,
shapes, dtypes), taken from ``sam2==1.1.0`` built on the meta device; a test rebuilds them from the
referee when it is installed. Our models are built on the meta device too: nothing is allocated.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from clicksam.model import CheckpointError, CheckpointMismatchError, build_sam
from clicksam.model.build import SAM2_CONFIGS, SAM2_VIDEO_ONLY_KEYS, Sam2Config, is_video_only_key
from clicksam.model.sam2 import Sam2

DATA = Path(__file__).resolve().parents[1] / "data"
OFFICIAL = ["sam2.1_hiera_t", "sam2.1_hiera_s", "sam2.1_hiera_b+", "sam2.1_hiera_l"]

Row = tuple[str, str, str]


def _listing(name: str) -> list[Row]:
    rows = []
    for line in (DATA / f"sam2_state_dict_{name}.tsv").read_text().splitlines():
        if line.strip():
            key, shape, dtype = line.split("\t")
            rows.append((key, shape, dtype))
    return rows


def _rows(model: torch.nn.Module) -> list[Row]:
    return [
        (k, str(list(v.shape)), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()
    ]


def _ours(name: str) -> list[Row]:
    with torch.device("meta"):
        model = build_sam(name, seed=0)
    assert isinstance(model, Sam2)
    return _rows(model)


@pytest.mark.parametrize("name", OFFICIAL)
def test_state_dict_is_official_minus_video_only_keys(name: str) -> None:
    official = _listing(name)
    image_path = [row for row in official if not is_video_only_key(row[0])]
    assert sorted(_ours(name)) == sorted(image_path)


@pytest.mark.parametrize("name", OFFICIAL)
def test_video_only_list_is_exact(name: str) -> None:
    """Every named video-only module exists in the official model and is all we drop (166 tensors)."""
    keys = [k for k, _, _ in _listing(name)]
    for module in SAM2_VIDEO_ONLY_KEYS:
        assert any(k == module or k.startswith(module + ".") for k in keys), module
    dropped = [k for k in keys if is_video_only_key(k)]
    assert len(dropped) == 166
    # the object-score token and no_mem_embed are used by the image path and must stay
    assert "sam_mask_decoder.obj_score_token.weight" not in dropped
    assert "no_mem_embed" not in dropped
    assert any(k.startswith("sam_mask_decoder.pred_obj_score_head.") for k in dropped)


@pytest.mark.parametrize("name", OFFICIAL)
def test_listing_equals_the_referee(name: str) -> None:
    """The committed listing is what sam2==1.1.0 builds (skipped, saying so, without the referee)."""
    pytest.importorskip("hydra", reason="the sam2 referee (dev extra) is not installed")
    pytest.importorskip("sam2", reason="the sam2 referee (dev extra) is not installed")
    from referee_stubs import SAM2_OFFICIAL_CONFIGS, reference_sam2

    official = reference_sam2(SAM2_OFFICIAL_CONFIGS[name], meta=True)
    assert _rows(official) == _listing(name)


def test_registry_is_frozen_and_geometry_is_sams() -> None:
    import dataclasses

    cfg = SAM2_CONFIGS["sam2.1_hiera_t"]
    assert isinstance(cfg, Sam2Config)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.image_size = 512  # type: ignore[misc]
    assert cfg.image_embedding_size == 64 and cfg.low_res_size == 256
    assert {n: c.trunk.channel_list for n, c in SAM2_CONFIGS.items() if n in OFFICIAL} == {
        "sam2.1_hiera_t": (768, 384, 192, 96),
        "sam2.1_hiera_s": (768, 384, 192, 96),
        "sam2.1_hiera_b+": (896, 448, 224, 112),
        "sam2.1_hiera_l": (1152, 576, 288, 144),
    }


def test_tiny_preset_shares_the_official_heads() -> None:
    """sam2_tiny differs from hiera_t only in the trunk and the neck's input widths."""

    def heads(rows: list[Row]) -> list[Row]:
        return sorted(r for r in rows if not r[0].startswith("image_encoder."))

    official = [r for r in _listing("sam2.1_hiera_t") if not is_video_only_key(r[0])]
    assert heads(_ours("sam2_tiny")) == heads(official)


# ------------------------------------------------------------------------------ checkpoint loading


def _official_layout_checkpoint(
    tmp_path: Path, extra: dict[str, torch.Tensor], drop: tuple[str, ...] = ()
) -> Path:
    """sam2_tiny's seeded weights as an official file: ``{"model": sd}`` with video-only tensors."""
    state = dict(build_sam("sam2_tiny", seed=3).state_dict())
    state["maskmem_tpos_enc"] = torch.randn(7, 1, 1, 64)
    state["memory_encoder.out_proj.weight"] = torch.randn(64, 256, 1, 1)
    state["sam_mask_decoder.pred_obj_score_head.layers.0.weight"] = torch.randn(256, 256)
    state.update(extra)
    for key in drop:
        del state[key]
    path = tmp_path / "sam2_tiny.pt"
    torch.save({"model": state}, path)
    return path


def test_official_layout_checkpoint_loads_and_drops_video_keys(tmp_path: Path) -> None:
    path = _official_layout_checkpoint(tmp_path, {})
    model = build_sam("sam2_tiny", checkpoint=path)
    reference = build_sam("sam2_tiny", seed=3)
    for (k, a), (_, b) in zip(model.state_dict().items(), reference.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert not model.training


def test_unknown_key_is_an_error_that_names_it(tmp_path: Path) -> None:
    path = _official_layout_checkpoint(tmp_path, {"memory_bank.weight": torch.zeros(1)})
    with pytest.raises(CheckpointMismatchError, match=r"unexpected key\(s\): memory_bank\.weight") as err:
        build_sam("sam2_tiny", checkpoint=path)
    assert err.value.unexpected == ["memory_bank.weight"] and err.value.missing == []


def test_missing_key_is_an_error_that_names_it(tmp_path: Path) -> None:
    path = _official_layout_checkpoint(tmp_path, {}, drop=("sam_mask_decoder.conv_s0.weight",))
    with pytest.raises(CheckpointMismatchError, match=r"missing key\(s\): sam_mask_decoder\.conv_s0\.weight"):
        build_sam("sam2_tiny", checkpoint=path)


def test_checkpoint_of_another_size_names_the_shapes(tmp_path: Path) -> None:
    with torch.device("meta"):
        other = build_sam("vit_test", seed=0)  # a SAM 1 file: every key differs
    path = tmp_path / "sam1.pt"
    torch.save({k: torch.zeros(v.shape) for k, v in list(other.state_dict().items())[:3]}, path)
    with pytest.raises(CheckpointMismatchError, match="missing key"):
        build_sam("sam2_tiny", checkpoint=path)


def test_load_is_weights_only(tmp_path: Path) -> None:
    """A pickle holding anything but tensors (here: a class instance) is refused, not executed."""
    path = tmp_path / "evil.pt"
    torch.save({"model": {"x": torch.zeros(1)}, "extra": Path("/tmp")}, path)
    with pytest.raises(CheckpointError, match="tensor-only"):
        build_sam("sam2_tiny", checkpoint=path)
