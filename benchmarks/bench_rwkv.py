"""Speed and memory of the RWKV-6 block bodies (time-mix + channel-mix) against the time-step
reference and the matmul floor.

For each length L it measures, on one device, in one process:

- ``block``: ``RWKV6ChannelMix(RWKV6TimeMix(x))`` (the two bodies of an ``rwkv`` block, without
  the core's norms and residuals), forward (no autograd) and forward + backward;
- ``reference``: the same with the plain time-step loops of ``reference.py`` (slow; only for the
  lengths in ``--ref-lengths``);
- ``floor``: the matmuls the block performs (projections and LoRAs, same shapes, back to back):
  their FLOPs divided by the rate measured for them in this run, timed alternately with each case
  so that both see the same machine load; fwd+bwd counts 3x the FLOPs.

Times are the best of ``--repeats`` runs. Peak memory is the high-water mark of one call above the
memory held before it (parameters and inputs excluded): CUDA's allocator statistics on a GPU; on
CPU the resident-set high-water mark of a child process that runs the case once with
``MALLOC_MMAP_THRESHOLD_=65536`` (so that freed tensors leave the resident set).

Example::

    python benchmarks/bench_rwkv.py --out rwkv.json
    python benchmarks/bench_rwkv.py --lengths 1024 4096 --ref-lengths 1024 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from timing import add_options, reset_peak, status_kib, write_json

from hybridzoo_plugins.rwkv import RWKVOptions
from hybridzoo_plugins.rwkv.layer import make_bodies
from hybridzoo_plugins.rwkv.reference import channel_mix_reference, time_mix_reference

# -- measurement helpers -------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_best(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int) -> float:
    """Best (minimum) seconds of ``fn`` over ``repeats`` runs after ``warmup`` runs: the minimum
    is the estimate least disturbed by other processes on a shared machine."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return min(times)


