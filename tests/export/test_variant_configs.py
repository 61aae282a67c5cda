"""How an export is configured: the presets, their ``with_*`` variants and the CLI flags that pick them."""

from __future__ import annotations

import argparse

import pytest

from clicksam.export.cli import _variants, register
from clicksam.export.decoder import DEFAULT_CONFIGS, variant_file
from clicksam.export.errors import ExportError


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["export", "--model", "vit_test", "--out", "x", *argv])


def test_default_flags_give_the_presets() -> None:
    assert _variants(_args()) == dict(DEFAULT_CONFIGS)
    assert list(
        _variants(_args("--variant", "browser", "--variant", "official", "--variant", "browser"))
    ) == [
        "browser",
        "official",
    ]


def test_flags_change_only_the_variant_they_concern() -> None:
    configs = _variants(_args("--quantize", "--browser-weights", "int8", "--single-mask"))
    browser, official = configs["browser"], configs["official"]
    assert browser.quantize and browser.weights_int8 and not browser.weights_float16
    assert browser.graph == DEFAULT_CONFIGS["browser"].graph
    assert official.graph.single_mask and not DEFAULT_CONFIGS["official"].graph.single_mask
    assert (official.quantize, official.weights_int8) == (False, False)
    only_browser = _variants(_args("--variant", "browser", "--single-mask", "--browser-weights", "float32"))
    assert list(only_browser) == ["browser"]
    assert not only_browser["browser"].weights_float16 and not only_browser["browser"].weights_int8


def test_weight_storage_is_checked() -> None:
    with pytest.raises(ExportError, match="float32, float16, int8, not 'int4'"):
        DEFAULT_CONFIGS["browser"].with_weights("int4")


def test_variant_files() -> None:
    assert [variant_file(n) for n in ("official", "browser", "browser_fp32")] == [
        "decoder.onnx",
        "decoder_browser.onnx",
        "decoder_browser_fp32.onnx",
    ]
