"""SAM 2.1 image-encoder speed at 1024x1024 on CPU: ours against the official ``sam2`` code, same process.

For each preset (``sam2.1_hiera_t``, ``sam2.1_hiera_s``) the official ``SAM2Base`` (built from its hydra
config, as ``build_sam2`` builds it) and ours get the same perturbed weights (seeded noise on every
parameter and buffer). Both run ``forward_image`` (Hiera trunk + FPN neck + ``conv_s0`` / ``conv_s1``:
everything ``set_image`` computes) on the same input under ``torch.inference_mode``, interleaved
(official, ours, ours, official, ...). The script prints the median wall and CPU time of each, the
ratio official / ours, and the max abs difference over the three feature levels.

The official package is a referee only: it imports torchvision, which does not load next to the CPU
torch here, so the test suite's stand-ins are put into ``sys.modules`` first.

Usage::

    .venv/bin/python bench/bench_sam2_encoder.py --models sam2.1_hiera_t sam2.1_hiera_s --repeat 3
    .venv/bin/python bench/bench_sam2_encoder.py --models sam2.1_hiera_t --repeat 1 --profile

The machine is shared and timings are noisy: compare the ratios, which are measured in one process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

CONFIG_FILES = {
    "sam2.1_hiera_t": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_s": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_b+": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_l": "configs/sam2.1/sam2.1_hiera_l.yaml",
}


def build_pair(name: str) -> tuple[nn.Module, nn.Module]:
    """(official SAM2Base, our Sam2) with identical perturbed weights, eval mode."""
    from referee_stubs import perturbed_state, reference_sam2

    from clicksam.model.build import build_sam2, is_video_only_key

    official = reference_sam2(CONFIG_FILES[name])
    state = perturbed_state(official, seed=1, scale=0.02)
    official.load_state_dict(state, strict=True)
    ours = build_sam2(name, seed=0)
    ours.load_state_dict({k: v for k, v in state.items() if not is_video_only_key(k)}, strict=True)
    return official.eval(), ours.eval()


def _levels(out: Any) -> list[torch.Tensor]:
    """The three decoder-side levels of either forward_image (official: a dict; ours: a list)."""
    return list(out["backbone_fpn"]) if isinstance(out, dict) else list(out)


def bench_model(name: str, repeat: int, profile: bool) -> dict[str, Any]:
    official, ours = build_pair(name)
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(2))
    runners = {"official": official.forward_image, "ours": ours.forward_image}
    times: dict[str, list[float]] = {"official": [], "ours": []}
    cpu: dict[str, list[float]] = {"official": [], "ours": []}
    err = 0.0
    with torch.inference_mode():
        outputs: dict[str, list[torch.Tensor]] = {}
        for i in range(repeat):
            order = ["official", "ours"] if i % 2 == 0 else ["ours", "official"]
            for label in order:
                start, cpu_start = time.perf_counter(), time.process_time()
                outputs[label] = _levels(runners[label](x))
                times[label].append((time.perf_counter() - start) * 1000.0)
                cpu[label].append((time.process_time() - cpu_start) * 1000.0)
            err = max(
                err,
                max(
                    float((a - b).abs().max())
                    for a, b in zip(outputs["official"], outputs["ours"], strict=True)
                ),
            )
            print(
                f"  {name} run {i + 1}/{repeat}: official {times['official'][-1]:.0f} ms "
                f"(cpu {cpu['official'][-1]:.0f}), ours {times['ours'][-1]:.0f} ms "
                f"(cpu {cpu['ours'][-1]:.0f})",
                flush=True,
            )
        if profile:
            from torch.profiler import profile as torch_profile

            with torch_profile() as prof:
                ours.forward_image(x)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    return {
        "model": name,
        "official_ms": round(med["official"], 1),
        "ours_ms": round(med["ours"], 1),
        "ratio_official_over_ours": round(med["official"] / med["ours"], 3),
        "official_cpu_ms": round(med_cpu["official"], 1),
        "ours_cpu_ms": round(med_cpu["ours"], 1),
        "cpu_ratio_official_over_ours": round(med_cpu["official"] / med_cpu["ours"], 3),
        "max_abs_err": err,
        "runs": times,
        "cpu_runs": cpu,
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=["sam2.1_hiera_t", "sam2.1_hiera_s"], choices=list(CONFIG_FILES)
    )
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs per model (median)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    parser.add_argument("--profile", action="store_true", help="print the top ops of one run of ours")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, input (1, 3, 1024, 1024) fp32")
    results = [bench_model(name, args.repeat, args.profile) for name in args.models]
    print()
    header = ("model", "official ms", "ours ms", "official/ours", "cpu official/ours", "max abs err")
    print(f"{header[0]:<16}{header[1]:>14}{header[2]:>12}{header[3]:>15}{header[4]:>19}{header[5]:>14}")
    for r in results:
        print(
            f"{r['model']:<16}{r['official_ms']:>14.0f}{r['ours_ms']:>12.0f}"
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
