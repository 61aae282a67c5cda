"""``clicksam label PROJECT --engine ray``: the same pre-labelling, with the model work on a Ray cluster.

A Ray Data pipeline, streamed (a bounded number of images in flight, whatever the project's size)::

    driver  the ids (+ sha256) of the images still to do (``label.images_to_label``) -> ray.data.from_items
    read    a task pinned to the driver's node reads each image's bytes from the blob store, so the other
            nodes need no shared disk: the bytes travel through Ray's object store
    label   ``Labeller`` actors (``ActorPoolStrategy``, one per ``cpus_per_actor`` CPUs or ``gpus_per_actor``
            GPUs of the cluster unless told), each loading the model once, run ``label.propose``
            (decode, segment-everything, keep >= min score): the very function the local command runs
    driver  saves each result as it arrives with ``label.save_proposals``: one transaction per image

So the local command's semantics hold: an image is either untouched or saved whole, a person's save wins
(the version-0 save is a conflict), and a stop (Ctrl-C) loses at most the images in flight; the next run
continues with the rest. The driver resolves the model once; every actor loads the same spec and checks
that its checkpoint file hashes to the driver's sha256 (a node with another file at that path, or none, is
reported, not used).

Ray is an optional extra (``pip install 'clicksam[ray]'``). Without ``--ray-address`` the command starts a
local Ray bound to 127.0.0.1 with the dashboard off and stops it at the end; with one it joins that
cluster (see docs/scaling.md). A process that already called ``ray.init`` is reused (``scale.cluster``).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from clicksam.errors import ClickSamError, UsageError
from clicksam.server.loading import ModelSpec
from clicksam.server.projects.label import GeneratorOptions, propose, save_proposals
from clicksam.server.projects.repository import Repository
from clicksam.server.projects.schemas import AnnotationIn
from clicksam.server.scale.cluster import import_ray, shutdown, start_or_join

logger = logging.getLogger(__name__)

#: the most images one Ray Data block (one actor call) holds: results arrive, and are saved, per block
MAX_IMAGES_PER_BLOCK = 16


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide the labelling runs.

    Attributes:
        address: a running cluster (``ray://...`` or ``HOST:PORT``); None starts a local one on loopback.
        actors: size of the actor pool; None sizes it to the cluster.
        cpus_per_actor: CPUs each actor reserves (its torch threads).
        gpus_per_actor: GPUs each actor reserves; > 0 sizes the pool by GPUs and runs the model there.
    """

    address: str | None = None
    actors: int | None = None
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0


@dataclass(frozen=True)
class LabelSettings:
    """What every actor needs to label an image (sent once, to the actor's constructor)."""

    spec: ModelSpec
    category: str
    min_score: float
    max_pixels: int
    generator: GeneratorOptions
    torch_threads: int
    #: "cuda" when the actors hold GPUs (``--gpus-per-actor`` > 0): the model runs on the actor's GPU
    device: str = "cpu"


