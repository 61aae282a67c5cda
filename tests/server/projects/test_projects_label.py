"""Fully automatic labelling: what gets labelled, min score, resumable, never over a person's save."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from projects_helpers import annotation, image_bytes

from clicksam.model import Sam
from clicksam.model.automatic import SamAutomaticMaskGenerator
from clicksam.server.images import decode_image
from clicksam.server.projects.db import create_db_engine, default_url, upgrade
from clicksam.server.projects.errors import InvalidInputError
from clicksam.server.projects.label import check_category, images_to_label, label_one
from clicksam.server.projects.repository import Repository
from clicksam.server.projects.schemas import AnnotationsIn
from clicksam.server.projects.storage import BlobStore


@pytest.fixture
def repo(tmp_path: Path, database: str | None) -> Any:
    engine = create_db_engine(database or default_url(tmp_path))
    upgrade(engine)
    yield Repository(engine, BlobStore(tmp_path / "images"))
    engine.dispose()


@pytest.mark.slow
def test_label_skips_saved_and_skipped_images_and_resumes(repo: Repository, sam: Sam) -> None:
    pid = repo.create_project("auto", ["thing"]).id
    ids = [
        repo.add_image(
            pid, data=image_bytes(48, 64, i), file_name=f"{i}.png", fmt="PNG", width=64, height=48
        ).id
        for i in range(4)
    ]
    # a person saved image 1; image 2 is skipped
    person = np.zeros((48, 64), bool)
    person[5:9, 5:9] = True
    repo.save_annotations(
        pid,
        ids[1],
        AnnotationsIn.model_validate({"version": 0, "annotations": [annotation(person, "thing")]}),
    )
    repo.save_annotations(pid, ids[2], AnnotationsIn(version=0, annotations=[], status="skipped"))
    assert list(images_to_label(repo, pid, page=1)) == [ids[0], ids[2 + 1]]

    generator = SamAutomaticMaskGenerator(
        sam, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, output_mode="coco_rle"
    )
    outputs: dict[bytes, list[dict[str, Any]]] = {}

    def generate(pixels: np.ndarray) -> list[dict[str, Any]]:  # the real generator, run once per image
        key = pixels.tobytes()
        if key not in outputs:
            outputs[key] = generator.generate(pixels)
        return outputs[key]

    first = decode_image(image_bytes(48, 64, 0), max_pixels=10**8).pixels
    scores = [r["predicted_iou"] for r in generate(first)]
    min_score = float(np.median(scores))  # some masks pass, some do not
    saved = label_one(repo, pid, ids[0], generate, category="thing", min_score=min_score, max_pixels=10**8)
    assert saved is not None
    got = repo.get_annotations(pid, ids[0])
    assert got.version == 1 and len(got.annotations) == saved
    assert all(
        a.source == "auto" and a.score is not None and a.score >= min_score - 1e-4 for a in got.annotations
    )
    assert [a.score for a in got.annotations] == sorted(
        (a.score or 0.0 for a in got.annotations), reverse=True
    )
    assert all(a.prompts is not None and len(a.prompts.points) == 1 for a in got.annotations)
    # resumable: a second pass has one image left; a person's image is never touched
    assert list(images_to_label(repo, pid)) == [ids[3]]
    assert label_one(repo, pid, ids[1], generate, category="thing", min_score=0.0, max_pixels=10**8) is None
    assert repo.get_annotations(pid, ids[1]).version == 1
    # nothing passes: saved empty, so it counts as done
    assert label_one(repo, pid, ids[3], generate, category="thing", min_score=2.0, max_pixels=10**8) == 0
    assert list(images_to_label(repo, pid)) == []


def test_label_category(repo: Repository) -> None:
    empty = repo.create_project("none", []).id
    with pytest.raises(InvalidInputError, match="the project has no category to put the masks in"):
        check_category(repo, empty, None)
    pid = repo.create_project("two", ["a", "b"]).id
    assert check_category(repo, pid, None) == "a"
    assert check_category(repo, pid, "b") == "b"
    with pytest.raises(InvalidInputError, match="the project has no category 'c'; it has a, b"):
        check_category(repo, pid, "c")
