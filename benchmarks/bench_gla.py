"""Speed and memory of the GLA body: chunked kernel vs a time-step loop vs the matmul floor.

For each sequence length L, in one process (peak memory: in child processes, see below):

- ``chunk``: :class:`GatedLinearAttention` as shipped (recurrence by ``chunk_gla``);
- ``loop``: the time-step layer loop ``hybridzoo_plugins.gla.reference.reference_forward`` (same
  weights; everything, projections included, one token at a time, as the paper reads);
- ``kloop`` (for information): the shipped layer with only its recurrence replaced by the kernel
  reference loop ``hybridzoo.ops.gla.naive.naive_gla`` (projections, norm and gate batched as in
  ``chunk``), i.e. the chunked kernel against the best plain loop;
- ``floor``: the layer's matmul FLOPs divided by the matmul rate measured in this run. FLOPs: the
  six projections (q, k, v, output gate, the two low-rank gate linears, output) plus the essential
  matmuls of the chunked recurrence at chunk C (per token and head ``2·dk·dv`` for the state
  read and update, ``(C/2)·(dk + dv)`` for the causal half of the intra-chunk scores and their
  product with v). The rate is that of the projection GEMMs, timed back to back. The fwd+bwd
  floor counts 3x the forward FLOPs.

Each case is run forward (no autograd) and forward + backward (gradients of the input and of every
parameter). Times are the best of ``--repeats`` runs (the least disturbed on a shared machine).
Peak memory is the resident-set high-water mark of a fresh child process running the case once,
above its resident set just before the call, with ``MALLOC_MMAP_THRESHOLD_=65536`` so that freed
tensors leave the resident set (CPU, Linux).

Targets checked: chunk fwd <= 6x the floor; loop/chunk >= 6 (fwd) and >= 8 (fwd+bwd);
chunk time(L_max)/time(L_min) <= 20 for ``L_max/L_min = 16``.

Example::

    python benchmarks/bench_gla.py --out gla.json
    python benchmarks/bench_gla.py --lengths 1024 4096 --loop-lengths 1024
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import torch
from timing import add_options, output_grad_runs, reset_peak, status_kib, time_best, write_json

from hybridzoo.ops.gla.naive import naive_gla
from hybridzoo_plugins.gla.layer import GatedLinearAttention, State
from hybridzoo_plugins.gla.reference import reference_forward


class LoopGLA(GatedLinearAttention):
    """The GLA body with its recurrence run by the time-step loop (same maths, same weights)."""

    def _mix(
        self, x: torch.Tensor, state: State | None, want_state: bool, seq_idx: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        q, k, v, log_alpha = self._inputs(x)
        initial = None if state is None else state[0]
        o, final = naive_gla(
            q,
            k,
            v,
            log_alpha,
            initial_state=initial,
            output_final_state=want_state,
            seq_idx=seq_idx,
        )
        return self._output(o, x), final


# -- the cases -----------------------------------------------------------------------------------


def build(args: argparse.Namespace, impl: str, length: int) -> tuple[Callable, Callable]:
    """``(forward, forward_backward)`` of ``impl`` ("chunk", "loop", "kloop") at ``length``."""
    torch.manual_seed(0)
    cls = LoopGLA if impl == "kloop" else GatedLinearAttention
    layer = cls(
        args.hidden, num_heads=args.heads, head_dim=args.head_dim, chunk_size=args.chunk_size
    )
    body = (lambda inp: reference_forward(layer, inp)) if impl == "loop" else layer
    runs = output_grad_runs(body, torch.randn(args.batch, length, args.hidden), layer)
    return runs["fwd"], runs["fwd+bwd"]


def peak_bytes(args: argparse.Namespace, impl: str, length: int, mode: str) -> float:
    """Peak resident memory of one call, measured in a fresh child process."""
    if not os.path.exists("/proc/self/clear_refs"):
        return float("nan")
    cmd = [sys.executable, os.path.abspath(__file__), *_config_argv(args)]
    cmd += ["--child", impl, str(length), mode]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["peak_bytes"])


def child(args: argparse.Namespace) -> None:
    impl, length, mode = args.child[0], int(args.child[1]), args.child[2]
    fwd, fwd_bwd = build(args, impl, length)
    fn = fwd if mode == "fwd" else fwd_bwd
    if not reset_peak():
        raise OSError("/proc/self/clear_refs is not writable: cannot reset the peak")
    base = status_kib("VmRSS")
    fn()
    print(json.dumps({"peak_bytes": max(status_kib("VmHWM") - base, 0) * 1024}))


# -- the floor -----------------------------------------------------------------------------------


def projection_shapes(args: argparse.Namespace, tokens: int) -> list[tuple[int, int, int]]:
    """The layer's projection GEMMs ``(M, K, N)`` for ``tokens`` rows."""
    h = args.hidden
    keys = args.heads * args.head_dim // 2  # expand_k = 0.5
    values = args.heads * args.head_dim
    r = 16  # gate_low_rank_dim
    return [
        (tokens, h, keys),  # q
        (tokens, h, keys),  # k
        (tokens, h, values),  # v
        (tokens, h, values),  # output gate
        (tokens, h, r),  # forget gate, low rank
        (tokens, r, keys),
        (tokens, values, h),  # output
    ]


