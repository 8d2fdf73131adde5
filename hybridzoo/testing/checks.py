"""The conformance checks, assembled: every contract family of
:mod:`hybridzoo.testing.contracts` registered in :data:`CHECKS`, and the runner.

This module keeps the names it always had (``from hybridzoo.testing.checks import CHECKS,
run_checks, layer_case, ...`` works); the public spelling is ``from hybridzoo.testing import
...``. Where each part lives:

- :mod:`hybridzoo.testing.case`: :class:`LayerCase`, :func:`layer_case` and what a check builds
  from a case;
- :mod:`hybridzoo.testing.compare`: :func:`tolerances`, :func:`assert_close` and the diagnoses;
- :mod:`hybridzoo.testing.catalog`: :class:`Check`, :data:`CHECKS`, the contract families;
- :mod:`hybridzoo.testing.contracts`: one module per contract family;
- :mod:`hybridzoo.testing.runner`: :func:`run_checks`, :func:`assert_conforms`.

Tolerances (see :func:`tolerances`): comparisons between two computations of the same maths
(step vs forward, prefill vs forward, one row vs a batch, fast kernel vs reference) pass when
``|actual - expected| <= atol + rtol * |expected|`` elementwise, with ``atol=1e-8, rtol=1e-6`` in
float64 (the default dtype of a case) and ``atol=1e-4, rtol=1e-3`` in float32. NaN never passes.
Determinism, backward containment and the config round trip are compared exactly.

Every check builds its bodies afresh under ``torch.manual_seed(case.seed)`` inside
``torch.random.fork_rng`` (the caller's random state is left alone), so a check's outcome is
reproducible. On CPU a check runs with one intra-op thread (``torch.set_num_threads(1)``,
restored afterwards): the tensors are tiny and threads only add overhead.

    >>> from hybridzoo.testing import run_checks
    >>> [r.status for r in run_checks("mylayer", checks=["shape", "param_count_exact"])]
    ['passed', 'passed']
"""

from __future__ import annotations

from hybridzoo.testing.case import (
    DEFAULT_BATCH,
    DEFAULT_HIDDEN_TARGET,
    DEFAULT_LENGTH,
    LayerCase,
    default_hidden_size,
    layer_case,
    resolve_options,
    resolve_spec,
)
from hybridzoo.testing.catalog import CHECKS, CONTRACTS, Check
from hybridzoo.testing.compare import assert_close, tolerances
from hybridzoo.testing.contracts.gradients import GRADIENT_MIN_LENGTH
from hybridzoo.testing.runner import assert_conforms, run_checks

__all__ = [
    "CHECKS",
    "CONTRACTS",
    "DEFAULT_BATCH",
    "DEFAULT_HIDDEN_TARGET",
    "DEFAULT_LENGTH",
    "GRADIENT_MIN_LENGTH",
    "Check",
    "LayerCase",
    "assert_close",
    "assert_conforms",
    "default_hidden_size",
    "layer_case",
    "resolve_options",
    "resolve_spec",
    "run_checks",
    "tolerances",
]
