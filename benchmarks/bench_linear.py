"""Speed of the chunked linear-recurrence kernels (``hybridzoo.ops``), side by side in one run.

Cases (float32; ``--threads``, default 2):

- ``gla``: :func:`chunk_gla`, B=4, T=4096, 4 heads, K=V=64, and the layer-sized GLA (K=32, V=64)
  and RWKV-6 (bonus, scale 1) cases; forward against its minimal-FLOP floor: 4·B·H·T·K·V FLOPs
  at the matmul rate measured in this run (a [B·T, 256] x [256, 256] GEMM, timed interleaved
  with the kernels);
- ``delta``: :func:`chunk_gated_delta_rule` (auto and torch backends) against transformers'
  ``torch_chunk_gated_delta_rule`` with the same inputs (B=4, T=4096, 4 heads, K=V=64): forward,
  and forward+backward against autograd through it; the outputs' largest difference;
- ``ssd``: :func:`chunk_ssd` against transformers' torch SSD (``mamba2_chunk_scan``, the chunked
  part of ``Mamba2Mixer.torch_forward``) with the same inputs, Mamba-2 at hidden 256
  (B=4, L=4096, 8 heads, P=64, N=128, one group), for information;
- ``scaling``: every kernel at batch 1, time(T=16384) / time(T=1024), forward and
  forward+backward.

Times are the minimum over ``--repeat`` interleaved rounds (wall clock). The table is printed and
the JSON written to ``--out`` (default ``benchmarks/results/linear.json``).

    python benchmarks/bench_linear.py
    python benchmarks/bench_linear.py --only delta --repeat 5
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from timing import interleaved, meta, write_json

from hybridzoo import ops

HERE = Path(__file__).resolve().parent


def _randn(*shape: int) -> torch.Tensor:
    return torch.randn(*shape)


def gla_inputs(b: int, t: int, h: int, d_k: int, d_v: int, bonus: bool) -> tuple[list, dict]:
    q, k = _randn(b, t, h, d_k), _randn(b, t, h, d_k)
    g = -torch.rand(b, t, h, d_k) * (1.0 if bonus else 0.1)
    kwargs = {"bonus": _randn(h, d_k), "scale": 1.0} if bonus else {}
    return [q, k, _randn(b, t, h, d_v), g], kwargs


def delta_inputs(b: int, t: int, h: int = 4, d: int = 64) -> list:
    k = torch.nn.functional.normalize(_randn(b, t, h, d), dim=-1)
    return [
        _randn(b, t, h, d),
        k,
        _randn(b, t, h, d),
        -torch.rand(b, t, h) * 0.1,
        torch.rand(b, t, h),
    ]


def ssd_inputs(b: int, t: int, h: int = 8, p: int = 64, n: int = 128) -> list:
    return [
        _randn(b, t, h, p),
        torch.rand(b, t, h) * 0.1,
        -torch.rand(h) - 0.5,
        _randn(b, t, 1, n),
        _randn(b, t, 1, n),
    ]


def modes(fn: Callable, args: list, kwargs: dict) -> dict[str, Callable[[], None]]:
    """``fwd`` (no autograd) and ``fwd+bwd`` (gradients of every input) of ``fn``."""
    leaves = [x.clone().requires_grad_() for x in args]

    def forward() -> None:
        with torch.no_grad():
            fn(*args, **kwargs)

    def forward_backward() -> None:
        out = fn(*leaves, **kwargs)
        out = out[0] if isinstance(out, tuple) else out
        out.sum().backward()
        for x in leaves:
            x.grad = None

    return {"fwd": forward, "fwd+bwd": forward_backward}


def matmul(tokens: int) -> tuple[float, Callable[[], None]]:
    a, w = _randn(tokens, 256), _randn(256, 256)
    return 2.0 * tokens * 256 * 256, lambda: torch.mm(a, w)


def run_gla(repeat: int) -> list[dict[str, Any]]:
    rows = []
    for name, d_k, d_v, bonus in (
        ("gla K=V=64", 64, 64, False),
        ("gla layer K=32 V=64", 32, 64, False),
        ("rwkv6 K=V=64", 64, 64, True),
    ):
        args, kwargs = gla_inputs(4, 4096, 4, d_k, d_v, bonus)
        flops_mm, mm = matmul(4 * 4096)
        runs = {"matmul": mm}
        for backend in ("auto", "torch"):
            for mode, fn in modes(ops.chunk_gla, args, {**kwargs, "backend": backend}).items():
                runs[f"{backend} {mode}"] = fn
        t = interleaved(runs, repeat)
        rate = flops_mm / (t["matmul"]["min_ms"] / 1e3)
        floor_ms = 1e3 * 4 * 4 * 4 * 4096 * d_k * d_v / rate
        for key, r in t.items():
            if key != "matmul":
                rows.append(
                    {
                        "case": name,
                        "impl": key,
                        "ms": r["min_ms"],
                        "cpu_ms": r["cpu_min_ms"],
                        "floor_ms": floor_ms,
                        "x_floor": r["min_ms"] / floor_ms,
                        "matmul_gflops": rate / 1e9,
                    }
                )
    return rows


def _compare(name: str, ours: Callable, theirs: Callable, args: list, repeat: int) -> list[dict]:
    runs = {}
    for backend in ("auto", "torch"):
        for mode, fn in modes(ours, args, {"backend": backend}).items():
            runs[f"ours/{backend} {mode}"] = fn
    for mode, fn in modes(theirs, args, {}).items():
        runs[f"transformers {mode}"] = fn
    t = interleaved(runs, repeat)
    with torch.no_grad():
        diff = (ours(*args)[0] - theirs(*args)[0]).abs().max().item()
    rows = []
    for key, r in t.items():
        mode = key.split()[-1]
        ref = t[f"transformers {mode}"]["min_ms"]
        rows.append(
            {
                "case": name,
                "impl": key,
                "ms": r["min_ms"],
                "cpu_ms": r["cpu_min_ms"],
                "speedup_vs_transformers": ref / r["min_ms"],
                "max_abs_diff": diff,
            }
        )
    return rows


def run_delta(repeat: int) -> list[dict[str, Any]]:
    from transformers.models.qwen3_next.modeling_qwen3_next import torch_chunk_gated_delta_rule

    return _compare(
        "delta B=4 T=4096 H=4 K=V=64",
        ops.chunk_gated_delta_rule,
        torch_chunk_gated_delta_rule,
        delta_inputs(4, 4096),
        repeat,
    )


def run_ssd(repeat: int) -> list[dict[str, Any]]:
    from transformers.models.mamba2.modeling_mamba2 import mamba2_chunk_scan

    def theirs(x, dt, a, b, c):
        return mamba2_chunk_scan(x, dt, a, b, c, 64, return_final_states=True)

    return _compare(
        "ssd B=4 L=4096 8x64 heads N=128", ops.chunk_ssd, theirs, ssd_inputs(4, 4096), repeat
    )


def run_scaling(repeat: int, lengths: tuple[int, int]) -> list[dict[str, Any]]:
    kernels = {
        "chunk_gla": (ops.chunk_gla, lambda t: gla_inputs(1, t, 4, 64, 64, False)),
        "chunk_gla (rwkv6)": (ops.chunk_gla, lambda t: gla_inputs(1, t, 4, 64, 64, True)),
        "chunk_gated_delta_rule": (ops.chunk_gated_delta_rule, lambda t: (delta_inputs(1, t), {})),
        "chunk_ssd": (ops.chunk_ssd, lambda t: (ssd_inputs(1, t), {})),
    }
    rows = []
    for name, (fn, make) in kernels.items():
        times = {}
        for t in lengths:
            args, kwargs = make(t)
            times[t] = interleaved(modes(fn, args, kwargs), repeat)
        for mode in ("fwd", "fwd+bwd"):
            lo, hi = (times[t][mode]["min_ms"] for t in lengths)
            rows.append(
                {
                    "case": f"{name} B=1",
                    "impl": mode,
                    "ms_short": lo,
                    "ms_long": hi,
                    "ratio": hi / lo,
                    "lengths": list(lengths),
                }
            )
    return rows


def _print(title: str, rows: list[dict[str, Any]], cols: list[str]) -> None:
    print(f"\n{title}")
    print(
        "  ".join(
            f"{c:>24}" if i < 2 else f"{c:>12}" for i, c in enumerate(["case", "impl", *cols])
        )
    )
    for r in rows:
        cells = [f"{r['case']:>24}", f"{r['impl']:>24}"]
        cells += [f"{r[c]:>12.3g}" if isinstance(r[c], float) else f"{r[c]!s:>12}" for c in cols]
        print("  ".join(cells), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--only", nargs="*", default=["gla", "delta", "ssd", "scaling"])
    p.add_argument("--lengths", type=int, nargs=2, default=[1024, 16384])
    p.add_argument("--out", type=Path, default=HERE / "results" / "linear.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    result: dict[str, Any] = {"meta": meta(repeat=args.repeat, lengths=args.lengths)}
    if "gla" in args.only:
        result["gla"] = run_gla(args.repeat)
        _print(
            "chunk_gla forward vs its floor (4·B·H·T·K·V FLOPs at the measured matmul rate)",
            result["gla"],
            ["ms", "floor_ms", "x_floor", "matmul_gflops"],
        )
    for name, run in (("delta", run_delta), ("ssd", run_ssd)):
        if name in args.only:
            result[name] = run(args.repeat)
            _print(
                f"{name} vs transformers",
                result[name],
                ["ms", "speedup_vs_transformers", "max_abs_diff"],
            )
    if "scaling" in args.only:
        result["scaling"] = run_scaling(max(2, args.repeat // 2), tuple(args.lengths))
        _print(
            "time(long) / time(short) at batch 1",
            result["scaling"],
            ["ms_short", "ms_long", "ratio"],
        )
    result["meta"]["load_average_1min_end"] = meta()["load_average_1min"]
    write_json(args.out, result)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
