"""Fully automatic labelling: segment-everything on every image of a project that nobody has saved yet.

An image is "to do" while its annotation version is 0 (no save ever, by a person or by this) and it is
not ``skipped``. Each image is one save, with version 0: if a person saved it meanwhile, the save is a
conflict and their work stays. So a run can be stopped at any moment, and the next one continues with
the images still to do; images where nothing passed ``min_score`` are saved empty, so they count as done.
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


def label_one(
    repo: Repository, pid: int, iid: int, generate: MaskGenerator, *, category: str, min_score: float,
    max_pixels: int,
) -> int | None:  # fmt: skip
    """Pre-label one image; the number of masks saved, or None when a person saved it first."""
    record = repo.image(pid, iid)
    if record.version != 0:
        return None
    pixels = decode_image(repo.store.read(record.sha256), max_pixels=max_pixels).pixels
    annotations = proposals(generate(pixels), category, min_score)
    try:
        repo.save_annotations(pid, iid, AnnotationsIn(version=0, annotations=annotations))
    except ConflictError:
        logger.info("image %d was saved by someone else meanwhile: kept theirs", iid)
        return None
    return len(annotations)


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
