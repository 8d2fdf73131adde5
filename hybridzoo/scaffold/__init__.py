"""``hybridzoo new-plugin NAME``: write a complete, working plugin distribution to start from.

The generated folder (default ``./hybridzoo-NAME``) follows the layer-plugin convention (each
option declared once, in the options record that the formulas and the factory take)::

    pyproject.toml              setuptools; entry point NAME = "hybridzoo_NAME" in hybridzoo.layers;
                                the kit's pytest plugin enabled
    README.md                   its options table produced from the spec
    .gitignore
    hybridzoo_NAME/__init__.py  the options record, the LayerSpec and the hook (no torch)
    hybridzoo_NAME/formulas.py  exact param_count and state_size of the record (no torch)
    hybridzoo_NAME/layer.py     the example body (a gated depthwise causal convolution), make_bodies
    hybridzoo_NAME/reference.py its per-position reference loop
    tests/test_NAME.py          the conformance kit in a few lines, and a README check

``pip install -e DIR`` and its tests pass as generated. The templates are package data
(``hybridzoo/scaffold/templates/*.tmpl``) with ``{{placeholders}}``.
"""

from __future__ import annotations

import argparse
import importlib
import keyword
import re
import string
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import attrs

from hybridzoo.scaffold.readme import options_table
from hybridzoo.spec import PLUGIN_API_VERSION, LayerSpec

__all__ = ["FILES", "Scaffold", "configure_parser", "options_table", "plan", "run", "scaffold"]

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_PLACEHOLDER_RE = re.compile(r"\{\{(\w+)\}\}")

#: template file -> path in the generated folder (with placeholders)
FILES: dict[str, str] = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "gitignore.tmpl": ".gitignore",
    "package_init.py.tmpl": "{{package}}/__init__.py",
    "formulas.py.tmpl": "{{package}}/formulas.py",
    "layer.py.tmpl": "{{package}}/layer.py",
    "reference.py.tmpl": "{{package}}/reference.py",
    "test_layer.py.tmpl": "tests/test_{{name}}.py",
}


@attrs.frozen
class Scaffold:
    """What :func:`plan` decided: names and the files to write (``{relative path: text}``)."""

    name: str
    symbol: str
    distribution: str
    package: str
    directory: Path
    files: dict[str, str]


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_") if part)


def _taken() -> tuple[set[str], set[str], set[str]]:
    """Names, symbols and option prefixes of the layers registered now (default registry)."""
    from hybridzoo.registry import get_registry

    specs = get_registry().specs()
    return (
        {s.name for s in specs},
        {s.symbol for s in specs},
        {s.option_prefix for s in specs},
    )


