"""Click-to-mask latency of the clicksam page in headless Chromium, from the page's own
``performance.measure('clicksam:click-to-mask')`` entries (input event -> mask painted), with hover
previews decoding between clicks.

    .venv/bin/python bench/bench_page.py                        # starts clicksam serve --model vit_test
    .venv/bin/python bench/bench_page.py --url http://127.0.0.1:8000/ --rounds 30
    .venv/bin/python bench/bench_page.py --size 4000x3000       # a big photo (downscaled before upload)

Prints p50/p95 (numpy's linear interpolation) of click-to-mask and of the decoder's session.run, for
first clicks and refining clicks. Needs web/dist built, web/node_modules and /usr/bin/chromium.
Timings on a shared 2-core box are noisy: the load average before and after is printed with them.
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

REPO = Path(__file__).resolve().parent.parent
WEB = REPO / "web"
Server = tuple[subprocess.Popen[bytes], str]


def make_image(path: Path, w: int, h: int) -> None:
    """A synthetic scene: a few filled shapes on a gradient."""
    rng = np.random.default_rng(0)
    base = np.linspace(60, 160, w, dtype=np.float32)[None, :, None].repeat(h, 0).repeat(3, 2)
    im = Image.fromarray(base.astype(np.uint8))
    d = ImageDraw.Draw(im)
    for _ in range(8):
        x0, y0 = int(rng.integers(0, w * 3 // 4)), int(rng.integers(0, h * 3 // 4))
        x1, y1 = x0 + int(rng.integers(w // 10, w // 4)), y0 + int(rng.integers(h // 10, h // 4))
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)((x0, y0, x1, y1), fill=color)
    im.save(path, quality=92) if path.suffix == ".jpg" else im.save(path)


def start_server(model: str, cache: Path, web_dir: Path = WEB / "dist") -> Server:
    """``clicksam serve`` of ``web_dir`` on a free loopback port; returns the process and its URL.

    The decoder is exported into ``cache`` on its first start, unless $CLICKSAM_E2E_DECODER_DIR holds one.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    cmd = [sys.executable, "-m", "clicksam.cli", "serve", "--model", model, "--port", str(port)]
    cmd += ["--web-dir", str(web_dir), "--cache-dir", str(cache), "--torch-threads", "1"]
    if os.environ.get("CLICKSAM_E2E_DECODER_DIR"):
        cmd += ["--decoder-dir", os.environ["CLICKSAM_E2E_DECODER_DIR"]]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"clicksam serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "readyz", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit("clicksam serve did not get ready in 300 s")


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="a running clicksam serve (default: start one)")
    ap.add_argument("--model", default="vit_test", help="model for the server this script starts")
    ap.add_argument("--size", default="1024x768", help="WxH of the generated test image")
    ap.add_argument("--rounds", type=int, default=15, help="rounds of hover + 2 clicks (timed)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    ap.add_argument("--json", type=Path, help="write raw samples here")
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / f"bench_{w}x{h}.jpg"
        make_image(image, w, h)
        proc = None
        url = a.url
        if url is None:
            proc, url = start_server(a.model, Path(tmp) / "cache")
        load0 = os.getloadavg()
        try:
            out = Path(tmp) / "bench.json"
            cmd = ["node", str(WEB / "e2e" / "bench.mjs"), "--url", url, "--image", str(image)]
            cmd += ["--rounds", str(a.rounds), "--warmup", str(a.warmup), "--out", str(out)]
            subprocess.run(cmd, cwd=WEB, check=True, stdout=subprocess.DEVNULL, timeout=3600)
            r = json.loads(out.read_text())
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
        load1 = os.getloadavg()
    samples, kinds, dec = r["samples"], r["kinds"], r["decodeMs"]
    print(
        f"page backend {r['backend']}, image {w}x{h}, {len(samples)} timed clicks, {r['hovers']} hover moves"
    )
    print(f"load average before {load0[0]:.2f}, after {load1[0]:.2f} (2 cores, shared)")
    print(f"{'clicks':<10}{'n':>4}{'c2m_p50':>10}{'c2m_p95':>10}{'run_p50':>10}{'run_p95':>10}  (ms)")
    for kind in ("first", "refine", "all"):
        idx = [i for i, k in enumerate(kinds) if kind in ("all", k)]
        c = [samples[i] for i in idx]
        d = [dec[i] for i in idx]
        cols = [pct(c, 50), pct(c, 95), pct(d, 50), pct(d, 95)]
        print(f"{kind:<10}{len(c):>4}" + "".join(f"{v:>10.1f}" for v in cols))
    # The decoder's own session.run in the same page and session is the reference: the ratio is
    # what the page adds (hover runs it waits for, messaging, upsampling, painting, frame wait).
    print(f"click-to-mask / session.run (p50): x{pct(samples, 50) / pct(dec, 50):.2f}")
    paint = r.get("paintMs", [])
    if paint:
        print(f"overlay paint on the main thread: p50 {pct(paint, 50):.1f} ms, p95 {pct(paint, 95):.1f} ms")
    print(f"click_to_mask_p50_ms={pct(samples, 50):.1f} click_to_mask_p95_ms={pct(samples, 95):.1f}")
    if a.json:
        a.json.write_text(json.dumps({"size": [w, h], **r}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
