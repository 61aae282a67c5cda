"""``clicksam serve`` with the projects API on loopback, for the projects browser test.

Usage: python projects_page_server.py PORT DATA_DIR WEB_DIR [TOKEN]

The decoder is exported into DATA_DIR/decoder on the first start (as ``clicksam serve`` does), the
projects' SQLite file and image blobs live in DATA_DIR; with TOKEN every project request needs it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn

from clicksam.serve import ensure_decoder
from clicksam.server.app import create_app
from clicksam.server.loading import resolve_model
from clicksam.server.projects.runtime import ProjectsConfig
from clicksam.server.routes.projects import install_projects
from clicksam.server.settings import Settings


def main(argv: list[str]) -> None:
    port, data_dir, web_dir = int(argv[0]), Path(argv[1]), Path(argv[2])
    token = argv[3] if len(argv) > 3 else None
    settings = Settings(
        model="vit_test", cache_dir=data_dir / "cache", web_dir=web_dir, torch_threads=1,
        decoder_dir=data_dir / "decoder",
    )  # fmt: skip
    spec = resolve_model(
        settings.model, settings.checkpoint, settings.seed, random_weights=settings.random_weights
    )
    sam = ensure_decoder(data_dir / "decoder", spec)
    app = create_app(settings, spec=spec, sam=sam)
    install_projects(app, ProjectsConfig(data_dir=data_dir, token=token))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main(sys.argv[1:])
