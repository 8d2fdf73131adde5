"""The ``hybridzoo`` command.

Each subcommand is a module of this package (listed in :data:`COMMANDS`) with
``configure_parser(parser)`` and ``run(args) -> int``, imported only when that subcommand runs
(so ``hybridzoo layers`` and ``hybridzoo plugins`` start without torch).

``--import MODULE`` (repeatable, before or after the subcommand; or the environment variable
``HYBRIDZOO_IMPORT=a,b``) imports a module or a ``.py`` file first, so that layers it registers
at run time exist for the command: ``hybridzoo --import my_layers show "M X"``.

Exit status: 0 on success, 2 for every usage error (a bad flag or value, an unknown layer or
option), 1 where a command says so (``check-plugin`` with a failing check).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from hybridzoo.cli.model_args import add_model_arguments
from hybridzoo.cli.values import (
    IMPORT_ENV,
    UsageError,
    import_modules,
    parse_assignment,
    parse_assignments,
    parse_shared,
    parse_value,
)

__all__ = [
    "COMMANDS",
    "UsageError",
    "add_model_arguments",
    "build_parser",
    "main",
    "parse_assignment",
    "parse_assignments",
    "parse_shared",
    "parse_value",
]

#: name -> (one-line help, module providing configure_parser/run)
COMMANDS: dict[str, tuple[str, str]] = {
    "layers": ("list the registered layers, their symbols, prefixes and options", "layers"),
    "show": ("visualise a pattern and count its parameters (no building)", "show"),
    "patterns": ("list the named patterns", "patterns"),
    "plugins": ("list installed plugins, their distributions and status", "plugins"),
    "check-plugin": ("run the conformance kit on a registered layer", "check_plugin"),
    "new-plugin": ("scaffold a new plugin distribution", "new_plugin"),
    "arena": ("train and compare patterns on recall tasks", "arena"),
    "generate": ("continue prompts (token ids) with a saved language model", "generate"),
}

_IMPORT_HELP = (
    f"import a module or .py file first (its run-time layers become visible); repeatable; "
    f"also ${IMPORT_ENV}=a,b"
)


def _module(command: str) -> Any:
    return importlib.import_module(f"{__name__}.{COMMANDS[command][1]}")


def _add_import(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=default,
        metavar="MODULE",
        help=_IMPORT_HELP,
    )


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; only ``command``'s own options are configured (lazy imports)."""
    from hybridzoo import __version__

    parser = argparse.ArgumentParser(
        prog="hybridzoo",
        description="Build, inspect and compare hybrid sequence models made of plugin layers.",
    )
    parser.add_argument("--version", action="version", version=f"hybridzoo {__version__}")
    _add_import(parser, [])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, _) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            _module(name).configure_parser(p)
            _add_import(p, argparse.SUPPRESS)
    return parser


def _requested_imports(argv: Sequence[str]) -> list[str]:
    """``--import`` values anywhere in ``argv``, after those of ``HYBRIDZOO_IMPORT``."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    _add_import(pre, [])
    given = pre.parse_known_args(argv)[0].imports
    from_env = [m.strip() for m in os.environ.get(IMPORT_ENV, "").split(",") if m.strip()]
    return [*from_env, *given]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    from hybridzoo.errors import HybridZooError

    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if a in COMMANDS), None)
    try:
        import_modules(_requested_imports(argv))
        parser = build_parser(command)
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse's own usage errors (2), --help and --version (0)
        return exc.code if isinstance(exc.code, int) else 2
    except (UsageError, HybridZooError) as exc:
        print(f"hybridzoo: error: {exc}", file=sys.stderr)
        return 2
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(_module(args.command).run(args) or 0)
    except (UsageError, HybridZooError) as exc:
        print(f"hybridzoo {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
