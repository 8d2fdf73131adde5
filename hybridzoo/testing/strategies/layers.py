"""Strategies for one layer: options records, hidden sizes, cases, inputs."""

from __future__ import annotations

import math
from typing import Any

import attrs
import torch
from hypothesis import reject
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from hybridzoo.errors import HybridZooError
from hybridzoo.options import make_options
from hybridzoo.registry import Registry
from hybridzoo.spec import LayerSpec
from hybridzoo.testing.case import LayerCase, layer_case, resolve_options
from hybridzoo.testing.strategies.arguments import (
    BATCHES,
    LENGTHS,
    MAX_HIDDEN,
    SEEDS,
    check_int,
    multiple,
    spec_of,
    strategy,
    unique,
)

__all__ = ["hidden_sizes", "inputs", "layer_cases", "layer_options"]

# pytest hides the kit's own frames from tracebacks: the author sees the failure first
__tracebackhide__ = True


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
    spec = spec_of(spec, registry)
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
        choices[field.name] = unique([field.default, *examples])

    @st.composite
    def draw_options(draw: st.DrawFn) -> Any:
        values = {name: draw(st.sampled_from(vals)) for name, vals in choices.items()}
        try:
            return spec.options(**values)
        except (TypeError, ValueError):
            reject()  # an invalid combination of individually valid examples

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
    spec = spec_of(spec, registry)
    check_int("min_multiple", min_multiple, 1)
    if max_multiple is not None:
        check_int("max_multiple", max_multiple, 1)
        if max_multiple < min_multiple:
            raise InvalidArgument(
                f"max_multiple={max_multiple} must be >= min_multiple={min_multiple}"
            )

    def sizes(record: Any) -> st.SearchStrategy[int]:
        m = multiple(spec, record)
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
    spec = spec_of(spec, registry)
    check_int("batch", batch, 1)
    check_int("length", length, 1)
    check_int("seed", seed, 0)
    if hidden_size is not None:
        check_int("hidden_size", hidden_size, 1)
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
        hidden = draw(hidden_sizes(spec, record) if hidden_size is None else strategy(hidden_size))
        if hidden % multiple(spec, record):
            reject()  # a given hidden size that the drawn options do not allow
        return layer_case(
            spec,
            options=record,
            hidden_size=hidden,
            batch=draw(strategy(batch)),
            length=draw(strategy(length)),
            dtype=dtype,
            seed=draw(strategy(seed)),
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
    check_int("hidden", hidden, 1)
    check_int("batch", batch, 1)
    check_int("length", length, 1)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise InvalidArgument(f"dtype must be a floating torch.dtype, got {dtype!r}")
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale):
        raise InvalidArgument(f"scale must be a finite number, got {scale!r}")

    @st.composite
    def draw_input(draw: st.DrawFn) -> torch.Tensor:
        shape = (draw(strategy(batch)), draw(strategy(length)), draw(strategy(hidden)))
        gen = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
        x = torch.randn(*shape, generator=gen, dtype=torch.float64) * scale
        return x.to(device=device, dtype=dtype)

    return draw_input()
