"""What every ``hybridzoo`` command parses the same way (no torch here).

- ``KEY=VALUE`` options (``-o conv_bias=true``, ``--layer-option``, ``check-plugin
  --option``): :func:`parse_assignment`, with values read by :func:`parse_value`;
- shared layers (``--shared conv=2,4``): :func:`parse_shared`;
- modules that register layers at run time (``--import``, ``HYBRIDZOO_IMPORT``):
  :func:`import_modules`.

A bad argument is a :class:`UsageError`; the command exits with status 2 for it.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = [
    "IMPORT_ENV",
    "UsageError",
    "import_modules",
    "parse_assignment",
    "parse_assignments",
    "parse_shared",
    "parse_value",
]

#: environment variable: modules (or ``.py`` files) to import before a command runs, ``a,b``
IMPORT_ENV = "HYBRIDZOO_IMPORT"


class UsageError(argparse.ArgumentTypeError, ValueError):
    """A bad command-line argument (exit status 2). As an ``argparse`` ``type=`` function's
    error, argparse prints its message."""


def parse_value(text: str) -> Any:
    """A command-line value as Python: ``"128"`` → 128, ``"0.5"`` → 0.5, ``"1e-6"`` → 1e-06,
    ``"none"``/``"null"`` → None, ``"true"``/``"false"`` → True/False (any case), ``"inf"``,
    ``"nan"`` → floats, ``"(1, 2)"`` → a tuple (any Python literal); anything else is the
    string itself (``"silu"``)."""
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("inf", "+inf", "-inf", "nan"):
        return float(lowered)
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"conv-kernel-size=8"`` → ``("conv_kernel_size", 8)`` (dashes in the key
    become underscores); also usable as an ``argparse`` ``type=``."""
    key, sep, value = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key:
        raise UsageError(f"expected KEY=VALUE, got {text!r}")
    return key, parse_value(value)


def parse_assignments(items: Sequence[str], what: str = "--option") -> dict[str, Any]:
    """Several ``KEY=VALUE`` items as a dict; a malformed item names the flag ``what``."""
    out: dict[str, Any] = {}
    for item in items:
        try:
            key, value = parse_assignment(item)
        except UsageError as exc:
            raise UsageError(f"{what}: {exc}") from None
        out[key] = value
    return out


def parse_shared(items: Sequence[str]) -> dict[str, list[int]] | None:
    """``["conv=2,4"]`` → ``{"conv": [2, 4]}`` (``None`` when empty)."""
    if not items:
        return None
    out: dict[str, list[int]] = {}
    for item in items:
        layer, sep, positions = item.partition("=")
        try:
            out[layer.strip()] = [int(p) for p in positions.split(",") if p.strip()]
        except ValueError:
            sep = ""
        if not sep or not layer.strip():
            raise UsageError(
                f"--shared takes LAYER=POS[,POS...] (1-based positions), e.g. conv=2,4; "
                f"got {item!r}"
            )
    return out


def _import_one(name: str) -> ModuleType:
    if name.endswith(".py") or os.sep in name:
        path = Path(name)
        if not path.is_file():
            raise UsageError(f"--import {name}: no such file")
        module_name = f"hybridzoo_cli_import_{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise UsageError(f"--import {name}: not a Python file (name it *.py)")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(name)


def import_modules(names: Sequence[str]) -> list[ModuleType]:
    """Import each module name or ``.py`` path (so that the layers it registers at run time
    exist for the command); a failure is a :class:`UsageError` naming it and the cause."""
    modules = []
    for name in names:
        try:
            modules.append(_import_one(name))
        except UsageError:
            raise
        except Exception as exc:
            raise UsageError(f"--import {name} failed: {type(exc).__name__}: {exc}") from exc
    return modules
