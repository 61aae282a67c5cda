"""The installed package and its console script."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest


@pytest.mark.parametrize("name", ["clicksam", "clicksam.model", "clicksam.export", "clicksam.server"])
def test_namespace_imports(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__name__ == name


def test_console_script_help_lists_subcommands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "clicksam.cli", "--help"], check=True, capture_output=True, text=True
    ).stdout
    assert "usage: clicksam" in out


def test_no_command_prints_help_and_fails() -> None:
    proc = subprocess.run([sys.executable, "-m", "clicksam.cli"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "usage: clicksam" in proc.stdout


def test_help_of_every_subcommand_does_not_import_torch() -> None:
    # the parsers are built from light modules; torch (seconds to import) only loads to run a command
    code = (
        "import sys\n"
        "from clicksam.cli import build_parser\n"
        "parser = build_parser()\n"
        "for name in ['serve', 'weights', 'export', 'everything', 'train', 'eval']:\n"
        "    try:\n"
        "        parser.parse_args([name, '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'fastapi') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert "HEAVY []" in out, out[-500:]


def test_model_package_resolves_names_lazily() -> None:
    import clicksam.model as model

    assert model.build_sam.__module__ == "clicksam.model.build"
    assert sorted(model.__all__) == sorted(n for n in model.__all__ if hasattr(model, n))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = model.nope  # type: ignore[attr-defined]
