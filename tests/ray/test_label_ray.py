"""``clicksam label --engine ray`` on the session's real local Ray, against the local command.

One 20-image project is labelled twice, from the command line: with the local engine, and with
``--engine ray`` (2 actors) stopped by a real SIGINT once a few images are saved, then run again. The Ray
run must save exactly the local run's proposals (masks, scores, prompts), leave no half-saved image
behind at the stop, free its actors, label only what was left on the second run, and show progress.
"""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from clicksam.cli import main
from clicksam.errors import UsageError
from clicksam.server.loading import ModelSpec
from clicksam.server.projects.db import create_db_engine, default_url, upgrade
from clicksam.server.projects.label import GeneratorOptions
from clicksam.server.projects.label_ray import Labeller, LabelSettings, RayOptions, pool_size
from clicksam.server.projects.repository import Repository
from clicksam.server.projects.storage import BlobStore
from clicksam.server.scale.cluster import ClusterInfo

IMAGES = 20
#: the tiny model (random weights, seed 0), a 2x2 grid and SAM's filters off, so every image gets masks
LABEL = [
    "--model", "vit_test", "--random-weights", "--points-per-side", "2",
    "--pred-iou-thresh", "0", "--stability-score-thresh", "0",
]  # fmt: skip


def png(seed: int) -> bytes:
    """A 48x64 PNG: a bright disc on noise (a different one per seed)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 120, (48, 64, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:48, :64]
    cy, cx = rng.uniform(12, 36), rng.uniform(12, 52)
    pixels[(yy - cy) ** 2 + (xx - cx) ** 2 < 100] = rng.integers(150, 256, 3, dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def project(data_dir: Path) -> tuple[Repository, int, list[int]]:
    engine = create_db_engine(default_url(data_dir))
    upgrade(engine)
    repo = Repository(engine, BlobStore(data_dir / "images"))
    pid = repo.create_project("shapes", ["thing"]).id
    ids = [
        repo.add_image(pid, data=png(i), file_name=f"{i}.png", fmt="PNG", width=64, height=48).id
        for i in range(IMAGES)
    ]
    return repo, pid, ids


def saved(repo: Repository, pid: int, iid: int) -> tuple[int, list[Any]]:
    """(version, the annotations without their ids and times)."""
    got = repo.get_annotations(pid, iid)
    return got.version, [
        a.model_dump(mode="json", exclude={"id", "created_at", "updated_at"}) for a in got.annotations
    ]


def interrupt_after(repo: Repository, pid: int, ids: list[int], count: int) -> threading.Thread:
    """A thread that sends this process a real SIGINT (Ctrl-C) once ``count`` images are saved."""

    def watch() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if sum(repo.image(pid, i).version for i in ids) >= count:
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_label_on_ray_equals_local_resumes_after_a_stop_and_reports_progress(
    ray_cluster: ClusterInfo,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    import ray

    local_repo, local_pid, ids = project(tmp_path / "local")
    assert main(["label", "shapes", "--data-dir", str(tmp_path / "local"), *LABEL, "--quiet"]) == 0
    expected = {iid: saved(local_repo, local_pid, iid) for iid in ids}
    assert all(version == 1 for version, _ in expected.values())
    assert sum(len(a) for _, a in expected.values()) >= IMAGES  # masks to compare, not empty saves

    repo, pid, ray_ids = project(tmp_path / "ray")
    assert ray_ids == ids
    on_ray = [
        "label",
        "shapes",
        "--data-dir",
        str(tmp_path / "ray"),
        *LABEL,
        "--engine",
        "ray",
        "--actors",
        "2",
    ]
    # a real Ctrl-C once 3 images are saved: exit 130, every image saved whole or not at all
    watcher = interrupt_after(repo, pid, ids, 3)
    with caplog.at_level("WARNING"):
        assert main([*on_ray, "--quiet"]) == 130
    watcher.join(5)
    assert "run the same command to go on" in caplog.text
    after_stop = {iid: saved(repo, pid, iid) for iid in ids}
    done = [iid for iid, (version, _) in after_stop.items() if version == 1]
    assert 3 <= len(done) < IMAGES, f"{len(done)} images saved at the stop"
    for iid, (version, masks) in after_stop.items():
        assert (version, masks) == (expected[iid] if version == 1 else (0, [])), f"image {iid}"
    # the stop ended the pipeline: its actors give their CPUs back
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"]:
        assert time.monotonic() < deadline, f"CPUs still held after the stop: {ray.available_resources()}"
        time.sleep(0.2)

    # the second run labels only the rest, with a progress bar, and ends with the local run's proposals
    capsys.readouterr()
    assert main(on_ray) == 0
    progress = capsys.readouterr().err
    left = IMAGES - len(done)
    assert "labelling shapes: 100%" in progress and f"{left}/{left}" in progress, progress[-500:]
    assert {iid: saved(repo, pid, iid) for iid in ids} == expected


def test_pool_size_fits_the_cluster() -> None:
    two_cpus = {"CPU": 2.0}
    assert pool_size(RayOptions(), two_cpus) == 2
    assert pool_size(RayOptions(actors=1), two_cpus) == 1
    assert pool_size(RayOptions(cpus_per_actor=2), two_cpus) == 1
    assert pool_size(RayOptions(gpus_per_actor=1), {"CPU": 16.0, "GPU": 4.0}) == 4
    assert pool_size(RayOptions(gpus_per_actor=0.5, cpus_per_actor=4), {"CPU": 16.0, "GPU": 4.0}) == 4
    with pytest.raises(
        UsageError, match=r"--actors 3: the Ray cluster has 2 CPUs and 0 GPUs, room for 1 to 2"
    ):
        pool_size(RayOptions(actors=3), two_cpus)
    with pytest.raises(UsageError, match="not enough for one actor with 1 CPUs and 1 GPUs per actor"):
        pool_size(RayOptions(gpus_per_actor=1), two_cpus)


def test_an_actor_with_another_checkpoint_reports_it_and_labels_nothing(tmp_path: Path) -> None:
    checkpoint = tmp_path / "sam.pt"
    checkpoint.write_bytes(b"not the driver's file")
    spec = ModelSpec("vit_test", checkpoint, "0" * 64, 0, demo=False, notice=None)
    threads = torch.get_num_threads()
    try:
        labeller = Labeller(LabelSettings(spec, "thing", 0.0, 10**8, GeneratorOptions(2), torch_threads=1))
    finally:
        torch.set_num_threads(threads)  # an actor sets its own; this test runs the class in-process
    out = labeller({"image_id": np.array([7]), "data": np.array([png(0)], dtype=object)})
    assert list(out["annotations"]) == ["[]"]
    assert f"the checkpoint {checkpoint} on Ray node" in out["error"][0]
    assert (
        f"is not the driver's (sha256 {'0' * 64}): put the same file at that path on every node"
        in out["error"][0]
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a node without CUDA")
def test_an_actor_asked_for_a_gpu_without_cuda_says_so() -> None:
    spec = ModelSpec("vit_test", None, None, 0, demo=True, notice=None)
    threads = torch.get_num_threads()
    try:
        settings = LabelSettings(
            spec, "thing", 0.0, 10**8, GeneratorOptions(2), torch_threads=1, device="cuda"
        )
        labeller = Labeller(settings)
    finally:
        torch.set_num_threads(threads)
    out = labeller({"image_id": np.array([7]), "data": np.array([png(0)], dtype=object)})
    assert "has no CUDA device for torch" in out["error"][0]
    assert (
        "install a CUDA build of torch on the GPU nodes, or run without --gpus-per-actor" in out["error"][0]
    )
