"""Calls from the core into a plugin's spec, with the results checked.

A plugin's formulas (``param_count``, ``state_size``, ``active_param_count``,
``hidden_size_multiple``) are code the core does not control: what they return is checked here,
and a formula or factory that raises is reported as a :class:`~hybridzoo.PluginError` that names
the layer and the distribution that supplied it (the original exception chained).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hybridzoo.errors import HybridZooError, PluginError
from hybridzoo.registry import Registry, get_registry
from hybridzoo.spec import LayerSpec
from hybridzoo.validate import is_integer, plain

__all__ = ["call_formula", "layer_source", "plugin_call", "plugin_error"]


def layer_source(name: str, registry: Registry | None = None) -> tuple[str | None, str]:
    """``(distribution, "from distribution 'x' 1.0")`` for a registered layer; the phrase says
    "registered at run time" for a run-time layer and is empty when the layer is unknown."""
    try:
        distribution, version = (registry or get_registry()).source(name)
    except HybridZooError:
        return None, ""
    if distribution is None:
        return None, "registered at run time"
    return distribution, f"from distribution {distribution!r} {version or ''}".rstrip()


def plugin_error(spec: LayerSpec, problem: str, registry: Registry | None = None) -> PluginError:
    """A :class:`PluginError` ``"layer 'x': <problem> (from distribution 'd' 1.0)"``."""
    distribution, source = layer_source(spec.name, registry)
    message = f"layer {spec.name!r}: {problem}" + (f" ({source})" if source else "")
    return PluginError(message, plugin=spec.name, distribution=distribution)


def plugin_call(
    spec: LayerSpec,
    what: str,
    call: Callable[..., Any],
    *args: Any,
    registry: Registry | None = None,
) -> Any:
    """``call(*args)``: one of the spec's formulas, or a method of the spec that checks one
    (``spec.params``, ``spec.step_state_size``, ``spec.num_sub_blocks``). An exception it raises
    is a :class:`PluginError` naming the layer and its distribution (the original chained)."""
    try:
        return call(*args)
    except PluginError as exc:
        if exc.distribution is not None:
            raise
        text = str(exc).removeprefix(f"layer {spec.name!r}: ")
        raise plugin_error(spec, text, registry) from exc
    except Exception as exc:
        problem = f"its {what} formula raised {type(exc).__name__}: {exc}"
        raise plugin_error(spec, problem, registry) from exc


def call_formula(
    spec: LayerSpec,
    what: str,
    *args: Any,
    registry: Registry | None = None,
    minimum: int = 0,
) -> int:
    """``spec.<what>(*args)`` for a formula the spec does not check itself
    (``active_param_count``, ``hidden_size_multiple``): an integer ``>= minimum`` (a numpy
    integer becomes an ``int``), else a :class:`PluginError` naming the layer."""
    value = plain(plugin_call(spec, what, getattr(spec, what), *args, registry=registry))
    if is_integer(value) and value >= minimum:
        return int(value)
    raise plugin_error(
        spec,
        f"its {what} formula returned {value!r} ({type(value).__name__}), not an integer "
        f">= {minimum}; the plugin must be fixed",
        registry,
    )
