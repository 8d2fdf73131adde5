"""The ``hybridzoo`` command.

Subcommands are listed in :data:`COMMANDS`; each lives in a module with ``configure_parser(parser)``
and ``run(args) -> int``, imported only when that subcommand runs (so ``hybridzoo layers`` and
``hybridzoo plugins`` start without torch).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import sys
from collections.abc import Sequence
from typing import Any

import attrs

__all__ = ["COMMANDS", "main"]

#: name -> (one-line help, module providing configure_parser/run)
COMMANDS: dict[str, tuple[str, str]] = {
    "layers": ("list the registered layers, their symbols, prefixes and options", __name__),
    "show": ("visualise a pattern and count its parameters (no building)", __name__),
    "patterns": ("list the named patterns", __name__),
    "plugins": (
        "list installed plugins, their distributions and status",
        "hybridzoo.plugins_report",
    ),
    "check-plugin": (
        "run the conformance kit on a registered layer",
        "hybridzoo.testing.report",
    ),
    "new-plugin": ("scaffold a new plugin distribution", "hybridzoo.scaffold"),
    "arena": ("train and compare patterns on recall tasks", "hybridzoo.arena.cli"),
}


# -- value parsing -----------------------------------------------------------------------------


def parse_value(text: str) -> Any:
    """``"128"`` → 128, ``"0.5"`` → 0.5, ``"None"`` → None, ``"true"`` → True, else a string."""
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_assignments(items: Sequence[str], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"hybridzoo: {what} must look like key=value, got {item!r}")
        out[key.strip().replace("-", "_")] = parse_value(value)
    return out


def parse_shared(items: Sequence[str]) -> dict[str, list[int]] | None:
    """``["conv=2,4"]`` → ``{"conv": [2, 4]}``."""
    if not items:
        return None
    out: dict[str, list[int]] = {}
    for item in items:
        layer, sep, positions = item.partition("=")
        try:
            out[layer] = [int(p) for p in positions.split(",") if p.strip()]
        except ValueError:
            sep = ""
        if not sep:
            raise SystemExit(f"hybridzoo: --shared takes LAYER=POS[,POS...], got {item!r}")
    return out


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``build`` as command-line flags (shared by several subcommands)."""
    parser.add_argument("--embed-dim", type=int, default=None, help="input width (default: hidden)")
    parser.add_argument("--hidden-size", type=int, default=256, help="residual width (256)")
    parser.add_argument(
        "--shared",
        action="append",
        default=[],
        metavar="LAYER=POS,...",
        help="a shared layer applied after these 1-based positions (repeatable)",
    )
    parser.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a layer option <prefix>_<field>=VALUE, e.g. -o conv_kernel_size=8 (repeatable)",
    )


# -- layers ------------------------------------------------------------------------------------


def _layer_rows() -> list[dict[str, Any]]:
    from hybridzoo.registry import get_registry

    registry = get_registry()
    rows = []
    for spec in registry.specs():
        dist, version = registry.source(spec.name)
        options = []
        for field in attrs.fields(spec.options):
            options.append(
                {
                    "name": f"{spec.option_prefix}_{field.name}",
                    "default": field.default,
                    "doc": field.metadata.get("doc", ""),
                }
            )
        caps = spec.capabilities
        rows.append(
            {
                "name": spec.name,
                "symbol": spec.symbol,
                "prefix": spec.option_prefix,
                "description": spec.description,
                "distribution": dist or "(runtime)",
                "version": version,
                "causal": caps.causal,
                "stateful": caps.stateful,
                "complexity": caps.complexity,
                "options": options,
            }
        )
    return rows


