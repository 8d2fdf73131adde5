"""Speed of the retention example's chunkwise form, which selects the masked entries away (a NaN or
inf never reaches an earlier output), against the masked product over a whole chunk that it
replaced (``(Q Kᵀ ⊙ D) V`` with ``D`` zero above the diagonal: ``0 · NaN`` leaks), side by side.

    python examples/retention/benchmarks/bench_chunk.py [--length 2048] [--repeat 5]

The forms are timed in interleaved rounds (the best of each). Prints a table and writes JSON to
``examples/retention/benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from functools import partial
from pathlib import Path

import torch

from hybridzoo_retention.formulas import head_log_decays
from hybridzoo_retention.layer import chunk_retention


def masked_chunk_retention(q, k, v, log_decay, *, chunk_size=64):
    """The replaced form: the intra-chunk product masked over the whole chunk."""
    batch, heads, _, d_k = q.shape
    state = q.new_zeros(batch, heads, d_k, v.shape[-1])
    c_max = min(chunk_size, q.shape[2])
    pos = torch.arange(c_max, device=q.device, dtype=q.dtype)
    lg = log_decay.to(q.dtype)[:, None, None]
    gap = (pos[:, None] - pos[None, :]).expand(heads, c_max, c_max)
    decay = torch.exp((gap * lg).masked_fill(gap < 0, -math.inf))
    outs = []
    for qc, kc, vc in zip(q.split(c_max, 2), k.split(c_max, 2), v.split(c_max, 2), strict=True):
        c = qc.shape[2]
        p = pos[:c, None]
        inner = ((qc @ kc.transpose(-1, -2)) * decay[:, :c, :c]) @ vc
        outs.append(inner + (qc * torch.exp((p + 1) * lg)) @ state)
        k_to_end = kc * torch.exp((c - 1 - p) * lg)
        state = torch.exp(c * lg) * state + k_to_end.transpose(-1, -2) @ vc
    return torch.cat(outs, dim=2), state


def best_of(fns: dict[str, object], repeat: int) -> dict[str, float]:
    """The best wall time of each function, measured in interleaved rounds (one call of each per
    round, after a warm-up round), so that neither form gains from running first."""
    best = dict.fromkeys(fns, math.inf)
    for round_ in range(repeat + 1):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            if round_:
                best[name] = min(best[name], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=2048)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=32)
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = (args.batch, args.heads, args.length, args.head_dim)
    q, k = torch.randn(shape) * args.head_dim**-0.5, torch.randn(shape)
    v = torch.randn(args.batch, args.heads, args.length, 2 * args.head_dim)
    lg = torch.tensor(head_log_decays(args.heads))
    forms = {"selected (causal)": chunk_retention, "masked (replaced)": masked_chunk_retention}
    leaves = [t.detach().requires_grad_(True) for t in (q, k, v)]

    def both(form) -> None:
        out, _ = form(*leaves, lg, chunk_size=args.chunk_size)
        out.sum().backward()

    with torch.no_grad():
        fwd = best_of(
            {n: partial(f, q, k, v, lg, chunk_size=args.chunk_size) for n, f in forms.items()},
            args.repeat,
        )
    fwd_bwd = best_of({n: partial(both, f) for n, f in forms.items()}, args.repeat)
    rows = [{"form": n, "forward_ms": 1e3 * fwd[n], "fwd_bwd_ms": 1e3 * fwd_bwd[n]} for n in forms]
    base = rows[1]
    head = ("form", "forward ms", "fwd+bwd ms", "fwd ratio", "fwd+bwd ratio")
    print(f"{head[0]:20} {head[1]:>11} {head[2]:>11} {head[3]:>10} {head[4]:>14}")
    for r in rows:
        ratios = (r["forward_ms"] / base["forward_ms"], r["fwd_bwd_ms"] / base["fwd_bwd_ms"])
        print(
            f"{r['form']:20} {r['forward_ms']:11.1f} {r['fwd_bwd_ms']:11.1f} "
            f"{ratios[0]:10.2f} {ratios[1]:14.2f}"
        )
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    record = {
        "args": vars(args),
        "rows": rows,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "load_average": os.getloadavg(),
    }
    (out / "bench_chunk.json").write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
