"""Hugging Face model folders (the OWLv2 detectors) fetched file by file at a pinned revision.

A Hugging Face model is several files (config, weights, tokenizer, preprocessor), each downloaded from
``<endpoint>/<repo>/resolve/<revision>/<file>`` by ``clicksam.model.weights.download``: the same progress
bar, resume (HTTP ``Range``), lock, cache and hash policy as the SAM checkpoints. A file whose sha256 we
know is pinned and checked strictly; the others are unpinned, so their sha256 is printed and they are
used only once accepted explicitly (``--accept-unpinned``; the acceptance is recorded beside each file).
A folder is complete when every file of its entry is present and trusted (``find_model``).

Where the numbers come from (nothing here is guessed; we could not reach the Hub from this machine):

- ``owlv2-base`` = ``google/owlv2-base-patch16-ensemble`` at commit
  ``cfd3195ba4ea9592eec887ded089f4c08eff231d``, the revision several public projects pin; its
  ``model.safetensors`` is 619,918,824 bytes with sha256 ``e1e130b9...99e7`` (the Git LFS object id,
  quoted identically by two independent public repositories that downloaded it). The small files
  (config, tokenizer) are Git blobs whose sha256 no source gives: unpinned.
- ``owlv2-large`` = ``google/owlv2-large-patch14-ensemble``: we found no commit hash to pin, so it is
  fetched from ``main`` and every file is unpinned (printed, accepted only explicitly).

``CLICKSAM_HF_ENDPOINT`` replaces ``https://huggingface.co`` (a mirror, or a local server in tests).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from clicksam.model import weights
from clicksam.model.weights import UnknownWeightsError, WeightsInfo

HF_ENDPOINT_ENV = "CLICKSAM_HF_ENDPOINT"
DEFAULT_HF_ENDPOINT = "https://huggingface.co"


@dataclass(frozen=True)
class HfFile:
    """One file of a model repository: path in the repo, size and sha256 where known (else None)."""

    path: str
    bytes: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class HfModel:
    """A Hugging Face model repository at one revision.

    Attributes:
        name: our name (``clicksam weights download NAME``, ``clicksam serve --text-model NAME``).
        repo: ``owner/name`` on the Hub.
        revision: the pinned commit, or None when we know none (then ``main``, all files unpinned).
        files: the files a model folder needs.
        card: the model card, for ``clicksam weights list``.
    """

    name: str
    repo: str
    revision: str | None
    files: tuple[HfFile, ...]
    card: str

    @property
    def folder_name(self) -> str:
        """Cache folder name: the name and the first 12 digits of the revision (``main`` if none)."""
        return f"{self.name}-{self.revision[:12] if self.revision else 'main'}"


_OWLV2_SMALL_FILES = (
    "config.json",
    "preprocessor_config.json",
    "added_tokens.json",
    "merges.txt",
    "special_tokens_map.json",
    "tokenizer_config.json",
    "vocab.json",
)

HF_MODELS: dict[str, HfModel] = {
    model.name: model
    for model in (
        HfModel(
            name="owlv2-base",
            repo="google/owlv2-base-patch16-ensemble",
            revision="cfd3195ba4ea9592eec887ded089f4c08eff231d",
            files=(
                *(HfFile(path) for path in _OWLV2_SMALL_FILES),
                HfFile(
                    "model.safetensors",
                    619_918_824,
                    "e1e130b9e404cf91a75ad45644c1da9d7fa5284085eecc864266a6923efb99e7",
                ),
            ),
            card="https://huggingface.co/google/owlv2-base-patch16-ensemble",
        ),
        HfModel(
            name="owlv2-large",
            repo="google/owlv2-large-patch14-ensemble",
            revision=None,
            files=(*(HfFile(path) for path in _OWLV2_SMALL_FILES), HfFile("model.safetensors")),
            card="https://huggingface.co/google/owlv2-large-patch14-ensemble",
        ),
    )
}


def get_model(name: str) -> HfModel:
    """The entry ``name``.

    Raises:
        UnknownWeightsError: no such entry.
    """
    model = HF_MODELS.get(name)
    if model is None:
        raise UnknownWeightsError(f"no detector weights named {name!r}; choose one of {', '.join(HF_MODELS)}")
    return model


def model_dir(name: str | HfModel, root: str | Path | None = None) -> Path:
    """The folder a model is downloaded to: ``<root or the weights cache>/<name>-<revision12>``."""
    model = get_model(name) if isinstance(name, str) else name
    return (Path(root) if root is not None else weights.weights_dir()) / model.folder_name


def file_info(model: HfModel, file: HfFile) -> WeightsInfo:
    """The ``WeightsInfo`` of one file (URL at the pinned revision), for ``weights.download``."""
    endpoint = os.environ.get(HF_ENDPOINT_ENV, DEFAULT_HF_ENDPOINT).rstrip("/")
    url = f"{endpoint}/{model.repo}/resolve/{model.revision or 'main'}/{file.path}"
    return WeightsInfo(f"{model.name}:{file.path}", file.path, url, file.bytes, file.sha256)


def download_model(
    name: str,
    root: str | Path | None = None,
    progress: bool = True,
    *,
    accept_unpinned: bool = False,
    force: bool = False,
) -> Path:
    """Download every file of ``name`` into its folder (resuming, verifying) and return the folder.

    Raises:
        UnknownWeightsError: unknown name.
        WeightsDownloadError, WeightsVerificationError: see ``weights.download``.
        WeightsUnpinnedError: an unpinned file is downloaded but not accepted (its sha256 is in the
            message; every other file is still fetched first, so one acceptance run finishes the job).
    """
    model = get_model(name)
    folder = model_dir(model, root)
    unaccepted: list[tuple[str, weights.WeightsUnpinnedError]] = []
    for file in model.files:
        try:
            weights.download(
                file_info(model, file), folder, progress, force=force, accept_unpinned=accept_unpinned
            )
        except weights.WeightsUnpinnedError as exc:
            unaccepted.append((file.path, exc))
    if unaccepted:
        listing = "; ".join(f"{path} sha256 {exc.sha256}" for path, exc in unaccepted)
        raise weights.WeightsUnpinnedError(
            f"{model.name} ({model.repo} @ {model.revision or 'main'}) is in {folder}, but "
            f"{len(unaccepted)} file(s) have no pinned sha256: {listing}. Compare them with the repository "
            f"(the Hub lists each file's hash), then run `clicksam weights download {model.name} "
            "--accept-unpinned` to accept them",
            unaccepted[0][1].sha256,
        )
    return folder


def find_model(name: str, root: str | Path | None = None) -> Path | None:
    """The model's folder when every file is present and trusted (pinned hash, or accepted), else None."""
    model = get_model(name)
    folder = model_dir(model, root)
    if not folder.is_dir():
        return None
    for file in model.files:
        if weights.find_checkpoint(file_info(model, file), folder) is None:
            return None
    return folder
