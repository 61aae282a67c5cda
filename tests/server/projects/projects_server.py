"""A clicksam server with projects on 127.0.0.1 (the crash test runs it as a process it can kill).

Usage: python projects_server.py PORT DATA_DIR [DATABASE_URL]
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn

from clicksam.server.app import create_app
from clicksam.server.settings import Settings


def main(argv: list[str]) -> None:
    port, data_dir = int(argv[0]), Path(argv[1])
    url = argv[2] if len(argv) > 2 else None
    settings = Settings(
        model="vit_test", cache_dir=data_dir / "cache", web_dir=data_dir / "no-web", data_dir=data_dir,
        database_url=url,
    )  # fmt: skip
    app = create_app(settings)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main(sys.argv[1:])
