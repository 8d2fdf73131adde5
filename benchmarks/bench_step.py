"""Step-mode latency: one ``model.step`` of a whole hybrid model at batch 1 (a game-loop frame).

Prints a table and writes JSON. Example::

    python benchmarks/bench_step.py --out benchmarks/results/step.json
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
from timing import add_options, write_json

import hybridzoo


def measure(pattern: str, *, embed_dim: int, hidden_size: int, steps: int, warmup: int) -> dict:
    model = hybridzoo.build(pattern, embed_dim=embed_dim, hidden_size=hidden_size).eval()
    state = model.init_state(1)
    frames = torch.randn(warmup + steps, 1, embed_dim)
    times = []
    with torch.inference_mode():
        for i, frame in enumerate(frames):
            start = time.perf_counter()
            model.step(frame, state)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    times.sort()
    return {
        "pattern": " ".join(model.config.pattern),
        "hidden_size": hidden_size,
        "params": model.param_count(),
        "median_ms": 1e3 * statistics.median(times),
        "p90_ms": 1e3 * times[int(0.9 * len(times))],
        "p99_ms": 1e3 * times[int(0.99 * len(times))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_options(parser, embed_dim=287, hidden_size=256, steps=600, warmup=50)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/step.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    patterns = {
        "full_hybrid x6": " ".join(hybridzoo.expand_named_pattern("full_hybrid", 6)),
        "jamba_like x6": " ".join(hybridzoo.expand_named_pattern("jamba_like", 6)),
        "M x6": "M" * 6,
        "A x6": "A" * 6,
        "G x6": "G" * 6,
        "R x6": "R" * 6,
        "S E S A S E": "S E S A S E",  # Mamba-2 with mixtures of experts and one attention
    }
    settings = {key: vars(args)[key] for key in ("embed_dim", "hidden_size", "steps", "warmup")}
    rows = []
    for label, pattern in patterns.items():
        row = {**measure(pattern, **settings), "label": label}
        rows.append(row)
        print(
            f"{label:16} params {row['params']:>10,}  median {row['median_ms']:6.3f} ms  "
            f"p90 {row['p90_ms']:6.3f} ms  p99 {row['p99_ms']:6.3f} ms",
            flush=True,
        )
    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "date": time.strftime("%Y-%m-%d"),
    }
    write_json(args.out, {"meta": meta, "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
