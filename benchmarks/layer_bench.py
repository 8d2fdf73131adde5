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
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from timing import MALLOC_REUSE, add_options, output_grad_runs, time_best, write_json
from torch import nn

RESULTS = Path(__file__).resolve().parent / "results"

#: ``(args, length, batch) -> (ours, theirs or None)``: the two modules with the same weights
Build = Callable[[argparse.Namespace, int, int], tuple[nn.Module, nn.Module | None]]


def _timings(module: nn.Module, x: torch.Tensor, repeats: int, clock: str) -> dict[str, float]:
    runs = output_grad_runs(module, x, module)
    out: dict[str, float] = {}
    for mode, fn in (("fwd", runs["fwd"]), ("fwd_bwd", runs["fwd+bwd"])):
        wall, cpu = time_best(fn, repeats)
        out |= {f"{mode}_wall_s": wall, f"{mode}_cpu_s": cpu}
        out[f"{mode}_s"] = cpu if clock == "cpu" else wall
    return out


def parser(description: str, **defaults: Any) -> argparse.ArgumentParser:
    """The common options; ``defaults`` sets layer-specific ones added by the caller."""
    p = argparse.ArgumentParser(description=description)
    add_options(p, batch=4, hidden=256, length=4096, threads=2, repeats=3)
    p.add_argument("--scaling-lengths", type=int, nargs=2, default=[1024, 16384])
    p.add_argument("--scaling-bound", type=float, default=18.0)
    p.add_argument("--speedup-bound", type=float, default=None, help="target ours/theirs")
    p.add_argument("--no-transformers", action="store_true", help="time our layer only")
    p.add_argument(
        "--malloc-reuse",
        action="store_true",
        help="keep freed memory for reuse (glibc thresholds, see MALLOC_REUSE): times without "
        "the page faults of fresh large allocations",
    )
    p.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="what the table and the ratios use (cpu: process CPU time, robust on a busy "
        "machine); the JSON has both",
    )
    p.add_argument("--out", type=Path, default=None)
    p.set_defaults(**defaults)
    return p


def _scaling(args: argparse.Namespace, build: Build) -> dict[int, dict[str, float]]:
    """Our layer at batch 1 and each of ``--scaling-lengths``."""
    alone = argparse.Namespace(**{**vars(args), "no_transformers": True})
    times = {}
    for length in args.scaling_lengths:
        body, _ = build(alone, length, 1)
        x = torch.randn(1, length, args.hidden)
        times[length] = _timings(body, x, max(args.repeats, 5), args.clock)
        row = times[length]
        print(
            f"{'B=1 L=' + str(length):>14} {row['fwd_s'] * 1e3:>9.1f} "
            f"{row['fwd_bwd_s'] * 1e3:>11.1f}",
            flush=True,
        )
    return times


def run(name: str, args: argparse.Namespace, build: Build) -> dict[str, Any]:
    """Time, compare, print the table and write the JSON; returns the results."""
    if args.malloc_reuse and any(os.environ.get(k) != v for k, v in MALLOC_REUSE.items()):
        # the allocator reads its thresholds at start-up: run again with them
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC_REUSE})
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    result: dict[str, Any] = {"layer": name, "rows": [], "targets": {}}
    print(
        f"# {name}: B={args.batch} H={args.hidden} L={args.length} threads={args.threads} "
        f"clock={args.clock}"
    )
    print(f"{'impl':>14} {'fwd ms':>9} {'fwd+bwd ms':>11}", flush=True)
    times = _scaling(args, build)  # first: small lengths are not timed after large ones
    ours, theirs = build(args, args.length, args.batch)
    if args.no_transformers:
        theirs = None
    x = torch.randn(args.batch, args.length, args.hidden)
    rows = {"hybridzoo": _timings(ours, x, args.repeats, args.clock)}
    if theirs is not None:
        rows["transformers"] = _timings(theirs, x, args.repeats, args.clock)
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
    short, long = args.scaling_lengths
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
    write_json(args.out or RESULTS / f"{name}.json", result)
    return result
