"""The runner: :func:`run_checks` and :func:`assert_conforms`.

A broken layer never crashes the runner: an exception inside a check is a failed result whose
reason names the exception and the innermost line outside torch (usually the layer's own). The
:class:`~hybridzoo.testing.ConformanceWarning` a check issues become the result's ``warnings``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from typing import Any

import torch

import hybridzoo.testing.contracts  # noqa: F401  (fills CHECKS)
from hybridzoo.registry import Registry
from hybridzoo.spec import LayerSpec
from hybridzoo.testing.case import DEFAULT_BATCH, DEFAULT_LENGTH, LayerCase, layer_case
from hybridzoo.testing.catalog import Check, select
from hybridzoo.testing.results import CheckFailure, CheckResult, CheckSkipped, ConformanceWarning

__all__ = ["assert_conforms", "run_case", "run_checks"]

# pytest hides the kit's own frames from tracebacks: the author sees the failure first
__tracebackhide__ = True


def describe_error(exc: BaseException) -> str:
    """A failure's reason: the message of a :class:`CheckFailure`, else the exception and the
    innermost line outside torch that raised it."""
    if isinstance(exc, CheckFailure):
        return str(exc)
    torch_dir = os.path.dirname(torch.__file__)
    tb = exc.__traceback__
    where = ""
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not filename.startswith(torch_dir):
            where = f" (at {filename}:{tb.tb_lineno})"
        tb = tb.tb_next
    return f"raised {type(exc).__name__}: {exc}{where}"


def run_one(check: Check, case: LayerCase) -> CheckResult:
    """Run one check; its outcome and the :class:`ConformanceWarning` messages it issued (other
    warnings are issued again, unchanged)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            check(case)
        except CheckSkipped as exc:
            status, reason = "skipped", exc.reason
        except Exception as exc:
            status, reason = "failed", describe_error(exc)
        else:
            status, reason = "passed", None
    notes = []
    for w in caught:
        if issubclass(w.category, ConformanceWarning):
            notes.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    return CheckResult(case.name, check.name, status, reason, tuple(dict.fromkeys(notes)))


def run_case(case: LayerCase, checks: Iterable[str] | None = None) -> list[CheckResult]:
    """Run the named checks (default: all) on a case; one result per check, in order."""
    return [run_one(check, case) for check in select(checks)]


def run_checks(
    spec_or_name: LayerSpec | str,
    *,
    options: Any = None,
    hidden_size: int | None = None,
    batch: int = DEFAULT_BATCH,
    checks: Iterable[str] | None = None,
    length: int = DEFAULT_LENGTH,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    device: str | torch.device = "cpu",
    registry: Registry | None = None,
) -> list[CheckResult]:
    """Run checks on one layer and return one :class:`CheckResult` per check, in order.

    Never raises for a broken layer: an exception inside a check (a ``RuntimeError`` from a
    shape mismatch, ...) is a failure whose reason names it. Bad arguments (an unknown check or
    layer, invalid options, a device this machine lacks) raise.

    Args:
        spec_or_name: a :class:`hybridzoo.LayerSpec`, or the name/symbol of a registered layer.
        options: ``None`` (defaults), an options record, or a mapping of option names to values.
        hidden_size: default: 16 rounded up to the layer's ``hidden_size_multiple``.
        checks: names of :data:`CHECKS` to run (default: all).
        batch, length, dtype, seed, device: see :class:`LayerCase`.
        registry: where a name is looked up (default: the default registry).
    """
    select(checks)  # an unknown check name is an error before anything runs
    where = {"dtype": dtype, "seed": seed, "device": device, "registry": registry}
    case = layer_case(
        spec_or_name, options=options, hidden_size=hidden_size, **where, batch=batch, length=length
    )
    return run_case(case, checks)


def assert_conforms(spec_or_name: LayerSpec | str, **kwargs: Any) -> list[CheckResult]:
    """Run :func:`run_checks` (same arguments) and raise one ``AssertionError`` listing every
    failed check; returns the results (passes and skips) when none failed. The checks' warnings
    are issued again as :class:`ConformanceWarning` (pytest shows them)."""
    results = run_checks(spec_or_name, **kwargs)
    for r in results:
        for note in r.warnings:
            warnings.warn(ConformanceWarning(f"{r.check}: {note}"), stacklevel=2)
    failed = [r for r in results if r.failed]
    if failed:
        name = results[0].layer
        lines = "\n".join(f"  - {r.check}: {r.reason}" for r in failed)
        raise AssertionError(
            f"layer {name!r} fails {len(failed)} of {len(results)} conformance checks:\n{lines}"
        )
    return results
