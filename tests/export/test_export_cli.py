"""``clicksam export`` end to end (in process): files, manifest, exit codes and messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clicksam.cli import main


@pytest.mark.slow
def test_cli_exports_browser_variant(tmp_path: Path) -> None:
    out = tmp_path / "dec"
    assert (
        main(["export", "--model", "vit_test", "--seed", "3", "--out", str(out), "--variant", "browser"]) == 0
    )
    doc = json.loads((out / "manifest.json").read_text())
    assert list(doc["variants"]) == ["browser"]
    assert doc["default_variant"] == "browser"
    assert (doc["model"], doc["seed"], doc["checkpoint_sha256"]) == ("vit_test", 3, None)
    assert (out / "decoder_browser.onnx").stat().st_size == doc["variants"]["browser"]["bytes"]
    assert not list(out.glob("*.tmp"))


def test_cli_unknown_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--model", "vit_nope", "--out", str(tmp_path)]) == 2
    assert "unknown model 'vit_nope'" in capsys.readouterr().err


def test_cli_missing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["export", "--model", "vit_test", "--checkpoint", str(tmp_path / "x.pth"), "--out", str(tmp_path)]
    )
    assert code == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_seed_with_checkpoint_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "x.pth"
    ckpt.write_bytes(b"")
    code = main(
        ["export", "--model", "vit_test", "--checkpoint", str(ckpt), "--seed", "1", "--out", str(tmp_path)]
    )
    assert code == 2
    assert "--seed only applies to random weights" in capsys.readouterr().err
