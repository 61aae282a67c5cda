"""``clicksam label`` throughput against a plain loop over segment-everything, same images, same run.

For each model and image, interleaved so that the machine's load hits both alike: a plain loop step
(decode the bytes, ``SamAutomaticMaskGenerator.generate``), then the labeller (``label.label_one``: read
the image row and bytes, decode, generate, filter, one versioned save in SQLite, in a fresh project).
Images per minute of both, and the labeller's own time per image: its total minus the generator's time
inside it, which does not depend on how busy the machine is.

``--ray``: the whole command's engines instead, on one project each, in one run: the local engine, then
``--engine ray`` with 1 and with 2 actors (a local Ray on 127.0.0.1 with the machine's CPUs, started once):
images per minute over the whole run (model loading and actor start-up included) and from the first image
saved to the last (the steady rate), and the ratios to the local engine. (CPU time per image is not
reported: Ray reaps ended actors without adding their CPU time to any process's count, so it cannot be
summed from outside.) Usage::

    .venv/bin/python bench/bench_label.py                       # demo and vit_t (random weights), 4 images
    .venv/bin/python bench/bench_label.py --models demo --images 2 --points-per-side 16
    .venv/bin/python bench/bench_label.py --pred-iou-thresh 0 --stability-score-thresh 0  # many masks
    .venv/bin/python bench/bench_label.py --ray --models vit_t --images 6 --points-per-side 8
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def photo(width: int, height: int, seed: int) -> bytes:
    """A JPEG with a few flat shapes on a gradient (something for segment-everything to find)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    img = np.stack([xx * 200 / width, yy * 200 / height, np.full_like(xx, 90)], -1).astype(np.float64)
    for _ in range(6):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(20, height / 4)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = rng.uniform(0, 255, 3)
    buf = io.BytesIO()
    Image.fromarray(img.astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="demo,vit_t")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--pred-iou-thresh", type=float, default=0.88, help="SAM's filter (0: keep all)")
    parser.add_argument(
        "--stability-score-thresh", type=float, default=0.95, help="SAM's filter (0: keep all)"
    )
    parser.add_argument("--ray", action="store_true", help="local engine vs Ray with 1 and 2 actors")
    args = parser.parse_args()
    if args.ray:
        print(json.dumps(engines(args), indent=2))
        return

    from clicksam.model.automatic import SamAutomaticMaskGenerator
    from clicksam.server.images import decode_image
    from clicksam.server.loading import load_model, resolve_model
    from clicksam.server.projects.db import create_db_engine, default_url, upgrade
    from clicksam.server.projects.label import label_one
    from clicksam.server.projects.repository import Repository
    from clicksam.server.projects.storage import BlobStore

    width, height = (int(v) for v in args.size.split("x"))
    files = [photo(width, height, seed) for seed in range(args.images)]
    results = {}
    for name in args.models.split(","):
        spec = resolve_model(name, None, 0, random_weights=name != "demo")
        generator = SamAutomaticMaskGenerator(
            load_model(spec),
            points_per_side=args.points_per_side,
            pred_iou_thresh=args.pred_iou_thresh,
            stability_score_thresh=args.stability_score_thresh,
            output_mode="coco_rle",
        )
        generator.generate(decode_image(files[0], max_pixels=10**8).pixels)  # warm-up
        generate_s: list[float] = []

        def timed_generate(
            pixels: np.ndarray, generator: Any = generator, generate_s: list[float] = generate_s
        ) -> list[dict[str, Any]]:
            start = time.perf_counter()
            out: list[dict[str, Any]] = generator.generate(pixels)
            generate_s.append(time.perf_counter() - start)
            return out

        plain_s: list[float] = []
        label_s: list[float] = []
        plain_masks = label_masks = 0
        with tempfile.TemporaryDirectory() as tmp:
            engine = create_db_engine(default_url(Path(tmp)))
            upgrade(engine)
            repo = Repository(engine, BlobStore(Path(tmp) / "images"))
            pid = repo.create_project("bench", ["object"]).id
            ids = [
                repo.add_image(pid, data=f, file_name=f"{i}.jpg", fmt="JPEG", width=width, height=height).id
                for i, f in enumerate(files)
            ]
            # interleaved, image by image, so a change in the machine's load hits both alike
            for data, iid in zip(files, ids, strict=True):
                start = time.perf_counter()
                plain_masks += len(generator.generate(decode_image(data, max_pixels=10**8).pixels))
                plain_s.append(time.perf_counter() - start)
                start = time.perf_counter()
                saved = label_one(
                    repo, pid, iid, timed_generate, category="object", min_score=0.0, max_pixels=10**8
                )
                label_s.append(time.perf_counter() - start)
                label_masks += saved or 0
            engine.dispose()
        # the labeller's own work: its time minus the generator's time inside it (robust to load)
        overhead = [total - gen for total, gen in zip(label_s, generate_s, strict=True)]
        results[f"{spec.name}{' (random weights)' if name != 'demo' else ''}"] = {
            "images": len(files),
            "plain loop images/min": round(60 * len(files) / sum(plain_s), 2),
            "clicksam label images/min": round(60 * len(files) / sum(label_s), 2),
            "label overhead ms/image (read, decode, filter, save)": round(
                1000 * sum(overhead) / len(files), 1
            ),
            "masks (plain, label)": [plain_masks, label_masks],
        }
    setup = {
        k: getattr(args, k) for k in ("size", "points_per_side", "pred_iou_thresh", "stability_score_thresh")
    }
    print(json.dumps({**setup, **results}, indent=2))


