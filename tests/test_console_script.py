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
