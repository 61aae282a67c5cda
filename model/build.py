"""Registry of SAM model configurations and the builder that loads official checkpoints strictly.

``build_sam("vit_b", checkpoint="sam_vit_b_01ec64.pth")`` gives a model whose ``state_dict`` keys,
shapes and dtypes are exactly the official ones, so the official files load with ``strict=True`` and no
key remapping. ``build_sam("vit_test", seed=0)`` gives a tiny, seeded, randomly initialised model with
the standard 256-channel prompt encoder and mask decoder, for fast tests.

SAM 2.1 (:data:`SAM2_CONFIGS`: ``sam2.1_hiera_t/s/b+/l`` and the tiny ``sam2_tiny``) builds a
:class:`~clicksam.model.sam2.Sam2`. Official SAM 2.1 checkpoints (``{"model": state_dict}``) also hold
the video-only modules; their keys, named in :data:`SAM2_VIDEO_ONLY_KEYS`, are dropped on load, and
every other key must match exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, overload

import torch
from torch import nn

from clicksam.errors import UsageError

from .demo_encoder import DemoEncoder, DemoEncoderConfig
from .hiera import Hiera, HieraConfig
from .image_encoder import ImageEncoderViT
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .sam import Sam
from .sam2 import Sam2
from .sam2_image_encoder import FpnNeck, ImageEncoder
from .sam2_mask_decoder import Sam2MaskDecoder, sam2_two_way_transformer
from .transformer import TwoWayTransformer

__all__ = [
    "MODEL_CONFIGS",
    "SAM2_CONFIGS",
    "SAM2_VIDEO_ONLY_KEYS",
    "CheckpointError",
    "CheckpointMismatchError",
    "HieraConfig",
    "Sam2Config",
    "Sam2Name",
    "SamConfig",
    "TinyViTConfig",
    "UnknownModelError",
    "ViTConfig",
    "build_sam",
    "build_sam2",
    "build_sam2_from_config",
    "build_sam_from_config",
    "is_sam2_model",
    "is_video_only_key",
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


@dataclass(frozen=True)
class Sam2Config:
    """A SAM 2.1 image model: Hiera trunk, FPN neck, SAM's prompt encoder and SAM 2's mask decoder.

    The decoder consumes (256, 64, 64) + (32, 256, 256) + (64, 128, 128) per image for image_size 1024.
    """

    name: str
    trunk: HieraConfig
    image_size: int = 1024
    backbone_stride: int = 16
    prompt_embed_dim: int = 256
    fpn_top_down_levels: tuple[int, ...] = (2, 3)
    scalp: int = 1
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    # the official image predictor's builder sets these (build_sam2(apply_postprocessing=True))
    dynamic_multimask_via_stability: bool = True
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98

    @property
    def encoder_kind(self) -> Literal["hiera"]:
        return "hiera"

    @property
    def embedding_stride(self) -> int:
        return self.backbone_stride

    @property
    def image_embedding_size(self) -> int:
        """Side of the image embedding grid (64 for image_size 1024)."""
        return self.image_size // self.backbone_stride

    @property
    def low_res_size(self) -> int:
        """Side of the decoder's low-res mask logits (256 for image_size 1024)."""
        return 4 * self.image_embedding_size


#: names of the SAM 2.1 presets (``build_sam`` returns a :class:`Sam2` for these)
Sam2Name = Literal["sam2.1_hiera_t", "sam2.1_hiera_s", "sam2.1_hiera_b+", "sam2.1_hiera_l", "sam2_tiny"]

#: the official configs/sam2.1/sam2.1_hiera_{t,s,b+,l}.yaml trunks, plus a tiny one for tests
SAM2_CONFIGS: dict[str, Sam2Config] = {
    "sam2.1_hiera_t": Sam2Config(
        "sam2.1_hiera_t",
        HieraConfig(96, 1, (1, 2, 7, 2), (5, 7, 9), window_pos_embed_bkg_spatial_size=(7, 7)),
    ),
    "sam2.1_hiera_s": Sam2Config(
        "sam2.1_hiera_s",
        HieraConfig(96, 1, (1, 2, 11, 2), (7, 10, 13), window_pos_embed_bkg_spatial_size=(7, 7)),
    ),
    "sam2.1_hiera_b+": Sam2Config("sam2.1_hiera_b+", HieraConfig(112, 2)),
    "sam2.1_hiera_l": Sam2Config(
        "sam2.1_hiera_l",
        HieraConfig(
            144,
            2,
            (2, 6, 36, 4),
            (23, 33, 43),
            window_pos_embed_bkg_spatial_size=(7, 7),
            window_spec=(8, 4, 16, 8),
        ),
    ),
    # four one-block stages (one global block) with the standard prompt encoder / decoder, 1024 input
    "sam2_tiny": Sam2Config(
        "sam2_tiny", HieraConfig(8, 1, (1, 1, 1, 1), (2,), window_pos_embed_bkg_spatial_size=(7, 7))
    ),
}

