"""End-to-end latency of the whole product in headless Chromium, as a newcomer meets it.

Starts ``clicksam serve`` on loopback (fresh cache: the decoder is exported first, as on a first run),
then drives the page with web/e2e/journey.mjs and reports:

- page load -> decoder ready (cold: fresh browser profile, nothing cached),
- drop of a 12-megapixel JPEG -> embedding ready -> first mask painted,
- page load -> first mask (the sum a newcomer waits),
- steady-state click-to-mask p50/p95 from the page's own ``performance.measure`` entries
  (clicks with a hover move before each, refining and starting objects).

Usage:
    .venv/bin/python bench/bench_e2e.py                          # demo model, 12 MP photo, 20 clicks
    .venv/bin/python bench/bench_e2e.py --model vit_t --random-weights --clicks 30
The machine is shared and noisy: the numbers are the median of what one run saw, not a guarantee.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_photo(path: Path, width: int, height: int) -> None:
    """A photo-like 12 MP JPEG: gradient, noise and a few objects (JPEG-compressed like a phone's)."""
    rng = np.random.default_rng(0)
    gradient = np.linspace(50, 170, width, dtype=np.float32)[None, :, None]
    noise = rng.normal(0, 8, (height, width, 3)).astype(np.float32)
    im = Image.fromarray(np.clip(gradient + noise, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for i in range(6):
        x, y = int(rng.integers(0, width - width // 5)), int(rng.integers(0, height - height // 5))
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        box = (x, y, x + width // (5 + i), y + height // (5 + i))
        (draw.ellipse if i % 2 else draw.rectangle)(box, fill=color)
    im.save(path, quality=90)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="demo", help="model preset to serve (default: the demo model)")
    ap.add_argument("--random-weights", action="store_true", help="serve --model with seeded random weights")
    ap.add_argument("--width", type=int, default=4000)
    ap.add_argument("--height", type=int, default=3000)
    ap.add_argument("--clicks", type=int, default=20, help="steady-state clicks after the first mask")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        photo = tmp / "photo.jpg"
        make_photo(photo, args.width, args.height)
        photo_bytes = photo.stat().st_size
        port = _free_port()
        url = f"http://127.0.0.1:{port}/"
        cmd = [sys.executable, "-m", "clicksam.cli", "serve", "--model", args.model, "--port", str(port),
               "--cache-dir", str(tmp / "cache"), "--web-dir", str(REPO / "web" / "dist")]  # fmt: skip
        if args.random_weights:
            cmd.append("--random-weights")
        log = (tmp / "server.log").open("w")
        t0 = time.monotonic()
        server = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            while True:
                if server.poll() is not None:
                    print((tmp / "server.log").read_text()[-3000:], file=sys.stderr)
                    return 1
                try:
                    with urllib.request.urlopen(url + "readyz", timeout=2) as r:
                        if r.status == 200:
                            break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    time.sleep(0.3)
            server_start_s = time.monotonic() - t0
            out = tmp / "out"
            proc = subprocess.run(
                ["node", str(REPO / "web" / "e2e" / "journey.mjs"), "--url", url, "--image", str(photo),
                 "--out", str(out), "--x", str(args.width // 2), "--y", str(args.height // 2),
                 "--clicks", str(args.clicks)],
                cwd=REPO / "web", capture_output=True, text=True, timeout=1800,
                env={**os.environ, "CHROMIUM": os.environ.get("CHROMIUM", "/usr/bin/chromium")},
            )  # fmt: skip
            report = json.loads((out / "journey.json").read_text())
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()
    steps = {s["name"]: s for s in report["steps"]}
    if not report["ok"]:
        print(json.dumps(report["steps"], indent=1), proc.stderr[-2000:], file=sys.stderr)
        return 1
    first = steps["click the object"]["result"]
    ready_ms = steps["open the page"]["result"]["readyMs"]
    steady = steps.get("steady-state clicks", {}).get("result", {}).get("clickToMaskMs", [])
    results = {
        "model": args.model + (" (random weights)" if args.random_weights else ""),
        "photo": f"{args.width}x{args.height} JPEG, {photo_bytes} bytes",
        "server_start_s (incl. first decoder export)": round(server_start_s, 2),
        "page_load_to_decoder_ready_ms": ready_ms,
        "drop_to_embedding_ready_ms": steps["drop a photo"]["result"]["embeddingMs"],
        "drop_to_first_mask_ms": first["dropToFirstMaskMs"],
        # the harness's own time to hand the file to the page is left out: a person drops it at once
        "page_load_to_first_mask_ms": ready_ms + first["dropToFirstMaskMs"],
        "first_click_to_mask_ms": round(first["clickToMaskMs"][-1], 1),
        "steady_click_to_mask_p50_ms": round(pct(steady, 50), 1),
        "steady_click_to_mask_p95_ms": round(pct(steady, 95), 1),
        "steady_clicks": len(steady),
        "steady_click_to_mask_ms": [round(v, 1) for v in steady],
    }
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
