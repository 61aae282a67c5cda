"""Image-encoder speed at 1024x1024 on CPU: ours against the official implementation, same process.

For each model (``vit_b``: SAM ViT-B from ``segment_anything``; ``vit_t``: MobileSAM's TinyViT from
``mobile_sam``) both encoders get the same randomly initialised, perturbed weights (every floating
tensor gets seeded noise, so zero-initialised position tables are live), run the same input under
``torch.inference_mode``, interleaved (official, ours, official, ours, ...), and the script prints the
median wall time of each, the ratio official / ours, and the max abs difference of the embeddings.

The official packages are referees only: they import torchvision / timm, which do not load next to the
CPU torch here, so the few names they need are put into ``sys.modules`` first.

Usage::

    .venv/bin/python bench/bench_encoder.py --models vit_b vit_t --repeat 3
    .venv/bin/python bench/bench_encoder.py --models vit_b --repeat 1 --profile   # + top ops of ours

The machine is shared and timings are noisy: compare the ratio, which is measured in one process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn


def perturbed_state(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The model's state dict with seeded noise on every floating tensor (variances kept positive)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            noise = torch.randn(value.shape, generator=gen, dtype=value.dtype)
            value = (
                value.abs() + 0.5 + 0.1 * noise.abs() if key.endswith("running_var") else value + 0.02 * noise
            )
        state[key] = value.clone()
    return state


def build_pair(name: str) -> tuple[nn.Module, nn.Module]:
    """(official, ours) image encoders of one model with identical perturbed weights, eval mode."""
    from clicksam.model import build_sam
    from clicksam.model.build import MODEL_CONFIGS, TinyViTConfig, ViTConfig

    ours = build_sam(name, seed=0).image_encoder
    config = MODEL_CONFIGS[name]
    if name == "vit_b":
        from segment_anything.modeling import ImageEncoderViT

        assert isinstance(config.encoder, ViTConfig)
        official: nn.Module = ImageEncoderViT(
            **config.encoder.constructor_args(config.image_size, config.prompt_embed_dim),
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
        )
    elif isinstance(config.encoder, TinyViTConfig):
        from mobile_sam.modeling import TinyViT

        official = TinyViT(**config.encoder.constructor_args(config.image_size))
    else:
        raise SystemExit(f"unknown model {name!r}: choose vit_b or vit_t")
    state = perturbed_state(official, seed=1)
    official.load_state_dict(state, strict=True)
    ours.load_state_dict(state, strict=True)
    # eval() after loading: the official TinyViT caches its attention biases when switched to eval
    return official.eval(), ours.eval()


def timed(fn: Callable[[], torch.Tensor]) -> tuple[float, float, torch.Tensor]:
    """(wall ms, process CPU ms over all threads, output). CPU time is the steadier figure on a shared
    machine: wall time also counts the time the scheduler gives other processes."""
    start, cpu_start = time.perf_counter(), time.process_time()
    out = fn()
    return (time.perf_counter() - start) * 1000.0, (time.process_time() - cpu_start) * 1000.0, out


def bench_model(name: str, repeat: int, profile: bool) -> dict[str, Any]:
    official, ours = build_pair(name)
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(2))
    times: dict[str, list[float]] = {"official": [], "ours": []}
    cpu: dict[str, list[float]] = {"official": [], "ours": []}
    err = 0.0
    scale = 0.0
    with torch.inference_mode():
        for i in range(repeat):
            # alternate which goes first so neither always runs on a warmer cache
            order = [("official", official), ("ours", ours)]
            for label, model in order if i % 2 == 0 else order[::-1]:
                ms, cpu_ms, out = timed(lambda m=model: m(x))  # type: ignore[misc]
                times[label].append(ms)
                cpu[label].append(cpu_ms)
                if label == "official":
                    ref = out
                else:
                    mine = out
            err = max(err, float((ref - mine).abs().max()))
            scale = float(ref.abs().max())
            last = {label: f"{times[label][-1]:.0f} ms (cpu {cpu[label][-1]:.0f} ms)" for label in times}
            print(
                f"  {name} run {i + 1}/{repeat}: official {last['official']}, ours {last['ours']}", flush=True
            )
        if profile:
            from torch.profiler import profile as torch_profile

            with torch_profile() as prof:
                ours(x)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    med_official = statistics.median(times["official"])
    med_ours = statistics.median(times["ours"])
    cpu_official = statistics.median(cpu["official"])
    cpu_ours = statistics.median(cpu["ours"])
    return {
        "model": name,
        "official_ms": round(med_official, 1),
        "ours_ms": round(med_ours, 1),
        "ratio_official_over_ours": round(med_official / med_ours, 3),
        "official_cpu_ms": round(cpu_official, 1),
        "ours_cpu_ms": round(cpu_ours, 1),
        "cpu_ratio_official_over_ours": round(cpu_official / cpu_ours, 3),
        "max_abs_err": err,
        "max_abs_official": scale,
        "runs": times,
        "cpu_runs": cpu,
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vit_b", "vit_t"], choices=["vit_b", "vit_t"])
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs per model (median)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    parser.add_argument("--profile", action="store_true", help="print the top ops of one run of ours")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from referee_stubs import install_timm_stub  # the test suite's torchvision / timm stand-ins

    install_timm_stub()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, input (1, 3, 1024, 1024) fp32")
    results = []
    for name in args.models:
        results.append(bench_model(name, args.repeat, args.profile))
    print()
    header = ("model", "official ms", "ours ms", "official/ours", "cpu official/ours", "max abs err")
    print(f"{header[0]:<8}{header[1]:>14}{header[2]:>12}{header[3]:>15}{header[4]:>19}{header[5]:>14}")
    for r in results:
        print(
            f"{r['model']:<8}{r['official_ms']:>14.0f}{r['ours_ms']:>12.0f}"
            f"{r['ratio_official_over_ours']:>15.2f}{r['cpu_ratio_official_over_ours']:>19.2f}"
            f"{r['max_abs_err']:>14.2e}"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    bad = [r["model"] for r in results if r["max_abs_err"] > 1e-4]
    if bad:
        print(f"outputs disagree beyond 1e-4 for {', '.join(bad)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
