"""The page end to end: real headless Chromium, real ``clicksam serve``, real ONNX Runtime Web.

One browser session walks through the scenarios (web/e2e/scenarios.mjs) and records what it saw;
the tests below check each part and the files it downloaded. Screenshots land in artifacts/e2e/.
Every test runs once per served model (``PAGE_MODELS``): SAM 1's tiny preset through every scenario,
and SAM 2.1's tiny preset (three tensors per image, a stretched input frame) through click,
candidates, export, refine (right click, undo) and box, since each of its encodes takes seconds here;
the other scenarios skip for it, saying so.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from loopback import free_port, wait_ready
from PIL import Image, ImageDraw, ImageOps

from clicksam.model.amg import rle_to_mask

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
WEB = REPO / "web"
ARTIFACTS = REPO / "artifacts" / "e2e"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
#: the served model: the server's tiny preset, random weights (seed 0) unless a checkpoint exists
E2E_MODEL = os.environ.get("CLICKSAM_E2E_MODEL", "vit_test")
#: the SAM 2.1 model the page is also tested with (random weights, seed 0)
E2E_SAM2_MODEL = os.environ.get("CLICKSAM_E2E_SAM2_MODEL", "sam2_tiny")


@dataclass(frozen=True)
class PageModel:
    """A model the page's scenarios run with.

    Attributes:
        name: the served preset.
        steps: the scenarios of web/e2e/scenarios.mjs to run, or None for all of them.
        scene_input: [w, h] of the 640x480 scene in the model's input frame.
        decoder_env: environment variable that may name a ready decoder export (skips exporting).
        artifacts: where its screenshots and downloads go.
    """

    name: str
    steps: tuple[str, ...] | None
    scene_input: dict[str, int]
    decoder_env: str
    artifacts: Path


PAGE_MODELS = [
    PageModel(E2E_MODEL, None, {"w": 1024, "h": 768}, "CLICKSAM_E2E_DECODER_DIR", ARTIFACTS),
    PageModel(
        E2E_SAM2_MODEL,
        ("click", "candidates", "export", "rightclick", "undo", "box"),
        {"w": 1024, "h": 1024},  # stretched to the square
        "CLICKSAM_E2E_SAM2_DECODER_DIR",
        ARTIFACTS / E2E_SAM2_MODEL,
    ),
]


def _missing_tools() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (make browser-deps installs Debian chromium)"
    if shutil.which("node") is None:
        return "node is missing"
    if not (WEB / "node_modules" / "playwright-core").is_dir():
        return "web/node_modules is missing (cd web && npm ci)"
    if not (WEB / "dist" / "index.html").is_file():
        return "web/dist is not built (cd web && npm run build)"
    return None


@dataclass(frozen=True)
class Server:
    url: str
    port: int
    log: Path
    model: PageModel


@pytest.fixture(scope="session")
def browser_tools() -> None:
    problem = _missing_tools()
    if problem:
        pytest.fail(f"browser tests need their tools: {problem}")


@pytest.fixture(scope="session", params=PAGE_MODELS, ids=[m.name for m in PAGE_MODELS])
def clicksam_server(
    browser_tools: None, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Server]:
    """``clicksam serve`` of one of ``PAGE_MODELS`` on a free loopback port with the built page."""
    model: PageModel = request.param
    port = free_port()
    cache = tmp_path_factory.mktemp("clicksam-cache")
    model.artifacts.mkdir(parents=True, exist_ok=True)
    log = model.artifacts / "server.log"
    cmd = [
        sys.executable, "-m", "clicksam.cli", "serve",
        "--model", model.name, "--port", str(port), "--host", "127.0.0.1",
        "--web-dir", str(WEB / "dist"), "--cache-dir", str(cache), "--torch-threads", "1",
    ]  # fmt: skip
    decoder_dir = os.environ.get(model.decoder_env)  # a ready export, to skip exporting
    if decoder_dir:
        cmd += ["--decoder-dir", decoder_dir]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    url = f"http://127.0.0.1:{port}/"
    try:
        # the first start exports the decoder: SAM 2.1's two graphs take minutes on a loaded 2-core box
        wait_ready(url, proc, log, 900, "clicksam serve")
        yield Server(url=url, port=port, log=log, model=model)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_node(script: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run a node script from web/e2e (playwright-core resolves from web/node_modules)."""
    return subprocess.run(
        ["node", str(WEB / "e2e" / script), *args],
        cwd=WEB,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "CHROMIUM": str(CHROMIUM)},
    )


