"""Exact sizes from the plugins' formulas, without building anything (no torch needed).

A model has: an input projection ``embed_dim·H + H`` when ``embed_dim != H``; per pattern entry
(and once per shared layer) the bodies' parameters from the plugin's ``param_count`` plus one
LayerNorm (``2·H``) per sub-block; a final LayerNorm (``2·H``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from hybridzoo.config import HybridConfig
from hybridzoo.errors import OptionError, did_you_mean
from hybridzoo.options import make_options, option_table
from hybridzoo.patterns import PatternLike, resolve_pattern
from hybridzoo.registry import Registry, get_registry

__all__ = ["LayerCount", "param_breakdown", "param_count", "scale_layer_options", "state_size"]


@attrs.frozen
class LayerCount:
    """One row of :func:`param_breakdown`."""

    position: int | None  # 1-based pattern position; None for the model-level rows
    name: str  # layer name, or "input_proj" / "final_norm"
    symbol: str
    params: int
    shared: bool = False


def _config(
    pattern: PatternLike | HybridConfig, options: dict[str, Any], registry: Registry
) -> HybridConfig:
    if isinstance(pattern, HybridConfig):
        if options:
            return pattern.replace(**options)
        return pattern
    return HybridConfig.create(pattern, registry=registry, **options)


def _block_params(config: HybridConfig, name: str, registry: Registry) -> int:
    spec = registry.get(name)
    H = config.hidden_size
    options = config.layer_options[name]
    return spec.params(options, H) + spec.num_sub_blocks(options) * 2 * H


def param_breakdown(
    pattern: PatternLike | HybridConfig, *, registry: Registry | None = None, **options: Any
) -> list[LayerCount]:
    """Per-layer parameter counts (the same arguments as :func:`hybridzoo.build`).

    ``embed_dim`` defaults to ``hidden_size`` here (no input projection).
    """
    registry = registry or get_registry()
    config = _config(pattern, options, registry)
    H = config.hidden_size
    rows: list[LayerCount] = []
    if config.embed_dim != H:
        rows.append(LayerCount(None, "input_proj", "", config.embed_dim * H + H))
    for i, name in enumerate(config.pattern):
        spec = registry.get(name)
        rows.append(LayerCount(i + 1, name, spec.symbol, _block_params(config, name, registry)))
    for name, _ in config.shared_layers:
        spec = registry.get(name)
        rows.append(
            LayerCount(None, name, spec.symbol, _block_params(config, name, registry), shared=True)
        )
    rows.append(LayerCount(None, "final_norm", "", 2 * H))
    return rows


def param_count(
    pattern: PatternLike | HybridConfig, *, registry: Registry | None = None, **options: Any
) -> int:
    """The exact number of parameters of ``build(pattern, **options)``, without building it.

    Shared layers are counted once. ``embed_dim`` defaults to ``hidden_size``.
    """
    return sum(row.params for row in param_breakdown(pattern, registry=registry, **options))


def state_size(
    pattern: PatternLike | HybridConfig, *, registry: Registry | None = None, **options: Any
) -> int | None:
    """Elements of step-mode state per sequence (``None`` if a layer declares no formula, or its
    state grows with the sequence). A shared layer applied k times holds k states.
    """
    registry = registry or get_registry()
    config = _config(pattern, options, registry)
    total = 0
    for name, _ in config.schedule():
        spec = registry.get(name)
        size = spec.step_state_size(config.layer_options[name], config.hidden_size)
        if size is None:  # no formula, or a state that grows with the sequence
            return None
        total += size
    return total


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
            record = spec.scale_options(record, hidden_size, seq_len=seq_len)
            record = attrs.evolve(record, **given)
        defaults = attrs.asdict(spec.options(), recurse=False)
        for key, value in attrs.asdict(record, recurse=False).items():
            if key in given or defaults[key] != value:
                out[f"{spec.option_prefix}_{key}"] = value
    return out
