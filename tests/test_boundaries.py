"""The package boundaries hold: ``clicksam.server`` never imports ``clicksam.export``, and the wire
formats (``clicksam.formats``) and errors (``clicksam.errors``) need nothing beyond the standard library.

Checked twice: statically (every import statement under ``server/``, including the lazy ones inside
functions) and at run time (importing every server module in a fresh interpreter).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imported_modules(path: Path) -> list[str]:
    """Absolute module names imported anywhere in a file (relative imports resolved to clicksam.*)."""
    package = "clicksam." + ".".join(path.relative_to(ROOT).parent.parts)
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                names.append(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                names.append(node.module)
    return names


def test_no_server_module_imports_the_exporter() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted((ROOT / "server").rglob("*.py"))
        for name in _imported_modules(path)
        if name == "clicksam.export" or name.startswith("clicksam.export.")
    ]
    assert not offenders, offenders


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout


@pytest.mark.slow
def test_importing_every_server_module_loads_no_exporter() -> None:
    code = (
        "import importlib, pkgutil, sys\n"
        "import clicksam.server\n"
        "for info in pkgutil.walk_packages(clicksam.server.__path__, 'clicksam.server.'):\n"
        "    importlib.import_module(info.name)\n"
        "print(sorted(n for n in sys.modules if n.startswith('clicksam.server.')))\n"
        "print('EXPORT', sorted(n for n in sys.modules if n.startswith('clicksam.export') or n == 'onnx'))\n"
    )
    out = _run(code)
    assert "clicksam.server.app" in out and "clicksam.server.everything" in out
    assert "EXPORT []" in out, out[-800:]


def test_formats_and_errors_need_only_the_standard_library() -> None:
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import clicksam.formats, clicksam.errors\n"
        "new = {n.split('.')[0] for n in set(sys.modules) - before}\n"
        "print('THIRD', sorted(n for n in new if n not in sys.stdlib_module_names and n != 'clicksam'))\n"
    )
    assert "THIRD []" in _run(code)
