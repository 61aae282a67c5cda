"""The Dockerfile, the Makefile and the README tell the same story.

The image cannot be built on the CI machine (no Docker engine), so instead of building it we check
that it runs the very make targets that ``make run`` / ``make test`` (and so CI) exercise, with the
same torch pin, and that the README names those commands.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return {name for line in re.findall(r"^([\w .-]+):(?!=)", text, flags=re.M) for name in line.split()}


def _dockerfile_make_targets() -> list[str]:
    text = (ROOT / "Dockerfile").read_text()
    return re.findall(r"\bRUN\b[^\n]*?\bmake\s+([a-z][\w-]*)", text)


def test_dockerfile_uses_the_makefile_targets_that_ci_proves() -> None:
    targets = _dockerfile_make_targets()
    assert set(targets) == {"web", "install"}, targets
    makefile = (ROOT / "Makefile").read_text()
    # `make run` builds on exactly these targets, and `make test` on their dev superset
    assert re.search(r"^run:\s*install web\b", makefile, flags=re.M)
    assert re.search(r"^test:\s*install-dev web\b", makefile, flags=re.M)
    assert re.search(r"^\$\(VENV\)/\.stamp-dev:\s*\$\(VENV\)/\.stamp-install", makefile, flags=re.M)
    for target in targets:
        assert target in _makefile_targets(), f"Dockerfile runs `make {target}`, which the Makefile lacks"


def test_same_torch_pin_everywhere() -> None:
    makefile = (ROOT / "Makefile").read_text()
    pin = re.search(r"^TORCH_SPEC \?= (torch==[\d.]+)$", makefile, flags=re.M)
    assert pin is not None
    readme = (ROOT / "README.md").read_text()
    assert pin.group(1) in readme, "README must name the torch pin the Makefile installs"
    # the Dockerfile must not override the pin, only where it comes from
    assert "TORCH_SPEC" not in (ROOT / "Dockerfile").read_text()


def test_readme_two_commands_match_ci() -> None:
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"^make run\b", readme, flags=re.M)
    assert re.search(r"^make test\b", readme, flags=re.M)
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^exec make test$", ci, flags=re.M)


def test_dockerfile_runs_as_non_root_with_healthcheck_and_cache_volume() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER (?!root)\w+", text, flags=re.M)
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert re.search(r'^VOLUME \["/cache"\]', text, flags=re.M)
    # the projects' database and images live in their own volume, not in a layer that dies with the container
    assert re.search(r'^VOLUME \["/data"\]', text, flags=re.M) and "CLICKSAM_DATA_DIR=/data" in text
    assert "CLICKSAM_CACHE_DIR=/cache" in text
    assert text.count("FROM ") >= 2, "multi-stage: node builds web/, python runs the server"


def test_wheel_holds_every_module_and_the_migrations(tmp_path: Path) -> None:
    """A regular (non-editable) install gets every source file: subpackages and Alembic's scripts too.

    The wheel is built from a copy of the sources, so no ``build/`` folder left by an earlier build
    can supply what the package list forgets.
    """
    import shutil
    import subprocess
    import sys
    import zipfile

    folders = {"clicksam": "clicksam", "model": "clicksam/model", "export": "clicksam/export"}
    folders |= {"server": "clicksam/server", "train": "clicksam/train"}
    src = tmp_path / "src"
    for folder in folders:
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("clicksam-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"{package}/{path.relative_to(src / folder).as_posix()}"
        for folder, package in folders.items()
        for path in (src / folder).rglob("*")
        if path.suffix in (".py", ".mako")
    }
    assert expected - names == set()
