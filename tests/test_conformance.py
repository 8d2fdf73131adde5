"""Every check of the conformance kit on every registered layer.

Parametrized over the registry at collection time: a plugin added later (a builtin or an
installed third-party one) is covered without a new test. Ids are ``<layer>-<check>``.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

import hybridzoo
from hybridzoo.testing import CHECKS, CheckSkipped, parametrize_with_checks
from hybridzoo.testing import strategies as hzst

LAYERS = hybridzoo.get_registry().names()

#: the checks drawn over random options, hidden sizes and shapes
DRAWN_CHECKS = ("shape", "param_count_exact", "causal", "step_equals_parallel", "prefill_then_step")

#: Builtins that break a contract today, each with its cause. Strict: the fix turns the entry
#: into a failure, which says to remove it.
KNOWN_FAILURES: dict[tuple[str, str], str] = {}


def test_every_installed_plugin_loaded() -> None:
    """A plugin that fails to load would silently drop out of the parametrization below."""
    failures = [
        f"{p.name} ({p.distribution}): {p.error}" for p in hybridzoo.get_registry().failures()
    ]
    assert not failures, "\n".join(failures)
    assert LAYERS, "no layer is registered"


@(
    parametrize_with_checks(
        *LAYERS, xfail={k: v for k, v in KNOWN_FAILURES.items() if k[0] in LAYERS}
    )
    if LAYERS
    else pytest.mark.skip(reason="no layer registered")
)
def test_contract(check) -> None:
    check()


@pytest.mark.parametrize("layer", LAYERS)
@given(data=st.data())
def test_contracts_hold_for_drawn_cases(layer: str, data: st.DataObject) -> None:
    """Options drawn from each field's examples, hidden sizes from the layer's multiples, small
    batches and lengths: shape, exact count, causality and step mode hold for each."""
    case = data.draw(
        hzst.layer_cases(layer, batch=st.integers(1, 2), length=st.integers(1, 9)), label="case"
    )
    for name in DRAWN_CHECKS:
        with contextlib.suppress(CheckSkipped):
            CHECKS[name](case)
