"""``hybridzoo check-plugin NAME``: run the conformance kit on a registered layer, print a report.

    $ hybridzoo check-plugin attention
    $ hybridzoo check-plugin mylayer --hidden-size 64 --check shape --check causal
    $ hybridzoo check-plugin mylayer --option window_size=4 --json

Exit status: 0 when no check failed (skips and warnings are fine), 1 when one failed, 2 for a usage
error: a layer that is not registered (the message lists the plugins that failed to load, the
usual cause), an unknown check, an invalid option, a device this machine lacks.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import IO, Any

__all__ = ["configure_parser", "format_table", "run"]

# pytest hides the kit's own frames from tracebacks: the author sees the failure first
__tracebackhide__ = True

_MARK = {"passed": "pass", "failed": "FAIL", "skipped": "skipped"}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add ``check-plugin``'s arguments to ``parser``."""
    parser.description = (
        "Run every contract check of the conformance kit (hybridzoo.testing) on a registered "
        "layer and print pass / FAIL / skipped (with the reason) per check, and the warnings "
        "of each. Exit status: 0 when no check failed, 1 when one failed, 2 when the layer is "
        "not registered or an argument is bad (an unknown check, an invalid option, a device "
        "this machine lacks)."
    )
    parser.add_argument("name", help="the layer's name or symbol (see `hybridzoo layers`)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--hidden-size",
        type=int,
        default=None,
        metavar="N",
        help="hidden size (default: 16 rounded up to the layer's hidden_size_multiple)",
    )
    parser.add_argument(
        "--check",
        action="append",
        dest="checks",
        default=None,
        metavar="NAME",
        help="run only this check (repeatable; default: all)",
    )
    parser.add_argument(
        "--option",
        "-o",
        action="append",
        dest="options",
        default=[],
        metavar="KEY=VALUE",
        help="a layer option (field or <prefix>_<field>), e.g. -o window_size=4 (repeatable)",
    )
    parser.add_argument("--batch", type=int, default=2, help="batch size (default 2)")
    parser.add_argument("--length", type=int, default=11, help="sequence length (default 11)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument(
        "--device", default="cpu", help="a torch device available here: cpu, cuda, cuda:1, mps"
    )


def _parse_options(items: list[str]) -> dict[str, Any]:
    from hybridzoo.cli.values import parse_assignments

    return parse_assignments(items, "--option")


def format_table(results: list[Any]) -> str:
    """The results as an aligned text table: check, result, detail (multi-line details and the
    check's warnings indented under the row), then a one-line summary."""
    width = max([len("check"), *(len(r.check) for r in results)])
    pad = f"{'':<{width}}  {'':<7}  "
    lines = [f"{'check':<{width}}  {'result':<7}  detail", f"{'-' * width}  {'-' * 7}  ------"]
    for r in results:
        detail = (r.reason or "").splitlines() or [""]
        lines.append(f"{r.check:<{width}}  {_MARK[r.status]:<7}  {detail[0]}".rstrip())
        lines.extend(f"{pad}{more}" for more in detail[1:])
        lines.extend(f"{pad}warning: {note}" for note in r.warnings)
    counts = {s: sum(r.status == s for r in results) for s in _MARK}
    summary = f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
    warned = sum(len(r.warnings) for r in results)
    if warned:
        summary += f", {warned} warning{'s' if warned > 1 else ''}"
    lines.append(summary)
    return "\n".join(lines)


def run(args: argparse.Namespace, *, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """Run the checks named in ``args`` (see :func:`configure_parser`); 0 if none failed."""

    from hybridzoo.errors import HybridZooError, UnknownLayerError
    from hybridzoo.registry import get_registry
    from hybridzoo.testing.catalog import select
    from hybridzoo.testing.checks import layer_case
    from hybridzoo.testing.runner import run_case

    out = out or sys.stdout
    err = err or sys.stderr
    registry = get_registry()
    try:
        spec = registry.resolve(args.name)
    except UnknownLayerError as exc:
        print(f"hybridzoo check-plugin: {exc}", file=err)
        for record in registry.failures():
            print(f"  plugin {record.name!r} failed to load: {record.error}", file=err)
        return 2
    try:
        select(args.checks)
        options = _parse_options(args.options)
        sizes = {"hidden_size": args.hidden_size, "batch": args.batch, "length": args.length}
        case = layer_case(
            spec, options=options or None, seed=args.seed, device=args.device, **sizes
        )
    except (HybridZooError, ValueError, TypeError) as exc:
        print(f"hybridzoo check-plugin: error: {exc}", file=err)
        return 2
    results = run_case(case, args.checks)
    distribution, version = registry.source(spec.name)
    failed = any(r.failed for r in results)
    if args.json:
        report = {
            "layer": spec.name,
            "distribution": distribution,
            "version": version,
            "case": {
                "options": {f: getattr(case.options, f) for f in _field_names(case.options)},
                "hidden_size": case.hidden_size,
                "batch": case.batch,
                "length": case.length,
                "dtype": str(case.dtype).replace("torch.", ""),
                "seed": case.seed,
                "device": case.device,
            },
            "passed": not failed,
            "results": [r.to_dict() for r in results],
        }
        print(json.dumps(report, indent=2, default=repr), file=out)
    else:
        source = (
            f"distribution {distribution} {version}" if distribution else "registered at run time"
        )
        print(f"check-plugin {spec.name} ({source})", file=out)
        print(f"case: {case.describe()}", file=out)
        print(format_table(results), file=out)
    return 1 if failed else 0


def _field_names(record: Any) -> list[str]:
    import attrs

    return [f.name for f in attrs.fields(type(record))]
