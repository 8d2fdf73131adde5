"""The model options of :func:`hybridzoo.build` as command-line flags, derived from
:class:`hybridzoo.ModelOptions` (``hidden_size`` → ``--hidden-size``), plus ``--shared`` and
``-o/--option`` for layer options. A flag not given is not passed: the library's default holds.
"""

from __future__ import annotations

import argparse
from typing import Any

import attrs

from hybridzoo.cli.values import parse_assignments, parse_shared, parse_value
from hybridzoo.model_options import ModelOptions

__all__ = ["add_model_arguments", "model_options"]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Add a flag per model option, ``--shared LAYER=POS,...`` and ``-o NAME=VALUE``."""
    group = parser.add_argument_group("model options (see hybridzoo.ModelOptions)")
    for field in attrs.fields(ModelOptions):
        if field.name == "shared_layers":
            continue
        doc = field.metadata["doc"].replace("%", "%%")
        group.add_argument(
            _flag(field.name),
            dest=f"model_{field.name}",
            type=parse_value,
            default=argparse.SUPPRESS,
            metavar="VALUE",
            help=f"{doc} (default {field.default!r})",
        )
    group.add_argument(
        "--shared",
        action="append",
        default=[],
        metavar="LAYER=POS,...",
        help="a shared layer applied after these 1-based positions (repeatable)",
    )
    group.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a layer option, e.g. -o conv_kernel_size=8 (repeatable; see `hybridzoo layers`)",
    )


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options given on the command line, as :func:`hybridzoo.build` takes them."""
    out: dict[str, Any] = {}
    for field in attrs.fields(ModelOptions):
        if hasattr(args, f"model_{field.name}"):
            out[field.name] = getattr(args, f"model_{field.name}")
    shared = parse_shared(args.shared)
    if shared is not None:
        out["shared_layers"] = shared
    layer = parse_assignments(args.option, "--option")
    clash = sorted(set(layer) & set(out))
    if clash:
        from hybridzoo.cli.values import UsageError

        raise UsageError(
            f"-o {clash[0]}=...: {clash[0]} is a model option: give it as {_flag(clash[0])}"
        )
    return {**out, **layer}