def validate_name(name: str, taken_names: set[str], taken_prefixes: set[str]) -> None:
    """Raise ``ValueError`` unless ``name`` is a new lower-case identifier."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"plugin name {name!r} must be a lower-case identifier: a letter, then letters, "
            "digits or underscores (e.g. 'mylayer', 'long_conv')"
        )
    if keyword.iskeyword(name):
        raise ValueError(f"plugin name {name!r} is a Python keyword; choose another")
    if name in taken_names:
        raise ValueError(
            f"a layer named {name!r} is already registered (see `hybridzoo layers`); "
            "choose another name"
        )
    if name in taken_prefixes:
        raise ValueError(
            f"the option prefix {name!r} is already used by a registered layer; choose another name"
        )


def choose_symbol(name: str, symbol: str | None, taken: set[str]) -> str:
    """``symbol`` checked (one ASCII uppercase letter, free), or the first free letter of
    ``name`` (upper-cased), then of A-Z."""
    if symbol is not None:
        if not (isinstance(symbol, str) and len(symbol) == 1 and symbol.isascii()):
            raise ValueError(f"--symbol must be exactly one ASCII letter, got {symbol!r}")
        if not symbol.isalpha():
            raise ValueError(f"--symbol must be a letter, got {symbol!r}")
        if not symbol.isupper():
            raise ValueError(
                f"--symbol must be an uppercase letter A-Z, got {symbol!r} (try {symbol.upper()!r})"
            )
        if symbol in taken:
            raise ValueError(
                f"the symbol {symbol!r} is already used by a registered layer; taken: "
                f"{', '.join(sorted(taken))}"
            )
        return symbol
    for letter in [c.upper() for c in name if c.isascii() and c.isalpha()]:
        if letter not in taken:
            return letter
    for letter in string.ascii_uppercase:
        if letter not in taken:
            return letter
    raise ValueError("every letter A-Z is taken as a layer symbol; unregister a layer first")


def _template(filename: str) -> str:
    return resources.files("hybridzoo.scaffold").joinpath("templates", filename).read_text()


def render(text: str, values: dict[str, str]) -> str:
    """Replace each ``{{key}}`` with ``values[key]`` (an unknown key is an error)."""

    def sub(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"template placeholder {{{{{key}}}}} has no value")
        return values[key]

    return _PLACEHOLDER_RE.sub(sub, text)


def plan(name: str, directory: str | Path | None = None, symbol: str | None = None) -> Scaffold:
    """Validate the request and render every file in memory (nothing is written).

    Raises ``ValueError`` for a bad or taken name or symbol, and ``FileExistsError`` when
    ``directory`` exists and is not empty.
    """
    from hybridzoo import __version__

    names, symbols, prefixes = _taken()
    validate_name(name, names, prefixes)
    symbol = choose_symbol(name, symbol, symbols)
    distribution = "hybridzoo-" + name.replace("_", "-")
    package = f"hybridzoo_{name}"
    target = Path(directory) if directory is not None else Path(distribution)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise FileExistsError(
            f"{str(target)!r} already exists and is not an empty folder; new-plugin never "
            "overwrites: choose another --dir or remove it"
        )
    version = ".".join(__version__.split(".")[:2]) if __version__ != "0.0.0" else "0.1"
    values = {
        "name": name,
        "symbol": symbol,
        "distribution": distribution,
        "package": package,
        "class_name": f"{_camel(name)}Layer",
        "options_class": f"{_camel(name)}Options",
        "hybridzoo_version": version,
        "api_version": str(PLUGIN_API_VERSION),
    }
    values["options_table"] = "{{options_table}}"  # filled in below, from the generated spec
    files = {render(path, values): render(_template(tmpl), values) for tmpl, path in FILES.items()}
    table = options_table(_generated_spec(files, package))
    files["README.md"] = files["README.md"].replace("{{options_table}}", table)
    return Scaffold(name, symbol, distribution, package, target, files)


@contextmanager
def _importable(root: Path, package: str) -> Iterator[None]:
    """``package`` importable from ``root`` inside the block only; ``sys.modules`` restored."""
    mine = [m for m in sys.modules if m == package or m.startswith(package + ".")]
    saved = {m: sys.modules.pop(m) for m in mine}
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path.remove(str(root))
        for m in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
            del sys.modules[m]
        sys.modules.update(saved)


def _generated_spec(files: dict[str, str], package: str) -> LayerSpec:
    """The ``SPEC`` of the rendered package (imported from a temporary folder: torch-free)."""
    with tempfile.TemporaryDirectory(prefix="hybridzoo-scaffold-") as tmp:
        for rel, text in files.items():
            if rel.startswith(f"{package}/"):
                path = Path(tmp, rel)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        with _importable(Path(tmp), package):
            return importlib.import_module(package).SPEC


def scaffold(name: str, directory: str | Path | None = None, symbol: str | None = None) -> Scaffold:
    """Write a new plugin distribution for the layer ``name``; returns what was written.

    Args:
        name: the layer name (also the option prefix): a new lower-case identifier.
        directory: the folder to create (default ``./hybridzoo-NAME``); it must not exist or be
            empty.
        symbol: the one-letter pattern symbol (default: the first free letter of ``name``).
    """
    made = plan(name, directory, symbol)
    made.directory.mkdir(parents=True, exist_ok=True)
    for rel, text in made.files.items():
        path = made.directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return made


_DESCRIPTION = (
    "Write a new hybridzoo plugin distribution: pyproject.toml with the 'hybridzoo.layers' "
    "entry point, a package with a working example layer (a gated depthwise causal "
    "convolution): its options record, exact formulas, module and reference, a README whose "
    "options table comes from the spec, and tests that run the conformance kit. Then: "
    "pip install -e DIR, hybridzoo check-plugin NAME, pytest DIR."
)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``new-plugin`` subcommand's arguments to ``parser``."""
    parser.description = _DESCRIPTION
    parser.add_argument("name", metavar="NAME", help="layer name, a lower-case identifier")
    parser.add_argument(
        "--dir",
        dest="directory",
        metavar="DIR",
        default=None,
        help="folder to create (default: ./hybridzoo-NAME); never overwritten",
    )
    parser.add_argument(
        "--symbol",
        metavar="X",
        default=None,
        help="one-letter pattern symbol (default: the first free letter of NAME)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``hybridzoo new-plugin``; 0 on success, 2 for a bad name, symbol or folder."""
    try:
        made = scaffold(args.name, args.directory, args.symbol)
    except (ValueError, FileExistsError) as exc:
        sys.stderr.write(f"hybridzoo new-plugin: error: {exc}\n")
        return 2
    from hybridzoo.registry import get_registry

    failed = get_registry().failures()
    if failed and args.symbol is None:
        sys.stderr.write(
            f"hybridzoo new-plugin: note: {len(failed)} installed plugin(s) failed to load "
            f"({', '.join(p.name for p in failed)}); their symbols are unknown, so the chosen "
            f"symbol {made.symbol!r} may clash with one of them (see `hybridzoo plugins`; "
            "change SPEC.symbol if so)\n"
        )
    out = sys.stdout
    out.write(
        f"Created the plugin distribution {made.distribution!r} in {made.directory}/ "
        f"(layer {made.name!r}, symbol {made.symbol!r}, options {made.name}_*):\n"
    )
    for rel in sorted(made.files):
        out.write(f"  {rel}\n")
    where = str(made.directory)
    out.write(
        "Next:\n"
        f'  pip install -e "{where}[test]"\n'
        "  hybridzoo layers\n"
        f"  hybridzoo check-plugin {made.name}\n"
        f"  pytest {where}\n"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``hybridzoo new-plugin`` without the ``hybridzoo`` command (tests, scripts)."""
    parser = argparse.ArgumentParser(prog="hybridzoo new-plugin")
    configure_parser(parser)
    return run(parser.parse_args(argv))