def scenario_results(path: Path, proc: subprocess.CompletedProcess[str], what: str) -> dict[str, Any]:
    """The JSON a node scenario wrote to ``path``; fails the test with what went wrong unless it says ok."""
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    if not results.get("ok"):
        failed = [s for s in results.get("steps", []) if not s.get("ok")]
        pytest.fail(
            f"{what} failed (exit {proc.returncode}): {failed or results.get('error')}\n"
            f"stderr: {proc.stderr[-2000:]}\nlogs: {results.get('logs', [])[-20:]}"
        )
    return results


SCENE_SIZE = (640, 480)  # (W, H)
EXIF_ORIENTED = (360, 480)  # (W, H) after EXIF orientation 6 is applied


def make_images(folder: Path) -> None:
    """scene.png (a disc and a square), exif6.jpg (portrait content stored landscape, EXIF 6)."""
    folder.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", SCENE_SIZE, (90, 110, 130))
    d = ImageDraw.Draw(im)
    d.ellipse((120, 80, 300, 240), fill=(220, 40, 40))
    d.rectangle((380, 250, 560, 420), fill=(40, 200, 80))
    im.save(folder / "scene.png")
    portrait = Image.new("RGB", EXIF_ORIENTED, (70, 70, 90))
    d = ImageDraw.Draw(portrait)
    d.ellipse((50, 70, 150, 170), fill=(240, 200, 30))
    d.rectangle((200, 330, 330, 450), fill=(30, 90, 230))
    # Orientation 6 means "rotate 90 degrees clockwise to display": store it turned the other way.
    stored = portrait.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(folder / "exif6.jpg", quality=95, exif=exif.tobytes())
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a PNG")


