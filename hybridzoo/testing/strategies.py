"""Hypothesis strategies for layer plugins and hybrid models.

Like ``hypothesis.extra.numpy``: bounds are keyword-only with small defaults, an argument takes a
value or a strategy for that value, and bad arguments raise
``hypothesis.errors.InvalidArgument`` when the strategy is created, not when it is drawn.

    from hypothesis import given
    from hybridzoo.testing import strategies as hzst

    @given(hzst.layer_cases("mylayer"))
    def test_shape(case):
        CHECKS["shape"](case)

Option values come from each field's ``examples`` (declared with ``hybridzoo.option(...,
examples=...)``) plus its default; shrinking goes towards the defaults and the smallest sizes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeVar

import attrs
import torch
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from hybridzoo.config import HybridConfig
from hybridzoo.errors import HybridZooError
from hybridzoo.options import make_options
from hybridzoo.registry import Registry, get_registry
from hybridzoo.spec import LayerSpec
from hybridzoo.testing.checks import LayerCase, layer_case, resolve_options, resolve_spec

__all__ = [
    "hidden_sizes",
    "inputs",
    "layer_cases",
    "layer_options",
    "model_configs",
    "patterns",
]

T = TypeVar("T")

#: Default batch sizes, lengths and seeds of :func:`layer_cases` and :func:`inputs`.
BATCHES = st.integers(1, 3)
LENGTHS = st.integers(1, 13)
SEEDS = st.integers(0, 2**16)

#: Without ``max_multiple``, hidden sizes stay at or below this (but at least one multiple).
MAX_HIDDEN = 32


# -- argument validation -------------------------------------------------------------------------


def _strategy(value: T | st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    return value if isinstance(value, st.SearchStrategy) else st.just(value)


def _int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, st.SearchStrategy):
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgument(
            f"{name} must be an integer >= {minimum} (or a strategy), got {value!r}"
        )


def _spec(spec: LayerSpec | str, registry: Registry | None) -> LayerSpec:
    try:
        return resolve_spec(spec, registry)
    except (HybridZooError, TypeError) as exc:
        raise InvalidArgument(f"spec: {exc}") from exc


def _unique(values: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if not any(v == u and type(v) is type(u) for u in out):
            out.append(v)
    return out


def _multiple(spec: LayerSpec, options: Any) -> int:
    return 1 if spec.hidden_size_multiple is None else int(spec.hidden_size_multiple(options))


# -- layers --------------------------------------------------------------------------------------


def layer_options(
    spec: LayerSpec | str, *, registry: Registry | None = None
) -> st.SearchStrategy[Any]:
    """Options records of ``spec``: each field drawn from its default and its ``examples``.

    Combinations that the options class rejects as a whole (cross-field validation) are
    rejected and redrawn. Shrinks towards the defaults.

    Args:
        spec: a :class:`hybridzoo.LayerSpec`, or a registered layer's name or symbol.
        registry: where a name is looked up (default: the default registry).

    Raises:
        InvalidArgument: an unknown layer, or an example that its field's validator rejects.
    """
    spec = _spec(spec, registry)
    choices: dict[str, list[Any]] = {}
    for field in attrs.fields(spec.options):
        examples = list(field.metadata.get("examples", ()))
        for example in examples:
            _, problems = make_options(spec, {field.name: example})
            if problems:
                raise InvalidArgument(
                    f"layer {spec.name!r}: the example {example!r} of option "
                    f"{spec.option_prefix}_{field.name} is invalid: {'; '.join(problems)}"
                )
        choices[field.name] = _unique([field.default, *examples])

    @st.composite
    def draw_options(draw: st.DrawFn) -> Any:
        values = {name: draw(st.sampled_from(vals)) for name, vals in choices.items()}
        try:
            return spec.options(**values)
        except (TypeError, ValueError):
            st.reject()  # an invalid combination of individually valid examples

    return draw_options()


def hidden_sizes(
    spec: LayerSpec | str,
    options: Any = None,
    *,
    min_multiple: int = 1,
    max_multiple: int | None = None,
    registry: Registry | None = None,
) -> st.SearchStrategy[int]:
    """Hidden sizes that ``spec`` accepts with ``options``: ``k · m`` for ``m`` the layer's
    ``hidden_size_multiple(options)`` (1 when it declares none) and ``min_multiple <= k <=
    max_multiple``.

    Args:
        spec: a spec or a registered layer's name.
        options: ``None`` (defaults), an options record, a mapping, or a strategy of records.
        min_multiple: the smallest ``k`` (default 1).
        max_multiple: the largest ``k`` (default: as many as keep ``H <= 32``, at least
            ``min_multiple``).
    """
    spec = _spec(spec, registry)
    _int("min_multiple", min_multiple, 1)
    if max_multiple is not None:
        _int("max_multiple", max_multiple, 1)
        if max_multiple < min_multiple:
            raise InvalidArgument(
                f"max_multiple={max_multiple} must be >= min_multiple={min_multiple}"
            )

    def sizes(record: Any) -> st.SearchStrategy[int]:
        m = _multiple(spec, record)
        top = max_multiple if max_multiple is not None else max(min_multiple, MAX_HIDDEN // m)
        return st.integers(min_multiple, top).map(lambda k: k * m)

    if isinstance(options, st.SearchStrategy):
        return options.flatmap(sizes)
    try:
        record = resolve_options(spec, options)
    except (HybridZooError, TypeError) as exc:
        raise InvalidArgument(f"options: {exc}") from exc
    return sizes(record)


def layer_cases(
    spec: LayerSpec | str,
    *,
    options: Any = None,
    hidden_size: int | st.SearchStrategy[int] | None = None,
    batch: int | st.SearchStrategy[int] = BATCHES,
    length: int | st.SearchStrategy[int] = LENGTHS,
    dtype: torch.dtype = torch.float64,
    seed: int | st.SearchStrategy[int] = SEEDS,
    device: str = "cpu",
    registry: Registry | None = None,
) -> st.SearchStrategy[LayerCase]:
    """:class:`~hybridzoo.testing.LayerCase` values for ``spec``, to run checks on.

    Args:
        spec: a spec or a registered layer's name.
        options: ``None`` draws :func:`layer_options`; a record, a mapping or a strategy.
        hidden_size: ``None`` draws :func:`hidden_sizes` for the drawn options; an int or a
            strategy (it must fit the layer's ``hidden_size_multiple``).
        batch: default 1..3. length: default 1..13. seed: default 0..65536.
        dtype, device: fixed.
    """
    spec = _spec(spec, registry)
    _int("batch", batch, 1)
    _int("length", length, 1)
    _int("seed", seed, 0)
    if hidden_size is not None:
        _int("hidden_size", hidden_size, 1)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise InvalidArgument(f"dtype must be a floating torch.dtype, got {dtype!r}")
    if options is None:
        option_strategy = layer_options(spec)
    elif isinstance(options, st.SearchStrategy):
        option_strategy = options
    else:
        try:
            option_strategy = st.just(resolve_options(spec, options))
        except (HybridZooError, TypeError) as exc:
            raise InvalidArgument(f"options: {exc}") from exc

    @st.composite
    def draw_case(draw: st.DrawFn) -> LayerCase:
        record = draw(option_strategy)
        hidden = draw(hidden_sizes(spec, record) if hidden_size is None else _strategy(hidden_size))
        if hidden % _multiple(spec, record):
            st.reject()  # a given hidden size that the drawn options do not allow
        return layer_case(
            spec,
            options=record,
            hidden_size=hidden,
            batch=draw(_strategy(batch)),
            length=draw(_strategy(length)),
            dtype=dtype,
            seed=draw(_strategy(seed)),
            device=device,
        )

    return draw_case()


def inputs(
    *,
    hidden: int | st.SearchStrategy[int],
    batch: int | st.SearchStrategy[int] = BATCHES,
    length: int | st.SearchStrategy[int] = LENGTHS,
    dtype: torch.dtype = torch.float64,
    scale: float = 1.0,
    device: str = "cpu",
) -> st.SearchStrategy[torch.Tensor]:
    """Input tensors ``[B, L, hidden]`` of ``scale · N(0, 1)`` values.

    The values come from a drawn seed (hypothesis shrinks the sizes and the seed, not each
    element), so drawing is cheap for any size.
    """
    _int("hidden", hidden, 1)
    _int("batch", batch, 1)
    _int("length", length, 1)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise InvalidArgument(f"dtype must be a floating torch.dtype, got {dtype!r}")
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale):
        raise InvalidArgument(f"scale must be a finite number, got {scale!r}")

    @st.composite
    def draw_input(draw: st.DrawFn) -> torch.Tensor:
        shape = (draw(_strategy(batch)), draw(_strategy(length)), draw(_strategy(hidden)))
        gen = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
        x = torch.randn(*shape, generator=gen, dtype=torch.float64) * scale
        return x.to(device=device, dtype=dtype)

    return draw_input()


# -- patterns and models -------------------------------------------------------------------------


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
    _int("min_layers", min_layers, 1)
    _int("max_layers", max_layers, 1)
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
    _int("min_layers", min_layers, 1)
    _int("max_layers", max_layers, 1)
    _int("min_layer_types", min_layer_types, 1)
    _int("max_hidden", max_hidden, 1)
    if max_layers < min_layers:
        raise InvalidArgument(f"max_layers={max_layers} must be >= min_layers={min_layers}")
    if min_layer_types > max_layers:
        raise InvalidArgument(
            f"min_layer_types={min_layer_types} must be <= max_layers={max_layers}"
        )
    if embed_dim is not None:
        _int("embed_dim", embed_dim, 1)
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
        drawn = draw(draw_pattern(pool) if pattern is None else _strategy(pattern))
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
        multiple = _lcm([_multiple(spec, records[spec.name]) for spec in used])
        k = draw(st.integers(1, max(1, max_hidden // multiple)))
        hidden = k * multiple
        embed = (
            draw(st.one_of(st.just(hidden), st.integers(1, max_hidden)))
            if embed_dim is None
            else draw(_strategy(embed_dim))
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
