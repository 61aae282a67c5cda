"""TinyViT exports to ONNX (TorchScript exporter, as the server's encoder export) and ONNX Runtime agrees."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from test_tiny_vit import SMALL, perturb_

from clicksam.model.tiny_vit import TinyViT


def test_onnx_export_matches_pytorch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    enc = TinyViT(**{**SMALL, "img_size": 256})
    perturb_(enc, seed=8)
    enc.eval()
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(9))
    path = tmp_path / "tiny_vit.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        # the window padding is computed from the (fixed) traced input size: expected tracer warnings
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # dynamo=False is deliberate (see PITFALLS)
        torch.onnx.export(
            enc, (x,), str(path), dynamo=False, opset_version=17,
            input_names=["image"], output_names=["image_embeddings"],
        )  # fmt: skip
        expected = enc(x).numpy()
    onnx.checker.check_model(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"image": x.numpy()})
    assert got.shape == (1, 256, 16, 16)
    assert float(np.abs(got - expected).max()) <= 1e-4
