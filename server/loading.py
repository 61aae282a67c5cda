"""Which model to serve (cheap to decide) and loading it (the expensive part, done once in ``lifespan``).

``resolve_model`` decides from the settings, without building anything: an explicit ``--checkpoint``;
else a verified official checkpoint from the weights cache; else the built-in demo model (a small
model shipped with the package, or until it exists the tiny ``vit_test`` preset with seeded random
weights), flagged so the page can tell the user how to get real weights.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


def sha256_file(path: Path, chunk_bytes: int = 8 * 1024 * 1024) -> str:
    """Hex sha256 of a file, read in chunks (checkpoints are up to 2.5 GB)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def _optional_attr(module_name: str, attr: str) -> Any:
    """``module.attr`` if that module of this package exists and has it, else None."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # a part of clicksam that is not installed/written; any other missing module is a real error
        if exc.name is not None and exc.name.startswith("clicksam"):
            return None
        raise
    return getattr(module, attr, None)


def resolve_model(
    name: str, checkpoint: Path | None = None, seed: int = 0, *, random_weights: bool = False
) -> ModelSpec:
    """Decide which weights to serve for the requested preset (see the module docstring).

    ``random_weights``: when no checkpoint is found, serve ``name`` itself with seeded random weights
    (flagged as a demo) instead of the demo model; for benchmarks, which need the real encoder's cost.

    Raises:
        FileNotFoundError: ``checkpoint`` was given but does not exist.
    """
    if checkpoint is not None:
        if not checkpoint.is_file():
            raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
        return ModelSpec(name, checkpoint, sha256_file(checkpoint), seed, demo=False, notice=None)
    find_checkpoint = _optional_attr("clicksam.model.weights", "find_checkpoint")
    get_info = _optional_attr("clicksam.model.weights", "get_info")
    if find_checkpoint is not None and get_info is not None:
        try:
            found = find_checkpoint(name)
        except ValueError:  # UnknownWeightsError: no official checkpoint for this preset (vit_test)
            found = None
        if found is not None:
            path = Path(found)
            # find_checkpoint only returns files whose sha256 matched the official table: no re-hash
            sha = str(get_info(name).sha256)
            logger.info("using the verified official %s checkpoint %s", name, path)
            return ModelSpec(name, path, sha, seed, demo=False, notice=None)
    if random_weights:
        notice = f"{name} with random weights (seed {seed}): for benchmarks and tests, the masks mean nothing"
        return ModelSpec(name, None, None, seed, demo=True, notice=notice)
    notice = (
        f"No {name} checkpoint found: serving a small demo model, whose masks are rough. "
        f"Run `clicksam weights download {'vit_t' if name == DEMO_FALLBACK_MODEL else name}` "
        "(or start with --checkpoint PATH) for real results."
    )
    demo_checkpoint = _optional_attr("clicksam.model.weights", "demo_checkpoint")
    if demo_checkpoint is not None:
        demo = demo_checkpoint()
        if demo is not None:
            demo_name, demo_path = demo
            path = Path(demo_path)
            return ModelSpec(demo_name, path, sha256_file(path), seed, demo=True, notice=notice)
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
