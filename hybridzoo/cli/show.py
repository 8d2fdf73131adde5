"""``hybridzoo show PATTERN``: the picture of a pattern and its exact size, without building."""

from __future__ import annotations

import argparse
import json

import attrs

from hybridzoo.cli.model_args import add_model_arguments, model_options
from hybridzoo.cli.values import UsageError

__all__ = ["configure_parser", "run"]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``show`` subcommand's arguments to ``parser``."""
    parser.add_argument(
        "pattern", help='a pattern ("C C P", "(CP)*3": symbols or names) or a named one'
    )
    parser.add_argument(
        "-n", "--num-layers", type=int, default=None, help="layers, for a named pattern"
    )
    add_model_arguments(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    """Print the pattern, the parameters per layer and the step-mode state size."""
    from hybridzoo.counting import param_breakdown, state_numel
    from hybridzoo.named_patterns import expand_named_pattern
    from hybridzoo.patterns import named_patterns, visualize

    spec = args.pattern
    if spec in named_patterns():
        if args.num_layers is None:
            raise UsageError(f"{spec!r} is a named pattern: give --num-layers N")
        spec = expand_named_pattern(spec, args.num_layers)
    options = model_options(args)
    rows = param_breakdown(spec, **options)
    total = sum(r.params for r in rows)
    state = state_numel(spec, **options)
    if args.json:
        data = {"rows": [attrs.asdict(r) for r in rows], "total": total, "state_numel": state}
        data["state_size"] = state  # deprecated key, kept for one release
        print(json.dumps(data, indent=2))
        return 0
    print(visualize(spec, shared_layers=options.get("shared_layers")))
    print()
    print(f"{'pos':>6}  {'sym':3}  {'layer':14}  {'parameters':>12}")
    for r in rows:
        pos = str(r.position) if r.position is not None else ("shared" if r.shared else "")
        print(f"{pos:>6}  {r.symbol:3}  {r.name:14}  {r.params:>12,}")
    print(f"{'':>6}  {'':3}  {'total':14}  {total:>12,}")
    if state is not None:
        print(f"step-mode state per sequence: {state:,} elements")
    return 0
