"""Browser benchmark of the exported decoder variants against Meta's export recipe of the same weights.

    .venv/bin/python bench/browser/run.py                      # default: 20 clicks per config
    .venv/bin/python bench/browser/run.py --runs 40 --repeat 2 --json /tmp/bench.json

What it does (see bench/README.md):
1. builds ``vit_b`` with seeded random weights (``clicksam.model.build_sam("vit_b", seed=...)``),
   exports our variants with ``clicksam.export``, and loads the *same* state dict into the official
   ``segment_anything`` model to export Meta's recipe (``SamOnnxModel``, TorchScript exporter, opset
   17) and its ``quantize_dynamic`` QUInt8 copy -- the official package is a test-time referee only;
2. bundles the shipped page's mask postprocessing (``web/src/mask.ts``) into the bench page and
   serves the page, onnxruntime-web and the models on 127.0.0.1 with COOP/COEP (cross-origin
   isolation -> SharedArrayBuffer -> WASM threads);
3. drives Debian Chromium via playwright-core (``drive.mjs``), one fresh browser per configuration;
4. prints per variant and image size: decoder ``session.run`` p50/p95, click-to-mask-on-canvas
   p50/p95, cold start (fetch + session create), file size, ours/theirs ratios, and an in-browser
   mask equality check of the browser variant (page-side upsampling) against Meta's full-size masks.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import types
import urllib.parse
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ORT_DIST = HERE / "node_modules" / "onnxruntime-web" / "dist"
#: the bundler that web/'s Vite ships: builds the page's shipped mask code for the bench page
ROLLDOWN = HERE.parents[1] / "web" / "node_modules" / "rolldown" / "bin" / "cli.mjs"
BASELINE = "meta_fp32"


@dataclass(frozen=True)
class BenchModel:
    name: str
    file: str
    iface: str  # official | low_res
    emb: str  # float32 | float16
    ours: bool
    prep: str | None = None  # per-image graph (run once per embedding), if the variant has one

    def query(self, prefix: str = "") -> dict[str, str]:
        """The page's URL parameters naming this model (``ref_`` prefix for the reference of a pair)."""
        q = {"iface": self.iface, "emb": self.emb}
        if self.prep:
            q["prep"] = f"/models/{self.prep}"
        q = {prefix + k: v for k, v in q.items()}
        q["ref" if prefix else "model"] = f"/models/{self.file}"
        return q


# ---- models ---------------------------------------------------------------------------------------
def _stub_torchvision() -> None:
    """segment_anything imports torchvision (predictor / AMG only); it does not load here."""
    for name in (
        "torchvision",
        "torchvision.transforms",
        "torchvision.transforms.functional",
        "torchvision.ops",
        "torchvision.ops.boxes",
    ):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["torchvision.transforms.functional"].resize = None  # type: ignore[attr-defined]
    sys.modules["torchvision.transforms.functional"].to_pil_image = None  # type: ignore[attr-defined]
    sys.modules["torchvision.ops.boxes"].batched_nms = None  # type: ignore[attr-defined]
    sys.modules["torchvision.ops.boxes"].box_area = None  # type: ignore[attr-defined]


def export_meta(state_dict: dict[str, torch.Tensor], out_dir: Path) -> tuple[str, str]:
    """Meta's export recipe (scripts/export_onnx_model.py) of the given weights, fp32 + QUInt8.

    Only the prompt encoder and mask decoder are exported, so only they are loaded (strictly) into
    the official ``vit_b``: a model with another image encoder (the demo model) gives the same
    decoder.
    """
    _stub_torchvision()
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from segment_anything import sam_model_registry
    from segment_anything.utils.onnx import SamOnnxModel

    sam = sam_model_registry["vit_b"]()
    for part in ("prompt_encoder", "mask_decoder"):
        sub = {k[len(part) + 1 :]: v for k, v in state_dict.items() if k.startswith(part + ".")}
        getattr(sam, part).load_state_dict(sub, strict=True)
    sam.eval()
    model = SamOnnxModel(
        model=sam, return_single_mask=False, use_stability_score=False, return_extra_metrics=False
    )
    dummy = {
        "image_embeddings": torch.randn(1, 256, 64, 64),
        "point_coords": torch.randint(low=0, high=1024, size=(1, 5, 2), dtype=torch.float),
        "point_labels": torch.randint(low=0, high=4, size=(1, 5), dtype=torch.float),
        "mask_input": torch.randn(1, 1, 256, 256),
        "has_mask_input": torch.tensor([1.0]),
        "orig_im_size": torch.tensor([1500.0, 2250.0]),
    }
    fp32, q8 = out_dir / "meta_decoder.onnx", out_dir / "meta_decoder_quant.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            tuple(dummy.values()),
            str(fp32),
            export_params=True,
            opset_version=17,
            do_constant_folding=True,
            input_names=list(dummy),
            output_names=["masks", "iou_predictions", "low_res_masks"],
            dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
            dynamo=False,
        )
        quantize_dynamic(
            str(fp32), str(q8), per_channel=False, reduce_range=False, weight_type=QuantType.QUInt8
        )
    return fp32.name, q8.name