def floor_flops(args: argparse.Namespace, tokens: int) -> float:
    """Forward matmul FLOPs: projections + the chunked recurrence's essential matmuls."""
    proj = sum(2 * m * k * n for m, k, n in projection_shapes(args, tokens))
    dk, dv, c = args.head_dim // 2, args.head_dim, args.chunk_size
    recurrence = tokens * args.heads * 2 * (2 * dk * dv + (c // 2) * (dk + dv))
    return float(proj + recurrence)


def matmul_rate(args: argparse.Namespace, tokens: int, repeats: int, clock: str) -> float:
    """FLOP/s of the layer's projection GEMMs run back to back."""
    ops = [(torch.randn(m, k), torch.randn(k, n)) for m, k, n in projection_shapes(args, tokens)]
    flops = sum(2 * a.shape[0] * a.shape[1] * w.shape[1] for a, w in ops)

    def run() -> None:
        for a, w in ops:
            torch.mm(a, w)

    wall, cpu = time_best(run, repeats)
    return flops / (cpu if clock == "cpu" else wall)


# -- main ----------------------------------------------------------------------------------------


def _config_argv(args: argparse.Namespace) -> list[str]:
    return [
        *("--batch", str(args.batch), "--hidden", str(args.hidden), "--heads", str(args.heads)),
        *("--head-dim", str(args.head_dim), "--chunk-size", str(args.chunk_size)),
        *("--threads", str(args.threads), "--clock", args.clock),
    ]


def run(args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    print(
        f"# GLA body: B={args.batch} H={args.hidden} heads={args.heads} head_dim={args.head_dim} "
        f"chunk={args.chunk_size} threads={args.threads} clock={args.clock}"
    )
    header = (
        f"{'L':>6} {'impl':>6} {'fwd ms':>9} {'fwd+bwd ms':>11} {'fwd MiB':>9} {'f+b MiB':>9}"
        f" {'fwd/floor':>9} {'f+b/floor':>9}"
    )
    print(header, flush=True)
    for length in args.lengths:
        tokens = args.batch * length
        rate = matmul_rate(args, tokens, args.repeats, args.clock)
        floor_fwd = floor_flops(args, tokens) / rate
        impls = ["chunk", "kloop"] + (["loop"] if length in args.loop_lengths else [])
        for impl in impls:
            repeats = args.repeats if impl == "chunk" else args.loop_repeats
            fwd, fwd_bwd = build(args, impl, length)
            (fwd_wall, fwd_cpu), (fb_wall, fb_cpu) = (time_best(f, repeats) for f in (fwd, fwd_bwd))
            use_cpu = args.clock == "cpu"
            row = {
                "length": length,
                "impl": impl,
                "fwd_s": fwd_cpu if use_cpu else fwd_wall,
                "fwd_bwd_s": fb_cpu if use_cpu else fb_wall,
                "fwd_wall_s": fwd_wall,
                "fwd_cpu_s": fwd_cpu,
                "fwd_bwd_wall_s": fb_wall,
                "fwd_bwd_cpu_s": fb_cpu,
                "fwd_peak_bytes": peak_bytes(args, impl, length, "fwd"),
                "fwd_bwd_peak_bytes": peak_bytes(args, impl, length, "fwd_bwd"),
                "floor_fwd_s": floor_fwd,
                "floor_fwd_bwd_s": 3 * floor_fwd,
                "matmul_gflops": rate / 1e9,
            }
            rows.append(row)
            print(
                f"{length:>6} {impl:>6} {row['fwd_s'] * 1e3:>9.1f} {row['fwd_bwd_s'] * 1e3:>11.1f}"
                f" {row['fwd_peak_bytes'] / 2**20:>9.0f} {row['fwd_bwd_peak_bytes'] / 2**20:>9.0f}"
                f" {row['fwd_s'] / floor_fwd:>9.2f} {row['fwd_bwd_s'] / (3 * floor_fwd):>9.2f}",
                flush=True,
            )
        print(
            f"{length:>6} {'floor':>6} {floor_fwd * 1e3:>9.1f} {3 * floor_fwd * 1e3:>11.1f}"
            f"   (matmul rate {rate / 1e9:.0f} GFLOP/s)",
            flush=True,
        )
    return {"rows": rows, "targets": targets(rows)}


def targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The targets, each with its measured value and whether it is met."""
    chunk = {r["length"]: r for r in rows if r["impl"] == "chunk"}
    loop = {r["length"]: r for r in rows if r["impl"] == "loop"}
    kloop = {r["length"]: r for r in rows if r["impl"] == "kloop"}
    out: dict[str, Any] = {}
    for length, r in chunk.items():
        ratio = r["fwd_s"] / r["floor_fwd_s"]
        out[f"fwd_within_6x_floor@{length}"] = {"value": ratio, "met": ratio <= 6, "bound": 6}
        for name, other in (("loop", loop), ("kloop", kloop)):
            if length not in other:
                continue
            for mode, bound in (("fwd_s", 6), ("fwd_bwd_s", 8)):
                speedup = other[length][mode] / r[mode]
                key = f"{name}_over_chunk_{mode[:-2]}@{length}"
                if name == "loop":
                    out[key] = {"value": speedup, "met": speedup >= bound, "bound": bound}
                else:  # information only: no target
                    out[key] = {"value": speedup, "met": None}
    if len(chunk) > 1:
        lo, hi = min(chunk), max(chunk)
        for mode in ("fwd_s", "fwd_bwd_s"):
            growth = chunk[hi][mode] / chunk[lo][mode]
            bound = 20 * (hi / lo) / 16
            key = f"growth_{mode[:-2]}_{hi}/{lo}"
            out[key] = {"value": growth, "met": growth <= bound, "bound": bound}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_options(p, batch=4, hidden=256, heads=4, head_dim=64, chunk_size=64)
    p.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    p.add_argument("--loop-lengths", type=int, nargs="*", default=None, help="default: --lengths")
    add_options(p, repeats=5, loop_repeats=2, threads=torch.get_num_threads())
    p.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="what the table and targets use (cpu: process CPU time, for --threads 1 on a busy "
        "machine); the JSON has both",
    )
    p.add_argument("--out", type=str, default=None, help="write the results as JSON here")
    p.add_argument("--child", nargs=3, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.child is not None:
        child(args)
        return
    if args.loop_lengths is None:
        args.loop_lengths = list(args.lengths)
    result = run(args)
    print()
    for name, t in result["targets"].items():
        verdict = {True: "met", False: "NOT met", None: "(info)"}[t["met"]]
        print(f"{name:>34}: {t['value']:7.2f}  {verdict}")
    result["config"] = {k: v for k, v in vars(args).items() if k not in ("child", "out")} | {
        "torch": torch.__version__,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "loadavg_at_end": os.getloadavg(),
    }
    if args.out:
        write_json(args.out, result)


if __name__ == "__main__":
    main()