def peak_bytes_here(fn: Callable[[], Any], device: torch.device) -> float:
    """Bytes allocated at the peak of one call of ``fn`` above what was held before it.

    CUDA: the caching allocator's statistics. CPU: the resident-set high-water mark (reset through
    ``/proc/self/clear_refs``); exact only when freed memory goes back to the system, which is why
    :func:`peak_bytes` runs CPU measurements in a child process with a fixed, small
    ``MALLOC_MMAP_THRESHOLD_``.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return float(torch.cuda.max_memory_allocated(device) - base)
    if not reset_peak():
        raise OSError("/proc/self/clear_refs is not writable: cannot reset the peak")
    base = status_kib("VmRSS")
    fn()
    return float(max(status_kib("VmHWM") - base, 0) * 1024)


def peak_bytes(args: argparse.Namespace, length: int, what: str, mode: str) -> float:
    """Peak memory of one case: in this process on CUDA, in a fresh child process on CPU."""
    if torch.device(args.device).type == "cuda":
        tm, cm, x, gy = _setup(args, length)
        return peak_bytes_here(make_case(what, mode, tm, cm, x, gy), torch.device(args.device))
    if not os.path.exists("/proc/self/clear_refs"):
        return float("nan")
    cmd = [sys.executable, os.path.abspath(__file__), *_config_argv(args)]
    cmd += ["--child", str(length), what, mode]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["peak_bytes"])


# -- the matmul floor ----------------------------------------------------------------------------


def block_matmuls(tm: Any, cm: Any, tokens: int) -> list[tuple[int, int, int, int]]:
    """The GEMMs of one forward pass as ``(batch, M, K, N)``: projections and LoRAs."""
    h, r, d, f = tm.hidden_size, tm.mix_rank, tm.decay_rank, cm.ffn_size
    return [
        (1, tokens, h, 5 * r),  # token-shift LoRA down
        (5, tokens, r, h),  # token-shift LoRA up (batched)
        (4, tokens, h, h),  # receptance, key, value, gate
        (1, tokens, h, d),  # decay LoRA down
        (1, tokens, d, h),  # decay LoRA up
        (1, tokens, h, h),  # output
        (1, tokens, h, f),  # channel-mix key
        (1, tokens, f, h),  # channel-mix value
        (1, tokens, h, h),  # channel-mix receptance
    ]


def matmul_floor_fn(
    shapes: list[tuple[int, int, int, int]], device: torch.device, dtype: torch.dtype
) -> tuple[float, Callable[[], None]]:
    """FLOPs of ``shapes`` and a callable that runs them back to back (random operands)."""
    ops = []
    for batch, m, k, n in shapes:
        for _ in range(batch):
            a = torch.randn(m, k, device=device, dtype=dtype)
            w = torch.randn(k, n, device=device, dtype=dtype)
            ops.append((a, w))
    flops = float(sum(2 * b * m * k * n for b, m, k, n in shapes))

    def run() -> None:
        for a, w in ops:
            torch.mm(a, w)

    return flops, run


def time_interleaved(
    fn: Callable[[], Any], floor: Callable[[], Any], device: torch.device, repeats: int, warmup: int
) -> tuple[float, float]:
    """Best seconds of ``fn`` and of ``floor``, run alternately (floor, fn, ..., floor) so that
    both see the same load from other processes."""
    for _ in range(warmup):
        fn()
    floor()
    t_fn, t_floor = [], [time_best(floor, device, repeats=1, warmup=0)]
    for _ in range(repeats):
        t_fn.append(time_best(fn, device, repeats=1, warmup=0))
        t_floor.append(time_best(floor, device, repeats=1, warmup=0))
    return min(t_fn), min(t_floor)


# -- the benchmark -------------------------------------------------------------------------------


def _setup(
    args: argparse.Namespace, length: int
) -> tuple[torch.nn.Module, torch.nn.Module, torch.Tensor, torch.Tensor]:
    """The two bodies (seeded) and an input and output gradient of length ``length``."""
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)
    options = RWKVOptions(head_size=args.head_size)
    tm, cm = make_bodies(options, args.hidden, device=device, dtype=dtype)
    x = torch.randn(args.batch, length, args.hidden, device=device, dtype=dtype)
    return tm, cm, x, torch.randn_like(x)


def make_case(
    what: str, mode: str, tm: Any, cm: Any, x: torch.Tensor, gy: torch.Tensor
) -> Callable[[], Any]:
    """``block`` or ``reference``, ``fwd`` (no autograd) or ``fwd+bwd``, as a callable."""
    if what == "block":

        def body(inp: torch.Tensor) -> torch.Tensor:
            return cm(tm(inp))
    else:

        def body(inp: torch.Tensor) -> torch.Tensor:
            return channel_mix_reference(cm, time_mix_reference(tm, inp))

    params = [p for m in (tm, cm) for p in m.parameters()]
    if mode == "fwd":

        def fn() -> Any:
            with torch.no_grad():
                return body(x)
    else:

        def fn() -> Any:
            for p in params:
                p.grad = None
            body(x.detach().requires_grad_(True)).backward(gy)

    return fn


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every case at every length; prints each row as it is measured."""
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    rows: list[dict[str, Any]] = []
    params = 0
    for length in args.lengths:
        tm, cm, x, gy = _setup(args, length)
        params = sum(p.numel() for m in (tm, cm) for p in m.parameters())
        flops, floor = matmul_floor_fn(block_matmuls(tm, cm, args.batch * length), device, dtype)
        cases = [("block", "fwd"), ("block", "fwd+bwd")]
        if length in args.ref_lengths:
            cases += [("reference", "fwd"), ("reference", "fwd+bwd")]
        for what, mode in cases:
            fn = make_case(what, mode, tm, cm, x, gy)
            if what == "block":
                seconds, floor_s = time_interleaved(fn, floor, device, args.repeats, warmup=1)
            else:
                seconds, floor_s = time_interleaved(fn, floor, device, args.ref_repeats, warmup=0)
            rate = flops / floor_s
            floor_s *= 1 if mode == "fwd" else 3
            peak = peak_bytes(args, length, what, mode) if args.memory else float("nan")
            rows.append(
                {
                    "L": length,
                    "what": what,
                    "mode": mode,
                    "seconds": seconds,
                    "peak_bytes": peak,
                    "matmul_flops_fwd": flops,
                    "matmul_rate": rate,
                    "floor_seconds": floor_s,
                    "x_floor": seconds / floor_s,
                }
            )
            print(_fmt_row(rows[-1]), flush=True)
        del tm, cm, x, gy

    return {
        "benchmark": "rwkv",
        "config": {
            "batch": args.batch,
            "hidden": args.hidden,
            "head_size": args.head_size,
            "dtype": args.dtype,
            "device": str(device),
            "device_name": _device_name(device),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "params": params,
            "repeats": args.repeats,
            "ref_repeats": args.ref_repeats,
        },
        "rows": rows,
        "targets": targets(rows),
    }


