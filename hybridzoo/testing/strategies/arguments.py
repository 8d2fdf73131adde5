"""Argument validation and defaults shared by the strategies (``InvalidArgument`` when a
strategy is made, as ``hypothesis.extra.numpy`` does)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from hybridzoo.errors import HybridZooError
from hybridzoo.registry import Registry
from hybridzoo.spec import LayerSpec
from hybridzoo.testing.case import hidden_multiple, resolve_spec

__all__ = [
    "BATCHES",
    "LENGTHS",
    "MAX_HIDDEN",
    "SEEDS",
    "check_int",
    "multiple",
    "spec_of",
    "strategy",
    "unique",
]

# pytest hides the kit's own frames from tracebacks: the author sees the failure first
__tracebackhide__ = True

T = TypeVar("T")

#: Default batch sizes, lengths and seeds of :func:`layer_cases` and :func:`inputs`.
BATCHES = st.integers(1, 3)
LENGTHS = st.integers(1, 13)
SEEDS = st.integers(0, 2**16)

#: Without ``max_multiple``, hidden sizes stay at or below this (but at least one multiple).
MAX_HIDDEN = 32


def strategy(value: T | st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """``value`` as a strategy (itself if it is one)."""
    return value if isinstance(value, st.SearchStrategy) else st.just(value)


def check_int(name: str, value: Any, minimum: int) -> None:
    """``InvalidArgument`` unless ``value`` is a strategy or an integer ``>= minimum``."""
    if isinstance(value, st.SearchStrategy):
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgument(
            f"{name} must be an integer >= {minimum} (or a strategy), got {value!r}"
        )


def spec_of(spec: LayerSpec | str, registry: Registry | None) -> LayerSpec:
    """The spec (a name looked up in ``registry``), or ``InvalidArgument``."""
    try:
        return resolve_spec(spec, registry)
    except (HybridZooError, TypeError) as exc:
        raise InvalidArgument(f"spec: {exc}") from exc


def unique(values: Sequence[Any]) -> list[Any]:
    """``values`` without repeats (``1`` and ``True`` stay apart)."""
    out: list[Any] = []
    for v in values:
        if not any(v == u and type(v) is type(u) for u in out):
            out.append(v)
    return out


def multiple(spec: LayerSpec, options: Any) -> int:
    """The hidden-size multiple of ``spec`` with ``options`` (1 when it declares none)."""
    return hidden_multiple(spec, options)
