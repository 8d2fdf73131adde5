"""transformers' hybrid layer lists and per-model configuration fields.

Most transformers hybrids build each decoder layer as one mixer and then its own feed-forward
(dense, or a mixture of experts); NemotronH (like Megatron) lists the feed-forwards as layers of
their own. A hybridzoo pattern lists every sub-layer, so a folded decoder layer is two positions,
the mixer then its feed-forward. Layer types mean different layers in different models
(``linear_attention`` is a Mamba-1 mixer in Jamba, a Mamba-2 one in NemotronH and Bamba, Gated
DeltaNet in Qwen3-Next): the plugins' notations say which, per ``model_type``, and which layers
are a decoder layer's dense and sparse feed-forward (:attr:`~hybridzoo.notation.Notation.role`).

:data:`MODELS` (transformers' own rules, ``configuration_<model>.py``):

- ``nemotron_h``: ``layers_block_type`` (alias ``layer_types``; the legacy
  ``hybrid_override_pattern`` is read in Megatron's symbols), every entry a layer;
- ``jamba``: attention where ``i % attn_layer_period == attn_layer_offset``, else Mamba; the
  feed-forward sparse where ``i % expert_layer_period == expert_layer_offset`` (and
  ``num_experts > 1``), else dense;
- ``bamba``: attention at ``attn_layer_indices``, else Mamba-2; every feed-forward dense;
- ``qwen3_next``: ``layer_types``, or full attention where ``(i + 1) % full_attention_interval
  == 0`` (default 4); the feed-forward sparse where ``i`` is not in ``mlp_only_layers``,
  ``num_experts > 0`` and ``(i + 1) % decoder_sparse_step == 0``, else dense.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import reduce
from typing import Any

import attrs

from hybridzoo.dialects import build_pattern, gather_settings, notation_table, position_notation
from hybridzoo.errors import PatternError, did_you_mean
from hybridzoo.grammar import MAX_POSITIONS
from hybridzoo.notation import notations_for
from hybridzoo.positions import Pattern
from hybridzoo.registry import Registry

__all__ = ["MODELS", "format_transformers", "parse_transformers"]

FULL, LINEAR = "full_attention", "linear_attention"
DENSE, SPARSE = "dense", "sparse"

Layers = tuple[list[str], list[str] | None]  # mixer layer types, feed-forward roles (None: listed)


@attrs.frozen
class ModelRule:
    """How one transformers model describes its layers."""

    read: Callable[[Mapping[str, Any]], Layers]
    write: Callable[[list[str], list[str] | None], dict[str, Any]]
    listed: bool = False  # the feed-forwards are layers of their own
    list_key: str | None = None  # the configuration's list of layer types, if it has one


def _count(config: Mapping[str, Any], default: int) -> int:
    n = config.get("num_hidden_layers", default)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_POSITIONS:
        raise PatternError(
            f"num_hidden_layers must be an integer in 1..{MAX_POSITIONS:,}, got {n!r}"
        )
    return n


def _periodic(n: int, period: Any, offset: Any, what: str) -> list[bool]:
    if not (isinstance(period, int) and isinstance(offset, int) and 0 <= offset < period):
        raise PatternError(
            f"{what}_layer_offset ({offset!r}) must be an integer in 0..{what}_layer_period - 1 "
            f"({what}_layer_period={period!r}), as transformers requires"
        )
    return [i % period == offset for i in range(n)]


def _solve_period(flags: list[bool]) -> tuple[int, int]:
    """The largest ``(period, offset)`` with ``flags[i] == (i % period == offset)``, as
    configurations write them (one flagged layer: ``(n, i)``; none: ``(n + 1, n)``)."""
    n = len(flags)
    if any(flags):
        for period in range(n, 0, -1):
            offset = flags.index(True) % period
            if flags == [i % period == offset for i in range(n)]:
                return period, offset
    if sum(flags) > 1:
        raise PatternError(f"these layers are not at i % period == offset: {flags}")
    return n + 1, n


def _read_nemotron(config: Mapping[str, Any]) -> Layers:
    types = config.get("layers_block_type", config.get("layer_types"))
    if types is None:
        raise PatternError(
            "a NemotronH configuration needs layers_block_type (or layer_types, or the legacy "
            "hybrid_override_pattern)"
        )
    return list(types), None


def _read_jamba(config: Mapping[str, Any]) -> Layers:
    n = _count(config, 32)
    period, offset = config.get("attn_layer_period", 8), config.get("attn_layer_offset", 4)
    full = _periodic(n, period, offset, "attn")
    period, offset = config.get("expert_layer_period", 2), config.get("expert_layer_offset", 1)
    experts = _periodic(n, period, offset, "expert")
    sparse = config.get("num_experts", 16) > 1
    return [FULL if a else LINEAR for a in full], [
        SPARSE if e and sparse else DENSE for e in experts
    ]


def _write_jamba(mixers: list[str], roles: list[str] | None) -> dict[str, Any]:
    assert roles is not None
    for i, m in enumerate(mixers):
        if m not in (FULL, LINEAR):
            raise PatternError(f"Jamba's layers are {FULL} or {LINEAR}; layer {i} is {m!r}")
    period, offset = _solve_period([m == FULL for m in mixers])
    e_period, e_offset = _solve_period([r == SPARSE for r in roles])
    return {
        "num_hidden_layers": len(mixers),
        "attn_layer_period": period,
        "attn_layer_offset": offset,
        "expert_layer_period": e_period,
        "expert_layer_offset": e_offset,
    }


def _read_bamba(config: Mapping[str, Any]) -> Layers:
    n = _count(config, 32)
    indices = set(config.get("attn_layer_indices") or ())
    return [FULL if i in indices else LINEAR for i in range(n)], [DENSE] * n


def _write_bamba(mixers: list[str], roles: list[str] | None) -> dict[str, Any]:
    if roles is not None and SPARSE in roles:
        raise PatternError("Bamba's feed-forwards are dense: no mixture of experts")
    return {
        "num_hidden_layers": len(mixers),
        "attn_layer_indices": [i for i, m in enumerate(mixers) if m == FULL],
    }


def _read_qwen3_next(config: Mapping[str, Any]) -> Layers:
    n = _count(config, 48)
    types = config.get("layer_types")
    if types is None:
        k = config.get("full_attention_interval", 4)
        types = [FULL if (i + 1) % k == 0 else LINEAR for i in range(n)]
    only = set(config.get("mlp_only_layers") or ())
    step, experts = config.get("decoder_sparse_step", 1), config.get("num_experts", 512)
    roles = [
        SPARSE if i not in only and experts > 0 and (i + 1) % step == 0 else DENSE
        for i in range(len(types))
    ]
    return list(types), roles


def _write_qwen3_next(mixers: list[str], roles: list[str] | None) -> dict[str, Any]:
    assert roles is not None
    n = len(mixers)
    out: dict[str, Any] = {"num_hidden_layers": n, "layer_types": mixers}
    full = [i for i, m in enumerate(mixers) if m == FULL]
    if full and full == [i for i in range(n) if (i + 1) % (full[0] + 1) == 0]:
        out["full_attention_interval"] = full[0] + 1
    sparse = [i for i, r in enumerate(roles) if r == SPARSE]
    step = reduce(math.gcd, [i + 1 for i in sparse], 0) or 1
    out["decoder_sparse_step"] = step
    out["mlp_only_layers"] = [i for i in range(n) if (i + 1) % step == 0 and i not in sparse]
    if not sparse:
        out["num_experts"] = 0
    return out


#: The transformers models whose pattern fields are read and written.
MODELS: dict[str, ModelRule] = {
    "nemotron_h": ModelRule(
        _read_nemotron,
        lambda types, _: {"layers_block_type": types},
        listed=True,
        list_key="layers_block_type",
    ),
    "jamba": ModelRule(_read_jamba, _write_jamba),
    "bamba": ModelRule(_read_bamba, _write_bamba),
    "qwen3_next": ModelRule(_read_qwen3_next, _write_qwen3_next, list_key="layer_types"),
}


def _rule(model_type: Any) -> ModelRule:
    if model_type not in MODELS:
        hint = did_you_mean(str(model_type), MODELS) if isinstance(model_type, str) else ""
        raise PatternError(
            f"model_type {model_type!r}: transformers' layer types mean different layers in "
            f"different models; the models read here: {', '.join(MODELS)}.{hint}"
        )
    return MODELS[model_type]


def _as_mapping(value: Any) -> Mapping[str, Any] | None:
    if isinstance(value, Mapping):
        return value
    if hasattr(value, "to_dict") and callable(value.to_dict):  # a PretrainedConfig
        return value.to_dict()
    return None


def _legacy_types(config: Mapping[str, Any], registry: Registry, model_type: str) -> list[str]:
    """NemotronH's ``hybrid_override_pattern`` (Megatron's symbols) as its layer types: each
    symbol's layer, written as that layer is in ``model_type``."""
    from hybridzoo.dialects.megatron import parse_megatron

    pattern = parse_megatron(config["hybrid_override_pattern"], registry)
    types = []
    for i, name in enumerate(pattern.layers):
        found = notations_for(registry.get(name).notations, "transformers", model_type)
        if not found:
            raise PatternError(f"hybrid_override_pattern: {model_type} has no name for layer {i}")
        types.append(found[0].token)
    return types


