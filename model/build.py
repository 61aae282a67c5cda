"""Registry of SAM model configurations and the builder that loads official checkpoints strictly.

``build_sam("vit_b", checkpoint="sam_vit_b_01ec64.pth")`` gives a model whose ``state_dict`` keys,
shapes and dtypes are exactly the official ones, so the official files load with ``strict=True`` and no
key remapping. ``build_sam("vit_test", seed=0)`` gives a tiny, seeded, randomly initialised model with
the standard 256-channel prompt encoder and mask decoder, for fast tests.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from clicksam.errors import UsageError

from .demo_encoder import DemoEncoder, DemoEncoderConfig
from .image_encoder import ImageEncoderViT
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .sam import Sam
from .transformer import TwoWayTransformer

__all__ = [
    "MODEL_CONFIGS",
    "CheckpointError",
    "CheckpointMismatchError",
    "SamConfig",
    "TinyViTConfig",
    "UnknownModelError",
    "ViTConfig",
    "build_sam",
    "build_sam_from_config",
    "load_checkpoint",
]

logger = logging.getLogger(__name__)


class UnknownModelError(UsageError, ValueError):
    """The model name is not in :data:`MODEL_CONFIGS`."""


class CheckpointError(UsageError, RuntimeError):
    """A checkpoint file cannot be read as a SAM state dict."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint's keys or shapes do not match the model it is loaded into."""

    def __init__(
        self,
        message: str,
        *,
        missing: list[str],
        unexpected: list[str],
        shape_mismatches: list[tuple[str, tuple[int, ...], tuple[int, ...]]],
    ) -> None:
        super().__init__(message)
        self.missing = missing
        self.unexpected = unexpected
        self.shape_mismatches = shape_mismatches


@dataclass(frozen=True)
class ViTConfig:
    """SAM's ViT image encoder hyper-parameters."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    window_size: int = 14
    patch_size: int = 16
    mlp_ratio: float = 4.0

    def constructor_args(self, img_size: int, out_chans: int) -> dict[str, Any]:
        """Keyword arguments of ``ImageEncoderViT(...)``, ours or the official class (which also needs
        ``norm_layer`` with eps 1e-6, as the official ``build_sam`` passes). The fields are named after
        the constructor's parameters.

        Args:
            img_size: side of the square (padded) input in pixels (1024 for SAM).
            out_chans: channels of the image embedding (the prompt embedding width, 256 for SAM).
        """
        fixed = dict(qkv_bias=True, use_abs_pos=True, use_rel_pos=True)
        return dict(asdict(self), img_size=img_size, out_chans=out_chans, **fixed)


@dataclass(frozen=True)
class TinyViTConfig:
    """MobileSAM's TinyViT image encoder hyper-parameters (official constructor arguments)."""

    embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (2, 4, 5, 10)
    window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    local_conv_size: int = 3
    layer_lr_decay: float = 0.8

    def constructor_args(self, img_size: int) -> dict[str, Any]:
        """Keyword arguments of ``TinyViT(...)``, ours or the official class: MobileSAM's own build call.
        The fields are named after the constructor's parameters (passed as lists, as MobileSAM does).

        Args:
            img_size: side of the square (padded) input in pixels (1024 for MobileSAM).
        """
        fields = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        fixed = dict(in_chans=3, num_classes=1000, drop_rate=0.0, drop_path_rate=0.0, use_checkpoint=False)
        return dict(fields, img_size=img_size, **fixed)


@dataclass(frozen=True)
class SamConfig:
    """A complete SAM model: image encoder, prompt encoder and mask decoder hyper-parameters.

    The image embedding is (1, prompt_embed_dim, image_size // 16, image_size // 16) for every preset.
    """

    name: str
    encoder: ViTConfig | TinyViTConfig | DemoEncoderConfig
    image_size: int = 1024
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    embedding_stride: int = 16

    @property
    def encoder_kind(self) -> Literal["vit", "tiny_vit", "demo"]:
        if isinstance(self.encoder, DemoEncoderConfig):
            return "demo"
        return "vit" if isinstance(self.encoder, ViTConfig) else "tiny_vit"

    @property
    def image_embedding_size(self) -> int:
        """Side of the image embedding grid (64 for image_size 1024)."""
        return self.image_size // self.embedding_stride

    @property
    def low_res_size(self) -> int:
        """Side of the decoder's low-res mask logits (256 for image_size 1024)."""
        return 4 * self.image_embedding_size


MODEL_CONFIGS: dict[str, SamConfig] = {
    "vit_h": SamConfig("vit_h", ViTConfig(1280, 32, 16, (7, 15, 23, 31))),
    "vit_l": SamConfig("vit_l", ViTConfig(1024, 24, 16, (5, 11, 17, 23))),
    "vit_b": SamConfig("vit_b", ViTConfig(768, 12, 12, (2, 5, 8, 11))),
    "vit_t": SamConfig("vit_t", TinyViTConfig()),
    # tiny ViT encoder (one windowed + one global block) with the standard prompt encoder / decoder
    "vit_test": SamConfig("vit_test", ViTConfig(32, 2, 2, (1,))),
    # the embedded demo model: a small encoder trained by `clicksam train` (docs/training.md)
    "demo": SamConfig("demo", DemoEncoderConfig()),
}

#: the demo model's shipped weights (fp16), loaded by ``build_sam("demo")`` when no checkpoint is given
DEMO_WEIGHTS = Path(__file__).resolve().parent / "weights" / "demo.pt"


