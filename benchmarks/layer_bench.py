"""Shared by ``bench_mamba2.py`` and ``bench_gated_deltanet.py``: a hybridzoo layer body and its
transformers counterpart with the same weights, timed side by side in one process, and the
growth of the layer's time with the sequence length at batch 1.

Times are the best of ``--repeats`` runs (wall clock; the least disturbed on a shared machine):
``fwd`` without autograd, ``fwd+bwd`` with the gradients of the input and of every parameter.
The table and a JSON file (``--out``, default ``benchmarks/results/<name>.json``) carry the
ratios, the targets they are checked against, and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

RESULTS = Path(__file__).resolve().parent / "results"

#: ``(args, length, batch) -> (ours, theirs or None)``: the two modules with the same weights
Build = Callable[[argparse.Namespace, int, int], tuple[nn.Module, nn.Module | None]]


def time_best(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    """The smallest wall-clock seconds of ``fn`` over ``repeats`` runs after ``warmup``."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _timings(module: nn.Module, x: torch.Tensor, repeats: int) -> dict[str, float]:
    grad_y = torch.randn_like(x)

    def forward() -> None:
        with torch.no_grad():
            module(x)

    def forward_backward() -> None:
        module.zero_grad(set_to_none=True)
        module(x.detach().requires_grad_(True)).backward(grad_y)

    return {"fwd_s": time_best(forward, repeats), "fwd_bwd_s": time_best(forward_backward, repeats)}


def parser(description: str, **defaults: Any) -> argparse.ArgumentParser:
    """The common options; ``defaults`` sets layer-specific ones added by the caller."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--length", type=int, default=4096)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--scaling-lengths", type=int, nargs=2, default=[1024, 16384])
    p.add_argument("--scaling-bound", type=float, default=18.0)
    p.add_argument("--speedup-bound", type=float, default=None, help="target ours/theirs")
    p.add_argument("--no-transformers", action="store_true", help="time our layer only")
    p.add_argument("--out", type=Path, default=None)
    p.set_defaults(**defaults)
    return p


def run(name: str, args: argparse.Namespace, build: Build) -> dict[str, Any]:
    """Time, compare, print the table and write the JSON; returns the results."""
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    result: dict[str, Any] = {"layer": name, "rows": [], "targets": {}}
    ours, theirs = build(args, args.length, args.batch)
    if args.no_transformers:
        theirs = None
    x = torch.randn(args.batch, args.length, args.hidden)
    print(f"# {name}: B={args.batch} H={args.hidden} L={args.length} threads={args.threads}")
    print(f"{'impl':>14} {'fwd ms':>9} {'fwd+bwd ms':>11}", flush=True)
    rows = {"hybridzoo": _timings(ours, x, args.repeats)}
    if theirs is not None:
        rows["transformers"] = _timings(theirs, x, args.repeats)
        with torch.no_grad():
            y, y_ref = ours(x), theirs(x)
        diff = (y - y_ref).abs().max().item() / max(y_ref.abs().max().item(), 1e-30)
        result["max_rel_diff"] = diff
    for impl, row in rows.items():
        result["rows"].append({"impl": impl, **row})
        print(f"{impl:>14} {row['fwd_s'] * 1e3:>9.1f} {row['fwd_bwd_s'] * 1e3:>11.1f}", flush=True)
    if theirs is not None:
        print(f"outputs: max |ours - theirs| / max |theirs| = {result['max_rel_diff']:.2e}")
        for mode in ("fwd_s", "fwd_bwd_s"):
            speedup = rows["transformers"][mode] / rows["hybridzoo"][mode]
            bound = args.speedup_bound
            met = None if bound is None else speedup >= bound
            result["targets"][f"speedup_{mode[:-2]}"] = {
                "value": speedup,
                "bound": bound,
                "met": met,
            }
    del ours, theirs
    short, long = args.scaling_lengths
    times = {}
    for length in (short, long):
        body, _ = build(args, length, 1)
        times[length] = _timings(body, torch.randn(1, length, args.hidden), args.repeats)
        print(
            f"{'B=1 L=' + str(length):>14} {times[length]['fwd_s'] * 1e3:>9.1f} "
            f"{times[length]['fwd_bwd_s'] * 1e3:>11.1f}",
            flush=True,
        )
    result["scaling"] = {str(k): v for k, v in times.items()}
    for mode in ("fwd_s", "fwd_bwd_s"):
        growth = times[long][mode] / times[short][mode]
        met = growth <= args.scaling_bound
        result["targets"][f"growth_{mode[:-2]}_{long}/{short}"] = {
            "value": growth,
            "bound": args.scaling_bound,
            "met": met,
        }
    print()
    for key, t in result["targets"].items():
        verdict = {True: "met", False: "NOT met", None: "(info)"}[t["met"]]
        bound = "" if t["bound"] is None else f" (bound {t['bound']:g})"
        print(f"{key:>28}: {t['value']:7.2f}  {verdict}{bound}")
    load_after = os.getloadavg()
    print(f"load average before {load_before}, after {load_after}")
    result["config"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    result["machine"] = {
        "torch": torch.__version__,
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    out = args.out or RESULTS / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result
