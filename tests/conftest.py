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
