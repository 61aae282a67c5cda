"""A tiny random OWLv2 detector in Hugging Face format, built inside a test (no download).

``make_tiny_owlv2(folder)`` writes what ``clicksam serve --text-model PATH`` and
``clicksam.model.detection.load_detector`` read: ``config.json`` + ``model.safetensors`` (a seeded
random ``Owlv2ForObjectDetection`` with a few-hundred-KB config), a CLIP tokenizer built from a small
vocab/merges made here (saved as ``tokenizer.json``, ``tokenizer_config.json``), and
``preprocessor_config.json`` (input size = the config's ``image_size``). The browser test of the page
and the server/CLI tests use it; the weights are random, so detections are meaningless but
deterministic, and the model code is the real ``transformers`` code.

Needs the ``text`` extra (``transformers``); callers ``pytest.importorskip("transformers")`` first.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

#: the tiny model's input side (square, pixels) and patch size: a 4x4 grid of patches
TINY_IMAGE_SIZE = 64
TINY_PATCH_SIZE = 16
#: words the tokenizer knows as single tokens (anything else splits into letters)
WORDS = ("dog", "cat", "car", "red", "photo", "of", "a", "coin", "cell", "person")


def _clip_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocab and merges of a small CLIP BPE: letters, letters + '</w>', the WORDS, the special tokens."""
    letters = list(string.ascii_lowercase) + list(string.digits)
    tokens: list[str] = ["!", '"', "'", ",", ".", "-"]
    tokens += letters + [f"{c}</w>" for c in letters] + [f"{p}</w>" for p in "!\"',.-"]
    merges: list[tuple[str, str]] = []
    for word in WORDS:
        # merge left to right: d o g</w> -> do g</w> -> dog</w>
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            pair = (parts[0], parts[1])
            merged = parts[0] + parts[1]
            if pair not in merges:
                merges.append(pair)
            if merged not in tokens:
                tokens.append(merged)
            parts = [merged, *parts[2:]]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    return vocab, merges


def make_tiny_owlv2(folder: Path, *, seed: int = 0) -> Path:
    """Write a tiny random OWLv2 (Hugging Face format) into ``folder`` (created) and return it.

    Args:
        folder: target folder; existing files of the same names are overwritten.
        seed: torch seed of the random weights (same seed, same files).
    """
    import torch
    from transformers import CLIPTokenizer, Owlv2Config, Owlv2ForObjectDetection

    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = _clip_vocab()
    vocab_size = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=16)
    tokenizer.save_pretrained(folder)
    config = Owlv2Config(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 16,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": 48,
            "intermediate_size": 96,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": TINY_IMAGE_SIZE,
            "patch_size": TINY_PATCH_SIZE,
        },
        projection_dim=32,
    )
    torch.manual_seed(seed)
    model = Owlv2ForObjectDetection(config).eval()
    with torch.no_grad():
        # random init leaves biases at zero and layer norms at one: perturb every tensor so that a wrong
        # or missing weight shows in the outputs
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
        # keep the box head's output small, so each patch predicts a box near its own cell (OWLv2's box bias)
        # rather than a random box flattened against the image's edge: detections land inside the image
        model.box_head.dense2.weight.mul_(0.05)
        model.box_head.dense2.bias.mul_(0.05)
    model.save_pretrained(folder)
    preprocessor = {
        "image_processor_type": "Owlv2ImageProcessor",
        "do_pad": True,
        "do_resize": True,
        "do_rescale": True,
        "do_normalize": True,
        "rescale_factor": 1 / 255,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "size": {"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE},
        "processor_class": "Owlv2Processor",
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    return folder


if __name__ == "__main__":  # python tests/detector_testlib.py DIR: a folder for trying the page by hand
    import sys

    print(make_tiny_owlv2(Path(sys.argv[1])))