#: checkpoint modules of the official SAM2Base that only video tracking uses: every key equal to one
#: of these names or below it (``name.``) is dropped on load. Perturbing all of them leaves every
#: image-predictor output bit-identical (docs: PITFALLS "SAM 2.1"); the object-score *head* is among
#: them, the object-score *token* is not.
SAM2_VIDEO_ONLY_KEYS: tuple[str, ...] = (
    "maskmem_tpos_enc",
    "no_mem_pos_enc",
    "no_obj_ptr",
    "no_obj_embed_spatial",
    "mask_downsample",
    "memory_attention",
    "memory_encoder",
    "obj_ptr_proj",
    "obj_ptr_tpos_proj",
    "sam_mask_decoder.pred_obj_score_head",
)


def is_video_only_key(key: str) -> bool:
    """Whether a SAM 2.1 checkpoint key belongs to a module in :data:`SAM2_VIDEO_ONLY_KEYS`."""
    return any(key == name or key.startswith(name + ".") for name in SAM2_VIDEO_ONLY_KEYS)


def is_sam2_model(name: str) -> bool:
    """Whether ``name`` is a SAM 2.1 preset (a key of :data:`SAM2_CONFIGS`)."""
    return name in SAM2_CONFIGS


def _build_image_encoder(config: SamConfig) -> nn.Module:
    enc = config.encoder
    if isinstance(enc, DemoEncoderConfig):
        return DemoEncoder(enc, img_size=config.image_size)
    if isinstance(enc, ViTConfig):
        return ImageEncoderViT(**enc.constructor_args(config.image_size, config.prompt_embed_dim))
    # imported here so the ViT models work without (and before) the TinyViT module
    from .tiny_vit import TinyViT

    return TinyViT(**enc.constructor_args(config.image_size))


def _prompt_encoder(config: SamConfig | Sam2Config) -> PromptEncoder:
    """SAM's prompt encoder, the same module in both families."""
    grid = config.image_embedding_size
    return PromptEncoder(
        embed_dim=config.prompt_embed_dim,
        image_embedding_size=(grid, grid),
        input_image_size=(config.image_size, config.image_size),
        mask_in_chans=config.mask_in_chans,
    )


def _decoder_args(
    config: SamConfig | Sam2Config, transformer_type: Callable[..., TwoWayTransformer]
) -> dict[str, Any]:
    """The mask decoder's arguments both families share, with its two-way transformer built."""
    dim = config.prompt_embed_dim
    return {
        "transformer_dim": dim,
        "transformer": transformer_type(
            depth=config.decoder_depth,
            embedding_dim=dim,
            mlp_dim=config.decoder_mlp_dim,
            num_heads=config.decoder_num_heads,
        ),
        "num_multimask_outputs": config.num_multimask_outputs,
        "iou_head_depth": config.iou_head_depth,
        "iou_head_hidden_dim": config.iou_head_hidden_dim,
    }


def _build(config: SamConfig) -> Sam:
    return Sam(
        image_encoder=_build_image_encoder(config),
        prompt_encoder=_prompt_encoder(config),
        mask_decoder=MaskDecoder(**_decoder_args(config, TwoWayTransformer)),
        image_size=config.image_size,
    )


