"""Speed and memory of the RWKV-6 block bodies (time-mix + channel-mix) against the time-step
reference and the matmul floor.

For each length L it measures, on one device, in one process:

- ``block``: ``RWKV6ChannelMix(RWKV6TimeMix(x))`` (the two bodies of an ``rwkv`` block, without
  the core's norms and residuals), forward (no autograd) and forward + backward;
- ``reference``: the same with the plain time-step loops of ``reference.py`` (slow; only for the
  lengths in ``--ref-lengths``);
- ``floor``: the matmuls the block performs (projections and LoRAs, same shapes, back to back):
  their FLOPs divided by the rate measured for them in this run; fwd+bwd counts 3x the FLOPs.

Times are the best of ``--repeats`` runs. Peak memory is the high-water mark above the memory
held before the call: CUDA's allocator statistics on a GPU; on CPU the process's resident set
(``VmHWM`` after resetting it through ``/proc/self/clear_refs``), so it includes allocator
slack.

Example::

    python benchmarks/bench_rwkv.py --out rwkv.json
    python benchmarks/bench_rwkv.py --lengths 1024 4096 --ref-lengths 1024 --device cuda
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from hybridzoo_plugins.rwkv.layer import make_rwkv_bodies
from hybridzoo_plugins.rwkv.reference import channel_mix_reference, time_mix_reference

# -- measurement helpers -------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak(device: torch.device) -> int:
    """Reset the high-water mark; return the bytes held now."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kib("VmRSS") * 1024


def _peak(device: torch.device) -> int:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device)
    return _status_kib("VmHWM") * 1024


def measure(
    fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int
) -> tuple[float, float]:
    """Best (minimum) seconds of ``fn`` over ``repeats`` runs after ``warmup`` (the minimum is the
    estimate least disturbed by other processes); peak bytes of one run."""
    for _ in range(warmup):
        fn()
    _sync(device)
    base = _reset_peak(device)
    fn()
    peak = max(_peak(device) - base, 0)
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return min(times), float(peak)


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


def matmul_floor(
    shapes: list[tuple[int, int, int, int]],
    device: torch.device,
    dtype: torch.dtype,
    repeats: int,
) -> tuple[float, float, float]:
    """(FLOPs, measured FLOP/s, seconds) of running ``shapes`` back to back."""
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

    seconds, _ = measure(run, device, repeats=repeats, warmup=1)
    return flops, flops / seconds, seconds


# -- the benchmark -------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    tm, cm = make_rwkv_bodies(args.hidden, head_size=args.head_size, device=device, dtype=dtype)
    params = sum(p.numel() for m in (tm, cm) for p in m.parameters())
    all_params = [p for m in (tm, cm) for p in m.parameters()]

    def block_fwd(x: torch.Tensor) -> Callable[[], Any]:
        def fn() -> Any:
            with torch.no_grad():
                return cm(tm(x))

        return fn

    def block_fwd_bwd(x: torch.Tensor, gy: torch.Tensor) -> Callable[[], Any]:
        def fn() -> None:
            for p in all_params:
                p.grad = None
            xg = x.detach().requires_grad_(True)
            cm(tm(xg)).backward(gy)

        return fn

    def ref_fwd(x: torch.Tensor) -> Callable[[], Any]:
        def fn() -> Any:
            with torch.no_grad():
                return channel_mix_reference(cm, time_mix_reference(tm, x))

        return fn

    def ref_fwd_bwd(x: torch.Tensor, gy: torch.Tensor) -> Callable[[], Any]:
        def fn() -> None:
            for p in all_params:
                p.grad = None
            xg = x.detach().requires_grad_(True)
            channel_mix_reference(cm, time_mix_reference(tm, xg)).backward(gy)

        return fn

    rows: list[dict[str, Any]] = []
    for length in args.lengths:
        x = torch.randn(args.batch, length, args.hidden, device=device, dtype=dtype)
        gy = torch.randn_like(x)
        tokens = args.batch * length
        flops, rate, floor_s = matmul_floor(
            block_matmuls(tm, cm, tokens), device, dtype, args.repeats
        )
        common = {"L": length, "matmul_flops_fwd": flops, "matmul_rate": rate}
        floors = {"fwd": floor_s, "fwd+bwd": 3 * floor_s}
        cases = [("block", "fwd", block_fwd(x), args.repeats)]
        cases.append(("block", "fwd+bwd", block_fwd_bwd(x, gy), args.repeats))
        if length in args.ref_lengths:
            cases.append(("reference", "fwd", ref_fwd(x), args.ref_repeats))
            cases.append(("reference", "fwd+bwd", ref_fwd_bwd(x, gy), args.ref_repeats))
        for what, mode, fn, repeats in cases:
            warmup = 1 if what == "block" else 0
            seconds, peak = measure(fn, device, repeats=repeats, warmup=warmup)
            rows.append(
                {
                    **common,
                    "what": what,
                    "mode": mode,
                    "seconds": seconds,
                    "peak_bytes": peak,
                    "floor_seconds": floors[mode],
                    "x_floor": seconds / floors[mode],
                }
            )
            print(_fmt_row(rows[-1]), flush=True)
        del x, gy

    result = {
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
        },
        "rows": rows,
        "targets": targets(rows),
    }
    return result


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
    floor = next((r["floor_seconds"] for r in rows if r["L"] == 4096 and r["mode"] == "fwd"), None)
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
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--head-size", type=int, default=64)
    p.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    p.add_argument("--ref-lengths", type=int, nargs="*", default=[1024, 4096])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--ref-repeats", type=int, default=1)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

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
        args.out.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
