"""How long the pattern machinery takes: parsing with the limits, per-position options in a
config, the cost card and budget matching (no torch work: everything is formulas).

    python benchmarks/bench_patterns.py --out benchmarks/results/patterns.json

Each case runs once as a warm-up, then ``--repeat`` rounds, all cases in turn (interleaved).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from timing import interleaved, meta, write_json

import hybridzoo
from hybridzoo.patterns import resolve_pattern

HYBRID_48 = "(M M A{window_size=None} E M M A E)*6"
NEMOTRON = "M-M-M-M*-" * 5 + "M-M-M-M"  # 52 Megatron symbols


def refused(text: str) -> None:
    try:
        resolve_pattern(text)
    except hybridzoo.PatternError:
        return
    raise AssertionError(f"{text!r} was not refused")


def cases() -> dict[str, tuple[str, object]]:
    """``{name: (what it does, callable)}``."""
    small = {"hidden_size": 64, "attention_head_dim": 16}
    return {
        "refuse (M)*100000000": (
            "14 characters asking for 10^8 layers, refused before expansion",
            lambda: refused("(M)*100000000"),
        ),
        "refuse nested 10^10": (
            "52 characters asking for 10^10 layers",
            lambda: refused("((((((((((M)*10)*10)*10)*10)*10)*10)*10)*10)*10)*10"),
        ),
        "parse 99 999 positions": (
            "(M M A{window_size=128})*33333: the cap's worth, with blocks",
            lambda: resolve_pattern("(M M A{window_size=128})*33333"),
        ),
        "config 960 positions": (
            "HybridConfig.create of (M A{window_size=None} E)*320",
            lambda: hybridzoo.HybridConfig.create("(M A{window_size=None} E)*320", **small),
        ),
        "cost 48 layers": (
            f"hybridzoo.cost({HYBRID_48!r}), hidden 256",
            lambda: hybridzoo.cost(HYBRID_48, seq_len=4096),
        ),
        "match params 48 layers": (
            "match_budget(params=50M) of the 48-layer hybrid",
            lambda: hybridzoo.match_budget(HYBRID_48, params=50e6, seq_len=4096),
        ),
        "match FLOPs/token": (
            "match_budget(flops_per_token=1e8) of the 48-layer hybrid",
            lambda: hybridzoo.match_budget(HYBRID_48, flops_per_token=1e8, seq_len=4096),
        ),
        "megatron 52 layers": (
            "parse_pattern of a 52-symbol Nemotron-H-style Megatron string",
            lambda: hybridzoo.parse_pattern(NEMOTRON, dialect="megatron"),
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/patterns.json"))
    args = parser.parse_args()
    table = cases()
    times = interleaved({name: fn for name, (_, fn) in table.items()}, args.repeat)  # type: ignore[misc]
    print(f"{'case':24}  {'min ms':>10}  {'median ms':>10}  what")
    for name, (what, _) in table.items():
        t = times[name]
        print(f"{name:24}  {t['min_ms']:>10.3f}  {t['median_ms']:>10.3f}  {what}")
    payload = {"meta": meta(repeat=args.repeat), "times": times}
    write_json(args.out, payload)
    print(f"load average {payload['meta']['load_average_1min']:.2f}; wrote {args.out}")


if __name__ == "__main__":
    main()