@pytest.fixture(scope="module")
def run(clicksam_server: Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    images = tmp_path_factory.mktemp("e2e-images")
    make_images(images)
    model = clicksam_server.model
    out = model.artifacts
    out.mkdir(parents=True, exist_ok=True)
    everything = "1" if has_everything(clicksam_server) else "0"
    steps = ["--steps", ",".join(model.steps)] if model.steps is not None else []
    proc = run_node(
        "scenarios.mjs", "--url", clicksam_server.url, "--images", str(images), "--out", str(out),
        "--everything", everything, *steps,
    )  # fmt: skip
    results = scenario_results(out / "results.json", proc, "browser scenarios")
    results["_images"] = str(images)
    results["_stderr"] = proc.stderr[-4000:]
    results["_model"] = model
    return results


def ran(run: dict[str, Any], *steps: str) -> None:
    """Skip the calling test, saying why, when its scenarios were not run for this model."""
    model: PageModel = run["_model"]
    missing = [s for s in steps if model.steps is not None and s not in model.steps]
    if missing:
        pytest.skip(
            f"{model.name} runs only the scenarios {', '.join(model.steps or ())}, not {', '.join(missing)}"
        )


def has_everything(server: Server) -> bool:
    """Whether this server has POST /api/everything (from its OpenAPI schema)."""
    with urllib.request.urlopen(server.url + "openapi.json", timeout=10) as r:
        paths = json.loads(r.read())["paths"]
    return "/api/everything" in paths


def png_mask(path: Path) -> np.ndarray:
    im = Image.open(path)
    assert im.format == "PNG"
    return np.asarray(im.convert("L")) > 127


def coco_masks(path: Path) -> tuple[dict[str, Any], list[np.ndarray]]:
    coco = json.loads(path.read_text())
    masks = [rle_to_mask(a["segmentation"]) for a in coco["annotations"]]
    return coco, masks


def test_broken_file_shows_an_error_and_the_page_keeps_working(run: dict[str, Any]) -> None:
    ran(run, "broken")
    assert "not an image" in run["broken"]["error"]
    # the next upload in the same page worked and cleared the message
    assert run["click"]["s0"]["imageReady"] is True
    assert run["click"]["errorAfterUpload"] is None


def test_click_shows_a_mask_and_three_candidates(run: dict[str, Any]) -> None:
    s = run["click"]["s"]
    assert s["original"] == {"w": 640, "h": 480}
    assert s["input"] == run["_model"].scene_input
    (point,) = s["prompts"]["points"]
    assert point == {"x": pytest.approx(210, abs=0.01), "y": pytest.approx(160, abs=0.01), "label": 1}
    assert s["maskArea"] > 0
    assert run["click"]["candidates"] == 3
    # best first: the chosen token is the first of the candidates ranked by predicted IoU
    iou = s["iou"]
    assert s["token"] == s["ranked"][0]
    assert [iou[t] for t in s["ranked"]] == sorted((iou[t] for t in s["ranked"]), reverse=True)
    assert len(run["click"]["measures"]) >= 1 and all(m > 0 for m in run["click"]["measures"])


def test_candidates_switch_by_click_and_keys(run: dict[str, Any]) -> None:
    c = run["candidates"]
    ranked = c["before"]["ranked"]
    assert c["picked"]["token"] == ranked[1]
    assert c["selected"] == "true"
    assert c["third"]["token"] == ranked[2]
    assert c["tab"]["token"] == ranked[0]
    hashes = {c["before"]["maskHash"], c["picked"]["maskHash"], c["third"]["maskHash"]}
    assert len(hashes) > 1, "the three candidates gave the same mask"


def test_exports_are_valid_and_match_the_shown_mask(run: dict[str, Any]) -> None:
    e = run["export"]
    assert e["png"]["suggested"] == "scene_mask.png"
    assert e["coco"]["suggested"] == "scene_coco.json"
    assert e["cutout"]["suggested"] == "scene_cutout.png"
    mask = png_mask(Path(e["png"]["file"]))
    assert mask.shape == (480, 640)
    coco, masks = coco_masks(Path(e["coco"]["file"]))
    assert coco["images"][0] == {"id": 1, "file_name": "scene.png", "width": 640, "height": 480}
    assert len(masks) == 1
    np.testing.assert_array_equal(masks[0], mask)
    assert int(mask.sum()) == e["s"]["maskArea"] == coco["annotations"][0]["area"]
    cut = Image.open(Path(e["cutout"]["file"]))
    assert cut.mode == "RGBA" and cut.size == (640, 480)
    alpha = np.asarray(cut)[..., 3]
    np.testing.assert_array_equal(alpha > 0, mask)
    # the cut-out keeps the image's own pixels where the mask is
    scene = np.asarray(Image.open(Path(run["_images"]) / "scene.png").convert("RGB"))
    np.testing.assert_array_equal(np.asarray(cut)[..., :3][mask], scene[mask])


def test_right_click_adds_a_background_point_and_changes_the_mask(run: dict[str, Any]) -> None:
    r = run["rightclick"]
    assert [p["label"] for p in r["s"]["prompts"]["points"]] == [1, 0]
    assert r["s"]["maskHash"] != r["before"]["maskHash"]
    # with two prompts the single-mask token is shown
    assert r["s"]["token"] == 0


def test_undo_restores_the_previous_mask_and_redo_reapplies(run: dict[str, Any]) -> None:
    u = run["undo"]
    assert u["s"]["maskHash"] == run["rightclick"]["before"]["maskHash"]
    assert u["redo"]["maskHash"] == run["rightclick"]["s"]["maskHash"]
    assert u["again"]["maskHash"] == run["rightclick"]["before"]["maskHash"]


def test_box_gives_a_mask_and_enter_keeps_it_as_an_object(run: dict[str, Any]) -> None:
    b = run["box"]
    box = b["s"]["prompts"]["box"]
    assert box is not None and b["s"]["prompts"]["points"] == []
    assert abs(box["x0"] - 360) < 2 and abs(box["y1"] - 440) < 2
    assert b["s"]["maskArea"] > 0
    assert b["kept"]["objects"][0]["area"] == b["s"]["maskArea"]
    assert b["listed"] == 1


def test_hover_preview_without_prompts(run: dict[str, Any]) -> None:
    ran(run, "hover")
    assert run["hover"]["hover"] is True


def test_exif_rotated_jpeg_is_shown_upright_and_masks_line_up(run: dict[str, Any]) -> None:
    ran(run, "exif")
    x = run["exif"]
    assert x["s0"]["original"] == {"w": EXIF_ORIENTED[0], "h": EXIF_ORIENTED[1]}
    mask = png_mask(Path(x["png"]["file"]))
    assert mask.shape == (EXIF_ORIENTED[1], EXIF_ORIENTED[0])
    _, masks = coco_masks(Path(x["coco"]["file"]))
    np.testing.assert_array_equal(masks[0], mask)
    # the server saw the same upright image the page shows
    with Image.open(Path(run["_images"]) / "exif6.jpg") as im:
        assert ImageOps.exif_transpose(im).size == EXIF_ORIENTED


def test_help_overlay_and_phone_layout(run: dict[str, Any]) -> None:
    ran(run, "help", "phone")
    assert run["help"] == {"open": True, "closed": True}
    phone = run["phone"]
    assert phone["overflow"] is False
    assert phone["stage"]["width"] <= 390


def test_screenshots_saved(run: dict[str, Any]) -> None:
    model: PageModel = run["_model"]
    shots = {"click": "click", "box": "box", "exif": "exif", "phone": "phone", "broken": "broken-file"}
    for step, name in shots.items():
        if model.steps is not None and step not in model.steps:
            continue
        path = model.artifacts / f"{name}.png"
        assert path.exists()
        with Image.open(io.BytesIO(path.read_bytes())) as im:
            assert im.size[0] > 300


@pytest.fixture(scope="module")
def reference_predictor(clicksam_server: Server) -> Any:
    """SamPredictor with the weights the server serves (the server's own model resolution): SAM 1's
    predictor, or for a SAM 2.1 model the official SAM2ImagePredictor semantics."""
    import torch

    from clicksam.model import SamPredictor
    from clicksam.server.loading import load_model, resolve_model

    torch.set_num_threads(1)
    return SamPredictor(load_model(resolve_model(clicksam_server.model.name)))


def reference_mask(predictor: Any, image: Image.Image, x: float, y: float, token: int) -> np.ndarray:
    """The Python model's mask for one foreground click: mask token ``token`` (1..3 multimask)."""
    predictor.set_image(np.asarray(ImageOps.exif_transpose(image).convert("RGB")))
    masks, _, _ = predictor.predict(
        point_coords=np.array([[x, y]], dtype=np.float32),
        point_labels=np.array([1]),
        multimask_output=True,
    )
    return np.asarray(masks[token - 1], dtype=bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


@pytest.mark.parametrize("case", ["scene", "exif"])
def test_page_mask_matches_the_python_model(run: dict[str, Any], reference_predictor: Any, case: str) -> None:
    """The whole chain (orientation, click frames, fp16 embedding, ONNX decoder in the browser, crop and
    upsampling) gives the mask the PyTorch model gives for the same click on the same upright image."""
    if case == "scene":
        state, coco_file, image_name = run["click"]["s"], run["export"]["coco"]["file"], "scene.png"
        # the export was taken after switching candidates back to the best one
        assert run["export"]["s"]["token"] == state["token"]
    else:
        ran(run, "exif")
        state, coco_file, image_name = run["exif"]["s"], run["exif"]["coco"]["file"], "exif6.jpg"
    (point,) = state["prompts"]["points"]
    _, masks = coco_masks(Path(coco_file))
    page = masks[-1]
    with Image.open(Path(run["_images"]) / image_name) as im:
        ref = reference_mask(reference_predictor, im, point["x"], point["y"], state["token"])
    assert page.shape == ref.shape
    assert 0 < ref.sum() < ref.size, "degenerate reference mask: the check would prove nothing"
    assert iou(page, ref) > 0.95


def http_get(server: Server, path: str) -> bytes:
    with urllib.request.urlopen(server.url + path.lstrip("/"), timeout=60) as r:
        return bytes(r.read())


def test_browser_decoder_equals_the_official_interface_export(
    run: dict[str, Any], clicksam_server: Server
) -> None:
    """SAM 2.1: the page's exported mask for the first click (the browser graph in Chromium, on the
    float16 tensors the page fetched, upsampled by the page) equals the official-interface decoder
    (``decoder.onnx``: image_embed, high_res_feats_0/1, ..., orig_im_size) run in ONNX Runtime on the
    float32 tensors of the same embedding, thresholded at the original size: mask IoU >= 0.999. (A page
    that upsampled SAM 2.1's logits through the padded model frame as for SAM 1 measured 0.971.)"""
    import onnxruntime as ort

    manifest = json.loads(http_get(clicksam_server, "decoder/manifest.json"))
    if manifest["resize"] != "stretch":
        pytest.skip(
            "SAM 1's page masks are checked against PyTorch (test_page_mask_matches_the_python_model)"
        )
    state = run["export"]["s"]
    (point,) = state["prompts"]["points"]
    token = state["token"]
    assert token in (1, 2, 3), "one click shows one of the three candidates"
    scene = Path(run["_images"]) / "scene.png"
    form = encode_multipart("image", "scene.png", scene.read_bytes())
    request = urllib.request.Request(clicksam_server.url + "api/embeddings", data=form[1], headers=form[0])
    with urllib.request.urlopen(request, timeout=300) as r:
        meta = json.loads(r.read())
    assert meta["cached"] is True, "the page's upload encoded the same image: this is its embedding"
    body = np.frombuffer(http_get(clicksam_server, meta["url"] + "?dtype=float32"), "<f4")
    feeds: dict[str, np.ndarray] = {
        t["name"]: body[t["offset"] : t["offset"] + t["size"]].reshape(t["shape"]) for t in meta["tensors"]
    }
    h, w = meta["original_size"]
    size = manifest["image_size"]
    feeds |= {
        "point_coords": np.array([[[point["x"] / w * size, point["y"] / h * size]]], np.float32),
        "point_labels": np.array([[1]], np.float32),
        "mask_input": np.zeros((1, 1, manifest["low_res_size"], manifest["low_res_size"]), np.float32),
        "has_mask_input": np.zeros(1, np.float32),
        "orig_im_size": np.array([h, w], np.float32),
    }
    official = manifest["variants"]["official"]
    session = ort.InferenceSession(http_get(clicksam_server, "decoder/" + official["file"]))
    masks, _, _ = session.run(["masks", "iou_predictions", "low_res_masks"], feeds)
    ref = masks[0, token - 1] > manifest["mask_threshold"]  # (H, W): the three candidates, in order
    _, page_masks = coco_masks(Path(run["export"]["coco"]["file"]))
    page = page_masks[-1]
    assert page.shape == ref.shape == (h, w)
    assert 0 < ref.sum() < ref.size, "degenerate reference mask: the check would prove nothing"
    value = iou(page, ref)
    print(f"page vs official-interface export: mask IoU {value:.5f}")  # shown with -s / in the report
    assert value >= 0.999, f"mask IoU {value:.5f}"


def encode_multipart(field: str, filename: str, data: bytes) -> tuple[dict[str, str], bytes]:
    """(headers, body) of a multipart/form-data upload of one file."""
    boundary = "clicksam-e2e-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return {
        "Content-Type": f"multipart/form-data; boundary={boundary}"
    }, head + data + f"\r\n--{boundary}--\r\n".encode()


def test_touch_tap_toggle_and_long_press(run: dict[str, Any]) -> None:
    ran(run, "touch")
    t = run["touch"]
    assert t["labels"] == [1, 0, 0]
    assert t["tap"]["maskArea"] > 0


def test_everything_overlay_hover_pick_and_coco(run: dict[str, Any]) -> None:
    ran(run, "everything")
    if "everything" not in run:
        pytest.skip("this server has no POST /api/everything yet")
    e = run["everything"]
    assert e["s"]["everything"]["masks"] > 0
    _, masks = coco_masks(Path(e["coco"]["file"]))
    assert len(masks) >= e["s"]["everything"]["masks"]
    assert all(m.shape == (480, 640) for m in masks)
    assert e["hovered"] is not None, "hovering the disc highlighted no mask"
    assert e["picked"] is not None, "clicking a mask did not make it the current one"
