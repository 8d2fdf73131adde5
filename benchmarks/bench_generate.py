"""Greedy generation: a NemotronH-shaped model converted from transformers, hybridzoo's
``HybridLM.generate`` against transformers' own ``generate`` on the same weights, in one run.

A random ``NemotronHForCausalLM`` (hidden 256, 8 blocks: Mamba-2, attention and MLP) is
converted with ``hybridzoo.from_transformers``; both generate ``--new`` tokens greedily after a
``--prompt``-token prompt at each batch size, after a warm-up, in turns (``--rounds`` of each,
the fastest kept).
Prints tokens/s (new tokens over the whole call, prefill included), the ratio, whether the tokens
agree, and the per-token latency against the generated length (mean over windows of steps).
Writes JSON. Example::

    python benchmarks/bench_generate.py --out benchmarks/results/generate.json
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from timing import meta, write_json

import hybridzoo
from hybridzoo.lm.generation import iter_generate

LAYERS = [
    "linear_attention",
    "mlp",
    "linear_attention",
    "full_attention",
    "mlp",
    "linear_attention",
    "mlp",
    "linear_attention",
]


def source_model(vocab_size: int) -> torch.nn.Module:
    """A random NemotronH of hidden size 256 and 8 blocks (float32, eval mode)."""
    import transformers

    config = transformers.NemotronHConfig(
        vocab_size=vocab_size,
        hidden_size=256,
        layers_block_type=LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        intermediate_size=1024,
        ssm_state_size=64,
        mamba_num_heads=8,
        mamba_head_dim=64,
        n_groups=2,
        chunk_size=128,
        eos_token_id=None,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.NemotronHForCausalLM(config).eval()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model


class _Clock:
    """Times of each new token (transformers' streamer protocol: ``put`` per step)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def put(self, value: torch.Tensor) -> None:
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def run_hybridzoo(lm, prompts: torch.Tensor, new: int) -> tuple[float, list[float], torch.Tensor]:
    start = time.perf_counter()
    times, tokens = [], []
    for step in iter_generate(lm, prompts, new):
        tokens.append(step.tokens)
        times.append(time.perf_counter())
    total = time.perf_counter() - start
    return total, [start, *times], torch.stack(tokens, 1)


def run_transformers(model, prompts: torch.Tensor, new: int):
    clock = _Clock()
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            prompts,
            attention_mask=torch.ones_like(prompts),
            max_new_tokens=new,
            min_new_tokens=new,
            do_sample=False,
            streamer=clock,
        )
    total = time.perf_counter() - start
    return total, [start, *clock.times[1:]], out[:, prompts.shape[1] :]  # put(prompt) first


def latency_windows(times: list[float], new: int, windows: int = 8) -> list[dict[str, float]]:
    """Mean milliseconds per token over ``windows`` equal spans of the decoding steps (the
    first step, which includes the prefill, left out)."""
    steps = [b - a for a, b in itertools.pairwise(times[1:])]  # tokens 2..new
    size = max(len(steps) // windows, 1)
    return [
        {"from": 2 + i, "to": 1 + i + len(steps[i : i + size]), "ms": 1e3 * statistics.mean(s)}
        for i in range(0, len(steps), size)
        if (s := steps[i : i + size])
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt", type=int, default=512, help="prompt length")
    parser.add_argument("--new", type=int, default=256, help="tokens generated")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/generate.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    source = source_model(args.vocab)
    lm = hybridzoo.from_transformers(source)
    print(f"converted: {' '.join(lm.config.pattern)}, {lm.param_count():,} parameters", flush=True)
    rows, curves = [], {}
    for batch in args.batch:
        seeded = torch.Generator().manual_seed(batch)
        prompts = torch.randint(args.vocab, (batch, args.prompt), generator=seeded)
        run_hybridzoo(lm, prompts, 2)  # warm-up: kernels compiled and loaded, caches allocated
        run_transformers(source, prompts, 2)
        best: dict[str, tuple] = {}
        for _ in range(args.rounds):
            for name, run in (("hybridzoo", run_hybridzoo), ("transformers", run_transformers)):
                result = run(lm if name == "hybridzoo" else source, prompts, args.new)
                if name not in best or result[0] < best[name][0]:
                    best[name] = result
        ours, theirs = best["hybridzoo"], best["transformers"]
        same = torch.equal(ours[2], theirs[2])
        diverge = (ours[2] != theirs[2]).any(0).nonzero()
        row = {
            "batch": batch,
            "hybridzoo_s": ours[0],
            "transformers_s": theirs[0],
            "hybridzoo_tok_s": batch * args.new / ours[0],
            "transformers_tok_s": batch * args.new / theirs[0],
            "speedup": theirs[0] / ours[0],
            "same_tokens": same,
            "first_difference": None if same else int(diverge[0]),
        }
        rows.append(row)
        curves[batch] = {name: latency_windows(best[name][1], args.new) for name in best}
    print(f"\ngreedy, prompt {args.prompt}, {args.new} new tokens (prefill included)")
    print(f"{'batch':>5}  {'hybridzoo tok/s':>15}  {'transformers tok/s':>18}  ratio  same")
    for r in rows:
        print(
            f"{r['batch']:>5}  {r['hybridzoo_tok_s']:>15.1f}  {r['transformers_tok_s']:>18.1f}  "
            f"{r['speedup']:>4.1f}x  {'yes' if r['same_tokens'] else r['first_difference']}"
        )
    for batch, curve in curves.items():
        print(f"\nms per token by generated position, batch {batch}")
        print(f"{'tokens':>9}  {'hybridzoo':>9}  {'transformers':>12}")
        for a, b in zip(curve["hybridzoo"], curve["transformers"], strict=False):
            print(f"{a['from']:>4}-{a['to']:<4}  {a['ms']:>9.2f}  {b['ms']:>12.2f}")
    info = meta(prompt=args.prompt, new=args.new, vocab=args.vocab, rounds=args.rounds)
    info["command"] = " ".join(["python", *sys.argv])
    data = {"meta": info, "rows": rows, "latency": curves, "pattern": list(lm.config.pattern)}
    write_json(args.out, data)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