def _config_argv(args: argparse.Namespace) -> list[str]:
    return [
        f"--batch={args.batch}",
        f"--hidden={args.hidden}",
        f"--head-size={args.head_size}",
        f"--dtype={args.dtype}",
        f"--device={args.device}",
        f"--threads={torch.get_num_threads()}",
    ]


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def _find(rows: list[dict[str, Any]], length: int, what: str, mode: str) -> float | None:
    for r in rows:
        if r["L"] == length and r["what"] == what and r["mode"] == mode:
            return r["seconds"]
    return None


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The goals at L=4096 and the 1024 → 16384 scaling, where measured."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, goal: str, ok: Callable[[float], bool]) -> None:
        if value is not None:
            out.append({"target": name, "value": value, "goal": goal, "met": bool(ok(value))})

    fwd = _find(rows, 4096, "block", "fwd")
    fb = _find(rows, 4096, "block", "fwd+bwd")
    key = (4096, "block", "fwd")
    floor = next((r["floor_seconds"] for r in rows if (r["L"], r["what"], r["mode"]) == key), None)
    ref_f = _find(rows, 4096, "reference", "fwd")
    ref_fb = _find(rows, 4096, "reference", "fwd+bwd")
    if fwd is not None and floor is not None:
        add("L=4096 fwd / matmul floor", fwd / floor, "<= 6", lambda v: v <= 6)
    if fwd is not None and ref_f is not None:
        add("L=4096 reference fwd / block fwd", ref_f / fwd, ">= 6", lambda v: v >= 6)
    if fb is not None and ref_fb is not None:
        add("L=4096 reference fwd+bwd / block fwd+bwd", ref_fb / fb, ">= 8", lambda v: v >= 8)
    for mode in ("fwd", "fwd+bwd"):
        lo, hi = _find(rows, 1024, "block", mode), _find(rows, 16384, "block", mode)
        if lo is not None and hi is not None:
            add(f"block {mode} time(16384) / time(1024)", hi / lo, "<= 20", lambda v: v <= 20)
    return out


def _fmt_row(r: dict[str, Any]) -> str:
    return (
        f"{r['L']:>6} {r['what']:<9} {r['mode']:<8} {r['seconds'] * 1e3:>11.1f} "
        f"{r['peak_bytes'] / 2**20:>10.1f} {r['floor_seconds'] * 1e3:>10.1f} {r['x_floor']:>8.2f}"
    )


HEADER = (
    f"{'L':>6} {'what':<9} {'mode':<8} {'time ms':>11} {'peak MiB':>10} {'floor ms':>10} "
    f"{'x floor':>8}"
)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run, print the table and the targets, write JSON to ``--out``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_options(p, batch=4, hidden=256, head_size=64)
    p.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    p.add_argument("--ref-lengths", type=int, nargs="*", default=[1024, 4096])
    add_options(p, repeats=3, ref_repeats=1)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--no-memory", dest="memory", action="store_false", help="skip peak memory")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--child", nargs=3, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.child is not None:  # internal: one memory measurement, printed as JSON
        length, what, mode = int(args.child[0]), args.child[1], args.child[2]
        tm, cm, x, gy = _setup(args, length)
        peak = peak_bytes_here(make_case(what, mode, tm, cm, x, gy), torch.device(args.device))
        print(json.dumps({"peak_bytes": peak}))
        return

    print(
        f"RWKV-6 block bodies: B={args.batch} H={args.hidden} head_size={args.head_size} "
        f"{args.dtype} on {args.device} ({torch.get_num_threads()} threads)"
    )
    print(HEADER)
    result = run(args)
    print()
    for t in result["targets"]:
        mark = "met" if t["met"] else "NOT met"
        print(f"{t['target']:<45} {t['value']:>8.2f}  (goal {t['goal']}: {mark})")
    if args.out is not None:
        write_json(args.out, result)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