def pool_size(options: RayOptions, cluster: dict[str, float]) -> int:
    """The actor pool's size: ``options.actors``, or as many as the cluster's resources hold.

    Args:
        cluster: ``ray.cluster_resources()`` (``{"CPU": 2.0, "GPU": 0.0, ...}``).

    Raises:
        UsageError: not one actor fits, or more were asked for than fit (they would wait forever).
    """
    if options.cpus_per_actor <= 0 or options.gpus_per_actor < 0:
        raise UsageError("--cpus-per-actor must be > 0 and --gpus-per-actor >= 0")
    cpus, gpus = cluster.get("CPU", 0.0), cluster.get("GPU", 0.0)
    fit = int(cpus // options.cpus_per_actor)
    if options.gpus_per_actor > 0:
        fit = min(fit, int(gpus // options.gpus_per_actor))
    have = f"{cpus:g} CPUs and {gpus:g} GPUs"
    need = f"{options.cpus_per_actor:g} CPUs and {options.gpus_per_actor:g} GPUs per actor"
    if fit < 1:
        raise UsageError(f"the Ray cluster has {have}: not enough for one actor with {need}")
    if options.actors is None:
        return fit
    if not 1 <= options.actors <= fit:
        raise UsageError(
            f"--actors {options.actors}: the Ray cluster has {have}, room for 1 to {fit} ({need})"
        )
    return options.actors


class Labeller:
    """A Ray Data actor: the model, loaded once, and ``label.propose`` on each image of a batch.

    Batches are ``{"image_id": (B,) int64, "data": (B,) bytes}``; results are ``{"image_id": (B,),
    "annotations": (B,) JSON text of ``AnnotationIn`` records, "error": (B,) "" or what went wrong}``.
    """

    def __init__(self, settings: LabelSettings) -> None:
        import torch

        from clicksam.model.weights import sha256_file
        from clicksam.server.loading import load_model

        torch.set_num_threads(settings.torch_threads)
        self.settings = settings
        self.problem = ""
        spec = settings.spec
        try:
            if spec.checkpoint is not None and sha256_file(spec.checkpoint) != spec.checkpoint_sha256:
                self.problem = (
                    f"the checkpoint {spec.checkpoint} on Ray node {_node()} is not the driver's (sha256 "
                    f"{spec.checkpoint_sha256}): put the same file at that path on every node"
                )
                return
            if settings.device == "cuda" and not torch.cuda.is_available():
                self.problem = (
                    f"Ray node {_node()} has no CUDA device for torch {torch.__version__}: install a CUDA "
                    "build of torch on the GPU nodes, or run without --gpus-per-actor"
                )
                return
            model = load_model(spec).to(settings.device)
        except (OSError, ClickSamError) as exc:
            self.problem = f"Ray node {_node()} could not load the model {spec.name}: {exc}"
            return
        self.generate = settings.generator.build(model)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts: list[str] = []
        errors: list[str] = []
        for data in batch["data"]:
            if self.problem:
                texts.append("[]")
                errors.append(self.problem)
                continue
            try:
                annotations = propose(
                    bytes(data), self.generate, category=self.settings.category,
                    min_score=self.settings.min_score, max_pixels=self.settings.max_pixels,
                )  # fmt: skip
            except ClickSamError as exc:  # a stored image that no longer decodes: the driver reports it
                texts.append("[]")
                errors.append(str(exc))
                continue
            texts.append(json.dumps([a.model_dump(mode="json", exclude_none=True) for a in annotations]))
            errors.append("")
        return {
            "image_id": batch["image_id"],
            "annotations": np.array(texts, dtype=object),
            "error": np.array(errors, dtype=object),
        }


def _node() -> str:
    """This actor's node id (12 hex digits), for messages."""
    import ray

    if not ray.is_initialized():  # the class used outside Ray (its tests)
        return "(not on Ray)"
    return str(ray.get_runtime_context().get_node_id())[:12]


def _reader(root: str) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """The read step (run on the driver's node): ``{"image_id", "sha256"}`` -> ``{"image_id", "data"}``."""

    def read(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from pathlib import Path

        from clicksam.server.projects.storage import BlobStore

        store = BlobStore(Path(root))
        data = np.array([store.read(str(sha)) for sha in batch["sha256"]], dtype=object)
        return {"image_id": batch["image_id"], "data": data}

    return read


def label_images(
    repo: Repository, pid: int, todo: list[int], settings: LabelSettings, options: RayOptions
) -> Iterator[tuple[int, int | None]]:
    """Label ``todo`` on Ray; yields ``(image id, masks saved or None if a person saved it first)``.

    Each result is saved (one transaction) before it is yielded, in the order results arrive (not
    ``todo``'s). Closing the iterator early (a stop) ends the pipeline and its actors; what was yielded
    is saved, the rest is still to do. Ray is disconnected at the end if this call connected it.

    Raises:
        RayNotInstalledError: no ``clicksam[ray]``.
        UsageError: a pool that does not fit the cluster.
        ClickSamError: an actor could not load the model, or an image could not be decoded.
    """
    cluster = start_or_join(options.address)
    ray = import_ray()
    from ray import data as ray_data

    try:
        actors = pool_size(options, ray.cluster_resources())
        context = ray_data.DataContext.get_current()
        context.enable_progress_bars = False  # the command draws its own
        context.print_on_execution_start = False
        items = [{"image_id": iid, "sha256": repo.image(pid, iid).sha256} for iid in todo]
        per_block = max(1, min(MAX_IMAGES_PER_BLOCK, len(items) // (8 * actors)))
        logger.info(
            "labelling %d images on Ray: %d actors (%g CPUs, %g GPUs each), %d images per block",
            len(items), actors, options.cpus_per_actor, options.gpus_per_actor, per_block,
        )  # fmt: skip
        driver_node = ray.get_runtime_context().get_node_id()
        dataset = (
            ray_data.from_items(items, override_num_blocks=math.ceil(len(items) / per_block))
            .map_batches(
                _reader(str(repo.store.root.resolve())),
                batch_size=None,
                num_cpus=0,  # reading a file: no CPU reserved, so the actors can have all of them
                # ... and then one task at a time, or Ray starts a worker process per block
                compute=ray_data.TaskPoolStrategy(size=1),
                label_selector={"ray.io/node-id": driver_node},
            )
            .map_batches(
                Labeller,
                fn_constructor_kwargs={"settings": settings},
                compute=ray_data.ActorPoolStrategy(size=actors),
                batch_size=1,
                num_cpus=options.cpus_per_actor,
                num_gpus=options.gpus_per_actor or None,
            )
        )
        rows = dataset.iter_rows()
        try:
            for row in rows:
                iid = int(row["image_id"])
                if row["error"]:
                    raise ClickSamError(f"image {iid} could not be labelled: {row['error']}")
                annotations = [AnnotationIn.model_validate(a) for a in json.loads(row["annotations"])]
                yield iid, save_proposals(repo, pid, iid, annotations)
        finally:
            close = getattr(rows, "close", None)
            if close is not None:
                close()
    finally:
        if cluster.started_here:
            shutdown(cluster)
