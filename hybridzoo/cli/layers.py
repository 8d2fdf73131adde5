"""``hybridzoo layers``: the registered layers, their symbols, option prefixes and options."""

from __future__ import annotations

import argparse
import json
from typing import Any

import attrs

__all__ = ["configure_parser", "rows", "run"]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``layers`` subcommand's arguments to ``parser``."""
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def rows() -> list[dict[str, Any]]:
    """One JSON-ready dict per registered layer. ``option_prefix`` is the key
    ``hybridzoo plugins --json`` uses; ``prefix`` (the same value) is deprecated."""
    from hybridzoo.registry import get_registry

    registry = get_registry()
    out = []
    for spec in registry.specs():
        dist, version = registry.source(spec.name)
        options = [
            {
                "name": f"{spec.option_prefix}_{field.name}",
                "default": field.default,
                "doc": field.metadata.get("doc", ""),
            }
            for field in attrs.fields(spec.options)
        ]
        caps = spec.capabilities
        out.append(
            {
                "name": spec.name,
                "symbol": spec.symbol,
                "option_prefix": spec.option_prefix,
                "prefix": spec.option_prefix,
                "description": spec.description,
                "distribution": dist or "(runtime)",
                "version": version,
                "causal": caps.causal,
                "stateful": caps.stateful,
                "positionwise": caps.positionwise,
                "step_mode": caps.step_mode,
                "complexity": caps.complexity,
                "packing": caps.supports_packing,
                "options": options,
            }
        )
    return out


def run(args: argparse.Namespace) -> int:
    """Print the layers (a table, or JSON with ``--json``)."""
    from hybridzoo.registry import get_registry

    listing = rows()
    if args.json:
        print(json.dumps(listing, indent=2, default=repr))
        return 0
    for row in listing:
        source = row["distribution"] + (f" {row['version']}" if row["version"] else "")
        flags = ", ".join(
            flag
            for flag in (
                "causal" if row["causal"] else "non-causal",
                "position-wise" if row["positionwise"] else None,
                "step mode" if row["step_mode"] else "no step mode",
                "packs documents" if row["packing"] else None,
                row["complexity"],
            )
            if flag
        )
        print(
            f"{row['symbol']}  {row['name']}  (prefix {row['option_prefix']}_, from {source}; "
            f"{flags})"
        )
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
