"""The mamba2 layer against transformers' ``Mamba2Mixer`` (its pure-torch path) with the same
weights, side by side: forward and forward+backward at B=4, H=256, L=4096 (N=128, P=64, one
group: 8 heads), outputs compared; and time(L=16384) / time(L=1024) at batch 1.

Targets: ours >= 4x faster than transformers forward and forward+backward; growth <= 18.

    python benchmarks/bench_mamba2.py --clock cpu     # the issue's configuration, 2 threads
    python benchmarks/bench_mamba2.py --clock cpu --malloc-reuse   # without fresh page faults
    python benchmarks/bench_mamba2.py --length 1024 --scaling-lengths 256 4096
"""

from __future__ import annotations

import argparse
import warnings

import torch
from layer_bench import parser, run
from timing import add_options
from torch import nn

from hybridzoo_plugins.mamba2.convert import mamba2_config_kwargs
from hybridzoo_plugins.mamba2.layer import Mamba2Mixer


def build(args: argparse.Namespace, length: int, batch: int) -> tuple[nn.Module, nn.Module | None]:
    torch.manual_seed(0)
    ours = Mamba2Mixer(
        args.hidden,
        state_size=args.state_size,
        head_dim=args.head_dim,
        num_groups=args.groups,
        chunk_size=args.chunk_size,
    )
    if args.no_transformers:
        return ours, None
    import transformers
    from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer as HFMixer

    config = transformers.Mamba2Config(num_hidden_layers=1, **mamba2_config_kwargs(ours))
    warnings.filterwarnings("ignore", message=".*falling back.*")
    theirs = HFMixer(config, layer_idx=0)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def main() -> None:
    p = parser(__doc__.split("\n")[0], speedup_bound=4.0)
    add_options(p, state_size=128, head_dim=64, groups=1, chunk_size=64)
    run("mamba2", p.parse_args(), build)


if __name__ == "__main__":
    main()
