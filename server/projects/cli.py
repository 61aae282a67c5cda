"""``clicksam label PROJECT``: pre-label every image of a project that nobody saved yet (segment-everything).

It opens the same database and image store as ``clicksam serve`` (``CLICKSAM_DATA_DIR``,
``CLICKSAM_DATABASE_URL``), so it can run beside a running server. See ``label`` for why it is safe to stop
and to run again. ``--engine ray`` runs the model work on a Ray actor pool (``label_ray``); both engines
yield ``(image id, masks saved)`` as each image is saved, and one loop here shows progress and handles a stop.
``training_data`` writes a project as a COCO file and an image folder for
``clicksam train --data project:NAME``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the ``label`` subcommand."""
    p = subparsers.add_parser(
        "label",
        help="pre-label a project's unsaved images with segment-everything (resumable, safe to stop)",
        description="Run segment-everything on every image of PROJECT that has never been saved and store "
        "its masks (source 'auto', score = predicted IoU). Stop it at any time; run it again to continue. "
        "Images a person saved meanwhile are left as they are.",
    )
    p.add_argument("project", metavar="PROJECT", help="project name (or numeric id)")
    p.add_argument("--min-score", type=float, default=0.0, help="keep masks whose predicted IoU is >= S")
    p.add_argument("--category", default=None, help="category of the masks (default: the project's first)")
    p.add_argument("--model", default=None, help="model preset (default: as clicksam serve, CLICKSAM_MODEL)")
    p.add_argument("--checkpoint", type=Path, default=None, help="checkpoint file (e.g. from clicksam train)")
    p.add_argument("--random-weights", action="store_true", help="seeded random weights (tests, benchmarks)")
    p.add_argument("--points-per-side", type=int, default=32, help="segment-everything grid (SAM: 32)")
    p.add_argument("--pred-iou-thresh", type=float, default=None, help="SAM's IoU filter (SAM: 0.88; 0: off)")
    p.add_argument(
        "--stability-score-thresh",
        type=float,
        default=None,
        help="SAM's stability filter (SAM: 0.95; 0: off)",
    )
    p.add_argument("--data-dir", type=Path, default=None, help="projects data folder [env CLICKSAM_DATA_DIR]")
    p.add_argument("--database-url", default=None, help="SQLAlchemy URL [env CLICKSAM_DATABASE_URL]")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    ray = p.add_argument_group("Ray (--engine ray: pip install 'clicksam[ray]'; docs/scaling.md)")
    ray.add_argument(
        "--engine", choices=("local", "ray"), default="local",
        help="local: this process; ray: an actor pool on a Ray cluster, results saved here",
    )  # fmt: skip
    ray.add_argument(
        "--ray-address",
        default=None,
        help="cluster to join, HOST:PORT (default: start a local Ray on 127.0.0.1 only)",
    )
    ray.add_argument(
        "--actors", type=int, default=None, help="actor pool size (default: what the cluster holds)"
    )
    ray.add_argument("--cpus-per-actor", type=float, default=1.0, help="CPUs (torch threads) per actor")
    ray.add_argument(
        "--gpus-per-actor", type=float, default=0.0, help="GPUs per actor (sizes the pool by GPUs)"
    )
    p.set_defaults(func=run)


def _repository(data_dir: Path | None, database_url: str | None) -> Any:
    from clicksam.server.projects.db import create_db_engine, default_url, upgrade
    from clicksam.server.projects.repository import Repository
    from clicksam.server.projects.storage import BlobStore
    from clicksam.server.settings import Settings

    settings = Settings()
    data_dir = data_dir or settings.data_dir
    engine = create_db_engine(database_url or settings.database_url or default_url(data_dir))
    upgrade(engine)
    return Repository(engine, BlobStore(data_dir / "images"))


def _project_id(repo: Any, project: str) -> int:
    pid: int = int(project) if project.isdigit() else repo.project_id(project)
    repo.get_project(pid)  # 404 -> NotFoundError with a message
    return pid


