"""``hybridzoo patterns``: the named patterns, each with its rule (or the layers it lacks)."""

from __future__ import annotations

import argparse

__all__ = ["configure_parser", "run"]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``patterns`` subcommand's arguments to ``parser``."""
    parser.add_argument("-n", "--num-layers", type=int, default=6, help="layers to show (6)")


def run(args: argparse.Namespace) -> int:
    """Print each named pattern at ``--num-layers`` layers, with its rule."""
    from hybridzoo.named_patterns import expand_named_pattern, list_patterns
    from hybridzoo.registry import get_registry

    registry = get_registry()
    for info in list_patterns():
        if info.available:
            names = expand_named_pattern(info.name, args.num_layers)
            symbols = " ".join(registry.get(n).symbol for n in names)
        else:
            symbols = f"(unavailable: needs {', '.join(info.missing)})"
        print(f"{info.name:16} {symbols:24} {info.rule}")
    return 0
