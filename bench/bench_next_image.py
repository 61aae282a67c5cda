"""'Next image -> first mask' on the projects page against a click on an image already open (issue 17).

Starts ``clicksam serve`` on loopback (a temporary --data-dir, a --cache-dir, a --token; the demo model
by default), fills a project with ``--images`` 1024x768 scenes through the API (each encoded on upload,
as a person's images are before they label them), then per run opens the project in a fresh headless
Chromium profile and, with web/e2e/next_image.mjs, goes through the images: on each, ``--clicks`` clicks
on the open image (the reference: each a new object, click -> mask -> Escape), then, once the page has
prefetched the next image, ArrowRight and one click as soon as the next image is clickable.

    .venv/bin/python bench/bench_next_image.py                       # 8 images, 2 runs, demo model
    .venv/bin/python bench/bench_next_image.py --cache-dir /tmp/cs-cache --json /tmp/next.json

Prints p50s (numpy's linear interpolation) of: key press -> next image clickable; key press -> first
mask painted on it (the key's event time to the end of that click's 'clicksam:click-to-mask'); that
first click's own click-to-mask; and the reference, click-to-mask of clicks on an image open for a
while (the first click after 'next' is not one of them). Goal: p50(key -> first mask) / p50(open-image
click) <= 1.5. The first image (opened with the page) has no 'next'. The load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
from bench_clicks import make_scene
from bench_page import REPO, WEB, pct

sys.path.insert(0, str(REPO / "tests" / "e2e"))
from loopback import clicksam_serve  # the tests' helpers, as other benches use them

TOKEN = "bench-next-image"


def fill_project(url: str, folder: Path, n: int) -> tuple[int, list[list[list[float]]]]:
    """A project of ``n`` distinct 1024x768 scenes; returns its id and per image its objects' centres."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=url, headers=auth, timeout=600) as client:
        r = client.post("api/projects", json={"name": "bench next image", "categories": ["thing"]})
        r.raise_for_status()
        pid = int(r.json()["id"])
        points = []
        for k in range(n):
            path = folder / f"scene{k:02d}.jpg"
            objects = make_scene(path, seed=2000 + k)
            points.append([o["fg"][0] for o in objects])
            with path.open("rb") as f:
                up = client.post(f"api/projects/{pid}/images", files={"image": (path.name, f, "image/jpeg")})
            up.raise_for_status()
    return pid, points


def summarize(runs: list[dict[str, Any]]) -> dict[str, float]:
    """p50s over every run: next -> clickable, next -> first mask, its click, and the open-image clicks."""
    images = [img for r in runs for img in r["images"]]
    steps = [img["next"] for img in images if img["next"]]
    opened = [c["clickToMaskMs"] for img in images for c in img["open"]]
    s = {
        "next_count": float(len(steps)),
        "open_count": float(len(opened)),
        "key_to_clickable_p50": pct([x["keyToClickableMs"] for x in steps], 50),
        "clickable_to_click_p50": pct([x["clickableToClickMs"] for x in steps], 50),
        "key_to_first_mask_p50": pct([x["keyToFirstMaskMs"] for x in steps], 50),
        "first_click_to_mask_p50": pct([x["first"]["clickToMaskMs"] for x in steps], 50),
        "first_decode_p50": pct([x["first"]["decodeMs"] for x in steps if x["first"]["decodeMs"]], 50),
        "open_click_to_mask_p50": pct(opened, 50),
        "open_decode_p50": pct([c["decodeMs"] for i in images for c in i["open"] if c["decodeMs"]], 50),
    }  # fmt: skip
    parts = [x["worker"] for x in steps if x["worker"]]
    for key in ("keyToPostMs", "workerMs", "fetchMs", "prepMs", "replyToClickableMs"):
        s[f"next_{key}_p50"] = pct([w[key] for w in parts], 50)
    # each step's time without the per-image graph runs at 'next': an estimate where the graph ran
    # then; the same as the measurement where the worker had prepared the image ahead (prepMs 0)
    s["key_to_first_mask_minus_prep_p50"] = pct(
        [x["keyToFirstMaskMs"] - w["prepMs"] for x in steps if (w := x["worker"])], 50
    )
    s["ratio_next_to_open"] = s["key_to_first_mask_p50"] / s["open_click_to_mask_p50"]
    s["ratio_minus_prep_to_open"] = s["key_to_first_mask_minus_prep_p50"] / s["open_click_to_mask_p50"]
    s["ratio_first_click_to_open"] = s["first_click_to_mask_p50"] / s["open_click_to_mask_p50"]
    return s