def run(args: argparse.Namespace) -> int:
    """Label; 0 when every image is done, 130 when stopped (Ctrl-C) with the rest still to do."""
    from clicksam.server.loading import resolve_model
    from clicksam.server.projects.label import GeneratorOptions, check_category, images_to_label
    from clicksam.server.settings import Settings

    settings = Settings()
    repo = _repository(args.data_dir, args.database_url)
    pid = _project_id(repo, args.project)
    category = check_category(repo, pid, args.category)
    todo = list(images_to_label(repo, pid))
    if not todo:
        logger.info("every image of project %s has been saved already: nothing to label", args.project)
        return 0
    spec = resolve_model(
        args.model or settings.model,
        args.checkpoint or settings.checkpoint,
        settings.seed,
        random_weights=args.random_weights or settings.random_weights,
    )
    generator = GeneratorOptions(args.points_per_side, args.pred_iou_thresh, args.stability_score_thresh)
    if args.engine == "ray":
        from clicksam.server.projects import label_ray

        options = label_ray.RayOptions(
            args.ray_address, args.actors, args.cpus_per_actor, args.gpus_per_actor
        )
        job = label_ray.LabelSettings(
            spec, category, args.min_score, settings.max_pixels, generator,
            torch_threads=max(1, int(args.cpus_per_actor)),
            device="cuda" if args.gpus_per_actor > 0 else "cpu",
        )  # fmt: skip
        results = label_ray.label_images(repo, pid, todo, job, options)
    else:
        results = _label_here(repo, pid, todo, spec, generator, category, args.min_score, settings.max_pixels)
    return _drive(results, len(todo), args, spec.name)


def _label_here(
    repo: Any, pid: int, todo: list[int], spec: Any, generator: Any, category: str, min_score: float,
    max_pixels: int,
) -> Iterator[tuple[int, int | None]]:  # fmt: skip
    """The local engine: the model in this process, one image after the other, in ``todo``'s order."""
    from clicksam.server.loading import load_model
    from clicksam.server.projects.label import label_one

    generate = generator.build(load_model(spec))
    for iid in todo:
        saved = label_one(
            repo, pid, iid, generate, category=category, min_score=min_score, max_pixels=max_pixels
        )
        yield iid, saved


def _drive(
    results: Iterator[tuple[int, int | None]], total: int, args: argparse.Namespace, model: str
) -> int:
    """Progress and stopping, the same for both engines: each yielded image has been saved already."""
    from tqdm import tqdm

    done = masks = 0
    bar = tqdm(total=total, unit="image", disable=args.quiet, desc=f"labelling {args.project}")
    try:
        for _iid, saved in results:
            if saved is not None:
                done += 1
                masks += saved
            bar.update(1)
            bar.set_postfix(masks=masks)
    except KeyboardInterrupt:
        bar.close()
        logger.warning(
            "stopped: %d images labelled, %d to do; run the same command to go on", done, total - bar.n
        )
        return 130
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()  # the Ray engine ends its pipeline and actors (what was yielded is saved)
    bar.close()
    logger.info("labelled %d images with %d masks (%s, min score %.2f)", done, masks, model, args.min_score)
    return 0


def training_data(
    project: str, out_dir: Path, *, data_dir: Path | None = None, database_url: str | None = None
) -> tuple[Path, Path]:
    """Write the project's annotated images as COCO (RLE) + an image folder for the trainer.

    Returns:
        (the COCO JSON, the image folder); images are hard links to the blobs where possible.
    """
    from clicksam.server.projects import exports
    from clicksam.server.projects.errors import InvalidInputError

    repo = _repository(data_dir, database_url)
    snapshot = repo.snapshot(_project_id(repo, project))
    annotated = [im for im in snapshot.images if im.annotations]
    if not annotated:
        raise InvalidInputError(f"project {project!r} has no annotated image to train on")
    image_dir = out_dir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    doc = exports.coco_rle(snapshot)
    names = {}
    for image in annotated:
        name = f"{image.id:06d}.{exports.EXTENSIONS[image.format]}"
        names[image.id] = name
        target = image_dir / name
        if not target.exists():
            try:
                os.link(repo.store.path(image.sha256), target)
            except OSError:
                target.write_bytes(repo.store.read(image.sha256))
    doc["images"] = [{**im, "file_name": names[im["id"]]} for im in doc["images"] if im["id"] in names]
    path = out_dir / "instances.json"
    path.write_text(json.dumps(doc))
    return path, image_dir