def export_ours(sam: torch.nn.Module, out_dir: Path, extra: Sequence[str]) -> list[BenchModel]:
    """Our two variants (as the CLI writes them) + optional ablations of the browser variant's choices.

    An ablation whose file fails the post-export check (e.g. int8 below mask IoU 0.98) is reported
    and left out of the timing.
    """
    from clicksam.export.decoder import DEFAULT_CONFIGS, VariantConfig, export_decoder, export_variant
    from clicksam.export.errors import ExportVerificationError

    browser = DEFAULT_CONFIGS["browser"]
    g = browser.graph
    ablations: dict[str, VariantConfig] = {
        "browser_fp32emb": replace(browser, graph=replace(g, embedding_float16=False)),
        "browser_noprep": replace(browser, graph=replace(g, precompute_image=False)),
        "browser_fp32weights": replace(browser, weights_float16=False),
        "browser_nofold": replace(browser, graph=replace(g, fold_attention=False)),
        "browser_conv_upscaling": replace(
            browser, graph=replace(g, matmul_upscaling=False, precompute_image=False)
        ),
        "browser_pe_const": replace(browser, graph=replace(g, pe_in_graph=False)),
        "browser_plain": replace(
            browser,
            graph=replace(
                g,
                fold_attention=False,
                matmul_upscaling=False,
                token_major_dense=False,
                precompute_image=False,
            ),
        ),
        "browser_int8": replace(browser, quantize=True, weights_float16=False),
        "browser_int8w": browser.with_weights("int8"),
        "browser_int8up": replace(browser, quantize=True, quantize_scopes=("/upscaler/",)),
    }
    unknown = [e for e in extra if e not in ablations]
    if unknown:
        raise SystemExit(f"unknown ablation(s) {unknown}; choose from {sorted(ablations)}")
    export_decoder(sam, out_dir, model_name="vit_b", checkpoint_sha256=None, seed=0)
    models = models_from_manifest(out_dir)
    for name in extra:
        cfg = ablations[name]
        try:
            report = export_variant(sam, out_dir / f"decoder_{name}.onnx", cfg)
        except ExportVerificationError as exc:
            print(f"ablation {name} left out: {exc}", flush=True)
            continue
        assert report is not None
        print(f"ablation {name}: max |logit err| {report.max_abs_err:.3g}, min mask IoU {report.min_iou:.5f}")
        emb = "float16" if cfg.graph.embedding_float16 else "float32"
        prep = f"decoder_{name}_prep.onnx" if cfg.graph.precompute_image else None
        models.append(BenchModel(f"ours_{name}", f"decoder_{name}.onnx", "low_res", emb, True, prep))
    return models


def demo_embeddings(sam: torch.nn.Module, out_dir: Path, count: int = 2) -> list[str]:
    """Real embeddings for ``--weights demo``: procedural scenes (held-out seed) resized to 1024x768
    (4:3, as both benchmark sizes) and encoded by the demo model; raw float32 files in ``out_dir``."""
    from PIL import Image

    from clicksam.model import SamPredictor
    from clicksam.train.evaluate import HELD_OUT_SEED
    from clicksam.train.scenes import render_scene

    predictor = SamPredictor(sam)
    rng = np.random.default_rng(HELD_OUT_SEED)
    names = []
    for i in range(count):
        scene = render_scene(rng)
        image = np.asarray(Image.fromarray(scene.image).resize((1024, 768), Image.Resampling.BILINEAR))
        with torch.no_grad():
            predictor.set_image(image)
            emb = predictor.get_image_embedding()
        names.append(f"embedding_{i}.f32")
        (out_dir / names[-1]).write_bytes(emb.numpy().astype("<f4").tobytes())
    return names


