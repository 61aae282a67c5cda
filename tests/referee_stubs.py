"""Stand-ins for the torchvision / timm names the official SAM packages import.

The official packages (test-time referees only) import torchvision, which does not load next to the CPU
torch here. :func:`install_torchvision_stub` puts a small ``torchvision`` into ``sys.modules`` with
exactly the names they use: ``transforms.functional.resize`` / ``to_pil_image`` (Pillow bilinear, as
torchvision does for PIL images) and ``ops.boxes.batched_nms`` / ``box_area`` (plain torch).
:func:`install_timm_stub` does the same for the ``timm`` names ``mobile_sam`` imports (eval-mode only).
:func:`reference_sam` builds the referee's ``Sam`` around an image encoder with SAM's standard prompt
encoder and mask decoder; :func:`sharpened_state` gives both sides weights whose masks are sharp.
Tests import this module by name; the benchmarks put ``tests/`` on ``sys.path`` first.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn


def _module(name: str) -> types.ModuleType:
    mod = sys.modules.get(name)
    if mod is None:
        mod = types.ModuleType(name)
        sys.modules[name] = mod
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(_module(parent), child, mod)
    return mod


def _to_pil_image(pic: Any) -> Image.Image:
    arr = np.asarray(pic)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise TypeError(f"stub to_pil_image takes HxWx3 uint8, got {arr.shape} {arr.dtype}")
    return Image.fromarray(arr, mode="RGB")


def _resize(img: Image.Image, size: list[int] | tuple[int, int]) -> Image.Image:
    h, w = size
    return img.resize((w, h), Image.Resampling.BILINEAR)


def _box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """Greedy NMS per category (torchvision semantics: keep indices sorted by decreasing score).

    Equal scores keep their input order (stable sort), so runs are deterministic.
    """
    order = torch.sort(scores, descending=True, stable=True).indices
    boxes = boxes.float()
    keep: list[int] = []
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    area = _box_area(boxes)
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        lt = torch.maximum(boxes[i, :2], boxes[:, :2])
        rb = torch.minimum(boxes[i, 2:], boxes[:, 2:])
        inter = (rb - lt).clamp(min=0).prod(dim=1)
        iou = inter / (area[i] + area - inter)
        suppressed |= (iou > iou_threshold) & (idxs == idxs[i])
    return torch.tensor(keep, dtype=torch.long)


def install_torchvision_stub() -> None:
    """Provide the torchvision names the official SAM packages import (no-op for names already there)."""
    functional = _module("torchvision.transforms.functional")
    if not hasattr(functional, "resize"):
        functional.resize = _resize  # type: ignore[attr-defined]
        functional.to_pil_image = _to_pil_image  # type: ignore[attr-defined]
    boxes = _module("torchvision.ops.boxes")
    if not hasattr(boxes, "batched_nms"):
        boxes.batched_nms = _batched_nms  # type: ignore[attr-defined]
        boxes.box_area = _box_area  # type: ignore[attr-defined]


class _RefDropPath(nn.Module):
    """Stand-in for ``timm``'s DropPath; the referee runs in eval mode where it is the identity."""

    def __init__(self, drop_prob: float | None = None) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.drop_prob:
            raise RuntimeError("the referee stub does not implement stochastic depth")
        return x


def install_timm_stub() -> None:
    """Provide the ``timm`` names ``mobile_sam`` imports (plus torchvision's), never replacing real ones."""
    install_torchvision_stub()
    stubs: dict[str, dict[str, Any]] = {
        "timm.models.layers": {
            "DropPath": _RefDropPath,
            "to_2tuple": lambda x: tuple(x) if isinstance(x, tuple | list) else (x, x),
            "trunc_normal_": nn.init.trunc_normal_,
        },
        "timm.models.registry": {"register_model": lambda fn: fn},
    }
    for name, attrs in stubs.items():
        mod = _module(name)
        for attr, value in attrs.items():
            if not hasattr(mod, attr):
                setattr(mod, attr, value)


