"""Which model to serve (cheap to decide) and loading it (the expensive part, done once in ``lifespan``).

``resolve_model`` decides from the settings, without building anything: an explicit ``--checkpoint``;
else a verified official checkpoint from the weights cache; else the built-in demo model (a small
model shipped with the package, ``model/weights/demo.pt``), flagged so the page can tell the user how
to get real weights. ``demo`` asks for the demo model itself; presets without official weights
(``vit_test``) get seeded random weights.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from clicksam.model.build import DEMO_WEIGHTS, CheckpointError
from clicksam.model.weights import sha256_file

if TYPE_CHECKING:
    from clicksam.model import Sam

logger = logging.getLogger(__name__)

#: preset used as the demo model when no checkpoint of the requested model is available
DEMO_FALLBACK_MODEL = "vit_test"


@dataclass(frozen=True)
class ModelSpec:
    """What will be served.

    Attributes:
        name: model preset (a key of ``clicksam.model.MODEL_CONFIGS``).
        checkpoint: checkpoint file, or None for seeded random weights.
        checkpoint_sha256: hex sha256 of the checkpoint file, None for random weights.
        seed: seed of the random weights (only meaningful without a checkpoint).
        demo: True when this is the demo model, not the model the user asked for.
        notice: what to tell the user (demo model: how to get real weights), or None.
    """

    name: str
    checkpoint: Path | None
    checkpoint_sha256: str | None
    seed: int
    demo: bool
    notice: str | None

    @property
    def model_id(self) -> str:
        """Identity of the weights: enters every embedding id, so two models never share an id."""
        weights = self.checkpoint_sha256 if self.checkpoint_sha256 else f"seed{self.seed}"
        return f"{self.name}:{weights}"

    @property
    def short_hash(self) -> str:
        """12 hex digits naming these weights (the checkpoint hash, or a hash of the seed)."""
        if self.checkpoint_sha256:
            return self.checkpoint_sha256[:12]
        return hashlib.sha256(f"seed:{self.seed}".encode()).hexdigest()[:12]


def _random_notice(name: str, seed: int, real: str) -> str:
    return (
        f"{name} with random weights (seed {seed}), for tests and benchmarks: the masks mean nothing. "
        f"Run `clicksam weights download {real}` for a real model."
    )


def resolve_model(
    name: str, checkpoint: Path | None = None, seed: int = 0, *, random_weights: bool = False
) -> ModelSpec:
    """Decide which weights to serve for the requested preset (see the module docstring).

    ``random_weights``: when no checkpoint is found, serve ``name`` itself with seeded random weights
    (flagged as a demo) instead of the demo model; for benchmarks, which need the real encoder's cost.

    Raises:
        CheckpointError: ``checkpoint`` was given but does not exist.
    """
    if checkpoint is not None:
        if not checkpoint.is_file():
            raise CheckpointError(f"checkpoint not found: {checkpoint}")
        return ModelSpec(name, checkpoint, sha256_file(checkpoint), seed, demo=False, notice=None)
    from clicksam.model.weights import WEIGHTS, find_checkpoint, trusted_sha256

    if name == "demo" and DEMO_WEIGHTS.is_file():
        notice = (
            "This is the small built-in demo model, trained on synthetic shapes only: its masks on real "
            "photos are rough. Run `clicksam weights download vit_t` (MobileSAM) for real results."
        )
        return ModelSpec("demo", DEMO_WEIGHTS, sha256_file(DEMO_WEIGHTS), seed, demo=True, notice=notice)
    if name not in WEIGHTS:
        # a preset without official weights (vit_test): seeded random weights are all it can have
        return ModelSpec(name, None, None, seed, demo=True, notice=_random_notice(name, seed, "vit_t"))
    found = find_checkpoint(name)
    if found is not None:
        # find_checkpoint only returns files whose sha256 matched the official table (or, for an entry
        # without a pinned hash, the one the user accepted): no re-hash
        logger.info("using the verified official %s checkpoint %s", name, found)
        return ModelSpec(name, Path(found), trusted_sha256(name), seed, demo=False, notice=None)
    if random_weights:
        return ModelSpec(name, None, None, seed, demo=True, notice=_random_notice(name, seed, name))
    notice = (
        f"No {name} checkpoint found: serving the small built-in demo model, trained on synthetic "
        f"shapes only, whose masks on real photos are rough. Run `clicksam weights download {name}` "
        "(or start with --checkpoint PATH) for real results."
    )
    if DEMO_WEIGHTS.is_file():
        return ModelSpec("demo", DEMO_WEIGHTS, sha256_file(DEMO_WEIGHTS), seed, demo=True, notice=notice)
    logger.warning("the demo model's weights %s are missing: serving random weights", DEMO_WEIGHTS)
    return ModelSpec(DEMO_FALLBACK_MODEL, None, None, seed, demo=True, notice=notice)


def load_model(spec: ModelSpec) -> Sam:
    """Build the model of ``spec`` on CPU in eval mode, logging model, device, hash and load time."""
    from clicksam.model import build_sam

    start = time.perf_counter()
    if spec.checkpoint is not None:
        sam = build_sam(spec.name, checkpoint=spec.checkpoint)
    else:
        sam = build_sam(spec.name, seed=spec.seed)
    sam.eval()
    elapsed = time.perf_counter() - start
    logger.info(
        "loaded model %s on device cpu, checkpoint %s, sha256 %s, in %.2f s%s",
        spec.name,
        spec.checkpoint if spec.checkpoint else f"none (random weights, seed {spec.seed})",
        spec.checkpoint_sha256 or "-",
        elapsed,
        " [DEMO MODEL]" if spec.demo else "",
    )
    if spec.notice:
        logger.warning("%s", spec.notice)
    return sam