def _build_sam2(config: Sam2Config) -> Sam2:
    return Sam2(
        image_encoder=ImageEncoder(
            trunk=Hiera(config.trunk),
            neck=FpnNeck(
                d_model=config.prompt_embed_dim,
                backbone_channel_list=list(config.trunk.channel_list),
                fpn_top_down_levels=config.fpn_top_down_levels,
            ),
            scalp=config.scalp,
        ),
        sam_prompt_encoder=_prompt_encoder(config),
        sam_mask_decoder=Sam2MaskDecoder(
            **_decoder_args(config, sam2_two_way_transformer),
            dynamic_multimask_via_stability=config.dynamic_multimask_via_stability,
            dynamic_multimask_stability_delta=config.dynamic_multimask_stability_delta,
            dynamic_multimask_stability_thresh=config.dynamic_multimask_stability_thresh,
        ),
        image_size=config.image_size,
        backbone_stride=config.backbone_stride,
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


def load_checkpoint(model: nn.Module, checkpoint: str | Path, *, model_name: str = "model") -> None:
    """Load a checkpoint into ``model`` strictly.

    For a :class:`Sam2`, the keys of the video-only modules (:data:`SAM2_VIDEO_ONLY_KEYS`) are dropped
    first; every other key must still match.

    Args:
        model: the model to fill (:class:`Sam` or :class:`Sam2`).
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
    if isinstance(model, Sam2):
        video_only = [k for k in state if is_video_only_key(k)]
        state = {k: v for k, v in state.items() if not is_video_only_key(k)}
        logger.info("%s: dropped %d video-only checkpoint tensors", path, len(video_only))

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


def build_sam2_from_config(config: Sam2Config, seed: int | None = None) -> Sam2:
    """Build a randomly initialised SAM 2.1 model from any :class:`Sam2Config`, eval mode.

    Args:
        config: the hyper-parameters.
        seed: seed for the initialisation (the global RNG is left untouched); None uses the global RNG.
    """
    if seed is None:
        return _build_sam2(config).eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build_sam2(config).eval()


def build_sam2(name: str, checkpoint: str | Path | None = None, seed: int | None = None) -> Sam2:
    """Build a SAM 2.1 model by preset name, in eval mode (see :func:`build_sam`).

    Raises:
        UnknownModelError: ``name`` is not a key of :data:`SAM2_CONFIGS`.
        CheckpointError, CheckpointMismatchError: see :func:`load_checkpoint`.
    """
    config = SAM2_CONFIGS.get(name)
    if config is None:
        raise UnknownModelError(f"unknown SAM 2.1 model {name!r}; choose one of {', '.join(SAM2_CONFIGS)}")
    model = build_sam2_from_config(config, seed=seed)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, model_name=name)
        logger.info("loaded %s checkpoint %s", name, checkpoint)
    return model.eval()


@overload
def build_sam(  # type: ignore[overload-overlap]
    name: Sam2Name, checkpoint: str | Path | None = None, seed: int | None = None
) -> Sam2: ...
@overload
def build_sam(name: str, checkpoint: str | Path | None = None, seed: int | None = None) -> Sam: ...
def build_sam(name: str, checkpoint: str | Path | None = None, seed: int | None = None) -> Sam | Sam2:
    """Build a SAM or SAM 2.1 model by preset name, in eval mode.

    A SAM 2.1 name (a key of :data:`SAM2_CONFIGS`) gives a :class:`Sam2`; type checkers know it for
    literal names. Code holding a name in a ``str`` variable should check :func:`is_sam2_model` (or
    call :func:`build_sam2`) before relying on the model's type.

    Args:
        name: a key of :data:`MODEL_CONFIGS` (``vit_b``, ``vit_l``, ``vit_h``, ``vit_t``, ``vit_test``)
            or of :data:`SAM2_CONFIGS` (``sam2.1_hiera_t/s/b+/l``, ``sam2_tiny``).
        checkpoint: optional official checkpoint to load strictly (see :func:`load_checkpoint`).
        seed: seed for the random initialisation (without touching the global RNG); None uses the
            global RNG as is.

    Raises:
        UnknownModelError: ``name`` is not a preset.
        CheckpointError, CheckpointMismatchError: see :func:`load_checkpoint`.
    """
    if name in SAM2_CONFIGS:
        return build_sam2(name, checkpoint=checkpoint, seed=seed)
    config = MODEL_CONFIGS.get(name)
    if config is None:
        choices = ", ".join([*MODEL_CONFIGS, *SAM2_CONFIGS])
        raise UnknownModelError(f"unknown model {name!r}; choose one of {choices}")
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
