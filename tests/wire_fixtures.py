"""Wire-format fixtures for the page's tests: written by the real Python code, read by vitest.

``web/src/testdata/*_python.json`` hold documents that the Python side writes (a decoder manifest of a
real export, the metadata of a real upload). The tests that produce them compare with the committed
file, so any change of a format on the Python side fails here until the fixture is rewritten
(``CLICKSAM_UPDATE_FIXTURES=1``) and the page's parser is checked against it (``npx vitest run``): the
two sides cannot drift apart silently.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from clicksam.formats import JsonObject

WEB_TESTDATA = Path(__file__).resolve().parents[1] / "web" / "src" / "testdata"
UPDATE_ENV = "CLICKSAM_UPDATE_FIXTURES"


def check_web_fixture(name: str, doc: JsonObject) -> None:
    """Assert that ``web/src/testdata/<name>`` holds ``doc``; ``CLICKSAM_UPDATE_FIXTURES=1`` writes it."""
    path = WEB_TESTDATA / name
    text = json.dumps(doc, indent=2) + "\n"
    if os.environ.get(UPDATE_ENV) == "1":
        path.write_text(text, encoding="utf-8")
        return
    committed = path.read_text(encoding="utf-8") if path.is_file() else None
    assert committed == text, (
        f"{path} is not what the Python side writes now: the wire format changed. Rewrite it with "
        f"`{UPDATE_ENV}=1 pytest <this test>`, then run the page's parser on it (cd web && npx vitest run)."
    )
