"""``hybridzoo plugins``: every plugin the registry saw, where it came from and what it provides.

For each entry point of the group ``hybridzoo.layers`` (and one row for what was registered at
run time): the plugin's name, its distribution and version, its status (``loaded``, ``failed`` or
``disabled``, with the reason), the layers it provides with their symbols and option prefixes,
and its named patterns. A plugin whose import raises ``SystemExit`` is a failed row; one whose
import is interrupted (Ctrl-C) is named on stderr, with exit status 130.
``--json`` prints the same as one JSON document for tools.

Listing loads each plugin's module (that is where its specs live) but builds nothing: a plugin
that keeps ``torch`` out of its top-level module (imports its layer inside the factory) is listed
without importing torch. The JSON says whether anything imported torch (``torch_imported``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from hybridzoo.errors import PluginError
from hybridzoo.registry import PluginRecord, Registry, get_registry
from hybridzoo.spec import PLUGIN_API_VERSION
from hybridzoo.subcommand import run_alone

__all__ = ["collect", "configure_parser", "format_table", "main", "run"]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``plugins`` subcommand's arguments to ``parser``."""
    parser.description = (
        "List every hybridzoo plugin (entry-point group 'hybridzoo.layers' and run-time "
        "registrations) with its distribution, version, status and layers. Environment: "
        "HYBRIDZOO_DISABLE_PLUGIN_AUTOLOAD=1 loads no entry points, "
        "HYBRIDZOO_DISABLE_PLUGINS=a,b skips plugins, HYBRIDZOO_STRICT_PLUGINS=1 makes a "
        "plugin failure an error."
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--fail-on-error",
        action="store_true",
        help="exit with status 1 when a plugin failed to load (for CI scripts)",
    )


def _layer_info(registry: Registry, name: str) -> dict[str, Any]:
    # listing must work even when a name is contested (using it is the error, not listing it)
    spec = next(s for s in registry.specs() if s.name == name)
    caps = spec.capabilities
    return {
        "name": spec.name,
        "symbol": spec.symbol,
        "option_prefix": spec.option_prefix,
        "description": spec.description,
        "api_version": spec.api_version,
        "causal": caps.causal,
        "stateful": caps.stateful,
        "complexity": caps.complexity,
        "packing": caps.supports_packing,
    }


def _plugin_info(registry: Registry, record: PluginRecord) -> dict[str, Any]:
    info = record.to_dict()
    info["layers"] = [_layer_info(registry, n) for n in record.layers]
    return info


def collect(registry: Registry | None = None) -> dict[str, Any]:
    """Everything ``hybridzoo plugins`` shows, as a JSON-ready dict.

    Raises :class:`~hybridzoo.PluginError` when the registry is strict and a plugin fails.
    """
    from hybridzoo import __version__

    registry = registry or get_registry()
    records = registry.plugins()
    plugins = [_plugin_info(registry, r) for r in records]
    counts = {s: sum(p["status"] == s for p in plugins) for s in ("loaded", "failed", "disabled")}
    return {
        "hybridzoo_version": __version__,
        "plugin_api_version": PLUGIN_API_VERSION,
        "entry_point_group": registry.group,
        "autoload": registry.autoload,
        "strict": registry.strict,
        "disabled": sorted(registry.disabled),
        "plugins": plugins,
        "counts": counts,
        # names, symbols and prefixes two plugins claim: using one of them is an error
        "contested": registry.contested(),
        "torch_imported": "torch" in sys.modules,
    }


def format_table(report: dict[str, Any]) -> str:
    """The human-readable listing of :func:`collect`'s report."""
    header = ("PLUGIN", "DISTRIBUTION", "STATUS", "LAYERS (symbol, option prefix)")
    rows: list[tuple[str, str, str, str]] = []
    notes: dict[int, str] = {}
    for plugin in report["plugins"]:
        dist = plugin["distribution"] or "-"
        if plugin["version"]:
            dist = f"{dist} {plugin['version']}"
        if plugin["name"] == "<runtime>":
            dist = "(registered at run time)"
        layers = [
            f"{layer['name']} ({layer['symbol']}, {layer['option_prefix']}_*)"
            for layer in plugin["layers"]
        ]
        if plugin["patterns"]:
            layers.append(f"named patterns: {', '.join(plugin['patterns'])}")
        layers = layers or ["-"]
        rows.append((plugin["name"], dist, plugin["status"], layers[0]))
        rows.extend(("", "", "", extra) for extra in layers[1:])
        if plugin["error"]:
            notes[len(rows) - 1] = plugin["error"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]

    def line(row: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)) + "  " + row[3]

    disabled = ", ".join(report["disabled"]) or "none"
    out = [
        f"hybridzoo {report['hybridzoo_version']} · plugin API {report['plugin_api_version']} · "
        f"entry-point group {report['entry_point_group']!r}",
        f"autoload {'on' if report['autoload'] else 'off (HYBRIDZOO_DISABLE_PLUGIN_AUTOLOAD)'} · "
        f"strict {'on' if report['strict'] else 'off'} · disabled: {disabled}",
        "",
        line(header).rstrip(),
    ]
    indent = " " * (widths[0] + 2)
    for i, row in enumerate(rows):
        out.append(line(row).rstrip())
        if i in notes:
            for j, text in enumerate(notes[i].splitlines()):
                out.append(f"{indent}{'reason: ' if j == 0 else '        '}{text}")
    if not rows:
        out.append("(no plugins)")
    contested = report.get("contested") or {}
    if contested:
        out.append("")
        out.append("Contested (using these is an error until one plugin is renamed or disabled):")
        for key, why in sorted(contested.items()):
            kind, _, value = key.partition(":")
            out.append(f"  {kind} {value!r}: {why}")
    counts = report["counts"]
    out.append("")
    out.append(
        f"{len(report['plugins'])} plugins: {counts['loaded']} loaded, {counts['failed']} failed, "
        f"{counts['disabled']} disabled"
    )
    return "\n".join(out)


def run(args: argparse.Namespace, *, stdout: TextIO | None = None) -> int:
    """Run ``hybridzoo plugins``; returns the exit status.

    0 on success (a failed plugin is listed, not an error, unless ``--fail-on-error``); 1 when
    strict mode turned a plugin failure into an error, or with ``--fail-on-error`` and a failure;
    130 when interrupted while loading a plugin (the plugin is named).
    """
    stdout = stdout or sys.stdout
    try:
        report = collect()
    except PluginError as exc:
        sys.stderr.write(f"hybridzoo plugins: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        culprit = get_registry().interrupted
        where = (
            f" while loading plugin {culprit.name!r} ({culprit.target}) from distribution "
            f"{culprit.distribution or '?'!r}; skip it with "
            f"HYBRIDZOO_DISABLE_PLUGINS={culprit.name}"
            if culprit is not None
            else ""
        )
        sys.stderr.write(f"hybridzoo plugins: interrupted{where}\n")
        return 130
    if getattr(args, "json", False):
        stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        stdout.write(format_table(report) + "\n")
    problems = [p for p in report["plugins"] if p["error"] and p["status"] != "disabled"]
    if getattr(args, "fail_on_error", False) and problems:
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hybridzoo.plugins_report [--json]`` (the same as ``hybridzoo plugins``)."""
    return run_alone("hybridzoo plugins", configure_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
