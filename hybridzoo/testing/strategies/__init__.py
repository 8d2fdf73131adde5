"""Hypothesis strategies for layer plugins and hybrid models.

Like ``hypothesis.extra.numpy``: bounds are keyword-only with small defaults, an argument takes a
value or a strategy for that value, and bad arguments raise
``hypothesis.errors.InvalidArgument`` when the strategy is created, not when it is drawn.

    from hypothesis import given
    from hybridzoo.testing import CHECKS
    from hybridzoo.testing import strategies as hzst

    @given(hzst.layer_cases("mylayer"))
    def test_shape(case):
        CHECKS["shape"](case)

Option values come from each field's ``examples`` (declared with ``hybridzoo.option(...,
examples=...)``) plus its default; shrinking goes towards the defaults and the smallest sizes.
Layers: :mod:`~hybridzoo.testing.strategies.layers`; patterns and whole models:
:mod:`~hybridzoo.testing.strategies.models`.
"""

from __future__ import annotations

from hybridzoo.testing.strategies.arguments import BATCHES, LENGTHS, MAX_HIDDEN, SEEDS
from hybridzoo.testing.strategies.layers import hidden_sizes, inputs, layer_cases, layer_options
from hybridzoo.testing.strategies.models import model_configs, patterns

__all__ = [
    "BATCHES",
    "LENGTHS",
    "MAX_HIDDEN",
    "SEEDS",
    "hidden_sizes",
    "inputs",
    "layer_cases",
    "layer_options",
    "model_configs",
    "patterns",
]

# pytest hides the kit's own frames from tracebacks: the author sees the failure first
__tracebackhide__ = True
