"""Test-suite configuration: hypothesis profiles (``ci`` when CI is set, else ``dev``)."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# Tests use tiny tensors and run two workers on two cores (pytest -n 2): one thread each avoids
# oversubscription, which costs far more than it gains at these sizes.
torch.set_num_threads(1)

settings.register_profile(
    "ci",
    max_examples=12,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev",
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture
def conv_registry():
    """The default registry for one test: the installed layers plus the toy ``conv`` (symbol C)
    of ``toy_layers``."""
    from toy_layers import conv_spec

    import hybridzoo

    registry = hybridzoo.Registry()
    registry.register(conv_spec())
    with hybridzoo.use_registry(registry):
        yield registry


@pytest.fixture
def conv_ffn_registry():
    """A registry of toy layers only, the current one for one test: ``conv`` (C) and a second
    conv named ``ffn`` (F), for the pattern grammar's tests."""
    from toy_layers import conv_spec

    import hybridzoo

    registry = hybridzoo.Registry(autoload=False)
    registry.register(conv_spec())
    registry.register(conv_spec(name="ffn", symbol="F", prefix="ffn"))
    with hybridzoo.use_registry(registry):
        yield registry


@pytest.fixture
def conv_mlp_registry():
    """A registry of toy layers only, the current one for one test: ``conv`` (C), ``mlp`` (P) and
    ``wide`` (W, a conv whose hidden size must be a multiple of its kernel size), for the
    per-position options' tests."""
    import attrs
    from toy_layers import conv_spec, mlp_spec

    import hybridzoo

    registry = hybridzoo.Registry(autoload=False)
    registry.register(conv_spec())
    registry.register(mlp_spec())
    wide = conv_spec(name="wide", symbol="W")
    registry.register(attrs.evolve(wide, hidden_size_multiple=lambda o: o.kernel_size))
    with hybridzoo.use_registry(registry):
        yield registry