def report(runs: list[dict[str, Any]], s: dict[str, float]) -> None:
    """Print every step of every run, then the p50s and the ratios."""
    for r in runs:
        print(f"  run, backend {r['backend']}:")
        for img in r["images"]:
            n, opened = img["next"], " ".join(f"{c['clickToMaskMs']:.0f}" for c in img["open"])
            step = "first image (opened with the page)"
            if n:
                step = (
                    f"next->clickable {n['keyToClickableMs']:.0f}, ->click {n['clickableToClickMs']:.0f}, "
                    f"its click-to-mask {n['first']['clickToMaskMs']:.0f}, "
                    f"next->first mask {n['keyToFirstMaskMs']:.0f}"
                )
            print(f"    image {img['index'] + 1}: {step}; open-image clicks {opened} ms")
    rows = [
        ("next -> clickable", s["key_to_clickable_p50"], ""),
        ("  key -> embedding to the worker", s["next_keyToPostMs_p50"], ""),
        ("  worker: fetch + per-image graph", s["next_workerMs_p50"], ""),
        ("    fetch (HTTP cache)", s["next_fetchMs_p50"], ""),
        ("    per-image graph", s["next_prepMs_p50"], ""),
        ("  worker's answer -> clickable", s["next_replyToClickableMs_p50"], ""),
        ("clickable -> click event", s["clickable_to_click_p50"], "the driver's reaction"),
        (
            "first click-to-mask after next",
            s["first_click_to_mask_p50"],
            f"decode {s['first_decode_p50']:.1f}",
        ),
        ("next -> first mask", s["key_to_first_mask_p50"], ""),
        ("open-image click-to-mask", s["open_click_to_mask_p50"], f"decode {s['open_decode_p50']:.1f}"),
    ]
    print(f"p50 over {s['next_count']:.0f} 'next' steps and {s['open_count']:.0f} open-image clicks (ms):")
    for label, ms, note in rows:
        print(f"  {label:<36}{ms:7.1f}  {note}".rstrip())
    print(
        f"ratio p50(next -> first mask) / p50(open-image click): {s['ratio_next_to_open']:.2f} (goal <= 1.5)"
    )
    print(
        f"estimate without the per-image graph at next: p50 {s['key_to_first_mask_minus_prep_p50']:.1f} ms, "
        f"ratio {s['ratio_minus_prep_to_open']:.2f}"
    )
    print(f"ratio p50(first click after next) / p50(open-image click): {s['ratio_first_click_to_open']:.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="demo", help="model preset of the server")
    ap.add_argument("--images", type=int, default=8, help="images in the project ('next' steps: one fewer)")
    ap.add_argument("--clicks", type=int, default=4, help="clicks on each open image (the reference)")
    ap.add_argument("--runs", type=int, default=2, help="fresh browser profile each")
    ap.add_argument("--cache-dir", type=Path, help="clicksam's cache (keeps the decoder export between runs)")
    ap.add_argument("--web-dir", type=Path, default=WEB / "dist")
    ap.add_argument("--json", type=Path, help="write every step's numbers here")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        args = ["--model", a.model, "--web-dir", str(a.web_dir)]
        args += [
            "--cache-dir",
            str(a.cache_dir or tmp / "cache"),
            "--data-dir",
            str(tmp / "data"),
            "--token",
            TOKEN,
            "--torch-threads",
            "1",
        ]
        if os.environ.get("CLICKSAM_E2E_DECODER_DIR"):
            args += ["--decoder-dir", os.environ["CLICKSAM_E2E_DECODER_DIR"]]
        with clicksam_serve(args, tmp / "server.log", REPO, timeout_s=600) as url:
            pid, points = fill_project(url, tmp, a.images)
            (tmp / "points.json").write_text(json.dumps(points))
            load0 = os.getloadavg()
            runs = []
            for run in range(a.runs):
                out = tmp / f"run{run}.json"
                cmd = ["node", str(WEB / "e2e" / "next_image.mjs"), "--url", url, "--pid", str(pid)]
                cmd += ["--token", TOKEN, "--points", str(tmp / "points.json"), "--clicks", str(a.clicks)]
                cmd += ["--out", str(out)]
                subprocess.run(cmd, cwd=WEB, check=True, stdout=subprocess.DEVNULL, timeout=1800)
                runs.append(json.loads(out.read_text()))
            load1 = os.getloadavg()
    print(
        f"{a.runs} runs x {a.images} images of 1024x768, {a.clicks} open-image clicks each, model {a.model}"
    )
    print(f"load average before {load0[0]:.2f}, after {load1[0]:.2f} (2 cores, shared)")
    s = summarize(runs)
    report(runs, s)
    if a.json:
        a.json.write_text(json.dumps({"summary": s, "runs": runs, "load": [load0[0], load1[0]]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
