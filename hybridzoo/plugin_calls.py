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

__all__ = ["call_formula", "layer_source", "plugin_error"]


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
    """A :class:`PluginError` ``"layer 'x' (from distribution 'd' 1.0): <problem>"``."""
    distribution, source = layer_source(spec.name, registry)
    who = f"layer {spec.name!r}" + (f" ({source})" if source else "")
    return PluginError(f"{who}: {problem}", plugin=spec.name, distribution=distribution)


def call_formula(
    spec: LayerSpec,
    what: str,
    *args: Any,
    registry: Registry | None = None,
    allow_none: bool = False,
    minimum: int = 0,
) -> int | None:
    """``spec.<what>(*args)``, checked: an integer ``>= minimum`` (a numpy integer becomes an
    ``int``), or ``None`` where ``allow_none``. Anything else, or an exception, is a
    :class:`PluginError` naming the layer, its distribution and the formula."""
    formula: Callable[..., Any] = getattr(spec, what)
    try:
        value = plain(formula(*args))
    except Exception as exc:
        raise plugin_error(
            spec, f"its {what} formula raised {type(exc).__name__}: {exc}", registry
        ) from exc
    if value is None and allow_none:
        return None
    if is_integer(value) and value >= minimum:
        return int(value)
    expected = f"an integer >= {minimum}" + (" or None" if allow_none else "")
    raise plugin_error(
        spec,
        f"its {what} formula returned {value!r} ({type(value).__name__}) for {args[0]!r}; it "
        f"must return {expected}. Fix the plugin's {what}.",
        registry,
    )
