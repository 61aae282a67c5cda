"""SAM 2.1's decoder export (``clicksam.export.sam2``): the official-interface ONNX and the page's graph
against PyTorch on a perturbed ``sam2_tiny``, real images encoded by the model, and the manifest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from clicksam.cli import main
from clicksam.export.decoder import DEFAULT_CONFIGS, export_decoder
from clicksam.export.sam2 import LOGIT_CLAMP, Sam2ClickGraph, Sam2DecoderGraph, Sam2Options, Sam2PrepGraph
from clicksam.formats import Manifest
from clicksam.model import SamPredictor, build_sam, frames
from clicksam.model.sam2 import Sam2, Sam2ImageFeatures

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sam2() -> Sam2:
    """Seeded sam2_tiny with every parameter and buffer of the prompt path perturbed (random init
    leaves norms at 1 / 0 and would hide a dropped term)."""
    model = build_sam("sam2_tiny", seed=0)
    assert isinstance(model, Sam2)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            if t.is_floating_point() and t.ndim > 0 and t.numel() > 3:
                t.add_(0.05 * torch.randn(t.shape, generator=gen))
    return model.eval()


@pytest.fixture(scope="module")
def exported(sam2: Sam2, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sam2_decoder")
    export_decoder(
        sam2, out, model_name="sam2_tiny", checkpoint_sha256=None, seed=0, variants=DEFAULT_CONFIGS
    )
    return out


def _image(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth image with a few shapes (not noise: the masks should have real regions)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), np.full_like(xx, 90)], -1)
    for _ in range(3):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(max(h, w) // 8, max(h, w) // 3 + 1)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(0, 256, 3)
    return img.astype(np.uint8)


@pytest.fixture(scope="module")
def feats(sam2: Sam2) -> Sam2ImageFeatures:
    """One real image encoded once (the decoder graphs do not depend on which image; the original
    sizes below only enter the upsampling)."""
    with torch.no_grad():
        return sam2.encode_image(sam2.preprocess(_image(480, 640, 0)))


SAM2_WIRE = ("image_embed", "high_res_feats_0", "high_res_feats_1")

# (H, W) 4:3, 3:4, 16:9, 1:1 and tiny; prompts in original pixels: (points, labels, use previous mask)
SIZES = [(480, 640), (640, 480), (360, 640), (500, 500), (13, 21)]
PROMPTS: list[tuple[list[list[float]], list[int], bool]] = [
    ([[0.5, 0.4]], [1], False),  # one click
    ([[0.3, 0.3], [0.7, 0.6], [0.5, 0.9]], [1, 0, 1], False),  # several clicks
    ([[0.1, 0.2], [0.8, 0.9]], [2, 3], False),  # box (corners)
    ([[0.1, 0.1], [0.9, 0.7], [0.4, 0.4], [0.2, 0.6]], [2, 3, 1, 0], False),  # box + clicks
    ([[0.5, 0.4], [0.2, 0.2]], [1, 0], True),  # refine with the previous low-res mask
]


def _prompt(
    points: list[list[float]], labels: list[int], hw: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fractions of the image -> (1, N, 2) square-input xy (SAM 2's per-axis normalisation), (1, N)."""
    h, w = hw
    pixels = torch.tensor(points, dtype=torch.float32) * torch.tensor([w, h], dtype=torch.float32)
    return frames.apply_coords_square(pixels, hw, 1024)[None], torch.tensor([labels])


