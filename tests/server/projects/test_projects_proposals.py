"""Pre-label proposals against a real uvicorn, on SQLite and on PostgreSQL: segment-everything on a stored
image, stored with source and score, listed, replaced by the next run, discarded, kept as annotations,
busy and bad requests answered with exact details.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import numpy as np
from projects_helpers import image_bytes
from server_helpers import run_uvicorn
from test_projects_api import make_project, upload

from clicksam.model import Sam
from clicksam.server.app import create_app
from clicksam.server.everything import MAX_WAITING_RUNS
from clicksam.server.loading import ModelSpec
from clicksam.server.projects.masks import counts_to_mask
from clicksam.server.settings import Settings

#: a small grid and no filtering, so the seeded test model gives several masks quickly
OPTIONS = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 1.0}
H, W = 48, 64


def _project_with_image(client: httpx.Client) -> tuple[int, int, bytes]:
    pid = make_project(client)
    data = image_bytes(H, W, seed=7)
    r = upload(client, pid, ("a.png", data))
    assert r.status_code == 201, r.text
    return pid, int(r.json()["images"][0]["id"]), data


def test_prelabel_stores_proposals_with_source_and_score(client: httpx.Client) -> None:
    pid, iid, data = _project_with_image(client)
    path = f"/api/projects/{pid}/images/{iid}"
    assert client.get(f"{path}/proposals").json() == {"proposals": []}

    r = client.post(f"{path}/prelabel", json=OPTIONS)
    assert r.status_code == 200, r.text
    proposals = r.json()["proposals"]
    assert len(proposals) >= 2
    assert client.get(f"{path}/proposals").json() == r.json()  # stored: any client sees the same

    # the same masks and scores as POST /api/everything gives for these bytes and options
    form = {k: str(v) for k, v in OPTIONS.items()}
    everything = client.post("/api/everything", files={"image": ("a.png", data)}, data=form).json()
    # (min_score is 0 by default: the untrained test model also predicts a few negative IoUs)
    found = [m for m in everything["masks"] if m["predicted_iou"] >= 0]
    expected = sorted(found, key=lambda m: -m["predicted_iou"])
    assert len(proposals) == len(expected)
    scores = [p["score"] for p in proposals]
    assert scores == sorted(scores, reverse=True)
    for p, m in zip(proposals, expected, strict=True):
        assert p["source"] == "everything"
        assert p["score"] == m["predicted_iou"]
        assert p["stability_score"] == m["stability_score"]
        assert p["segmentation"]["size"] == [H, W]
        mask = counts_to_mask(p["segmentation"]["counts"], H, W)
        assert np.array_equal(mask, counts_to_mask(m["segmentation"]["counts"], H, W))
        assert p["area"] == int(mask.sum()) == m["area"]
        ys, xs = np.nonzero(mask)
        assert p["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert p["prompts"] == {"points": [[*m["point_coords"][0], 1]], "box": None}

    # a second run replaces them; min_score keeps the masks scoring at least that
    cut = scores[len(scores) // 2]
    again = client.post(f"{path}/prelabel", json={**OPTIONS, "min_score": cut}).json()["proposals"]
    assert [p["score"] for p in again] == [s for s in scores if s >= cut]
    assert not {p["id"] for p in again} & {p["id"] for p in proposals}
    assert client.get(f"{path}/proposals").json()["proposals"] == again

    # keep one (its mask saved as an annotation with the usual versioned PUT), discard it and another
    kept, dropped = again[0], again[1]
    saved = {
        "category": "cat", "segmentation": kept["segmentation"], "source": "everything",
        "score": kept["score"], "prompts": kept["prompts"],
    }  # fmt: skip
    r = client.put(f"{path}/annotations", json={"version": 0, "annotations": [saved]})
    assert r.json() == {"version": 1}
    r = client.post(f"{path}/proposals/discard", json={"ids": [kept["id"], dropped["id"], 2**31 - 1]})
    assert r.json() == {"discarded": 2}
    left = client.get(f"{path}/proposals").json()["proposals"]
    assert left == again[2:]
    annotations = client.get(f"{path}/annotations").json()["annotations"]
    assert [(a["segmentation"], a["source"], a["score"]) for a in annotations] == [
        (kept["segmentation"], "everything", kept["score"])
    ]
    # discarding again is not an error: someone else did it first
    again_r = client.post(f"{path}/proposals/discard", json={"ids": [kept["id"]]})
    assert again_r.json() == {"discarded": 0}

    # the project's deletion takes the proposals with it (foreign keys cascade on both databases)
    assert client.delete(f"/api/projects/{pid}").status_code == 204


def test_prelabel_errors_say_what_to_do(client: httpx.Client) -> None:
    pid, iid, _ = _project_with_image(client)
    for method, suffix in [("POST", "prelabel"), ("GET", "proposals"), ("POST", "proposals/discard")]:
        r = client.request(method, f"/api/projects/{pid}/images/{iid + 1}/{suffix}", json={"ids": []})
        assert r.status_code == 404
        missing = f"project {pid} has no image with id {iid + 1}; GET /api/projects/{pid}/images lists them"
        assert r.json() == {"detail": missing}
    path = f"/api/projects/{pid}/images/{iid}"
    r = client.post(f"{path}/prelabel", json={"points_per_side": 65})
    assert r.status_code == 422
    assert r.json() == {"detail": "body field 'points_per_side': Input should be less than or equal to 64"}
    r = client.post(f"{path}/prelabel", json={"min_score": 1.5})
    assert r.status_code == 422
    assert r.json() == {"detail": "body field 'min_score': Input should be less than or equal to 1"}
    r = client.post(f"{path}/proposals/discard", json={"ids": [0]})
    assert r.status_code == 422
    assert r.json() == {"detail": "body field 'ids.0': Input should be greater than or equal to 1"}
    assert client.get(f"{path}/proposals").json() == {"proposals": []}


def test_prelabel_is_refused_with_retry_after_while_segment_everything_is_busy(
    sam: Sam, spec: ModelSpec, make_settings: Callable[..., Settings], database: str | None
) -> None:
    app = create_app(make_settings(database_url=database), spec=spec, sam=sam)
    with run_uvicorn(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        pid, iid, _ = _project_with_image(client)
        app.state.everything.pending = MAX_WAITING_RUNS + 1  # as if that many runs were queued
        try:
            r = client.post(f"/api/projects/{pid}/images/{iid}/prelabel", json=OPTIONS)
        finally:
            app.state.everything.pending = 0
        assert r.status_code == 503
        assert int(r.headers["Retry-After"]) >= 1
        assert r.json() == {"detail": "segment-everything is busy (3 runs in progress); retry later"}
        assert client.get(f"/api/projects/{pid}/images/{iid}/proposals").json() == {"proposals": []}
