"""Patterns in other projects' notations: :func:`parse_pattern` and :func:`format_pattern`.

Dialects:

- ``"native"``: hybridzoo's own grammar (:mod:`hybridzoo.grammar`); ``*`` repeats, ``->``
  separates, letters are the layers' symbols.
- ``"megatron"``: Megatron-LM's ``--hybrid-layer-pattern`` (:mod:`hybridzoo.dialects.megatron`):
  one symbol per layer, ``|`` pipeline-stage boundaries (kept and written back), ``/``
  multi-token-prediction parts (refused until supported).
- ``"transformers"``: a transformers model's ``layer_types`` list or its configuration
  (:mod:`hybridzoo.dialects.transformers`), with the meaning of each ``model_type``.

Which hybridzoo layer a symbol or layer type is comes from the plugins (``LayerSpec.notations``,
see :mod:`hybridzoo.notation`), never from the core. What a notation means beyond the layer type
(an attention layer without its own feed-forward, a window) becomes options: model-wide where
every position of the layer agrees (``Pattern.layer_options``), else per position. Meaning that
cannot be carried is an error, or a :class:`~hybridzoo.DialectWarning` that says what; never a
silent change.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from hybridzoo.errors import (
    DialectWarning,
    PatternError,
    PluginConflictError,
    did_you_mean,
    user_stacklevel,
)
from hybridzoo.notation import UNSET, Notation, Setting, notations_for
from hybridzoo.positions import Pattern, native_text, to_pattern
from hybridzoo.registry import Registry, get_registry
from hybridzoo.spec import LayerSpec

__all__ = ["DIALECT_NAMES", "coerce_pattern", "format_pattern", "parse_pattern"]

#: The dialects :func:`parse_pattern` and :func:`format_pattern` know.
DIALECT_NAMES = ("native", "megatron", "transformers")


def _check_dialect(dialect: object) -> str:
    if dialect not in DIALECT_NAMES:
        hint = did_you_mean(str(dialect), DIALECT_NAMES)
        raise PatternError(
            f"unknown dialect {dialect!r}.{hint} Dialects: {', '.join(DIALECT_NAMES)}"
        )
    return str(dialect)


def parse_pattern(
    value: Any,
    dialect: str = "native",
    *,
    model_type: str | None = None,
    registry: Registry | None = None,
) -> Pattern:
    """Read a pattern written in ``dialect`` into a :class:`~hybridzoo.positions.Pattern` (what
    :func:`hybridzoo.build` takes, with the options the notation implies).

    ``value`` is a native pattern (any form), a Megatron string (``"M-M*-|M-M-"``), or for
    ``"transformers"`` a ``layer_types`` list (with ``model_type``), a configuration mapping
    or a transformers ``PretrainedConfig`` (its ``model_type`` and pattern fields: Jamba's
    ``attn_layer_period/offset``, Bamba's ``attn_layer_indices``, Qwen3-Next's
    ``full_attention_interval``, ...). Widths are not read: give ``hidden_size`` and the layer
    options when building.
    """
    registry = registry or get_registry()
    dialect = _check_dialect(dialect)
    if dialect == "native":
        if model_type is not None:
            raise PatternError("model_type is for dialect='transformers' only")
        return to_pattern(value, registry)
    if dialect == "megatron":
        from hybridzoo.dialects.megatron import parse_megatron

        pattern = parse_megatron(value, registry)
    else:
        from hybridzoo.dialects.transformers import parse_transformers

        pattern = parse_transformers(value, model_type, registry)
    for note in pattern.notes:
        warnings.warn(note, DialectWarning, stacklevel=user_stacklevel())
    return pattern


def coerce_pattern(
    value: Any, dialect: str = "native", *, model_type: str | None = None, registry: Registry
) -> Any:
    """``value`` itself for the native dialect (any native form), else :func:`parse_pattern`."""
    if _check_dialect(dialect) == "native" and model_type is None:
        return value
    return parse_pattern(value, dialect, model_type=model_type, registry=registry)


def format_pattern(
    pattern: Any,
    dialect: str = "native",
    *,
    model_type: str | None = None,
    registry: Registry | None = None,
    **options: Any,
) -> Any:
    """Write ``pattern`` (any form, a parsed :class:`~hybridzoo.positions.Pattern` or a
    ``HybridConfig``) in ``dialect``: a native string (symbols, a block where a position has
    options of its own), a Megatron string, or for ``"transformers"`` the configuration fields
    of ``model_type`` that describe it.

    ``options`` are the model and layer options as :func:`hybridzoo.build` takes them: a
    position is written with a notation only if its options mean what that notation means (a
    Megatron ``*`` is an attention layer without its own feed-forward). What the notation
    cannot hold is a :class:`~hybridzoo.PatternError` naming the position and the option.
    """
    registry = registry or get_registry()
    dialect = _check_dialect(dialect)
    if dialect == "native":
        if isinstance(pattern, Pattern) and pattern.layer_options:
            pattern = _fold_layer_options(pattern, registry)
        if hasattr(pattern, "entries") and not isinstance(pattern, Pattern):
            pattern = pattern.entries()  # a HybridConfig
        return native_text(to_pattern(pattern, registry), registry)
    from hybridzoo.config import config_of

    config = config_of(pattern, options, registry)
    boundaries = pattern.boundaries if isinstance(pattern, Pattern) else ()
    if dialect == "megatron":
        from hybridzoo.dialects.megatron import format_megatron

        return format_megatron(config, boundaries, registry)
    from hybridzoo.dialects.transformers import format_transformers

    return format_transformers(config, model_type, registry)


def _fold_layer_options(pattern: Pattern, registry: Registry) -> Pattern:
    """The implied model-wide options written into each position's block (native text holds
    per-position options only)."""
    from hybridzoo.options import option_table

    table = option_table(registry.get(n) for n in dict.fromkeys(pattern.layers))
    per_layer: dict[str, dict[str, Any]] = {}
    for key, value in pattern.layer_options:
        spec, field = table[key]
        per_layer.setdefault(spec.name, {})[field] = value
    options = [
        tuple({**per_layer.get(name, {}), **dict(own)}.items())
        for name, own in zip(pattern.layers, pattern.options, strict=True)
    ]
    return attrs.evolve(pattern, options=options, layer_options=())


# -- what the dialect modules share --------------------------------------------------------------


def notation_table(
    registry: Registry, dialect: str, model_type: str | None
) -> dict[str, tuple[LayerSpec, Notation]]:
    """``{token: (spec, notation)}`` for ``dialect`` (and ``model_type``), the most specific
    notation of a token winning; two layers claiming one token equally are a conflict."""
    best: dict[str, tuple[int, LayerSpec, Notation]] = {}
    for spec in registry.specs():
        for notation in spec.notations:
            rank = notation.applies_to(model_type) if notation.dialect == dialect else 0
            if not rank:
                continue
            held = best.get(notation.token)
            if held is not None and held[0] == rank and held[1].name != spec.name:
                raise PluginConflictError(
                    f"the {dialect} notation {notation.token!r}"
                    f"{f' of {model_type}' if model_type else ''} is claimed by the layers "
                    f"{held[1].name!r} and {spec.name!r}"
                )
            if held is None or rank > held[0]:
                best[notation.token] = (rank, spec, notation)
    return {token: (spec, notation) for token, (_, spec, notation) in best.items()}


def build_pattern(
    items: Sequence[tuple[LayerSpec, Notation]],
    context: Mapping[str, Any],
    *,
    dialect: str,
    model_type: str | None = None,
    boundaries: Sequence[int] = (),
    notes: Sequence[str] = (),
    text: str | None = None,
    sources: Sequence[int] = (),
) -> Pattern:
    """A :class:`Pattern` from one ``(spec, notation)`` per position: each notation's options
    (a :class:`~hybridzoo.notation.Setting` read from ``context``), model-wide where every
    position of a layer agrees."""
    own: list[dict[str, Any]] = []
    for _spec, notation in items:
        values = {}
        for field, value in notation.options:
            if isinstance(value, Setting):
                value = context.get(value.key, value.default)
            if value is not UNSET:
                values[field] = value
        own.append(values)
    shared: dict[tuple[str, str], Any] = {}
    for name in dict.fromkeys(spec.name for spec, _ in items):
        mine = [o for (spec, _), o in zip(items, own, strict=True) if spec.name == name]
        for field in dict.fromkeys(f for o in mine for f in o):
            values = [o.get(field, UNSET) for o in mine]
            if all(v is not UNSET and v == values[0] for v in values):
                shared[(name, field)] = values[0]
    layer_options = []
    for (name, field), value in shared.items():
        spec = next(s for s, _ in items if s.name == name)
        layer_options.append((f"{spec.option_prefix}_{field}", value))
    options = [
        tuple((f, v) for f, v in o.items() if (spec.name, f) not in shared)
        for (spec, _), o in zip(items, own, strict=True)
    ]
    found = [n.note for _, n in items if n.note]
    return Pattern(
        layers=[spec.name for spec, _ in items],
        options=options,
        layer_options=tuple(layer_options),
        boundaries=tuple(boundaries),
        dialect=dialect,
        notes=(*notes, *dict.fromkeys(found)),
        text=text,
        sources=tuple((("", s),) for s in sources),
    )


def position_notation(
    spec: LayerSpec, record: Any, dialect: str, model_type: str | None, index: int
) -> tuple[Notation, dict[str, Any]]:
    """The notation of ``dialect`` that writes position ``index`` (a ``spec`` layer with options
    ``record``), and the settings it takes from there; a :class:`PatternError` saying why not."""
    mine = notations_for(spec.notations, dialect, model_type)
    if not mine:
        where = f" for {model_type}" if model_type else ""
        raise PatternError(
            f"position {index + 1} ({spec.name}): the {dialect} notation{where} has no name for "
            f"the layer {spec.name!r}"
        )
    mismatch = ""
    for notation in mine:
        settings, bad = {}, ""
        for field, value in notation.options:
            have = getattr(record, field)
            if isinstance(value, Setting):
                settings[value.key] = have
            elif have != value:
                bad = (
                    f"position {index + 1} ({spec.name}): {spec.option_prefix}_{field}={have!r}, "
                    f"but the {dialect} {notation.token!r} means {field}={value!r}"
                )
                break
        if not bad:
            return notation, settings
        mismatch = mismatch or bad
    raise PatternError(mismatch)


def gather_settings(found: Sequence[Mapping[str, Any]], dialect: str) -> dict[str, Any]:
    """One value per setting over all positions (a per-position value is an error)."""
    out: dict[str, Any] = {}
    for i, settings in enumerate(found):
        for key, value in settings.items():
            if key in out and out[key] != value:
                raise PatternError(
                    f"the {dialect} notation holds one {key!r} for the whole model, but "
                    f"positions differ ({out[key]!r}, and {value!r} at position {i + 1})"
                )
            out[key] = value
    return out
