"""Fully automatic labelling: segment-everything on every image of a project that nobody has saved yet.

An image is "to do" while its annotation version is 0 (no save ever, by a person or by this) and it is
not ``skipped``. Each image is one save, with version 0: if a person saved it meanwhile, the save is a
conflict and their work stays. So a run can be stopped at any moment, and the next one continues with
the images still to do; images where nothing passed ``min_score`` are saved empty, so they count as done.

One image's work is split in the part that needs the model (:func:`propose`: bytes in, annotations out,
no database) and the part that needs the database (:func:`save_proposals`: one versioned transaction).
``label_one`` runs both in one process (``clicksam label``); ``label_ray`` runs ``propose`` on a Ray
actor pool and ``save_proposals`` in the driver (``clicksam label --engine ray``): one function, two
drivers, so both engines store the same proposals.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from clicksam.server.images import decode_image
from clicksam.server.projects.errors import ConflictError, InvalidInputError
from clicksam.server.projects.repository import Repository
from clicksam.server.projects.schemas import AnnotationIn, AnnotationsIn, Prompts, Rle

logger = logging.getLogger(__name__)

#: segment-everything on an (H, W, 3) uint8 RGB image: records with ``segmentation`` as COCO RLE
#: (``{"size", "counts"}``), ``predicted_iou`` and ``point_coords`` ([[x, y]])
MaskGenerator = Callable[[np.ndarray], list[dict[str, Any]]]


@dataclass(frozen=True)
class GeneratorOptions:
    """Segment-everything's settings, the same for both engines (None: SAM's default).

    Attributes:
        points_per_side: the grid (SAM: 32 a side).
        pred_iou_thresh: keep masks whose predicted IoU is above this (the family's default: SAM 0.88,
            SAM 2.1 0.8; 0 keeps all).
        stability_score_thresh: keep masks at least this stable (SAM: 0.95; 0 keeps all).
    """

    points_per_side: int = 32
    pred_iou_thresh: float | None = None
    stability_score_thresh: float | None = None

    def build(self, sam: Any) -> MaskGenerator:
        """The generator (COCO RLE records) for ``sam`` (either family): one place, so both engines run
        the same one."""
        from clicksam.model.automatic import mask_generator

        thresholds = {
            name: value
            for name, value in (
                ("pred_iou_thresh", self.pred_iou_thresh),
                ("stability_score_thresh", self.stability_score_thresh),
            )
            if value is not None
        }
        return mask_generator(
            sam, points_per_side=self.points_per_side, output_mode="coco_rle", **thresholds
        ).generate


@dataclass
class LabelStats:
    images: int = 0
    masks: int = 0
    conflicts: int = 0


def images_to_label(repo: Repository, pid: int, *, page: int = 100) -> Iterator[int]:
    """Ids of the images with no save yet, in upload order, read a page at a time (no long transaction)."""
    after = 0
    while True:
        ids = repo.unsaved_image_ids(pid, after=after, limit=page)
        if not ids:
            return
        yield from ids
        after = ids[-1]


def proposals(records: list[dict[str, Any]], category: str, min_score: float) -> list[AnnotationIn]:
    """The generator's records at or above ``min_score``, best first, as annotations of ``category``."""
    kept = sorted((r for r in records if r["predicted_iou"] >= min_score), key=lambda r: -r["predicted_iou"])
    return [
        AnnotationIn(
            category=category,
            segmentation=Rle.model_validate(r["segmentation"]),
            source="auto",
            score=round(float(r["predicted_iou"]), 4),
            prompts=Prompts(points=[(float(x), float(y), 1) for x, y in r["point_coords"]]),
        )
        for r in kept
    ]


def propose(
    data: bytes, generate: MaskGenerator, *, category: str, min_score: float, max_pixels: int
) -> list[AnnotationIn]:
    """One image's proposals: decode the stored bytes, segment everything, keep >= ``min_score``, best first.

    Needs the model, not the database: it runs wherever the model is (this process, or a Ray actor).
    """
    pixels = decode_image(data, max_pixels=max_pixels).pixels
    return proposals(generate(pixels), category, min_score)


def save_proposals(repo: Repository, pid: int, iid: int, annotations: list[AnnotationIn]) -> int | None:
    """Save ``annotations`` as the image's first version, in one transaction.

    Returns:
        the number of masks saved, or None when a person saved the image first (theirs is kept).
    """
    try:
        repo.save_annotations(pid, iid, AnnotationsIn(version=0, annotations=annotations))
    except ConflictError:
        logger.info("image %d was saved by someone else meanwhile: kept theirs", iid)
        return None
    return len(annotations)


def label_one(
    repo: Repository, pid: int, iid: int, generate: MaskGenerator, *, category: str, min_score: float,
    max_pixels: int,
) -> int | None:  # fmt: skip
    """Pre-label one image; the number of masks saved, or None when a person saved it first."""
    record = repo.image(pid, iid)
    if record.version != 0:
        return None
    annotations = propose(
        repo.store.read(record.sha256), generate, category=category, min_score=min_score,
        max_pixels=max_pixels,
    )  # fmt: skip
    return save_proposals(repo, pid, iid, annotations)


def check_category(repo: Repository, pid: int, category: str | None) -> str:
    """``category``, or the project's first one; 422 when the project has none or not that one."""
    names = repo.get_project(pid).categories
    if category is None:
        if not names:
            raise InvalidInputError("the project has no category to put the masks in; add one first")
        return names[0]
    if category not in names:
        raise InvalidInputError(
            f"the project has no category {category!r}; it has {', '.join(names) or 'none'}"
        )
    return category
