"""Strategies for patterns and whole models (:class:`hybridzoo.HybridConfig`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import attrs
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from hybridzoo.config import HybridConfig
from hybridzoo.errors import HybridZooError
from hybridzoo.registry import Registry, get_registry
from hybridzoo.testing.strategies.arguments import check_int, multiple, strategy
from hybridzoo.testing.strategies.layers import layer_options

__all__ = ["model_configs", "patterns"]

# pytest hides the kit's own frames from tracebacks: the author sees the failure first
__tracebackhide__ = True


def _names(registry: Registry | None, layers: Sequence[str] | None) -> list[str]:
    registry = registry or get_registry()
    if layers is None:
        names = registry.names()
        if not names:
            raise InvalidArgument("no layers are registered to draw patterns from")
        return names
    try:
        return [registry.resolve(n).name for n in layers]
    except HybridZooError as exc:
        raise InvalidArgument(f"layers: {exc}") from exc


def patterns(
    *,
    registry: Registry | None = None,
    min_layers: int = 1,
    max_layers: int = 4,
    layers: Sequence[str] | None = None,
) -> st.SearchStrategy[list[str]]:
    """Patterns (lists of layer names) of ``min_layers..max_layers`` entries.

    Args:
        registry: the registry to draw from (default: the default registry *at draw time*, so a
            test inside ``hybridzoo.use_registry`` sees its layers).
        min_layers, max_layers: bounds on the length (default 1..4).
        layers: draw only these layers (names or symbols, checked when the strategy is made).
    """
    check_int("min_layers", min_layers, 1)
    check_int("max_layers", max_layers, 1)
    if max_layers < min_layers:
        raise InvalidArgument(f"max_layers={max_layers} must be >= min_layers={min_layers}")
    if layers is not None:
        if isinstance(layers, str) or not isinstance(layers, Sequence) or not layers:
            raise InvalidArgument(f"layers must be a non-empty list of layer names, got {layers!r}")
        fixed = _names(registry, layers)
        return st.lists(st.sampled_from(fixed), min_size=min_layers, max_size=max_layers)
    return st.deferred(
        lambda: st.lists(
            st.sampled_from(_names(registry, None)), min_size=min_layers, max_size=max_layers
        )
    )


def _lcm(values: Sequence[int]) -> int:
    out = 1
    for v in values:
        out = out * v // math.gcd(out, v)
    return out


def model_configs(
    *,
    layers: Sequence[str] | None = None,
    pattern: Sequence[str] | st.SearchStrategy[Sequence[str]] | None = None,
    min_layers: int = 1,
    max_layers: int = 4,
    min_layer_types: int = 1,
    max_hidden: int = 32,
    embed_dim: int | st.SearchStrategy[int] | None = None,
    shared_layers: bool = True,
    output: str = "sequence",
    dropout: float = 0.0,
    registry: Registry | None = None,
) -> st.SearchStrategy[HybridConfig]:
    """Validated :class:`hybridzoo.HybridConfig` values for whole models.

    Args:
        layers: the layer types to draw from (names or symbols; default: every registered one
            at draw time), for the pattern and the shared block.
        pattern: a list of layer names or a strategy of them; default: drawn from ``layers``
            with ``min_layers..max_layers`` entries (default 1..4) of at least
            ``min_layer_types`` different types (default 1; capped at the number available).
        max_hidden: the hidden size is drawn among the multiples of every used layer's
            ``hidden_size_multiple`` up to this (at least one multiple).
        embed_dim: an int, a strategy, or ``None`` to draw either ``hidden_size`` itself (no
            input projection) or a size in ``1..max_hidden``.
        shared_layers: also draw (or not) a shared block of one of ``layers``, applied after one
            or two positions.
        output: ``"sequence"`` or ``"last"``. dropout: fixed (default 0.0).
        registry: where layers are looked up (default: the default registry at draw time).
    """
    check_int("min_layers", min_layers, 1)
    check_int("max_layers", max_layers, 1)
    check_int("min_layer_types", min_layer_types, 1)
    check_int("max_hidden", max_hidden, 1)
    if max_layers < min_layers:
        raise InvalidArgument(f"max_layers={max_layers} must be >= min_layers={min_layers}")
    if min_layer_types > max_layers:
        raise InvalidArgument(
            f"min_layer_types={min_layer_types} must be <= max_layers={max_layers}"
        )
    if embed_dim is not None:
        check_int("embed_dim", embed_dim, 1)
    if output not in ("sequence", "last"):
        raise InvalidArgument(f"output must be 'sequence' or 'last', got {output!r}")
    if layers is not None:
        if isinstance(layers, str) or not isinstance(layers, Sequence) or not layers:
            raise InvalidArgument(f"layers must be a non-empty list of layer names, got {layers!r}")
        fixed_pool: list[str] | None = _names(registry, layers)
    else:
        fixed_pool = None

    @st.composite
    def draw_pattern(draw: st.DrawFn, pool: list[str]) -> list[str]:
        kinds = draw(
            st.lists(
                st.sampled_from(pool),
                min_size=min(min_layer_types, len(pool)),
                max_size=min(min_layer_types, len(pool)),
                unique=True,
            )
        )
        extra = draw(
            st.lists(
                st.sampled_from(pool),
                min_size=max(0, min_layers - len(kinds)),
                max_size=max_layers - len(kinds),
            )
        )
        return draw(st.permutations([*kinds, *extra]))

    @st.composite
    def draw_config(draw: st.DrawFn) -> HybridConfig:
        reg = registry or get_registry()
        pool = fixed_pool if fixed_pool is not None else _names(reg, None)
        drawn = draw(draw_pattern(pool) if pattern is None else strategy(pattern))
        names = [reg.resolve(n).name for n in drawn]
        shared: dict[str, list[int]] = {}
        if shared_layers and draw(st.booleans()):
            layer = draw(st.sampled_from(pool))
            positions = draw(
                st.lists(st.integers(1, len(names)), min_size=1, max_size=2, unique=True)
            )
            shared[layer] = sorted(positions)
        used = [reg.get(n) for n in dict.fromkeys([*names, *shared])]
        records = {spec.name: draw(layer_options(spec)) for spec in used}
        step = _lcm([multiple(spec, records[spec.name]) for spec in used])
        k = draw(st.integers(1, max(1, max_hidden // step)))
        hidden = k * step
        embed = (
            draw(st.one_of(st.just(hidden), st.integers(1, max_hidden)))
            if embed_dim is None
            else draw(strategy(embed_dim))
        )
        flat: dict[str, Any] = {}
        for spec in used:
            record = records[spec.name]
            for field in attrs.fields(spec.options):
                flat[f"{spec.option_prefix}_{field.name}"] = getattr(record, field.name)
        return HybridConfig.create(
            names,
            embed_dim=embed,
            hidden_size=hidden,
            dropout=dropout,
            shared_layers=shared or None,
            output=output,
            registry=reg,
            **flat,
        )

    return draw_config()
