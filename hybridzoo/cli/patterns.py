"""``hybridzoo patterns``: the named patterns and the rule of each."""

from __future__ import annotations

import argparse

__all__ = ["configure_parser", "run"]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``patterns`` subcommand's arguments to ``parser``."""
    parser.add_argument("-n", "--num-layers", type=int, default=6, help="layers to show (6)")


def run(args: argparse.Namespace) -> int:
    """Print each named pattern at ``--num-layers`` layers, with its rule."""
    from hybridzoo.patterns import describe_named_patterns, pattern
    from hybridzoo.registry import get_registry

    registry = get_registry()
    for name, rule in describe_named_patterns().items():
        names = pattern(name, args.num_layers)
        symbols = " ".join(registry.get(n).symbol if n in registry else f"<{n}>" for n in names)
        print(f"{name:16} {symbols:24} {rule}")
    return 0