def models_from_manifest(out_dir: Path) -> list[BenchModel]:
    """Our exported variants as listed in ``out_dir/manifest.json``."""
    from clicksam.formats import Manifest

    models = []
    for name, entry in Manifest.read(out_dir).variants.items():
        inputs = entry.prep.inputs if entry.prep else entry.inputs
        emb = next(t.dtype for t in inputs if t.name == "image_embeddings")
        iface = "low_res" if entry.masks_frame == "low_res" else "official"
        prep = entry.prep.file if entry.prep else None
        models.append(BenchModel(f"ours_{name}", entry.file, iface, emb, True, prep))
    return models


# ---- static server ----------------------------------------------------------------------------------
def build_page() -> None:
    """Bundle page/shipped.ts (web/src/mask.ts and frames.ts, the page's own mask code) to page/shipped.js."""
    entry, out = HERE / "page" / "shipped.ts", HERE / "page" / "shipped.js"
    cmd = ["node", str(ROLLDOWN), str(entry), "-f", "esm", "-p", "browser", "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"bundling {entry} failed:\n{r.stdout}{r.stderr}")


def serve(models_dir: Path) -> tuple[http.server.ThreadingHTTPServer, int]:
    """127.0.0.1 server for page/, /ort/ and /models/, cross-origin isolated (COOP + COEP)."""
    roots = [("/ort/", ORT_DIST), ("/models/", models_dir), ("/", HERE / "page")]
    types_ = {
        ".html": "text/html; charset=utf-8",
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".wasm": "application/wasm",
        ".onnx": "application/octet-stream",
    }

    class Handler(http.server.SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def translate_path(self, path: str) -> str:
            path = urllib.parse.unquote(urllib.parse.urlsplit(path).path)
            for prefix, root in roots:
                if path.startswith(prefix):
                    parts = [p for p in path[len(prefix) :].split("/") if p not in ("", ".", "..")]
                    return str(root.joinpath(*parts))
            return str(HERE / "__missing__")

        def guess_type(self, path: str | os.PathLike[str]) -> str:
            return types_.get(Path(path).suffix.lower(), "application/octet-stream")

        def end_headers(self) -> None:
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
            self.send_header("Cross-Origin-Resource-Policy", "same-origin")
            self.send_header("Cache-Control", "no-store")
            super().end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, int(server.server_address[1])


# ---- running + reporting ---------------------------------------------------------------------------
def run_jobs(base: str, jobs: list[dict[str, Any]], wait_idle: float) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        spec, out = Path(tmp) / "jobs.json", Path(tmp) / "out.json"
        spec.write_text(json.dumps({"base": base, "jobs": jobs, "waitIdle": wait_idle}))
        subprocess.run(["node", str(HERE / "drive.mjs"), str(spec), str(out)], check=True, cwd=HERE)
        results: list[dict[str, Any]] = json.loads(out.read_text())
    for r in results:
        if not r["ok"]:
            raise SystemExit(f"browser job {r['id']} failed: {r['error']}")
    return results


def pct(xs: Sequence[float], p: float) -> float:
    return float(np.percentile(np.asarray(xs, np.float64), p))


def main(argv: Sequence[str] | None = None, build: Callable[[int], torch.nn.Module] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1024x768,4000x3000", help="original image sizes WxH")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=20, help="timed clicks per config")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=1, help="fresh browsers per config (samples pooled)")
    ap.add_argument(
        "--check-clicks", type=int, default=10, help="clicks of the in-browser mask equality check (0: skip)"
    )
    ap.add_argument(
        "--ablations",
        default="",
        help="comma list of ablations of the browser variant (see export_ours)",
    )
    ap.add_argument("--only", default="", help="comma list of model names to time (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--weights",
        choices=("random", "demo"),
        default="random",
        help="random: vit_b-sized decoder with seeded random weights and random embeddings (fragmented "
        "masks: the page-side postprocessing at its worst); demo: the shipped demo model's trained "
        "decoder on real embeddings of procedural scenes (masks shaped like real ones)",
    )
    ap.add_argument(
        "--out-dir", type=Path, default=None, help="where the ONNX files go (default: a temp dir)"
    )
    ap.add_argument(
        "--wait-idle",
        type=float,
        default=60.0,
        help="max seconds to wait for a quiet machine before each browser",
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="extra jobs with onnxruntime-web's profiler (per-op times) for ours_browser and meta_fp32",
    )
    ap.add_argument(
        "--pair",
        action="store_true",
        help="also time ours vs meta_fp32 in one page, clicks alternating (fair ratios on a busy machine)",
    )
    ap.add_argument(
        "--canvas",
        choices=("display", "full"),
        default="display",
        help="mask canvas: the image fitted into --display (as the page draws it) or the original size",
    )
    ap.add_argument("--display", default="1280x960", help="display box WxH for --canvas display")
    ap.add_argument("--skip-export", action="store_true", help="reuse the files in --out-dir")
    ap.add_argument("--json", type=Path, default=None, help="write raw samples here")
    args = ap.parse_args(argv)
    if not (ORT_DIST / "ort.wasm.min.mjs").exists():
        raise SystemExit(f"missing {ORT_DIST}: run `npm ci` in {HERE} first (see bench/README.md)")
    if not ROLLDOWN.exists():
        raise SystemExit(f"missing {ROLLDOWN}: run `npm ci` in web/ first (see bench/README.md)")
    build_page()
    torch.set_num_threads(1)
    tmp = tempfile.TemporaryDirectory()
    out_dir = args.out_dir or Path(tmp.name)
    out_dir.mkdir(parents=True, exist_ok=True)

    if build is None:
        from clicksam.model import build_sam

        def build(seed: int) -> torch.nn.Module:
            return build_sam("demo") if args.weights == "demo" else build_sam("vit_b", seed=seed)

    if args.skip_export:
        models = models_from_manifest(out_dir)
        meta_fp32, meta_q8 = "meta_decoder.onnx", "meta_decoder_quant.onnx"
    else:
        sam = build(args.seed).eval()
        extra = [a for a in args.ablations.split(",") if a]
        print(f"exporting to {out_dir} ...", flush=True)
        models = export_ours(sam, out_dir, extra)
        meta_fp32, meta_q8 = export_meta(sam.state_dict(), out_dir)
        if args.weights == "demo":
            embeddings = demo_embeddings(sam, out_dir)
            (out_dir / "embeddings.json").write_text(json.dumps(embeddings))
    embeddings_file = out_dir / "embeddings.json"
    embs = (
        ",".join(f"/models/{n}" for n in json.loads(embeddings_file.read_text()))
        if embeddings_file.exists()
        else ""
    )
    models += [
        BenchModel("meta_fp32", meta_fp32, "official", "float32", False),
        BenchModel("meta_int8", meta_q8, "official", "float32", False),
    ]
    all_models = models
    if args.only:
        keep = set(args.only.split(","))
        models = [m for m in models if m.name in keep or m.name == BASELINE]
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]

    server, port = serve(out_dir)
    base = f"http://127.0.0.1:{port}/"
    try:
        jobs: list[dict[str, Any]] = []
        for k in range(args.repeat):  # repeats outermost, models interleaved: drifts hit all alike
            for w, h in sizes:
                for m in models:
                    query = urllib.parse.urlencode(
                        {
                            "mode": "bench",
                            **m.query(),
                            "w": w,
                            "h": h,
                            "threads": args.threads,
                            "warmup": args.warmup,
                            "runs": args.runs,
                            "seed": 1 + k,
                            "canvas": args.canvas,
                            "display": args.display,
                        }
                    )
                    jobs.append({"id": f"{m.name}@{w}x{h}#{k}", "query": query})
        browser = next((m for m in all_models if m.name == "ours_browser"), None)
        refs = [m for m in all_models if m.name in ("ours_official", BASELINE)]
        if args.check_clicks and browser is not None:
            for w, h in sizes:
                for ref in refs:
                    query = urllib.parse.urlencode(
                        {
                            "mode": "check",
                            **browser.query(),
                            "ref": f"/models/{ref.file}",
                            "w": w,
                            "h": h,
                            "threads": args.threads,
                            "runs": args.check_clicks,
                            "seed": 7,
                        }
                    )
                    jobs.append({"id": f"check@{w}x{h}@{ref.name}", "query": query})
        if args.profile:
            for m in all_models:
                if m.name not in ("ours_browser", BASELINE):
                    continue
                for w, h in sizes:
                    query = urllib.parse.urlencode(
                        {
                            "mode": "bench", **m.query(),
                            "w": w, "h": h, "threads": args.threads, "warmup": 1, "runs": 5, "profile": 1,
                        }
                    )  # fmt: skip
                    jobs.append({"id": f"profile@{w}x{h}@{m.name}", "query": query, "console": True})
        if args.pair:
            meta = next(m for m in all_models if m.name == BASELINE)
            for m in models:
                if not m.ours:
                    continue
                for w, h in sizes:
                    query = urllib.parse.urlencode(
                        {
                            "mode": "pair", **m.query(), **meta.query("ref_"),
                            "w": w, "h": h, "threads": args.threads, "warmup": args.warmup, "runs": args.runs,
                            "canvas": args.canvas, "display": args.display,
                        }
                    )  # fmt: skip
                    jobs.append({"id": f"pair@{w}x{h}@{m.name}", "query": query})
        if embs:  # the same real embeddings for every job
            for job in jobs:
                job["query"] += "&" + urllib.parse.urlencode({"embs": embs})
        results = run_jobs(base, jobs, args.wait_idle)
    finally:
        server.shutdown()
    report(models, sizes, results, out_dir, args)
    tmp.cleanup()
    return 0


def report(
    models: list[BenchModel],
    sizes: list[tuple[int, ...]],
    results: list[dict[str, Any]],
    out_dir: Path,
    args: argparse.Namespace,
) -> None:
    env = results[0]["result"]["env"]
    first = next(r for r in results if "samples" in r["result"])
    webgpu = env["webgpuAdapter"] or f"none ({env['webgpuError']})"
    print(
        f"chromium {first['browserVersion']}  onnxruntime-web {first['result']['ortVersion']}  "
        f"threads={args.threads}  crossOriginIsolated={env['crossOriginIsolated']} "
        f"SharedArrayBuffer={env['sharedArrayBuffer']} hwThreads={env['hardwareConcurrency']}  "
        f"WebGPU: {webgpu}"
    )
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for m in models:
        for w, h in sizes:
            key = f"{w}x{h}"
            rs = [r for r in results if r["id"].startswith(f"{m.name}@{key}#")]
            samples = [s for r in rs for s in r["result"]["samples"]]
            rows[(m.name, key)] = {
                "run": [s["run"] for s in samples],
                "click": [s["click"] for s in samples],
                "post": [s["post"] for s in samples],
                "put": [s["put"] for s in samples],
                "cold": statistics.median(r["result"]["cold"]["coldMs"] for r in rs),
                "create": statistics.median(r["result"]["cold"]["createMs"] for r in rs),
                "first": statistics.median(r["result"]["cold"]["firstRunMs"] for r in rs),
                "bytes": rs[0]["result"]["bytes"],
                "prep": [ms for r in rs for ms in r["result"].get("prepMs", [])],
                "other_cpu": max(r["otherCpu"] for r in rs),
            }
    hdr = [
        "model",
        "image",
        "MB",
        "run p50",
        "run p95",
        "click p50",
        "click p95",
        "post p50",
        "put p50",
        "cold",
        "create",
        "prep",
        "1st run",
        "bg cpu",
        "click/meta",
        "run/meta",
        "size/meta",
    ]
    print("\n| " + " | ".join(hdr) + " |\n|" + "---|" * len(hdr))
    for (name, key), r in rows.items():
        b = rows[(BASELINE, key)]
        print(
            "| "
            + " | ".join(
                [
                    name,
                    key,
                    f"{r['bytes'] / 1e6:.2f}",
                    f"{pct(r['run'], 50):.1f}",
                    f"{pct(r['run'], 95):.1f}",
                    f"{pct(r['click'], 50):.1f}",
                    f"{pct(r['click'], 95):.1f}",
                    f"{pct(r['post'], 50):.1f}",
                    f"{pct(r['put'], 50):.1f}",
                    f"{r['cold']:.0f}",
                    f"{r['create']:.0f}",
                    f"{statistics.median(r['prep']):.0f}" if any(r["prep"]) else "-",
                    f"{r['first']:.0f}",
                    f"{100 * r['other_cpu']:.0f}%",
                    f"{pct(r['click'], 50) / pct(b['click'], 50):.2f}",
                    f"{pct(r['run'], 50) / pct(b['run'], 50):.2f}",
                    f"{r['bytes'] / b['bytes']:.2f}",
                ]
            )
            + " |"
        )
    canvas = "the original size" if args.canvas == "full" else f"the image fitted into {args.display}"
    print(
        f"(ms; run = session.run; click = feeds + run + best multimask token + mask on a canvas of {canvas}; "
        "post = threshold (official) or page-side upsample + threshold (low_res); "
        "put = putImageData; cold = fetch + InferenceSession.create in a fresh browser (both graphs); "
        "prep = the per-image graph, once per embedding; "
        "bg cpu = other processes' share of the cores)"
    )
    goals = {"1024x768": 0.5, "4000x3000": 0.25}
    for (name, key), r in rows.items():
        if name == "ours_browser" and key in goals and (BASELINE, key) in rows:
            ratio = pct(r["click"], 50) / pct(rows[(BASELINE, key)]["click"], 50)
            verdict = "met" if ratio <= goals[key] else "NOT met"
            print(
                f"goal {key}: ours_browser click p50 = {ratio:.2f} x {BASELINE} "
                f"(goal <= {goals[key]}): {verdict}"
            )
    for r in results:
        if r["id"].startswith("check@"):
            ious = r["result"]["ious"]
            _, size, ref_name = r["id"].split("@")
            print(
                f"mask check {size}: ours_browser (page-side upsampling) vs {ref_name} full-size masks, "
                f"{len(ious)} clicks: IoU min {min(ious):.5f} mean {statistics.fmean(ious):.5f}; "
                f"best-token choice differs in {r['result']['choiceMismatch']}; "
                f"max |low-res logit diff| {r['result']['maxLowResErr']:.3g}"
            )
    for (name, key), r in rows.items():
        if r["other_cpu"] > 0.10:
            share = f"{100 * r['other_cpu']:.0f}%"
            print(f"WARNING: {name}@{key}: other processes used {share} of the CPUs; timings skewed")
    for r in results:
        if r["id"].startswith("pair@"):
            _, size, name = r["id"].split("@")
            a, b = (r["result"]["pair"][k]["samples"] for k in (0, 1))
            cols = []
            for key in ("run", "click", "post"):
                pa, pb = pct([s[key] for s in a], 50), pct([s[key] for s in b], 50)
                cols.append(f"{key} p50 {pa:.1f} vs {pb:.1f} ms (x{pa / pb:.2f})")
            cw, ch = r["result"]["canvas"]
            print(
                f"pair {size} (canvas {cw}x{ch}): {name} vs {BASELINE}, same page, alternating clicks: "
                + "; ".join(cols)
            )
    for r in results:
        if r["id"].startswith("profile@"):
            print_profile(r)
    if args.json:
        args.json.write_text(
            json.dumps({"results": results, "files": {m.name: m.file for m in models}}, indent=1)
        )
    print(f"models in {out_dir}")


def print_profile(result: dict[str, Any], top: int = 8) -> None:
    """Per-op totals from onnxruntime-web's profiler events (printed to the console by the wasm build)."""
    by_op: dict[str, float] = {}
    runs = 0
    run_us = 0.0
    for line in result["console"]:
        if not line.startswith("{"):
            continue
        try:
            ev = json.loads(line.rstrip(","))
        except json.JSONDecodeError:
            continue
        if ev.get("cat") == "Session" and ev.get("name") == "model_run":
            runs += 1
            run_us += float(ev["dur"])
        elif ev.get("cat") == "Node" and str(ev.get("name", "")).endswith("_kernel_time"):
            op = ev["args"]["op_name"]
            by_op[op] = by_op.get(op, 0.0) + float(ev["dur"])
    total = sum(by_op.values())
    _, size, name = result["id"].split("@")
    if not runs or not total:
        print(f"profile {name}@{size}: no profiler events captured")
        return
    parts = ", ".join(
        f"{op} {100 * us / total:.0f}%" for op, us in sorted(by_op.items(), key=lambda kv: -kv[1])[:top]
    )
    print(
        f"profile {name}@{size} (onnxruntime-web profiler, {runs} runs incl. warm-up, mean model_run "
        f"{run_us / runs / 1000:.1f} ms, kernels {total / runs / 1000:.1f} ms): {parts}"
    )


if __name__ == "__main__":
    sys.exit(main())