def _build_image_encoder(config: SamConfig) -> nn.Module:
    enc = config.encoder
    if isinstance(enc, DemoEncoderConfig):
        return DemoEncoder(enc, img_size=config.image_size)
    if isinstance(enc, ViTConfig):
        return ImageEncoderViT(**enc.constructor_args(config.image_size, config.prompt_embed_dim))
    # imported here so the ViT models work without (and before) the TinyViT module
    from .tiny_vit import TinyViT

    return TinyViT(**enc.constructor_args(config.image_size))


def _build(config: SamConfig) -> Sam:
    grid = config.image_embedding_size
    dim = config.prompt_embed_dim
    return Sam(
        image_encoder=_build_image_encoder(config),
        prompt_encoder=PromptEncoder(
            embed_dim=dim,
            image_embedding_size=(grid, grid),
            input_image_size=(config.image_size, config.image_size),
            mask_in_chans=config.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            transformer_dim=dim,
            transformer=TwoWayTransformer(
                depth=config.decoder_depth,
                embedding_dim=dim,
                mlp_dim=config.decoder_mlp_dim,
                num_heads=config.decoder_num_heads,
            ),
            num_multimask_outputs=config.num_multimask_outputs,
            iou_head_depth=config.iou_head_depth,
            iou_head_hidden_dim=config.iou_head_hidden_dim,
        ),
        image_size=config.image_size,
    )


def _unwrap_state_dict(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """The state dict inside a loaded checkpoint: the object itself, or under "model" / "state_dict"."""
    if isinstance(obj, Mapping):
        for wrapper in ("model", "state_dict"):
            inner = obj.get(wrapper)
            if isinstance(inner, Mapping):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise CheckpointError(
            f"{source} does not hold a state dict (a mapping of parameter names to tensors, optionally "
            'under "model" or "state_dict"); pass an official SAM / MobileSAM checkpoint'
        )
    return dict(obj)


def _summarise(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def load_checkpoint(model: Sam, checkpoint: str | Path, *, model_name: str = "model") -> None:
    """Load a checkpoint into ``model`` strictly.

    Args:
        model: the model to fill.
        checkpoint: path to a ``.pth``/``.pt`` file holding a state dict (or ``{"model": sd}`` /
            ``{"state_dict": sd}``).
        model_name: name used in error messages.

    Raises:
        CheckpointError: the file is missing or is not a readable tensor-only state dict.
        CheckpointMismatchError: keys are missing or unexpected, or shapes differ; the message names them.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist; download it with `clicksam weights download {model_name}` "
            "or pass the path of an official checkpoint file"
        )
    try:
        # weights_only: a checkpoint is data, never code to run
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or non-tensor pickles
        raise CheckpointError(
            f"cannot read checkpoint {path} as a tensor-only state dict ({type(exc).__name__}: {exc}); "
            "check that the file is complete (`clicksam weights verify PATH`)"
        ) from exc
    state = _unwrap_state_dict(obj, str(path))

    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shape_mismatches = [
        (k, tuple(state[k].shape), tuple(expected[k].shape))
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k].shape
    ]
    if missing or unexpected or shape_mismatches:
        parts = [f"checkpoint {path} does not match model {model_name!r}:"]
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_summarise(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_summarise(unexpected)}")
        if shape_mismatches:
            shown = [f"{k} (checkpoint {list(a)} vs model {list(b)})" for k, a, b in shape_mismatches]
            parts.append(f"{len(shape_mismatches)} shape mismatch(es): {_summarise(shown)}")
        parts.append("is it a checkpoint of another model? pick the model name that matches the file")
        raise CheckpointMismatchError(
            "\n  ".join(parts), missing=missing, unexpected=unexpected, shape_mismatches=shape_mismatches
        )
    model.load_state_dict(state, strict=True)


def build_sam_from_config(config: SamConfig, seed: int | None = None) -> Sam:
    """Build a randomly initialised model from any :class:`SamConfig` (e.g. a custom small one), eval mode.

    Args:
        config: the hyper-parameters.
        seed: seed for the initialisation (the global RNG is left untouched); None uses the global RNG.
    """
    if seed is None:
        return _build(config).eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build(config).eval()


def build_sam(name: str, checkpoint: str | Path | None = None, seed: int | None = None) -> Sam:
    """Build a SAM model by preset name, in eval mode.

    Args:
        name: a key of :data:`MODEL_CONFIGS` (``vit_b``, ``vit_l``, ``vit_h``, ``vit_t``, ``vit_test``).
        checkpoint: optional official checkpoint to load strictly (see :func:`load_checkpoint`).
        seed: seed for the random initialisation (without touching the global RNG); None uses the
            global RNG as is.

    Raises:
        UnknownModelError: ``name`` is not a preset.
        CheckpointError, CheckpointMismatchError: see :func:`load_checkpoint`.
    """
    config = MODEL_CONFIGS.get(name)
    if config is None:
        raise UnknownModelError(f"unknown model {name!r}; choose one of {', '.join(MODEL_CONFIGS)}")
    model = build_sam_from_config(config, seed=seed)
    if checkpoint is None and seed is None and name == "demo":
        # the demo model is only useful trained: without a seed, load the weights shipped in the package
        if not DEMO_WEIGHTS.is_file():
            raise CheckpointError(
                f"the demo model's weights {DEMO_WEIGHTS} are missing; reinstall clicksam, train them with "
                "`clicksam train` (docs/training.md), or pass seed=... for random weights"
            )
        checkpoint = DEMO_WEIGHTS
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, model_name=name)
        logger.info("loaded %s checkpoint %s", name, checkpoint)
    return model.eval()
