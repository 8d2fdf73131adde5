"""An opt-in pytest plugin for layer plugin authors.

Enable it with ``pytest -p hybridzoo.testing.pytest_plugin`` or, in a ``conftest.py``::

    pytest_plugins = ["hybridzoo.testing.pytest_plugin"]

It is not registered automatically (no ``pytest11`` entry point), and loading it imports neither
torch nor hypothesis: torch is imported when a check runs.

Fixtures:

``hybridzoo_registry``
    A fresh, strict :class:`hybridzoo.Registry` (a broken installed plugin raises) installed as
    the default registry for the test (``hybridzoo.use_registry``). Its arguments can be set with
    a marker: ``@pytest.mark.hybridzoo_registry(autoload=False)`` gives an empty registry.

``temporary_layer``
    A function ``temporary_layer(spec, *, replace=False) -> spec`` that registers a layer in the
    current default registry for the rest of the test.

The plugin is not needed for :func:`hybridzoo.testing.parametrize_with_checks` (in
:mod:`hybridzoo.testing.parametrize`), which turns one test function into one test per check::

    from hybridzoo.testing import parametrize_with_checks

    @parametrize_with_checks("mylayer")
    def test_mylayer(check):
        check()

Test ids are ``<layer>-<check>`` (``mylayer-step_equals_parallel``); a check that does not apply
is reported as a pytest skip with its reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # pragma: no cover
    from hybridzoo.registry import Registry
    from hybridzoo.spec import LayerSpec

__all__ = ["hybridzoo_registry", "temporary_layer"]

# pytest hides the kit's own frames from tracebacks: the author sees the failure first
__tracebackhide__ = True


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "hybridzoo_registry(**kwargs): keyword arguments of the hybridzoo.Registry that the "
        "hybridzoo_registry fixture creates (default strict=True), e.g. autoload=False",
    )


@pytest.fixture
def hybridzoo_registry(request: pytest.FixtureRequest) -> Iterator[Registry]:
    """A fresh strict registry, installed as the default one for the test."""
    from hybridzoo.registry import Registry, use_registry

    marker = request.node.get_closest_marker("hybridzoo_registry")
    kwargs: dict[str, Any] = {"strict": True, **(marker.kwargs if marker else {})}
    registry = Registry(**kwargs)
    with use_registry(registry):
        yield registry


@pytest.fixture
def temporary_layer() -> Iterator[Callable[..., LayerSpec]]:
    """``temporary_layer(spec, *, replace=False)``: register ``spec`` until the test ends."""
    from hybridzoo.registry import get_registry

    with contextlib.ExitStack() as stack:

        def register(spec: LayerSpec, *, replace: bool = False) -> LayerSpec:
            stack.enter_context(get_registry().registered(spec, replace=replace))
            return spec

        yield register