def _configure_layers(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _run_layers(args: argparse.Namespace) -> int:
    from hybridzoo.registry import get_registry

    rows = _layer_rows()
    if args.json:
        print(json.dumps(rows, indent=2, default=repr))
        return 0
    for row in rows:
        source = row["distribution"] + (f" {row['version']}" if row["version"] else "")
        flags = ", ".join(
            x
            for x in (
                "causal" if row["causal"] else "non-causal",
                "step mode" if row["stateful"] else "no step mode",
                row["complexity"],
            )
        )
        print(f"{row['symbol']}  {row['name']}  (prefix {row['prefix']}_, from {source}; {flags})")
        if row["description"]:
            print(f"     {row['description']}")
        for opt in row["options"]:
            print(f"     {opt['name']} = {opt['default']!r}  {opt['doc']}")
    failures = get_registry().failures()
    if failures:
        print(f"\n{len(failures)} plugin(s) failed to load (see `hybridzoo plugins`):")
        for rec in failures:
            print(f"  {rec.name} ({rec.distribution or '?'}): {(rec.error or '').splitlines()[0]}")
    return 0


# -- show --------------------------------------------------------------------------------------


def _configure_show(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "pattern", help='a pattern ("C C P", "(CP)*3": symbols or names) or a named one'
    )
    parser.add_argument(
        "-n", "--num-layers", type=int, default=None, help="layers, for a named pattern"
    )
    add_model_arguments(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _run_show(args: argparse.Namespace) -> int:
    from hybridzoo.counting import param_breakdown, state_size
    from hybridzoo.named_patterns import expand_named_pattern
    from hybridzoo.patterns import named_patterns, visualize

    spec = args.pattern
    if spec in named_patterns():
        if args.num_layers is None:
            raise SystemExit(f"hybridzoo: {spec!r} is a named pattern: give --num-layers N")
        spec = expand_named_pattern(spec, args.num_layers)
    shared = parse_shared(args.shared)
    options = parse_assignments(args.option, "--option")
    kwargs = dict(
        embed_dim=args.embed_dim, hidden_size=args.hidden_size, shared_layers=shared, **options
    )
    rows = param_breakdown(spec, **kwargs)
    total = sum(r.params for r in rows)
    state = state_size(spec, **kwargs)
    if args.json:
        print(
            json.dumps(
                {
                    "rows": [attrs.asdict(r) for r in rows],
                    "total": total,
                    "state_size": state,
                },
                indent=2,
            )
        )
        return 0
    print(visualize(spec, shared_layers=shared))
    print()
    print(f"{'pos':>6}  {'sym':3}  {'layer':14}  {'parameters':>12}")
    for r in rows:
        pos = str(r.position) if r.position is not None else ("shared" if r.shared else "")
        print(f"{pos:>6}  {r.symbol:3}  {r.name:14}  {r.params:>12,}")
    print(f"{'':>6}  {'':3}  {'total':14}  {total:>12,}")
    if state is not None:
        print(f"step-mode state per sequence: {state:,} elements")
    return 0


# -- patterns ----------------------------------------------------------------------------------


def _configure_patterns(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--num-layers", type=int, default=6, help="layers to show (6)")


def _run_patterns(args: argparse.Namespace) -> int:
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


_LOCAL = {
    "layers": (_configure_layers, _run_layers),
    "show": (_configure_show, _run_show),
    "patterns": (_configure_patterns, _run_patterns),
}


# -- entry point -------------------------------------------------------------------------------


def _handlers(command: str) -> tuple[Any, Any]:
    if command in _LOCAL:
        return _LOCAL[command]
    module = importlib.import_module(COMMANDS[command][1])
    return module.configure_parser, module.run


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; only ``command``'s own options are configured (lazy imports)."""
    from hybridzoo import __version__

    parser = argparse.ArgumentParser(
        prog="hybridzoo",
        description="Build, inspect and compare hybrid sequence models made of plugin layers.",
    )
    parser.add_argument("--version", action="version", version=f"hybridzoo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, _) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            _handlers(name)[0](p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    from hybridzoo.errors import HybridZooError

    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if a in COMMANDS), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(_handlers(args.command)[1](args) or 0)
    except HybridZooError as exc:
        print(f"hybridzoo {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
