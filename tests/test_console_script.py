"""The installed package and its console script."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

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


def _clicksam(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the installed console script (not ``python -m``): what a user types."""
    script = Path(sys.executable).with_name("clicksam")
    return subprocess.run([str(script), *args], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["export", "--model", "vit_nope", "--out", "out"], 2, "unknown model 'vit_nope'"),
        (["serve", "--checkpoint", "nope.pt"], 2, "checkpoint not found: nope.pt"),
        (["serve", "--port", "not-a-port"], 2, "invalid settings: port:"),
        # the decoder export on first start fails: its folder cannot be created (a file is in the way)
        (["serve", "--model", "vit_test", "--decoder-dir", "blocker"], 1, "blocker"),
        (["weights", "verify", "nope.pt"], 2, "not found"),
        (["everything", "nope.png", "--out", "out"], 2, "no such image file: nope.png"),
        (["train", "--model", "nope", "--out", "out", "--steps", "1"], 2, "unknown model 'nope'"),
        (["eval", "--model", "nope", "--checkpoint", "nope.pt"], 2, "nope"),
        (["eval", "--images", "0"], 2, "--images and --max-clicks must be at least 1"),
    ],
)
def test_expected_failures_give_one_line_and_an_exit_code(
    args: list[str], code: int, message: str, tmp_path: Path
) -> None:
    (tmp_path / "blocker").write_text("not a folder")
    proc = (
        _clicksam(*args, "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
        if args[0] == "serve"
        else (_clicksam(*args, cwd=tmp_path))
    )
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == code, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith(f"clicksam {args[0]}: error: ")]
    assert len(errors) == 1 and message in errors[0], proc.stderr[-3000:]
