"""The mixture of experts against its matmul floor and transformers' Mixtral block, side by side.

One process, ``--threads`` threads (2 by default), float32, B=4, L=1024, H=256, 8 experts, top-2,
SwiGLU experts of inner width 512 (the issue's setting). Three things run with the same weights
and the same input, interleaved round by round (so that a change of machine load hits all of
them alike):

- ``hybridzoo``: the ``moe`` body (training mode, so its auxiliary losses are computed too);
- ``mixtral``: transformers' ``MixtralSparseMoeBlock`` (its default eager experts);
- ``floor``: the matrix products of the *active* parameters alone, dense: ``[N, H] @ [H, 2kI]``,
  ``[N, kI] @ [kI, H]`` and the router ``[N, H] @ [H, E]`` (forward), plus the two products of
  each for the gradients of the input and the weights (forward+backward).

``fwd`` runs under ``torch.no_grad()``; ``fwd+bwd`` is ``(y · g).sum().backward()`` with a fixed
random ``g``. Reported: the minimum and the median wall time over ``--repeat`` rounds after a
warm-up, the minimum process CPU time, and the ratios of the minima. Usage::

    python benchmarks/bench_moe.py [--repeat 15] [--threads 2] [--out benchmarks/results/moe.json]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch
from timing import add_options, interleaved, meta, module_runs, write_json


def _floor(n: int, hidden: int, experts: int, top_k: int, inner: int) -> dict[str, Callable]:
    gen = torch.Generator().manual_seed(1)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen)

    x, h = r(n, hidden), r(n, top_k * inner)
    w_up, w_down, w_router = (
        r(hidden, 2 * top_k * inner),
        r(top_k * inner, hidden),
        r(hidden, experts),
    )
    g_up, g_out, g_router = r(n, 2 * top_k * inner), r(n, hidden), r(n, experts)

    def forward() -> None:
        torch.mm(x, w_up)
        torch.mm(h, w_down)
        torch.mm(x, w_router)

    def backward() -> None:
        forward()
        for inp, weight, grad in ((x, w_up, g_up), (h, w_down, g_out), (x, w_router, g_router)):
            torch.mm(grad, weight.t())  # d input
            torch.mm(inp.t(), grad)  # d weight

    return {"fwd": forward, "fwd+bwd": backward}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_options(parser, batch=4, length=1024, hidden=256, experts=8, top_k=2, expert_size=512)
    add_options(parser, repeat=15, threads=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/moe.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import MixtralConfig
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

    from hybridzoo_plugins.moe.layer import MixtureOfExperts

    torch.manual_seed(0)
    H, E, k, inner = args.hidden, args.experts, args.top_k, args.expert_size
    ours = MixtureOfExperts(H, num_experts=E, top_k=k, expert_size=inner).train()
    config = MixtralConfig(
        hidden_size=H, intermediate_size=inner, num_local_experts=E, num_experts_per_tok=k
    )
    config._experts_implementation = "eager"
    mixtral = MixtralSparseMoeBlock(config).train()
    with torch.no_grad():
        mixtral.gate.weight.copy_(ours.router.weight)
        mixtral.experts.gate_up_proj.copy_(ours.gate_up)
        mixtral.experts.down_proj.copy_(ours.down)
    x = torch.randn(args.batch, args.length, H)
    g = torch.randn_like(x)
    with torch.no_grad():
        same = torch.allclose(ours(x), mixtral(x), atol=1e-5, rtol=1e-4)

    n = args.batch * args.length
    runs = {
        "hybridzoo": module_runs(ours, x, g),
        "mixtral": module_runs(mixtral, x, g),
        "floor": _floor(n, H, E, k, inner),
    }
    rows = []
    print(
        f"{'mode':>8} {'':>10} {'min ms':>9} {'median ms':>10} {'cpu ms':>9} {'/ floor':>8} "
        f"{'/ mixtral':>9} {'cpu / floor':>11}"
    )
    for mode in ("fwd", "fwd+bwd"):
        result = interleaved({name: run[mode] for name, run in runs.items()}, args.repeat)
        floor, other = result["floor"], result["mixtral"]
        for name, row in result.items():
            row.update(
                impl=name,
                mode=mode,
                vs_floor=row["min_ms"] / floor["min_ms"],
                vs_mixtral=row["min_ms"] / other["min_ms"],
                cpu_vs_floor=row["cpu_min_ms"] / floor["cpu_min_ms"],
            )
            rows.append(row)
            print(
                f"{mode:>8} {name:>10} {row['min_ms']:>9.1f} {row['median_ms']:>10.1f} "
                f"{row['cpu_min_ms']:>9.1f} {row['vs_floor']:>8.2f} {row['vs_mixtral']:>9.2f} "
                f"{row['cpu_vs_floor']:>11.2f}",
                flush=True,
            )
    info = meta(
        batch=args.batch,
        length=args.length,
        hidden=H,
        experts=E,
        top_k=k,
        expert_size=inner,
        active_params=E * H + k * 3 * inner * H,
        repeat=args.repeat,
        outputs_equal_mixtral=same,
    )
    print(f"outputs equal to Mixtral's: {same}; load average {info['load_average_1min']:.2f}")
    write_json(args.out, {"meta": info, "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
