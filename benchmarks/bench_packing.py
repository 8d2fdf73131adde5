"""Packed against unpacked forward+backward of every builtin layer, on the same tensor.

For each layer a one-block ``HybridModel`` (``output="sequence"``, no dropout, the layer's
default options, ``--hidden`` wide) runs ``--batch`` rows of ``--length`` tokens twice, forward
then backward (the gradients of the input and of every parameter):

- ``plain``: ``model(x)``, each row one sequence;
- ``packed``: ``model(x, seq_idx=...)``, each row cut into documents of random lengths
  (geometric, mean ``--mean-document``; the last one of a row truncated), drawn once per run from
  ``--seed``.

The two are timed round by round (interleaved, :func:`timing.interleaved`), so a change of
machine load hits both alike; the table shows the minimum wall time of each and the ratio
packed / plain, checked against ``--bound`` (issue target: 1.2). Attention runs twice: with its
default window and with ``attention_window_size=None`` (full). The JSON (``--out``, default
``benchmarks/results/packing.json``) carries every time, the documents' statistics, the threads
and the load average before and after.

Example::

    python benchmarks/bench_packing.py
    python benchmarks/bench_packing.py --layers mamba gla --repeats 5 --threads 2
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from timing import add_options, interleaved, meta, write_json

import hybridzoo

RESULTS = Path(__file__).resolve().parent / "results"

#: name -> (layer, extra build options): every builtin, attention with and without its window
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "mamba": ("mamba", {}),
    "mamba2": ("mamba2", {}),
    "gated_deltanet": ("gated_deltanet", {}),
    "attention": ("attention", {}),
    "attention (full)": ("attention", {"attention_window_size": None}),
    "gla": ("gla", {}),
    "rwkv": ("rwkv", {}),
    "moe": ("moe", {}),
    "ffn": ("ffn", {}),
    "kan": ("kan", {}),
}


def documents(batch: int, length: int, mean: float, seed: int) -> torch.Tensor:
    """``seq_idx [batch, length]``: each row cut into documents of geometric lengths of mean
    ``mean`` (at least 1), the last one truncated at the row's end."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(batch):
        lengths: list[int] = []
        while sum(lengths) < length:
            u = float(torch.rand((), generator=gen, dtype=torch.float64))
            lengths.append(
                1 + int(torch.log1p(torch.tensor(-u)) / torch.log1p(torch.tensor(-1 / mean)))
            )
        lengths[-1] -= sum(lengths) - length
        rows.append(torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths)))
    return torch.stack(rows)


def case(
    name: str, layer: str, options: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = hybridzoo.build(
            layer,
            embed_dim=args.hidden,
            hidden_size=args.hidden,
            output="sequence",
            dropout=0.0,
            **options,
        )
    x = torch.randn(args.batch, args.length, args.hidden)
    grad = torch.randn(args.batch, args.length, args.hidden)
    seq_idx = documents(args.batch, args.length, args.mean_document, args.seed)

    def run(**packing: Any) -> None:
        model.zero_grad(set_to_none=True)
        model(x.detach().requires_grad_(True), **packing).backward(grad)

    times = interleaved({"plain": run, "packed": lambda: run(seq_idx=seq_idx)}, args.repeats)
    plain, packed = times["plain"]["min_ms"], times["packed"]["min_ms"]
    counts = [int(r.max()) + 1 for r in seq_idx]
    return {
        "case": name,
        "layer": layer,
        "options": options,
        "documents_per_row": counts,
        "plain": times["plain"],
        "packed": times["packed"],
        "ratio": packed / plain,
        "cpu_ratio": times["packed"]["cpu_min_ms"] / times["plain"]["cpu_min_ms"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", nargs="+", default=list(CASES), choices=list(CASES))
    add_options(
        p, batch=4, length=4096, hidden=256, mean_document=512.0, seed=0, threads=1, repeats=3
    )
    p.add_argument("--bound", type=float, default=1.2, help="target packed / plain")
    p.add_argument("--out", type=Path, default=RESULTS / "packing.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    rows = []
    print(
        f"B={args.batch} L={args.length} H={args.hidden}, documents of mean length "
        f"{args.mean_document:g}, {args.threads} thread(s), best of {args.repeats} (interleaved)"
    )
    print(f"{'layer':<18} {'docs/row':>9} {'plain ms':>10} {'packed ms':>10} {'ratio':>7}  ok")
    for name in args.layers:
        layer, options = CASES[name]
        row = case(name, layer, options, args)
        row["ok"] = row["ratio"] <= args.bound
        rows.append(row)
        docs = sum(row["documents_per_row"]) / len(row["documents_per_row"])
        print(
            f"{name:<18} {docs:>9.1f} {row['plain']['min_ms']:>10.1f} "
            f"{row['packed']['min_ms']:>10.1f} {row['ratio']:>7.3f}  {'yes' if row['ok'] else 'NO'}"
        )
    result = {
        **meta(batch=args.batch, length=args.length, hidden=args.hidden, repeats=args.repeats),
        "mean_document": args.mean_document,
        "bound": args.bound,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "rows": rows,
    }
    write_json(args.out, result)
    print(f"load average before {load_before}, after {result['load_average_after']}; {args.out}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
