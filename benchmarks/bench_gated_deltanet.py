"""The gated_deltanet layer against transformers' ``Qwen3NextGatedDeltaNet`` (its pure-torch
path) with the same weights, side by side: forward and forward+backward at B=4, H=256, L=4096
(4 heads, dk = dv = 64), outputs compared (for information); and time(L=16384) / time(L=1024) at
batch 1 (target <= 18).

    python benchmarks/bench_gated_deltanet.py
    python benchmarks/bench_gated_deltanet.py --length 1024 --scaling-lengths 256 4096
"""

from __future__ import annotations

import argparse
import warnings

import torch
from layer_bench import parser, run
from timing import add_options
from torch import nn

from hybridzoo_plugins.gated_deltanet.convert import (
    qwen3_next_config_kwargs,
    state_dict_to_qwen3_next,
)
from hybridzoo_plugins.gated_deltanet.layer import GatedDeltaNet


def build(args: argparse.Namespace, length: int, batch: int) -> tuple[nn.Module, nn.Module | None]:
    torch.manual_seed(0)
    ours = GatedDeltaNet(
        args.hidden, num_heads=args.heads, head_dim=args.head_dim, chunk_size=args.chunk_size
    )
    if args.no_transformers:
        return ours, None
    import transformers
    from transformers.models.qwen3_next.modeling_qwen3_next import Qwen3NextGatedDeltaNet

    config = transformers.Qwen3NextConfig(
        num_hidden_layers=1, layer_types=["linear_attention"], **qwen3_next_config_kwargs(ours)
    )
    config.rms_norm_eps = ours.o_norm.eps
    warnings.filterwarnings("ignore", message=".*falling back.*")
    theirs = Qwen3NextGatedDeltaNet(config, layer_idx=0)
    theirs.load_state_dict(state_dict_to_qwen3_next(ours))
    return ours, theirs


def main() -> None:
    p = parser(__doc__.split("\n")[0])
    add_options(p, heads=4, head_dim=64, chunk_size=64)
    run("gated_deltanet", p.parse_args(), build)


if __name__ == "__main__":
    main()
