"""The conformance kit for layer plugins: named contract checks, hypothesis strategies, a pytest
plugin and the ``hybridzoo check-plugin`` command.

    >>> from hybridzoo.testing import assert_conforms
    >>> results = assert_conforms("mylayer")      # raises AssertionError listing every failure

A plugin's whole test file::

    from hybridzoo.testing import parametrize_with_checks

    @parametrize_with_checks("mylayer")
    def test_mylayer(check):
        check()

Stability: the names in :data:`__all__` are the kit's public API, versioned with
:data:`hybridzoo.PLUGIN_API_VERSION` (:data:`API_VERSION` here). Within one API version names and
signatures are only added, never removed or changed: new checks, new optional arguments, new
result fields. A new check can make a layer that cut a corner fail; it never changes what a
passing layer must return. The modules' other names are private. The contracts and their checks
are listed in ``docs/conformance.md``.

Layout: :mod:`~hybridzoo.testing.case` (the case a check runs on), :mod:`~hybridzoo.testing.compare`
(tolerances, comparisons, diagnoses), :mod:`~hybridzoo.testing.catalog` (the check registry and the
contract families), :mod:`~hybridzoo.testing.contracts` (one module per family),
:mod:`~hybridzoo.testing.runner` (``run_checks``), :mod:`~hybridzoo.testing.parametrize` and
:mod:`~hybridzoo.testing.pytest_plugin` (pytest), :mod:`~hybridzoo.testing.report`
(``hybridzoo check-plugin``), :mod:`~hybridzoo.testing.strategies` (hypothesis).

Importing this package imports neither torch nor hypothesis: each name is loaded on first use
(``checks`` and ``run_checks`` need torch, ``strategies`` needs hypothesis, the pytest helpers
need pytest).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hybridzoo.spec import PLUGIN_API_VERSION
from hybridzoo.testing.results import CheckFailure, CheckResult, CheckSkipped, ConformanceWarning

if TYPE_CHECKING:  # pragma: no cover
    from hybridzoo.testing import strategies
    from hybridzoo.testing.checks import (
        CHECKS,
        CONTRACTS,
        Check,
        LayerCase,
        assert_close,
        assert_conforms,
        default_hidden_size,
        layer_case,
        run_checks,
        tolerances,
    )
    from hybridzoo.testing.parametrize import BoundCheck, parametrize_with_checks

#: The plugin API version this kit belongs to (:data:`hybridzoo.PLUGIN_API_VERSION`).
API_VERSION = PLUGIN_API_VERSION

_LAZY = {
    "CHECKS": "hybridzoo.testing.checks",
    "CONTRACTS": "hybridzoo.testing.checks",
    "Check": "hybridzoo.testing.checks",
    "LayerCase": "hybridzoo.testing.checks",
    "assert_close": "hybridzoo.testing.checks",
    "assert_conforms": "hybridzoo.testing.checks",
    "default_hidden_size": "hybridzoo.testing.checks",
    "layer_case": "hybridzoo.testing.checks",
    "run_checks": "hybridzoo.testing.checks",
    "tolerances": "hybridzoo.testing.checks",
    "BoundCheck": "hybridzoo.testing.parametrize",
    "parametrize_with_checks": "hybridzoo.testing.parametrize",
}

__all__ = [
    "API_VERSION",
    "CHECKS",
    "CONTRACTS",
    "BoundCheck",
    "Check",
    "CheckFailure",
    "CheckResult",
    "CheckSkipped",
    "ConformanceWarning",
    "LayerCase",
    "assert_close",
    "assert_conforms",
    "default_hidden_size",
    "layer_case",
    "parametrize_with_checks",
    "run_checks",
    "strategies",
    "tolerances",
]


def __getattr__(name: str) -> Any:
    if name == "strategies":
        return importlib.import_module("hybridzoo.testing.strategies")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hybridzoo.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
