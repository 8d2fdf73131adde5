"""Route the user's flat options (``attention_window_size=128``) to each plugin's options record.

An option is ``<prefix>_<field>``: the prefix is a layer's ``option_prefix`` and the field one of
its options record. Every problem of one call (unknown names, invalid values) is collected and
raised together in one :class:`OptionError`. A valid option of a registered layer that the model
does not use (``attention_window_size`` for an all-mamba stack: one set of options for several
patterns) is validated, then dropped with an :class:`UnusedOptionWarning` that names it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from hybridzoo.errors import OptionError, UnusedOptionWarning, close_matches
from hybridzoo.registry import Registry
from hybridzoo.spec import LayerSpec

__all__ = ["make_options", "option_table", "split_options"]


def option_table(specs: Iterable[LayerSpec]) -> dict[str, tuple[LayerSpec, str]]:
    """``{user option name: (spec, field name)}`` for the given layers."""
    table: dict[str, tuple[LayerSpec, str]] = {}
    for spec in specs:
        for field in attrs.fields(spec.options):
            table[f"{spec.option_prefix}_{field.name}"] = (spec, field.name)
    return table


def make_options(spec: LayerSpec, values: Mapping[str, Any]) -> tuple[Any, list[str]]:
    """Build ``spec``'s options record from ``{field: value}``.

    Returns ``(options or None, problems)``: each problem names the user-facing option.
    Validators run one field at a time so that every bad value is reported.
    """
    problems: list[str] = []
    fields = {f.name: f for f in attrs.fields(spec.options)}
    for key, value in values.items():
        field = fields.get(key)
        if field is None:
            user = f"{spec.option_prefix}_{key}"
            valid = ", ".join(f"{spec.option_prefix}_{f}" for f in fields)
            hint = close_matches(user, [f"{spec.option_prefix}_{f}" for f in fields])
            tip = f" Did you mean {' or '.join(map(repr, hint))}?" if hint else ""
            problems.append(f"unknown option {user!r} for layer {spec.name!r}.{tip} Valid: {valid}")
            continue
        if field.validator is not None:
            try:
                field.validator(None, field, value)
            except (TypeError, ValueError) as exc:
                problems.append(f"{spec.option_prefix}_{key}={value!r}: {exc}")
    if problems:
        return None, problems
    try:
        return spec.options(**values), []
    except (TypeError, ValueError) as exc:  # cross-field validation in __attrs_post_init__
        return None, [f"options of layer {spec.name!r} ({dict(values)}): {exc}"]


def split_options(
    options: Mapping[str, Any],
    used: Iterable[LayerSpec],
    registry: Registry,
    *,
    extra_valid: Iterable[str] = (),
) -> dict[str, Any]:
    """Split flat user options into one validated options record per used layer.

    Args:
        options: the user's ``<prefix>_<field>`` options.
        used: the layers of the model (each gets a record, defaults where the user gave none).
        registry: used to recognise options of registered layers absent from the model.
        extra_valid: other keyword names the caller accepts, offered as close matches.

    Returns ``{layer name: options record}``. Raises :class:`OptionError` listing every problem.
    """
    used = list(dict.fromkeys(used))
    used_table = option_table(used)
    all_table = option_table(registry.specs())
    problems: list[str] = []
    per_layer: dict[str, dict[str, Any]] = {spec.name: {} for spec in used}
    unused: dict[LayerSpec, dict[str, Any]] = {}
    for key, value in options.items():
        hit = used_table.get(key)
        if hit is not None:
            per_layer[hit[0].name][hit[1]] = value
            continue
        other = all_table.get(key)
        if other is not None:
            unused.setdefault(other[0], {})[other[1]] = value
            continue
        candidates = list(dict.fromkeys([*used_table, *all_table, *extra_valid]))
        hint = close_matches(key, candidates)
        tip = f" Did you mean {' or '.join(map(repr, hint))}?" if hint else ""
        prefixes = ", ".join(f"{s.option_prefix}_*" for s in used)
        problems.append(f"unknown option {key!r}.{tip} Layer options here: {prefixes or 'none'}")
    records: dict[str, Any] = {}
    for spec in used:
        record, errs = make_options(spec, per_layer[spec.name])
        problems.extend(errs)
        records[spec.name] = record
    for spec, values in unused.items():  # validated too: a bad value is an error anyway
        problems.extend(make_options(spec, values)[1])
    if problems:
        raise OptionError(problems)
    if unused:
        names = ", ".join(
            f"{spec.option_prefix}_{field}" for spec, values in unused.items() for field in values
        )
        layers = ", ".join(spec.name for spec in unused)
        warnings.warn(
            f"options {names} are valid but unused: no {layers} layer in this model "
            f"(layers: {', '.join(s.name for s in used)})",
            UnusedOptionWarning,
            stacklevel=4,
        )
    return records
