"""The checks behind :class:`~hybridzoo.HybridConfig`: every field validated against the
registry, the positions' own options turned into records, stored ones read back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from hybridzoo.dict_backed import DictBacked
from hybridzoo.errors import ConfigError, HybridZooError, OptionError, did_you_mean
from hybridzoo.model_options import MODEL_OPTIONS, check_model_options
from hybridzoo.options import make_options, split_options
from hybridzoo.patterns import shared_layer_entries
from hybridzoo.plugin_calls import call_formula
from hybridzoo.positions import Own, Pattern, PositionOptions, position_records, to_pattern
from hybridzoo.registry import Registry, get_registry
from hybridzoo.spec import LayerSpec

__all__ = ["LayerOptions", "read_own", "validated"]


class LayerOptions(DictBacked):
    """An immutable, hashable mapping ``{layer name: options record}``."""

    __slots__ = ("_data",)

    def __init__(self, items: Mapping[str, Any] = ()) -> None:  # type: ignore[assignment]
        self._data = dict(items)

    def _items(self) -> dict[str, Any]:
        return self._data

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __repr__(self) -> str:
        return f"LayerOptions({self._data!r})"


def _layer_records(
    given: Any, used: list[LayerSpec], registry: Registry, problems: list[str]
) -> dict[str, Any]:
    """Records for ``used`` from ``{layer: record or {field: value}}`` (defaults elsewhere)."""
    records = {spec.name: None for spec in used}
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        problems.append(
            f"layer_options must be a mapping {{layer: options}}, got {type(given).__name__}: "
            f"{given!r:.80}"
        )
        given = {}
    for key, value in given.items():
        try:
            spec = registry.resolve(key)
        except HybridZooError as exc:
            problems.append(f"layer_options: {exc}")
            continue
        if spec.name not in records:
            layers = ", ".join(records)
            problems.append(
                f"layer_options[{key!r}]: the model has no {spec.name} layer (layers: {layers})"
            )
        elif records[spec.name] is not None:
            problems.append(f"layer_options: {spec.name!r} is given twice ({key!r})")
        elif isinstance(value, spec.options):
            records[spec.name] = value
        elif isinstance(value, Mapping):
            records[spec.name], errs = make_options(spec, value)
            problems.extend(errs)
        else:
            problems.append(
                f"layer_options[{key!r}] must be a {spec.options.__name__} record or a mapping "
                f"{{field: value}}, got {type(value).__name__}: {value!r:.80}"
            )
    return {s.name: s.options() if records[s.name] is None else records[s.name] for s in used}


def _shared_mapping(value: Any) -> Any:
    """The frozen form ``(("layer", (2, 4)), ...)`` (a config's own) as a mapping."""
    if isinstance(value, tuple) and all(isinstance(i, tuple) and len(i) == 2 for i in value):
        return dict(value)
    return value


def _with_own(pattern: Pattern, own: PositionOptions | None) -> Pattern:
    """``pattern`` with the positions' own options of a stored config laid over its own."""
    if not own:
        return pattern
    options = [(*o, *own.own(i)) if own.own(i) else o for i, o in enumerate(pattern.options)]
    return attrs.evolve(pattern, options=[tuple(dict(o).items()) for o in options])


def _own_records(
    pattern: Pattern,
    shared_own: Mapping[str, Own],
    layer_options: Mapping[str, Any],
    registry: Registry,
) -> PositionOptions:
    """The validated records of the positions (and shared layers) with options of their own."""
    own, records = position_records(pattern, layer_options, registry)
    mine: dict[Any, Own] = dict(own)
    recs: dict[Any, Any] = dict(records)
    problems = []
    for name, options in shared_own.items():
        try:
            got_own, got = position_records(Pattern([name], [options]), layer_options, registry)
        except HybridZooError as exc:
            problems.append(f"shared layer {str(exc).removeprefix('position 1 ')}")
            continue
        mine[name], recs[name] = got_own[0], got[0]
    if problems:
        raise OptionError(problems)
    return PositionOptions(mine, recs)


def validated(
    pattern: Any,
    model: Mapping[str, Any],
    *,
    records: Any = None,
    flat: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
    own: PositionOptions | None = None,
) -> dict[str, Any]:
    """The checked fields of a config; raises one :class:`OptionError` with every problem (a
    :class:`~hybridzoo.PatternError` pointing at the position for a position's own options)."""
    registry = registry or get_registry()
    resolved = _with_own(to_pattern(pattern, registry), own)
    names = resolved.layers
    problems: list[str] = []
    for key in model:
        if key not in MODEL_OPTIONS:
            problems.append(
                f"unknown model option {key!r}.{did_you_mean(str(key), MODEL_OPTIONS)} "
                f"Model options: {', '.join(MODEL_OPTIONS)}"
            )
    values, errs = check_model_options(model)
    problems.extend(errs)
    shared, shared_own, errs = shared_layer_entries(
        _shared_mapping(model.get("shared_layers")), len(names), registry=registry
    )
    problems.extend(errs)
    if own:
        shared_own = {**{k: own.own(k) for k in own if isinstance(k, str)}, **shared_own}
    twice = sorted({n for n, _ in shared if [m for m, _ in shared].count(n) > 1})
    problems.extend(f"shared_layers: {n!r} is given twice; list its positions once" for n in twice)
    used = [registry.get(n) for n in dict.fromkeys([*names, *(n for n, _ in shared)])]
    layer_options: dict[str, Any] = {}
    if flat is not None or resolved.layer_options:
        flat = {**dict(resolved.layer_options), **(flat or {})}
        if records:
            problems.append("give layer options as records or as keywords, not both")
        try:
            layer_options = split_options(flat, used, registry, extra_valid=MODEL_OPTIONS)
        except OptionError as exc:
            problems.extend(exc.problems)
    else:
        layer_options = _layer_records(records, used, registry, problems)
    if problems:
        raise OptionError(problems)
    position_options = _own_records(resolved, shared_own, layer_options, registry)
    hidden = values.get("hidden_size")
    checked = [(spec.name, layer_options[spec.name]) for spec in used]
    checked += [(n, position_options.record(k)) for k, n in _own_keys(position_options, names)]
    unique = {id(record): (name, record) for name, record in checked}  # records repeat
    for name, record in unique.values():
        spec = registry.get(name)
        if spec.hidden_size_multiple is None:
            continue
        multiple = call_formula(spec, "hidden_size_multiple", record, registry=registry, minimum=1)
        if hidden % multiple:
            problems.append(
                f"hidden_size={hidden} must be a multiple of {multiple} for layer "
                f"{spec.name!r} (set by its options, e.g. a head size); nearest valid: "
                f"{max(multiple, hidden // multiple * multiple)}"
            )
    if problems:
        raise OptionError(problems)
    if values["embed_dim"] is None:
        values["embed_dim"] = hidden
    return {
        "pattern": tuple(names),
        **values,
        "shared_layers": tuple(shared),
        "layer_options": LayerOptions(layer_options),
        "position_options": position_options,
    }


def _own_keys(own: PositionOptions, names: tuple[str, ...]) -> list[tuple[Any, str]]:
    """``(key, layer name)`` of every entry of ``own`` (an index, or a shared layer's name)."""
    return [(k, k if isinstance(k, str) else names[k]) for k in own]


OWN_KEYS = ("position_options", "shared_layer_options")


def read_own(data: Mapping[str, Any], num_layers: int) -> PositionOptions | None:
    """The ``position_options`` (``{"3": {field: value}}``, 1-based) and
    ``shared_layer_options`` (``{layer: {field: value}}``) of a stored config."""
    own: dict[Any, Own] = {}
    for key in OWN_KEYS:
        value = data.get(key, {})
        good = isinstance(value, Mapping) and all(isinstance(v, Mapping) for v in value.values())
        if not good:
            raise ConfigError(f"{key!r} must map to {{field: value}} mappings, got {value!r:.80}")
        for where, options in value.items():
            if key == "position_options":
                if not (isinstance(where, str) and where.isascii() and where.isdigit()):
                    raise ConfigError(
                        f"position_options: keys are 1-based positions, got {where!r}"
                    )
                if not 1 <= int(where) <= num_layers:
                    raise ConfigError(
                        f"position_options: position {where} is outside the pattern's "
                        f"1..{num_layers}"
                    )
                where = int(where) - 1
            own[where] = tuple(options.items())
    return PositionOptions(own) if own else None
