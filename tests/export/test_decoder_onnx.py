"""Exported decoders vs the PyTorch model, run with ONNX Runtime (CPU).

Prompts: 1 click, several clicks, a box, box + clicks, each with and without ``mask_input``;
original sizes 4:3, 3:4, 1:1, 16:9 and a tiny 7x5 image (the official interface's full-size masks
must follow ``orig_im_size``, never the size used while tracing).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from export_testlib import BROWSER_FP32, Exported, iou, torch_reference
from onnx import numpy_helper

from clicksam.export.decoder import DEFAULT_CONFIGS, VariantConfig, export_decoder, export_variant
from clicksam.export.errors import ExportVerificationError
from clicksam.export.graph import GraphOptions
from clicksam.export.verify import prompt_feeds, verify_onnx
from clicksam.model import Sam

pytestmark = pytest.mark.slow  # the session fixture exports three variants (about a minute on 2 cores)

PROMPTS: dict[str, tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]] = {
    "one_click": (np.array([[412.3, 287.9]]), np.array([1.0]), None),
    "clicks": (
        np.array(
            [[412.0, 287.0], [630.5, 410.0], [100.0, 700.0], [800.0, 120.0], [50.0, 60.0], [333.0, 333.0]]
        ),
        np.array([1.0, 0.0, 1.0, 0.0, 1.0, 1.0]),
        None,
    ),
    "box": (None, None, np.array([120.0, 90.0, 700.0, 560.0])),
    "box_clicks": (
        np.array([[400.0, 300.0], [150.0, 120.0]]),
        np.array([1.0, 0.0]),
        np.array([120.0, 90.0, 700.0, 560.0]),
    ),
}
SIZES = {
    "4:3": (768, 1024),
    "3:4": (1024, 768),
    "1:1": (512, 512),
    "16:9": (1080, 1920),
    "tiny": (5, 7),
    "thin": (1, 3000),  # resized height rounds to 0 unless clamped to 1, as clicksam.model.frames does
}  # (H, W)


def _embedding() -> torch.Tensor:
    return torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(3))


def _mask_input() -> np.ndarray:
    return (4.0 * torch.randn(1, 1, 256, 256, generator=torch.Generator().manual_seed(4))).numpy()


@functools.cache
def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run an exported file; a browser export with a per-image graph (``*_prep.onnx``) gets the
    outputs of that graph on ``image_embeddings``, as the page's worker feeds them."""
    session = _session(path)
    wanted = {i.name for i in session.get_inputs()}
    prep = path.with_name(path.stem + "_prep.onnx")
    if "image_embeddings" not in wanted:
        assert prep.is_file(), f"{path.name} takes no embedding and has no per-image graph"
        feeds = {**feeds, **_run(prep, {"image_embeddings": feeds["image_embeddings"]})}
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {k: v for k, v in feeds.items() if k in wanted}), strict=True))


def _feeds(
    prompt: str, with_mask: bool, orig_hw: tuple[int, int], emb_dtype: type = np.float32
) -> dict[str, np.ndarray]:
    clicks, labels, box = PROMPTS[prompt]
    coords, point_labels = prompt_feeds(clicks, labels, box)
    mask = _mask_input()
    return {
        "image_embeddings": _embedding().numpy().astype(emb_dtype),
        "point_coords": coords,
        "point_labels": point_labels,
        "mask_input": mask if with_mask else np.zeros_like(mask),
        "has_mask_input": np.array([1.0 if with_mask else 0.0], np.float32),
        "orig_im_size": np.array(orig_hw, np.float32),
    }


def _reference(sam: Sam, prompt: str, with_mask: bool) -> tuple[np.ndarray, np.ndarray]:
    clicks, labels, box = PROMPTS[prompt]
    return torch_reference(sam, _embedding(), clicks, labels, box, _mask_input() if with_mask else None)


def _resized(orig_hw: tuple[int, int]) -> tuple[int, int]:
    h, w = orig_hw
    s = 1024 / max(h, w)
    return max(1, int(h * s + 0.5)), max(1, int(w * s + 0.5))


# every prompt x mask flag at 4:3, and every image size with a click and with box + clicks + mask
OFFICIAL_CASES = sorted(
    {(p, m, "4:3") for p in PROMPTS for m in (False, True)}
    | {(p, m, size) for (p, m) in (("one_click", False), ("box_clicks", True)) for size in SIZES}
)


