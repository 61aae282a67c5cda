"""The projects page end to end: real headless Chromium, real ``clicksam serve`` with projects (SQLite).

The server runs with a token (--token) and its own projects folder. One browser session
(web/e2e/projects.mjs) creates a project, adds 3 images (2 files and a folder), annotates 2 objects
with categories, reloads, goes to the prefetched next image, pre-labels and keeps a proposal, meets a
save conflict, exports COCO and looks at a phone-sized screen; the page must ask for the token once.
The tests check what the page saw against what the server stored and exported. Screenshots land in
artifacts/e2e/projects-*.png.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from loopback import clicksam_serve
from PIL import Image, ImageDraw
from test_page import ARTIFACTS, E2E_MODEL, REPO, WEB, _missing_tools, run_node, scenario_results

from clicksam.model.amg import rle_to_mask

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TOKEN = "e2e-projects-token"


def make_images(folder: Path) -> None:
    """a.png, b.png and folder/c.png (a disc and a square on different backgrounds), folder/notes.txt."""
    (folder / "folder").mkdir(parents=True, exist_ok=True)
    for name, bg, shift in (
        ("a.png", (90, 110, 130), 0),
        ("b.png", (100, 90, 130), 10),
        ("folder/c.png", (80, 120, 100), 20),
    ):
        im = Image.new("RGB", (640, 480), bg)
        d = ImageDraw.Draw(im)
        d.ellipse((120 + shift, 80, 300 + shift, 240), fill=(220, 40, 40))
        d.rectangle((380, 250 + shift, 560, 420), fill=(40, 200, 80))
        im.save(folder / name)
    (folder / "folder" / "notes.txt").write_text("not an image: the page leaves it out\n")


class Api:
    """The projects API with the token, for checking what the server stored."""

    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str) -> Any:
        req = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """``clicksam serve`` with a token and its own projects folder (SQLite) on a free loopback port."""
    problem = _missing_tools()
    if problem:
        pytest.fail(f"browser tests need their tools: {problem}")
    data = tmp_path_factory.mktemp("projects-page")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    args = [
        "--model", E2E_MODEL, "--web-dir", str(WEB / "dist"), "--cache-dir", str(data / "cache"),
        "--data-dir", str(data / "projects"), "--token", TOKEN, "--torch-threads", "1",
    ]  # fmt: skip
    decoder_dir = os.environ.get("CLICKSAM_E2E_DECODER_DIR")  # a ready export, to skip exporting
    if decoder_dir:
        args += ["--decoder-dir", decoder_dir]
    # the first start exports the decoder
    with clicksam_serve(args, ARTIFACTS / "projects-server.log", REPO, timeout_s=600) as url:
        yield Api(url)


@pytest.fixture(scope="module")
def run(server: Api, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    images = tmp_path_factory.mktemp("projects-images")
    make_images(images)
    proc = run_node(
        "projects.mjs",
        "--url",
        server.url,
        "--images",
        str(images),
        "--out",
        str(ARTIFACTS),
        "--token",
        TOKEN,
    )
    return scenario_results(ARTIFACTS / "projects-results.json", proc, "projects scenario")


def test_leaving_unsaved_one_image_objects_asks_first(run: dict[str, Any]) -> None:
    confirms = [d for d in run["dialogs"] if d["type"] == "confirm"]
    assert [d["message"] for d in confirms] == [
        "Leave this image? Its 1 object is not saved anywhere (export them first)."
    ] * 2
    assert run["start"]["stayed"] == {"hash": "", "objects": 1}  # dismissed: still on the one-image page
    assert run["start"]["hash"] == "#/projects"


def test_the_page_asks_for_the_token_once_and_keeps_it(run: dict[str, Any]) -> None:
    prompts = [d["message"] for d in run["dialogs"] if d["type"] == "prompt"]
    assert prompts == ["This server needs its access token (CLICKSAM_TOKEN):"]


def test_a_project_gets_images_from_files_and_a_folder(run: dict[str, Any], server: Api) -> None:
    project = run["create"]["project"]
    assert project["categories"] == ["cat", "dog"]
    add = run["add"]
    assert [i["file"] for i in add["p"]["images"]] == ["a.png", "b.png", "c.png"]  # notes.txt left out
    assert add["error"] is None
    assert add["hash"] == f"#/projects/{project['projectId']}/images/{add['p']['images'][0]['id']}"
    assert add["thumbs"] == 3
    assert server.get(f"api/projects/{project['projectId']}")["image_count"] == 3


def test_objects_are_saved_with_category_prompts_and_mask_and_survive_a_reload(
    run: dict[str, Any], server: Api
) -> None:
    objects = run["annotate"]["p"]["objects"]
    assert [(o["category"], o["source"]) for o in objects] == [("dog", "manual"), ("cat", "manual")]
    assert [o["prompts"]["points"] for o in objects] == [[[210, 160, 1]], [[470, 335, 1]]]
    assert run["annotate"]["badge"] == "All changes saved"
    reload = run["reload"]
    assert reload["hash"] == run["add"]["hash"]
    assert reload["p"]["objects"] == objects  # exactly what was saved
    p = reload["p"]
    saved = reload["server"]  # what the server had then
    assert saved["version"] == p["version"]
    got = [(a["category"], a["source"], a["area"], a["prompts"]["points"]) for a in saved["annotations"]]
    assert got == [(o["category"], o["source"], o["area"], o["prompts"]["points"]) for o in objects]
    for a, o in zip(saved["annotations"], objects, strict=True):
        assert a["segmentation"]["size"] == [480, 640]  # at the image's resolution
        assert int(rle_to_mask(a["segmentation"]).sum()) == o["area"]


def test_a_kept_object_reopens_in_the_editor_and_its_refinement_replaces_it(run: dict[str, Any]) -> None:
    r = run["refine"]
    before = {a["id"]: a for a in run["reload"]["server"]["annotations"]}
    after = {a["id"]: a for a in r["server"]["annotations"]}
    assert r["hidden"].count(False) == 1  # the object being refined is hidden meanwhile
    target, second = r["target"], r["second"]
    (first,) = r["opened"]["prompts"]["points"]
    assert (first["x"], first["y"], first["label"]) == (
        pytest.approx(target["x"], abs=0.01),
        pytest.approx(target["y"], abs=0.01),
        1,
    )
    assert after.keys() == before.keys()  # same annotations: the refined one keeps its id
    (refined_id,) = [k for k in after if after[k]["prompts"] != before[k]["prompts"]]
    points = after[refined_id]["prompts"]["points"]
    assert np.allclose(points, [[target["x"], target["y"], 1], [second["x"], second["y"], 1]], atol=0.01)
    assert after[refined_id]["category"] == before[refined_id]["category"]
    assert after[refined_id]["source"] == "manual"
    assert sorted(o["category"] for o in r["p"]["objects"]) == ["cat", "dog"]
    assert all(o["visible"] for o in r["p"]["objects"])


def test_next_image_is_prefetched_and_clickable_without_an_upload(run: dict[str, Any]) -> None:
    nxt = run["next"]
    images = nxt["p"]["images"]
    assert nxt["p"]["imageId"] == images[1]["id"]
    assert nxt["hash"].endswith(f"/images/{images[1]['id']}")
    assert not [r for r in nxt["requests"] if not r.startswith("GET ")], nxt[
        "requests"
    ]  # no upload, no encode
    assert nxt["clicked"]["maskArea"] > 0


def test_prelabel_proposals_can_be_kept_with_source_and_score(run: dict[str, Any]) -> None:
    pre = run["prelabel"]
    assert pre["proposals"] >= 2  # so that some are left after one is kept
    (kept,) = pre["after"]["objects"]
    assert kept["source"] == "everything"
    assert kept["score"] == pytest.approx(pre["first"]["score"], abs=1e-4)
    assert kept["area"] == pre["first"]["area"]
    assert kept["category"] == "cat"
    # the proposals are the server's: the page showed what it stores; keeping one removed it there
    assert pre["before"] == pre["shown"]
    assert pre["server"] == [q for q in pre["before"] if q != pre["first"]["id"]]
    # after a reload with nothing in this browser's storage but the token: the kept one is an
    # annotation, the others are still proposals, as the server has them
    assert "clicksam.token" in pre["storage"]
    assert not [k for k in pre["storage"] if "proposal" in k]  # the page keeps none in this browser
    left = pre["reloaded"]["proposals"]
    assert len(left) == pre["proposals"] - 1
    assert pre["reloaded"]["objects"] == pre["after"]["objects"]
    assert [q["id"] for q in left] == [q["id"] for q in pre["after"]["proposals"]] == pre["server"]
    assert pre["first"]["id"] not in [q["id"] for q in left]
    assert pre["listed"] == min(len(left), 60)


def test_a_conflict_is_shown_and_overwrite_keeps_the_page_edits(run: dict[str, Any], server: Api) -> None:
    c = run["conflict"]
    assert c["other"] == 200
    assert c["p"]["saveState"] == "conflict"
    assert c["shown"] == 1
    p = c["after"]
    saved = server.get(f"api/projects/{p['projectId']}/images/{p['imageId']}/annotations")
    assert [(a["source"], a["area"]) for a in saved["annotations"]] == [
        (o["source"], o["area"]) for o in p["objects"]
    ]
    assert len(saved["annotations"]) == 1  # the kept proposal, not the other save's empty list
    page = server.get(f"api/projects/{p['projectId']}/images?status=done")
    assert [i["id"] for i in page["images"]] == [p["imageId"]]


def test_coco_export_holds_the_annotations_of_the_page(run: dict[str, Any], server: Api) -> None:
    coco = json.loads(Path(run["export"]["file"]).read_text())
    assert [i["file_name"] for i in coco["images"]] == ["a.png", "b.png", "c.png"]
    names = {c["id"]: c["name"] for c in coco["categories"]}
    by_image: dict[int, list[tuple[str, str]]] = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append((names[a["category_id"]], a["source"]))
    first, second = (i["id"] for i in coco["images"][:2])
    assert {k: sorted(v) for k, v in by_image.items()} == {
        first: [("cat", "manual"), ("dog", "manual")],
        second: [("cat", "everything")],
    }
    pid = run["export"]["p"]["projectId"]
    stored = server.get(f"api/projects/{pid}/images/{run['export']['p']['images'][0]['id']}/annotations")
    for a, s in zip(
        [a for a in coco["annotations"] if a["image_id"] == first], stored["annotations"], strict=True
    ):
        assert np.array_equal(rle_to_mask(a["segmentation"]), rle_to_mask(s["segmentation"]))


def test_a_phone_screen_collapses_the_gallery(run: dict[str, Any]) -> None:
    phone = run["phone"]
    assert phone["collapsed"] is True
    assert phone["opened"] is True
    assert phone["overflow"] <= 0  # nothing wider than the screen
