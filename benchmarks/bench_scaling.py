"""How the attention, ffn and moe bodies scale with the sequence length: time(L=16384) /
time(L=1024) at batch 1 (linear time gives 16; the target is at most 18).

One process, ``--threads`` threads (2 by default), float32, H=256, each layer with its defaults
(attention: 4 heads × 64, window 60; ffn: GELU, expand 4; moe: 8 experts, top-2, 512 wide) plus
the variants named below. ``fwd`` runs under ``torch.no_grad()``; ``fwd+bwd`` is
``y.sum().backward()``. The two lengths of a layer are timed round by round (interleaved).
Full causal attention (``window_size=None``) is quadratic by design: its row is printed for
information (ratio ~256 expected), not held to the target. Usage::

    python benchmarks/bench_scaling.py [--repeat 5] [--threads 2] \\
        [--out benchmarks/results/scaling.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from timing import add_options, interleaved, meta, module_runs, write_json

from hybridzoo.plugin import LayerSpec


def _variants() -> dict[str, tuple[str, dict]]:
    return {
        "attention (window 60)": ("attention", {}),
        "attention (window 60, GQA 4:1)": ("attention", {"num_kv_heads": 1}),
        "attention (window 60, conv 4)": ("attention", {"conv_size": 4}),
        "ffn (gelu)": ("ffn", {}),
        "ffn (swiglu)": ("ffn", {"activation": "swiglu"}),
        "moe (8 experts, top-2)": ("moe", {}),
        "attention (full, quadratic)": ("attention", {"window_size": None}),
    }


def _first_body(spec: LayerSpec, options: dict, hidden: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return spec.factory(spec.options(**options), hidden)[0].train()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs=2, default=[1024, 16384])
    add_options(parser, hidden=256, repeat=5, threads=2)
    parser.add_argument("--modes", nargs="+", default=["fwd", "fwd+bwd"])
    parser.add_argument("--skip-full", action="store_true", help="leave out full attention")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/scaling.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import hybridzoo

    short, long = args.lengths
    rows = []
    print(f"{'layer':32} {'mode':>8} {f'L={short} ms':>12} {f'L={long} ms':>13} {'ratio':>7}")
    for label, (layer, options) in _variants().items():
        full = options.get("window_size", 60) is None
        if full and args.skip_full:
            continue
        body = _first_body(hybridzoo.get_layer(layer), options, args.hidden)
        for mode in args.modes:
            if full and mode != "fwd":
                continue  # quadratic: the forward says enough
            inputs = {n: torch.randn(1, n, args.hidden) for n in (short, long)}
            result = interleaved(
                {str(n): module_runs(body, x)[mode] for n, x in inputs.items()}, args.repeat
            )
            ratio = result[str(long)]["min_ms"] / result[str(short)]["min_ms"]
            rows.append(
                {
                    "layer": label,
                    "mode": mode,
                    "short": result[str(short)],
                    "long": result[str(long)],
                    "ratio": ratio,
                    "held_to_target": not full,
                }
            )
            print(
                f"{label:32} {mode:>8} {result[str(short)]['min_ms']:>12.2f} "
                f"{result[str(long)]['min_ms']:>13.1f} {ratio:>7.2f}",
                flush=True,
            )
    info = meta(lengths=args.lengths, hidden=args.hidden, batch=1, repeat=args.repeat)
    print(f"load average {info['load_average_1min']:.2f}")
    write_json(args.out, {"meta": info, "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