@pytest.mark.parametrize(("prompt", "with_mask", "size"), OFFICIAL_CASES)
def test_official_full_size_masks_match_postprocess(
    exported: Exported, prompt: str, with_mask: bool, size: str
) -> None:
    orig_hw = SIZES[size]
    out = _run(exported.out_dir / "decoder.onnx", _feeds(prompt, with_mask, orig_hw))
    low, iou_ref = _reference(exported.sam, prompt, with_mask)
    full = exported.sam.postprocess_masks(torch.from_numpy(low), _resized(orig_hw), orig_hw).numpy()
    assert out["masks"].shape == (1, 4, *orig_hw)
    assert np.abs(out["masks"] - full).max() <= 1e-3
    assert np.abs(out["low_res_masks"] - low).max() <= 1e-3
    assert np.abs(out["iou_predictions"] - iou_ref).max() <= 1e-3
    for c in range(4):
        ref_mask = full[0, c] > 0
        assert iou(out["masks"][0, c] > 0, ref_mask) >= 0.999
    # the comparison means something only if the masks are neither empty nor full
    if min(orig_hw) > 8:
        assert 0.0 < (full > 0).mean() < 1.0


@pytest.mark.parametrize("with_mask", [False, True], ids=["no_mask", "mask_input"])
@pytest.mark.parametrize("prompt", list(PROMPTS))
def test_browser_fp32_low_res_logits_match(exported: Exported, prompt: str, with_mask: bool) -> None:
    out = _run(exported.out_dir / "decoder_browser_fp32.onnx", _feeds(prompt, with_mask, (768, 1024)))
    low, iou_ref = _reference(exported.sam, prompt, with_mask)
    assert out["low_res_masks"].shape == (1, 4, 256, 256)
    assert np.abs(out["low_res_masks"] - low).max() <= 1e-3
    assert np.abs(out["iou_predictions"] - iou_ref).max() <= 1e-3
    for c in range(4):
        assert iou(out["low_res_masks"][0, c] > 0, low[0, c] > 0) >= 0.999


@pytest.mark.parametrize("with_mask", [False, True], ids=["no_mask", "mask_input"])
@pytest.mark.parametrize("prompt", list(PROMPTS))
def test_browser_default_float16_masks_equal(exported: Exported, prompt: str, with_mask: bool) -> None:
    """The default browser file (float16 embedding input, float16-stored weights) against float32 PyTorch."""
    out = _run(exported.out_dir / "decoder_browser.onnx", _feeds(prompt, with_mask, (768, 1024), np.float16))
    low, _ = _reference(exported.sam, prompt, with_mask)
    for c in range(4):
        assert iou(out["low_res_masks"][0, c] > 0, low[0, c] > 0) >= 0.98
    # measured: about 3e-4 max logit error, IoU >= 0.999; keep a margin that still catches a wrong graph
    assert np.abs(out["low_res_masks"] - low).max() <= 1e-2


def test_browser_interface(exported: Exported) -> None:
    prep = _session(exported.out_dir / "decoder_browser_prep.onnx")
    assert {i.name: (i.type, i.shape) for i in prep.get_inputs()} == {
        "image_embeddings": ("tensor(float16)", [1, 256, 64, 64]),
    }
    image_feeds = {o.name: (o.type, o.shape) for o in prep.get_outputs()}
    assert list(image_feeds) == [
        "image_tokens", "l0_t2i_keys", "l0_t2i_values", "l0_i2t_queries", "l1_t2i_keys", "l1_t2i_values",
        "l1_i2t_queries", "final_t2i_keys", "final_t2i_values", "upscale_base",
    ]  # fmt: skip
    assert image_feeds["image_tokens"] == image_feeds["upscale_base"] == ("tensor(float)", [1, 4096, 256])
    assert image_feeds["l1_t2i_keys"] == ("tensor(float)", [1, 8, 16, 4096])
    assert image_feeds["final_t2i_values"] == ("tensor(float)", [1, 8, 4096, 16])
    session = _session(exported.out_dir / "decoder_browser.onnx")
    inputs = {i.name: (i.type, i.shape) for i in session.get_inputs()}
    assert inputs == {
        **image_feeds,
        "point_coords": ("tensor(float)", [1, "num_points", 2]),
        "point_labels": ("tensor(float)", [1, "num_points"]),
        "mask_input": ("tensor(float)", [1, 1, 256, 256]),
        "has_mask_input": ("tensor(float)", [1]),
    }
    outputs = {o.name: o.shape for o in session.get_outputs()}
    assert outputs == {"low_res_masks": [1, 4, 256, 256], "iou_predictions": [1, 4]}


