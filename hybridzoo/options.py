"""Route the user's flat options (``conv_kernel_size=8``) to each plugin's options record.

An option is ``<prefix>_<field>``: the prefix is a layer's ``option_prefix`` and the field one of
its options record. Routing is unambiguous: two layers whose option names would collide (prefix
``p`` with a field ``x_y`` and prefix ``p_x`` with a field ``y``) cannot both be registered (the
registry refuses the second, naming both), and :func:`option_table` refuses such a pair of specs
given directly. For a name that is no option, the layer with the longest matching prefix is the
one the error message speaks of.

Every problem of one call (unknown names, invalid values) is collected and raised together in one
:class:`OptionError`. A valid option of a registered layer that the model does not use
(``mlp_expand_factor`` for a model with no ``mlp`` layer: one set of options for several
patterns) is validated, then dropped with an :class:`UnusedOptionWarning` that names it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from hybridzoo.errors import (
    OptionError,
    PluginConflictError,
    UnusedOptionWarning,
    close_matches,
    user_stacklevel,
)
from hybridzoo.registry import Registry
from hybridzoo.spec import LayerSpec

__all__ = ["make_options", "option_owner", "option_table", "split_options"]


def option_table(specs: Iterable[LayerSpec]) -> dict[str, tuple[LayerSpec, str]]:
    """``{user option name: (spec, field name)}`` for the given layers.

    Two layers that would share an option name are a :class:`~hybridzoo.PluginConflictError`
    naming both (never a silent choice of one).
    """
    table: dict[str, tuple[LayerSpec, str]] = {}
    for spec in dict.fromkeys(specs):
        for field in attrs.fields(spec.options):
            name = f"{spec.option_prefix}_{field.name}"
            other = table.get(name)
            if other is not None and other[0].name != spec.name:
                raise PluginConflictError(
                    f"the option {name!r} is ambiguous: field {other[1]!r} of layer "
                    f"{other[0].name!r} (prefix {other[0].option_prefix!r}) and field "
                    f"{field.name!r} of layer {spec.name!r} (prefix {spec.option_prefix!r}); "
                    "rename one prefix or field"
                )
            table[name] = (spec, field.name)
    return table


def option_owner(option: str, specs: Iterable[LayerSpec]) -> LayerSpec | None:
    """The layer among ``specs`` whose prefix is the longest that ``option`` starts with
    (``<prefix>_``), or ``None``: who an option belongs to, or would belong to."""
    hits = [s for s in specs if option.startswith(f"{s.option_prefix}_")]
    return max(hits, key=lambda s: len(s.option_prefix), default=None)


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
    all_specs = registry.specs()
    all_table = option_table(all_specs)
    problems: list[str] = []
    per_layer: dict[str, dict[str, Any]] = {spec.name: {} for spec in used}
    unused: dict[LayerSpec, dict[str, Any]] = {}
    for key, value in options.items():
        registry.check_option(key)  # two installed plugins claim this option name
        hit = used_table.get(key)
        if hit is not None:
            per_layer[hit[0].name][hit[1]] = value
            continue
        other = all_table.get(key)
        if other is not None:
            unused.setdefault(other[0], {})[other[1]] = value
            continue
        owner = option_owner(key, [*used, *all_specs])
        if owner is not None:  # the layer it would belong to: its own fields are the matches
            problems.append(make_options(owner, {key[len(owner.option_prefix) + 1 :]: value})[1][0])
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
            stacklevel=user_stacklevel(),
        )
    return records