def engines(args: argparse.Namespace) -> dict[str, Any]:
    """``clicksam label``'s engines on the first of ``--models``: local, Ray with 1 and 2 actors."""
    import os

    import torch

    from clicksam.server.loading import load_model, resolve_model
    from clicksam.server.projects.db import create_db_engine, default_url, upgrade
    from clicksam.server.projects.label import GeneratorOptions, label_one
    from clicksam.server.projects.label_ray import LabelSettings, RayOptions, label_images
    from clicksam.server.projects.repository import Repository
    from clicksam.server.projects.storage import BlobStore
    from clicksam.server.scale.cluster import shutdown, start_or_join

    name = args.models.split(",")[0]
    width, height = (int(v) for v in args.size.split("x"))
    files = [photo(width, height, seed) for seed in range(args.images)]
    spec = resolve_model(name, None, 0, random_weights=name != "demo")
    options = GeneratorOptions(args.points_per_side, args.pred_iou_thresh, args.stability_score_thresh)
    cluster = start_or_join(None)  # loopback, the machine's CPUs
    results: dict[str, Any] = {
        "model": f"{spec.name}{' (random weights)' if name != 'demo' else ''}",
        "images": len(files),
        "size": args.size,
        "points_per_side": args.points_per_side,
        "cpus": os.cpu_count(),
        "load average before": [round(v, 1) for v in os.getloadavg()],
    }
    try:
        # local: torch's own thread count (the machine's cores); each actor: 1 thread per CPU it holds
        for engine, actors, cpus in (("local", 0, 0), ("ray", 1, 1), ("ray", 2, 1), ("ray", 1, 2)):
            with tempfile.TemporaryDirectory() as tmp:
                db = create_db_engine(default_url(Path(tmp)))
                upgrade(db)
                repo = Repository(db, BlobStore(Path(tmp) / "images"))
                pid = repo.create_project("bench", ["object"]).id
                ids = [
                    repo.add_image(
                        pid, data=f, file_name=f"{i}.jpg", fmt="JPEG", width=width, height=height
                    ).id
                    for i, f in enumerate(files)
                ]
                start = time.perf_counter()
                saved_at: list[float] = []
                if engine == "local":
                    generate = options.build(load_model(spec))
                    for iid in ids:
                        label_one(
                            repo, pid, iid, generate, category="object", min_score=0.0, max_pixels=10**8
                        )
                        saved_at.append(time.perf_counter() - start)
                else:
                    settings = LabelSettings(spec, "object", 0.0, 10**8, options, torch_threads=cpus)
                    ray_options = RayOptions(actors=actors, cpus_per_actor=cpus)
                    for _ in label_images(repo, pid, ids, settings, ray_options):
                        saved_at.append(time.perf_counter() - start)
                db.dispose()
            key = (
                f"local, {torch.get_num_threads()} threads"
                if engine == "local"
                else f"ray, {actors}x{cpus} CPU"
            )
            steady = (len(saved_at) - 1) / (saved_at[-1] - saved_at[0]) * 60 if len(saved_at) > 1 else None
            results[key] = {
                "images/min, whole run": round(60 * len(saved_at) / saved_at[-1], 2),
                "first image saved after s": round(saved_at[0], 1),
                "images/min, first to last image": round(steady, 2) if steady else None,
            }
    finally:
        shutdown(cluster)
    local = results[f"local, {torch.get_num_threads()} threads"]
    for key in ("ray, 1x1 CPU", "ray, 2x1 CPU", "ray, 1x2 CPU"):
        for what in ("images/min, whole run", "images/min, first to last image"):
            if local[what] and results[key][what]:
                results[key][f"x local ({what.split(', ')[1]})"] = round(results[key][what] / local[what], 2)
    results["load average after"] = [round(v, 1) for v in os.getloadavg()]
    return results


if __name__ == "__main__":
    main()