def _by_role(table: Mapping[str, tuple[Any, Any]]) -> dict[str, tuple[Any, Any]]:
    """The feed-forward notations of ``table`` (:func:`notation_table`), by role."""
    return {n.role: (spec, n) for spec, n in table.values() if n.role != "mixer"}


def parse_transformers(value: Any, model_type: str | None, registry: Registry) -> Pattern:
    """A ``layer_types`` list (with ``model_type``) or a configuration as a :class:`Pattern`."""
    config = _as_mapping(value)
    if config is not None:
        given = config.get("model_type")
        if model_type is not None and given is not None and given != model_type:
            raise PatternError(f"model_type={model_type!r} but the configuration is {given!r}")
        model_type = model_type or given
        rule = _rule(model_type)
        if rule.list_key and rule.list_key not in config and "hybrid_override_pattern" in config:
            config = {**config, rule.list_key: _legacy_types(config, registry, str(model_type))}
        mixers, roles = rule.read(config)
    elif isinstance(value, Sequence) and not isinstance(value, str):
        rule = _rule(model_type)
        if rule.list_key is None:
            raise PatternError(
                f"a {model_type} configuration has no list of layer types: give the "
                "configuration (a mapping or a transformers config) instead"
            )
        config = {}
        mixers, roles = rule.read({"num_hidden_layers": len(value), rule.list_key: list(value)})
    else:
        raise PatternError(
            "dialect='transformers' takes a layer_types list (with model_type=...), a "
            f"configuration mapping or a transformers config, got {type(value).__name__}"
        )
    count = len(mixers) * (1 if roles is None else 2)
    if not mixers or count > MAX_POSITIONS:
        raise PatternError(f"a pattern has 1..{MAX_POSITIONS:,} positions, got {count:,}")
    table = notation_table(registry, "transformers", model_type)
    by_role = _by_role(table)
    items = []
    for i, token in enumerate(mixers):
        if token not in table:
            known = ", ".join(f"{t}={spec.name}" for t, (spec, _) in table.items()) or "(none)"
            hint = did_you_mean(str(token), table)
            raise PatternError(
                f"layer {i}: {model_type}'s layer type {token!r} is no installed hybridzoo "
                f"layer.{hint} Layer types of {model_type} here: {known}"
            )
        items.append(table[token])
        if roles is not None:
            if roles[i] not in by_role:
                raise PatternError(
                    f"layer {i}: no installed layer is {model_type}'s {roles[i]} feed-forward"
                )
            items.append(by_role[roles[i]])
    return build_pattern(items, config, dialect="transformers", model_type=model_type)


def format_transformers(config: Any, model_type: str | None, registry: Registry) -> dict[str, Any]:
    """``config``'s pattern as ``model_type``'s configuration fields (and the settings its
    notations take, e.g. ``sliding_window``, ``num_experts``)."""
    rule = _rule(model_type)
    notations, found = [], []
    for i, name in enumerate(config.pattern):
        notation, settings = position_notation(
            registry.get(name), config.options_of(name, i), "transformers", model_type, i
        )
        notations.append(notation)
        found.append(settings)
    settings = gather_settings(found, "transformers")
    if rule.listed:
        return {**rule.write([n.token for n in notations], None), **settings}
    for i in range(0, len(notations), 2):
        pair = notations[i : i + 2]
        if len(pair) < 2 or pair[0].role != "mixer" or pair[1].role == "mixer":
            raise PatternError(
                f"{model_type}'s decoder layers are a mixer then its feed-forward; positions "
                f"{i + 1} and {i + 2} ({' '.join(n.token for n in pair)}) are not"
            )
    mixers = [n.token for n in notations[0::2]]
    return {**rule.write(mixers, [n.role for n in notations[1::2]]), **settings}