def reference_sam(
    modeling: types.ModuleType, image_encoder: nn.Module, grid: tuple[int, int], image_size: int = 1024
) -> nn.Module:
    """The official ``Sam`` of ``modeling`` (``segment_anything.modeling`` or ``mobile_sam.modeling``)
    around ``image_encoder``, with SAM's standard prompt encoder and mask decoder, in eval mode.

    Args:
        grid: (h, w) of the image embedding; image_size: side of the padded input square.
    """
    return modeling.Sam(
        image_encoder=image_encoder,
        prompt_encoder=modeling.PromptEncoder(
            embed_dim=256,
            image_embedding_size=grid,
            input_image_size=(image_size, image_size),
            mask_in_chans=16,
        ),
        mask_decoder=modeling.MaskDecoder(
            num_multimask_outputs=3,
            transformer=modeling.TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
            transformer_dim=256,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    ).eval()


def sharpened_state(sam: nn.Module, seed: int = 1) -> dict[str, torch.Tensor]:
    """``sam``'s state dict with its prompt encoder and mask decoder perturbed by seeded noise and the
    hypernetwork outputs scaled up: sharp logits, so a good share of masks pass SAM's stability filter
    (raw random weights give masks that almost all fail it). The image encoder is left as it is."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in sam.state_dict().items():
        if value.is_floating_point() and not key.startswith("image_encoder"):
            value = value + 0.05 * torch.randn(value.shape, generator=gen)
            if key.startswith("mask_decoder.output_hypernetworks_mlps") and ".layers.2." in key:
                value = value * 40.0  # sharp logits: stable masks
        state[key] = value.clone()
    return state


# ------------------------------------------------------------------------------------------ SAM 2.1


def _tv_to_tensor_call(self: Any, pic: Any) -> torch.Tensor:
    """torchvision ``ToTensor`` on an (H, W, C) uint8 array: (C, H, W) float in [0, 1]."""
    arr = np.asarray(pic)
    if arr.dtype != np.uint8 or arr.ndim != 3:
        raise TypeError(f"stub ToTensor takes HxWxC uint8, got {arr.shape} {arr.dtype}")
    return torch.from_numpy(arr.transpose((2, 0, 1))).contiguous().to(dtype=torch.float32).div(255)


def install_sam2_torchvision_stub() -> None:
    """Also provide ``torchvision.transforms.{Resize, Normalize, ToTensor}`` for ``sam2`` (1.1.0).

    ``sam2.utils.transforms`` wraps Resize + Normalize in ``torch.jit.script``, so these are scriptable
    modules (defined in :mod:`referee_stubs_tv`, which has no postponed annotations). Resize is what
    torchvision does to a *tensor*: bilinear, ``align_corners=False``, antialiased (its default since
    0.17); Pillow's resize would give other pixels.
    """
    install_torchvision_stub()
    from referee_stubs_tv import Normalize, Resize

    transforms = _module("torchvision.transforms")
    if not hasattr(transforms, "Resize"):
        transforms.Resize = Resize  # type: ignore[attr-defined]
        transforms.Normalize = Normalize  # type: ignore[attr-defined]
        transforms.ToTensor = type("ToTensor", (), {"__call__": _tv_to_tensor_call})  # type: ignore[attr-defined]


#: the official config file of each SAM 2.1 preset (inside the sam2 package)
SAM2_OFFICIAL_CONFIGS = {
    "sam2.1_hiera_t": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_s": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_b+": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_l": "configs/sam2.1/sam2.1_hiera_l.yaml",
}


def reference_sam2(config_file: str, overrides: list[str] | None = None, *, meta: bool = False) -> nn.Module:
    """The official ``SAM2Base`` built as ``sam2.build_sam.build_sam2`` builds it for the image
    predictor (hydra config + the dynamic-multimask overrides), with random weights, eval mode.

    Args:
        config_file: e.g. ``configs/sam2.1/sam2.1_hiera_t.yaml``.
        overrides: extra hydra overrides (e.g. a smaller trunk).
        meta: build on the meta device (keys and shapes only, nothing allocated).
    """
    install_sam2_torchvision_stub()
    import sam2  # noqa: F401  (initialises hydra's config module)
    from hydra import compose
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = compose(
        config_name=config_file,
        overrides=[
            "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
            "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
            "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
            *(overrides or []),
        ],
    )
    OmegaConf.resolve(cfg)
    if not meta:
        model: nn.Module = instantiate(cfg.model, _recursive_=True)
        return model.eval()
    real_linspace = torch.linspace

    def cpu_linspace(*args: Any, **kwargs: Any) -> torch.Tensor:
        # Hiera reads its drop-path rates with .item(), which a meta tensor cannot answer
        kwargs["device"] = "cpu"
        return real_linspace(*args, **kwargs)

    torch.linspace = cpu_linspace  # type: ignore[assignment]
    try:
        with torch.device("meta"):
            model = instantiate(cfg.model, _recursive_=True)
    finally:
        torch.linspace = real_linspace  # type: ignore[assignment]
    return model.eval()


def perturbed_state(model: nn.Module, seed: int = 0, scale: float = 0.05) -> dict[str, torch.Tensor]:
    """``model``'s state dict with seeded Gaussian noise added to every floating tensor (parameters
    and buffers): zero-initialised tensors (position embeddings, biases) then matter in a comparison."""
    gen = torch.Generator().manual_seed(seed)
    return {
        k: (v + scale * torch.randn(v.shape, generator=gen)) if v.is_floating_point() else v.clone()
        for k, v in model.state_dict().items()
    }