def test_official_interface_equals_pytorch_on_real_features(
    sam2: Sam2, exported: Path, feats: Sam2ImageFeatures
) -> None:
    session = ort.InferenceSession(str(exported / "decoder.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [
        "image_embed", "high_res_feats_0", "high_res_feats_1", "point_coords", "point_labels",
        "mask_input", "has_mask_input", "orig_im_size",
    ]  # fmt: skip
    assert [o.name for o in session.get_outputs()] == ["masks", "iou_predictions", "low_res_masks"]
    worst = 0.0
    previous: torch.Tensor | None = None
    # every prompt once, each at another original size (the size only enters the upsampling)
    for hw, (points, labels, refine) in zip(SIZES, PROMPTS, strict=True):
        coords, lab = _prompt(points, labels, hw)
        mask = previous if refine else None
        with torch.no_grad():
            low, iou = sam2.decode(feats, coords, lab, mask, multimask_output=True)
            full = sam2.postprocess_masks(low, hw)
        masks, iou_o, low_o = session.run(
            None,
            {
                "image_embed": feats.image_embed.numpy(),
                "high_res_feats_0": feats.high_res_feats_0.numpy(),
                "high_res_feats_1": feats.high_res_feats_1.numpy(),
                "point_coords": coords.numpy(),
                "point_labels": lab.numpy().astype(np.float32),
                "mask_input": np.zeros((1, 1, 256, 256), np.float32) if mask is None else mask.numpy(),
                "has_mask_input": np.array([0.0 if mask is None else 1.0], np.float32),
                "orig_im_size": np.array(hw, np.float32),
            },
        )
        assert masks.shape == (1, 3, *hw)
        clamped = torch.clamp(low, -LOGIT_CLAMP, LOGIT_CLAMP).numpy()
        for got, want in ((masks, full.numpy()), (low_o, clamped), (iou_o, iou.numpy())):
            worst = max(worst, float(np.abs(got - want).max()))
        previous = torch.clamp(low[:, :1], -LOGIT_CLAMP, LOGIT_CLAMP)
    assert worst <= 1e-3, worst


def test_official_interface_equals_the_predictor(sam2: Sam2, exported: Path) -> None:
    """``decoder.onnx`` fed what a SAM 2 ONNX user computes (points (x / W, y / H) * 1024, box corners
    first) gives ``SamPredictor(sam2).predict``'s masks, scores and low-res logits."""
    session = ort.InferenceSession(str(exported / "decoder.onnx"), providers=["CPUExecutionProvider"])
    image = _image(480, 640, 0)
    h, w = image.shape[:2]
    predictor = SamPredictor(sam2)
    predictor.set_image(image)
    feats = predictor.get_image_embedding()  # (1, 256, 64, 64), the 64x64 level as the decoder takes it
    high_res = predictor._features["high_res_feats"]  # the official attribute the predictor keeps
    points, labels, box = (
        np.array([[320.0, 200.0], [100.0, 400.0]]),
        np.array([1, 0]),
        np.array([50, 60, 500, 420]),
    )
    previous = None
    for use_box, refine in ((False, False), (True, False), (True, True)):
        mask_in = previous if refine else None
        masks, scores, low = predictor.predict(
            points, labels, box if use_box else None, mask_in, multimask_output=True, return_logits=True
        )
        xy = np.concatenate([box.reshape(2, 2), points]) if use_box else points
        lab = np.concatenate([[2, 3], labels]) if use_box else labels
        got_masks, got_scores, got_low = session.run(
            None,
            {
                "image_embed": np.asarray(feats, np.float32),
                "high_res_feats_0": np.asarray(high_res[0], np.float32),
                "high_res_feats_1": np.asarray(high_res[1], np.float32),
                "point_coords": (xy / [w, h] * 1024).astype(np.float32)[None],
                "point_labels": lab.astype(np.float32)[None],
                "mask_input": (np.zeros((1, 256, 256)) if mask_in is None else mask_in)[None].astype(
                    np.float32
                ),
                "has_mask_input": np.array([0.0 if mask_in is None else 1.0], np.float32),
                "orig_im_size": np.array([h, w], np.float32),
            },
        )
        assert np.abs(got_masks[0] - masks).max() <= 1e-3
        assert np.abs(got_scores[0] - scores).max() <= 1e-4
        assert np.abs(got_low[0] - low).max() <= 1e-3
        previous = low[np.argmax(scores)][None]


def test_official_interface_takes_several_prompt_sets(
    sam2: Sam2, exported: Path, feats: Sam2ImageFeatures
) -> None:
    """num_labels > 1: each prompt set decoded on the same image, as samexporter's interface allows."""
    session = ort.InferenceSession(str(exported / "decoder.onnx"), providers=["CPUExecutionProvider"])
    hw = (480, 640)
    coords = torch.cat([_prompt([[0.5, 0.4]], [1], hw)[0], _prompt([[0.2, 0.7]], [1], hw)[0]])
    labels = torch.ones(2, 1)
    masks, iou, _ = session.run(
        None,
        {
            "image_embed": feats.image_embed.numpy(),
            "high_res_feats_0": feats.high_res_feats_0.numpy(),
            "high_res_feats_1": feats.high_res_feats_1.numpy(),
            "point_coords": coords.numpy(),
            "point_labels": labels.numpy(),
            "mask_input": np.zeros((2, 1, 256, 256), np.float32),
            "has_mask_input": np.zeros(2, np.float32),
            "orig_im_size": np.array(hw, np.float32),
        },
    )
    assert masks.shape == (2, 3, *hw)
    for k in range(2):
        with torch.no_grad():
            _, want = sam2.decode(feats, coords[k : k + 1], labels[k : k + 1].long(), multimask_output=True)
        assert np.abs(iou[k] - want[0].numpy()).max() <= 1e-4


def test_browser_graph_single_mask_is_sam2s_dynamic_choice(
    sam2: Sam2, exported: Path, feats: Sam2ImageFeatures
) -> None:
    """Channel 0 = decode(multimask_output=False) (dynamic selection), 1-3 = the candidates; float16
    features on the wire, through the per-image graph run once; the page pads only without a box and
    the graph adds SAM 2's pad otherwise."""
    session = ort.InferenceSession(str(exported / "decoder_browser.onnx"), providers=["CPUExecutionProvider"])
    prep = ort.InferenceSession(
        str(exported / "decoder_browser_prep.onnx"), providers=["CPUExecutionProvider"]
    )
    min_iou = 1.0
    wire = [t.half() for t in (feats.image_embed, feats.high_res_feats_0, feats.high_res_feats_1)]
    image = dict(
        zip(
            [o.name for o in prep.get_outputs()],
            prep.run(None, {name: t.numpy() for name, t in zip(SAM2_WIRE, wire, strict=True)}),
            strict=True,
        )
    )
    feats16 = Sam2ImageFeatures(*(t.float() for t in wire))
    hw = SIZES[0]  # the low-res graph does not see the original size
    for points, labels, _ in PROMPTS[:4]:
        coords, lab = _prompt(points, labels, hw)
        with torch.no_grad():
            single, iou_s = sam2.decode(feats16, coords, lab, multimask_output=False)
            multi, iou_m = sam2.decode(feats16, coords, lab, multimask_output=True)
        page_coords, page_labels = coords.numpy()[0], lab.numpy()[0].astype(np.float32)
        if not np.isin(page_labels, (2, 3)).any():
            page_coords = np.concatenate([page_coords, np.zeros((1, 2), np.float32)])
            page_labels = np.concatenate([page_labels, np.array([-1.0], np.float32)])
        low, iou = session.run(
            None,
            {
                **image,
                "point_coords": page_coords[None],
                "point_labels": page_labels[None],
                "mask_input": np.zeros((1, 1, 256, 256), np.float32),
                "has_mask_input": np.zeros(1, np.float32),
            },
        )
        want = torch.cat([single, multi], 1).numpy()
        assert np.abs(iou - torch.cat([iou_s, iou_m], 1).numpy()).max() <= 5e-3
        for k in range(4):
            a, b = low[0, k] > 0, want[0, k] > 0
            union = np.logical_or(a, b).sum()
            min_iou = min(min_iou, 1.0 if union == 0 else np.logical_and(a, b).sum() / union)
    assert min_iou >= 0.98, min_iou  # float16 weights in the file


def test_the_graph_takes_both_branches_of_the_dynamic_choice(sam2: Sam2, feats: Sam2ImageFeatures) -> None:
    """The browser graph's channel 0 (in PyTorch, the module that is traced) is token 0 when it is
    stable and the best candidate when not: forced both ways through the decoder's threshold."""
    graph = Sam2DecoderGraph(sam2, Sam2Options("low_res")).eval()
    click, click_label = _prompt([[0.5, 0.4]], [1], SIZES[0])
    # the page's feed: the click and the padding point (no box)
    coords = torch.cat([click, torch.zeros(1, 1, 2)], 1)
    lab = torch.cat([click_label.float(), -torch.ones(1, 1)], 1)
    levels = (feats.image_embed, feats.high_res_feats_0, feats.high_res_feats_1)
    decoder = sam2.sam_mask_decoder
    kept = decoder.dynamic_multimask_stability_thresh
    try:
        for thresh, token0 in ((-1.0, True), (2.0, False)):
            decoder.dynamic_multimask_stability_thresh = thresh
            with torch.no_grad():
                low, iou = graph(*levels, coords, lab, torch.zeros(1, 1, 256, 256), torch.zeros(1))
                # the prompt encoder appends the padding point itself
                sparse, dense = sam2.sam_prompt_encoder(points=(click, click_label), boxes=None, masks=None)
                masks, scores = decoder.predict_all_masks(
                    feats.image_embed, sam2.sam_prompt_encoder.get_dense_pe(), sparse, dense,
                    repeat_image=False, high_res_features=feats.high_res_feats,
                )  # fmt: skip
            want = 0 if token0 else 1 + int(scores[0, 1:].argmax())
            assert torch.allclose(low[0, 0], masks[0, want], atol=1e-4)
            assert torch.allclose(low[0, 1:], masks[0, 1:], atol=1e-4)
            assert abs(float(iou[0, 0] - scores[0, want])) <= 1e-5
    finally:
        decoder.dynamic_multimask_stability_thresh = kept


def test_per_image_split_equals_the_whole_graph(sam2: Sam2, feats: Sam2ImageFeatures) -> None:
    """The page's per-image + click graphs (the modules that are traced) equal the unsplit low-res
    graph: click, clicks, box, box + clicks and a previous mask; a port that drops a high-resolution
    level in the split fails (the check is not blind to it)."""
    whole = Sam2DecoderGraph(sam2, Sam2Options("low_res")).eval()
    click = Sam2ClickGraph(sam2).eval()
    prep = Sam2PrepGraph(click).eval()
    levels = (feats.image_embed, feats.high_res_feats_0, feats.high_res_feats_1)
    gen = torch.Generator().manual_seed(5)
    previous = torch.randn(1, 1, 256, 256, generator=gen)
    with torch.no_grad():
        prepared = prep(*levels)
        dropped = prep(feats.image_embed, torch.zeros_like(feats.high_res_feats_0), feats.high_res_feats_1)
        worst, worst_dropped = 0.0, 0.0
        for points, labels, with_mask in PROMPTS:
            coords, lab = _prompt(points, labels, SIZES[0])
            lab = lab.float()
            if not bool(((lab == 2) | (lab == 3)).any()):  # the page's padding rule
                coords, lab = (
                    torch.cat([coords, torch.zeros(1, 1, 2)], 1),
                    torch.cat([lab, -torch.ones(1, 1)], 1),
                )
            mask = (previous, torch.ones(1)) if with_mask else (torch.zeros(1, 1, 256, 256), torch.zeros(1))
            want = whole(*levels, coords, lab, *mask)
            got = click(*prepared, coords, lab, *mask)
            bad = click(*dropped, coords, lab, *mask)
            worst = max(worst, *(float((a - b).abs().max()) for a, b in zip(got, want, strict=True)))
            worst_dropped = max(worst_dropped, float((bad[0] - want[0]).abs().max()))
    assert worst <= 1e-4, worst
    assert worst_dropped > 1e-2, worst_dropped


def test_manifest_describes_the_three_wire_tensors(exported: Path) -> None:
    doc = json.loads((exported / "manifest.json").read_text())
    assert (doc["version"], doc["model"], doc["resize"], doc["low_res_size"]) == (
        3,
        "sam2_tiny",
        "stretch",
        256,
    )
    assert doc["image_inputs"] == [
        {"name": "image_embed", "dtype": "float16", "shape": [1, 256, 64, 64]},
        {"name": "high_res_feats_0", "dtype": "float16", "shape": [1, 32, 256, 256]},
        {"name": "high_res_feats_1", "dtype": "float16", "shape": [1, 64, 128, 128]},
    ]
    browser, official = doc["variants"]["browser"], doc["variants"]["official"]
    assert doc["default_variant"] == "browser" and browser["masks_frame"] == "low_res"
    assert browser["mask_tokens"] == {"single": 0, "multi": [1, 2, 3], "selection": "stability"}
    # the per-image graph takes exactly the wire tensors (dtype and shape); its outputs are the
    # click graph's image inputs
    assert browser["prep"]["inputs"] == doc["image_inputs"]
    click_inputs = [t["name"] for t in browser["inputs"]]
    assert click_inputs[:-4] == [t["name"] for t in browser["prep"]["outputs"]]
    assert click_inputs[-4:] == ["point_coords", "point_labels", "mask_input", "has_mask_input"]
    prep_data = (exported / browser["prep"]["file"]).read_bytes()
    assert browser["prep"]["bytes"] == len(prep_data)
    assert browser["prep"]["sha256"] == hashlib.sha256(prep_data).hexdigest()
    assert [t["name"] for t in official["inputs"]][-1] == "orig_im_size"
    assert official["outputs"][0] == {
        "name": "masks", "dtype": "float32", "shape": ["num_labels", 3, "orig_height", "orig_width"],
    }  # fmt: skip
    for entry in (browser, official):
        data = (exported / entry["file"]).read_bytes()
        assert entry["bytes"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["options"]["verified"]["probes"] == 5
    assert browser["bytes"] < 0.6 * official["bytes"]  # float16 weights
    assert Manifest.read(exported).to_json() == doc


def test_cli_exports_sam2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "dec"
    assert (
        main(["export", "--model", "sam2_tiny", "--seed", "3", "--out", str(out), "--variant", "browser"])
        == 0
    )
    manifest = Manifest.read(out)
    assert (manifest.model, manifest.seed, list(manifest.variants)) == ("sam2_tiny", 3, ["browser"])
    assert "decoder_browser.onnx" in capsys.readouterr().out
    # SAM 1's browser options do not silently vanish
    args = ["export", "--model", "sam2_tiny", "--out", str(tmp_path / "q"), "--browser-weights", "int8"]
    assert main(args) == 1
    assert "SAM 1 only" in capsys.readouterr().err