@pytest.mark.parametrize("file", ["decoder_browser_fp32.onnx", "decoder_browser_fp32_prep.onnx"])
def test_no_big_positional_encoding_constant(exported: Exported, file: str) -> None:
    """The dense PE is computed from the (2, 128) Gaussian matrix in the graph, not stored as 4 MiB
    (nor are its projections by the attention weights)."""
    model = onnx.load(str(exported.out_dir / file))
    tensors = [numpy_helper.to_array(t) for t in model.graph.initializer]
    tensors += [
        numpy_helper.to_array(a.t)
        for n in model.graph.node
        if n.op_type == "Constant"
        for a in n.attribute
        if a.name == "value"
    ]
    assert max(t.size for t in tensors) < 256 * 64 * 64
    weights = sum(
        p.numel() for m in (exported.sam.prompt_encoder, exported.sam.mask_decoder) for p in m.parameters()
    )
    # a few products of weights are folded at export (e.g. the upscaler matrix scaled by each
    # block's LayerNorm gains: 2 x 256 x 256), nothing of the size of a 64x64 map
    assert sum(t.size for t in tensors) < 1.05 * weights + 1024


def test_official_interface_names_and_dynamic_axes(exported: Exported) -> None:
    session = ort.InferenceSession(str(exported.out_dir / "decoder.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [
        "image_embeddings",
        "point_coords",
        "point_labels",
        "mask_input",
        "has_mask_input",
        "orig_im_size",
    ]
    assert {o.name: o.shape for o in session.get_outputs()} == {
        "masks": [1, 4, "orig_height", "orig_width"],
        "iou_predictions": [1, 4],
        "low_res_masks": [1, 4, 256, 256],
    }


def test_single_mask_rule(sam: Sam, tmp_path: Path) -> None:
    """single_mask: best of tokens 1..3 with <= 2 points (padding / box corners included), else token 0."""
    path = tmp_path / "single.onnx"
    export_variant(
        sam, path, VariantConfig(GraphOptions(outputs="official", single_mask=True, fold_attention=True))
    )
    for prompt in ("one_click", "box", "box_clicks", "clicks"):
        feeds = _feeds(prompt, False, (768, 1024))
        out = _run(path, feeds)
        low, iou_ref = _reference(sam, prompt, False)
        n_points = feeds["point_coords"].shape[1]
        idx = 1 + int(iou_ref[0, 1:].argmax()) if n_points <= 2 else 0
        full = sam.postprocess_masks(
            torch.from_numpy(low[:, idx : idx + 1]), (768, 1024), (768, 1024)
        ).numpy()
        assert out["masks"].shape == (1, 1, 768, 1024)
        assert np.abs(out["masks"] - full).max() <= 1e-3
        assert np.abs(out["iou_predictions"][0, 0] - iou_ref[0, idx]) <= 1e-3


def test_verification_catches_a_wrong_graph(exported: Exported, tmp_path: Path) -> None:
    model = onnx.load(str(exported.out_dir / "decoder_browser_fp32.onnx"))
    big = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    arr = numpy_helper.to_array(big).copy()
    arr *= -1.0
    big.CopyFrom(numpy_helper.from_array(arr, big.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    options = BROWSER_FP32.graph
    prep = exported.out_dir / "decoder_browser_fp32_prep.onnx"
    with pytest.raises(ExportVerificationError, match="against PyTorch"):
        verify_onnx(exported.sam, broken, options, lossy=False, prep_path=prep)
    with pytest.raises(ValueError, match="verified with its prep graph"):
        verify_onnx(exported.sam, broken, options, lossy=False)


def test_lossy_export_below_tolerance_is_refused(sam: Sam, tmp_path: Path) -> None:
    """int8-stored weights lose too much on this model (IoU ~0.97): the export raises, leaves no file."""
    with pytest.raises(ExportVerificationError, match=r"mask IoU 0\.9\d+ < 0\.98"):
        export_decoder(
            sam,
            tmp_path,
            model_name="vit_test",
            checkpoint_sha256=None,
            variants={"browser": DEFAULT_CONFIGS["browser"].with_weights("int8")},
        )
    assert list(tmp_path.iterdir()) == []
