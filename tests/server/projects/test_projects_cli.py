"""The loop from the command line: ``clicksam label`` a project, ``clicksam train --data project:NAME`` on
what was kept, and label again with the checkpoint it wrote."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from projects_helpers import annotation, image_bytes

from clicksam.cli import main
from clicksam.server.projects.db import create_db_engine, default_url, upgrade
from clicksam.server.projects.repository import Repository
from clicksam.server.projects.schemas import AnnotationsIn
from clicksam.server.projects.storage import BlobStore


def project(data_dir: Path, images: int) -> tuple[Repository, int, list[int]]:
    engine = create_db_engine(default_url(data_dir))
    upgrade(engine)
    repo = Repository(engine, BlobStore(data_dir / "images"))
    pid = repo.create_project("shapes", ["thing"]).id
    ids = [
        repo.add_image(
            pid, data=image_bytes(64, 80, i), file_name=f"{i}.png", fmt="PNG", width=80, height=64
        ).id
        for i in range(images)
    ]
    return repo, pid, ids


@pytest.mark.slow
def test_label_train_label(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    repo, pid, ids = project(data_dir, 3)
    # a person annotated image 0
    mask = np.zeros((64, 80), bool)
    mask[10:40, 20:60] = True
    body = AnnotationsIn.model_validate({"version": 0, "annotations": [annotation(mask, "thing")]})
    repo.save_annotations(pid, ids[0], body)

    label = ["label", "shapes", "--data-dir", str(data_dir), "--model", "vit_test", "--points-per-side", "2"]
    assert main([*label, "--quiet"]) == 0
    assert [repo.get_annotations(pid, i).version for i in ids] == [1, 1, 1]  # the person's image untouched
    assert repo.get_annotations(pid, ids[0]).annotations[0].source == "manual"
    with caplog.at_level("INFO"):
        assert main([*label, "--quiet"]) == 0  # resumable: nothing left
    assert "nothing to label" in caplog.text

    monkeypatch.setenv("CLICKSAM_DATA_DIR", str(data_dir))
    out = tmp_path / "run"
    train = ["train", "--model", "vit_test", "--data", "project:shapes", "--steps", "1", "--out", str(out)]
    assert (
        main([*train, "--prompts-per-image", "1", "--export", str(tmp_path / "w.pt"), "--no-progress"]) == 0
    )
    assert (out / "project-data" / "instances.json").is_file()

    # the next batch, labelled with the fine-tuned checkpoint
    more = repo.add_image(pid, data=image_bytes(64, 80, 9), file_name="9.png", fmt="PNG", width=80, height=64)
    assert main([*label, "--checkpoint", str(tmp_path / "w.pt"), "--quiet"]) == 0
    assert repo.get_annotations(pid, more.id).version == 1


def test_label_and_train_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "data"
    project(data_dir, 1)
    assert main(["label", "nope", "--data-dir", str(data_dir), "--model", "vit_test"]) == 1
    assert "no project named 'nope'" in capsys.readouterr().err
    code = main(["label", "shapes", "--data-dir", str(data_dir), "--model", "vit_test", "--category", "x"])
    assert code == 1
    assert "the project has no category 'x'; it has thing" in capsys.readouterr().err
    assert main(["label", "shapes", "--database-url", "nope://", "--model", "vit_test"]) == 2
    assert "SQLAlchemy knows no database 'nope'" in capsys.readouterr().err
