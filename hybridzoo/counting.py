"""Exact sizes from the plugins' formulas, without building anything (no torch needed).

A model has: an input projection ``embed_dim·H + H`` when ``embed_dim != H``; per pattern entry
(and once per shared layer) the bodies' parameters from the plugin's ``param_count`` plus one
norm per sub-block; a final norm. A LayerNorm has ``2·H`` parameters, an RMSNorm ``H``.

Every number a plugin's formula returns is checked (an integer >= 0, ``None`` only for a state
that grows with the sequence); anything else is a :class:`~hybridzoo.PluginError` naming the
layer and its distribution.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import attrs

from hybridzoo.config import HybridConfig, config_of
from hybridzoo.errors import OptionError, did_you_mean
from hybridzoo.model_options import norm_param_count, with_model_options
from hybridzoo.options import make_options, option_table
from hybridzoo.patterns import PatternLike, resolve_pattern
from hybridzoo.plugin_calls import call_formula, plugin_call, plugin_error
from hybridzoo.registry import Registry, get_registry

__all__ = [
    "LayerCount",
    "active_param_count",
    "param_breakdown",
    "param_count",
    "scale_layer_options",
    "state_numel",
    "state_size",
]


@attrs.frozen
class LayerCount:
    """One row of :func:`param_breakdown`."""

    position: int | None  # 1-based pattern position; None for the model-level rows
    name: str  # layer name, or "input_proj" / "final_norm"
    symbol: str
    params: int
    shared: bool = False


def _block_params(
    config: HybridConfig, name: str, index: int | None, registry: Registry, *, active: bool
) -> int:
    spec = registry.get(name)
    H = config.hidden_size
    options = config.options_of(name, index)
    if active and spec.active_param_count is not None:
        body = call_formula(spec, "active_param_count", options, H, registry=registry)
    else:
        body = plugin_call(spec, "param_count", spec.params, options, H, registry=registry)
    count = plugin_call(spec, "sub_blocks", spec.num_sub_blocks, options, registry=registry)
    return body + count * norm_param_count(config.norm, H)


def _breakdown(
    pattern: PatternLike | HybridConfig,
    registry: Registry | None,
    options: dict[str, Any],
    *,
    active: bool,
) -> list[LayerCount]:
    registry = registry or get_registry()
    config = config_of(pattern, options, registry)
    H = config.hidden_size
    rows: list[LayerCount] = []
    if config.embed_dim != H:
        rows.append(LayerCount(None, "input_proj", "", config.embed_dim * H + H))
    entries = [(i, name) for i, name in enumerate(config.pattern)]
    entries += [(None, name) for name, _ in config.shared_layers]
    for i, name in entries:
        params = _block_params(config, name, i, registry, active=active)
        position = None if i is None else i + 1
        symbol = registry.get(name).symbol
        rows.append(LayerCount(position, name, symbol, params, shared=i is None))
    rows.append(LayerCount(None, "final_norm", "", norm_param_count(config.norm, H)))
    return rows


@with_model_options
def param_breakdown(
    pattern: PatternLike | HybridConfig, *, registry: Registry | None = None, **options: Any
) -> list[LayerCount]:
    """Per-layer parameter counts (the same arguments as :func:`hybridzoo.build`).

    ``embed_dim`` defaults to ``hidden_size`` here (no input projection).
    """
    return _breakdown(pattern, registry, options, active=False)


@with_model_options
def param_count(
    pattern: PatternLike | HybridConfig, *, registry: Registry | None = None, **options: Any
) -> int:
    """The exact number of parameters of ``build(pattern, **options)``, without building it.

    Shared layers are counted once. ``embed_dim`` defaults to ``hidden_size``.
    """
    return sum(row.params for row in _breakdown(pattern, registry, options, active=False))


@with_model_options
def active_param_count(
    pattern: PatternLike | HybridConfig, *, registry: Registry | None = None, **options: Any
) -> int:
    """Parameters used per token: :func:`param_count` with each layer's
    ``spec.active_param_count`` where it declares one (a mixture of experts)."""
    return sum(row.params for row in _breakdown(pattern, registry, options, active=True))


@with_model_options
def state_numel(
    pattern: PatternLike | HybridConfig, *, registry: Registry | None = None, **options: Any
) -> int | None:
    """Elements (numel) of the step-mode state of one sequence, summed over the blocks:
    what ``init_state(1)`` holds. ``None`` if a layer declares no formula, or its state grows
    with the sequence. A shared layer applied k times holds k states.
    """
    registry = registry or get_registry()
    config = config_of(pattern, options, registry)
    total = 0
    for name, index in config.schedule():
        spec = registry.get(name)
        record = config.options_of(name, index)
        size = plugin_call(
            spec, "state_size", spec.step_state_size, record, config.hidden_size, registry=registry
        )
        if size is None:  # no formula, or a state that grows with the sequence
            return None
        total += size
    return total


def state_size(
    pattern: PatternLike | HybridConfig, *, registry: Registry | None = None, **options: Any
) -> int | None:
    """Deprecated alias of :func:`state_numel` (the name read like an SSM's state size N)."""
    warnings.warn(
        "hybridzoo.state_size is deprecated: use hybridzoo.state_numel (elements of step-mode "
        "state per sequence)",
        DeprecationWarning,
        stacklevel=2,
    )
    return state_numel(pattern, registry=registry, **options)


def _scaled(spec: Any, record: Any, hidden_size: int, seq_len: int | None, registry: Registry):
    try:
        scaled = spec.scale_options(record, hidden_size, seq_len=seq_len)
    except Exception as exc:
        raise plugin_error(
            spec, f"its scale_options raised {type(exc).__name__}: {exc}", registry
        ) from exc
    if not isinstance(scaled, spec.options):
        raise plugin_error(
            spec,
            f"its scale_options must return a {spec.options.__name__} record, got {scaled!r:.80}",
            registry,
        )
    return scaled


def scale_layer_options(
    pattern: PatternLike,
    hidden_size: int,
    *,
    seq_len: int | None = None,
    user_options: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
) -> dict[str, Any]:
    """Layer options sized for a model of width ``hidden_size``, for every layer of ``pattern``.

    Each layer's ``spec.scale_options(options, hidden_size, seq_len=seq_len)`` (when it declares
    one) sizes its options record, which starts from the user's values; then the fields the user
    set are restored, so ``user_options`` always win. Options of layers absent from ``pattern``
    are left out (one set of user options can serve several patterns); an option of no
    registered layer is an :class:`~hybridzoo.OptionError` with the close matches.

    Returns the flat ``<prefix>_<field>`` options that differ from the defaults, plus every user
    option of the pattern's layers: what to pass to :func:`hybridzoo.build` with ``hidden_size``.
    """
    registry = registry or get_registry()
    specs = [registry.get(n) for n in dict.fromkeys(resolve_pattern(pattern, registry=registry))]
    user = dict(user_options or {})
    known = option_table(registry.specs())
    unknown = [k for k in user if k not in known]
    if unknown:
        raise OptionError(
            [
                f"unknown layer option {k!r}.{did_you_mean(k, known)} Layer options here: "
                + ", ".join(f"{s.option_prefix}_*" for s in specs)
                for k in unknown
            ]
        )
    table = option_table(specs)
    out: dict[str, Any] = {}
    for spec in specs:
        given = {table[k][1]: v for k, v in user.items() if k in table and table[k][0] is spec}
        record, problems = make_options(spec, given)
        if problems:
            raise OptionError(problems)
        if spec.scale_options is not None:
            record = _scaled(spec, record, hidden_size, seq_len, registry)
            record = attrs.evolve(record, **given)
        defaults = attrs.asdict(spec.options(), recurse=False)
        for key, value in attrs.asdict(record, recurse=False).items():
            if key in given or defaults[key] != value:
                out[f"{spec.option_prefix}_{key}"] = value
    return out
