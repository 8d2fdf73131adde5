"""The layer-plugin convention as code: a package laid out as ``__init__.py`` (the options
record), ``formulas.py``, ``layer.py`` (``make_bodies``) and ``reference.py``
(``reference_forward``) declares its spec in one call::

    from hybridzoo.plugin import Capabilities, layer_spec, specs_hook
    from my_plugin import formulas

    SPEC = layer_spec(
        __name__, name="conv", symbol="C", options=ConvOptions, formulas=formulas,
        description="Depthwise causal convolution.",
        capabilities=Capabilities(causal=True, stateful=True),
    )
    hybridzoo_layer_specs = specs_hook(SPEC)

and builds its modules from the record without naming each option twice: a module takes the
record itself, ``Conv(hidden_size, o)``, or any of its fields as keywords for standalone use
(``Conv(256, width=8)``), both resolved by :func:`resolve_options`. Everything here makes an
ordinary :class:`~hybridzoo.spec.LayerSpec` and an ordinary ``@hookimpl`` function: a spec
written out in full and a hand-written hook keep working, and the two forms mix freely.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import attrs

from hybridzoo.errors import PluginError, UnknownOptionError, did_you_mean
from hybridzoo.hookspecs import hookimpl
from hybridzoo.spec import LayerSpec
from hybridzoo.validate import Validator

__all__ = ["FORMULA_FIELDS", "layer_spec", "option_kwargs", "resolve_options", "specs_hook"]

R = TypeVar("R")

#: The :class:`LayerSpec` fields that :func:`layer_spec` takes from a formulas module, by the
#: name the module gives them (a module-level ``NOTATIONS`` tuple becomes ``notations``).
FORMULA_FIELDS: dict[str, str] = {
    "param_count": "param_count",
    "state_size": "state_size",
    "hidden_size_multiple": "hidden_size_multiple",
    "sub_blocks": "sub_blocks",
    "scale_options": "scale_options",
    "active_param_count": "active_param_count",
    "flops": "flops",
    "state_bytes": "state_bytes",
    "kv_cache_size": "kv_cache_size",
    "NOTATIONS": "notations",
}

_CONVENTIONAL: Any = object()  # "the conventional import string" (None means none)


def layer_spec(
    package: str,
    *,
    name: str,
    symbol: str,
    options: type,
    formulas: Any = None,
    option_prefix: str | None = None,
    factory: Any = _CONVENTIONAL,
    reference: Any = _CONVENTIONAL,
    **fields: Any,
) -> LayerSpec:
    """A :class:`LayerSpec` for a plugin package that follows the layer-plugin convention.

    Args:
        package: the import name of the plugin package (pass ``__name__`` from its
            ``__init__.py``).
        name, symbol, options: as in :class:`LayerSpec`.
        formulas: the plugin's formulas module (or any object): each of its attributes named in
            :data:`FORMULA_FIELDS` that exists fills that field (``param_count``,
            ``state_size``, ``flops``, ``scale_options``, ``NOTATIONS``, ...).
        option_prefix: default ``name``.
        factory: default the import string ``"<package>.layer:make_bodies"`` (imported on first
            use, so the package's top module needs no torch).
        reference: default ``"<package>.reference:reference_forward"``; ``None`` for none.
        **fields: any other :class:`LayerSpec` field (``description``, ``capabilities``,
            ``api_version``, ...); a field given here wins over the formulas module's.

    Returns:
        the spec (validated by the registry when the plugin loads, as every spec is).
    """
    if not isinstance(package, str) or not all(p.isidentifier() for p in package.split(".")):
        raise PluginError(
            f"layer_spec() needs the plugin's package name (pass __name__), got {package!r}"
        )
    from_formulas = {
        field: getattr(formulas, attr)
        for attr, field in FORMULA_FIELDS.items()
        if formulas is not None and hasattr(formulas, attr)
    }
    if formulas is not None and "param_count" not in from_formulas and "param_count" not in fields:
        raise PluginError(
            f"layer {name!r}: its formulas module {getattr(formulas, '__name__', formulas)!r} "
            "has no param_count(o, hidden_size) (nor was param_count= given)"
        )
    return LayerSpec(
        name=name,
        symbol=symbol,
        option_prefix=name if option_prefix is None else option_prefix,
        options=options,
        factory=f"{package}.layer:make_bodies" if factory is _CONVENTIONAL else factory,
        reference=(
            f"{package}.reference:reference_forward" if reference is _CONVENTIONAL else reference
        ),
        **{**from_formulas, **fields},
    )


def specs_hook(*specs: LayerSpec) -> Callable[[], list[LayerSpec]]:
    """A ``hybridzoo_layer_specs`` hook implementation returning ``specs``; assign it to that
    name in the module the entry point names::

        hybridzoo_layer_specs = specs_hook(SPEC)

    The same as writing the ``@hookimpl`` function by hand.
    """
    for spec in specs:
        if not isinstance(spec, LayerSpec):
            raise PluginError(f"specs_hook() takes LayerSpec objects, got {spec!r:.80}")

    def hybridzoo_layer_specs() -> list[LayerSpec]:
        return list(specs)

    hybridzoo_layer_specs.__doc__ = "The layers this plugin provides: " + ", ".join(
        repr(spec.name) for spec in specs
    )
    return hookimpl(hybridzoo_layer_specs)


def option_kwargs(
    options: Any, *, only: Iterable[str] | None = None, exclude: Iterable[str] = ()
) -> dict[str, Any]:
    """The fields of an options record as keyword arguments, for the module built from it:
    ``make_bodies`` writes ``Mixer(hidden_size, **option_kwargs(o))`` instead of repeating
    every option. A field the module does not take is then a ``TypeError`` at the first build,
    never silently dropped: leave such fields out with ``exclude`` (or pick with ``only``).

    Args:
        options: an ``attrs`` options record.
        only: the fields to pass (in this order); default all of them.
        exclude: fields not to pass (those another sub-block takes).
    """
    names = [f.name for f in attrs.fields(type(options))]
    if only is not None:
        only = list(only)
        unknown = [n for n in only if n not in names]
        if unknown:
            raise PluginError(
                f"option_kwargs(): {type(options).__name__} has no field {', '.join(unknown)}; "
                f"its fields: {', '.join(names)}"
            )
        names = only
    excluded = set(exclude)
    unknown = sorted(excluded.difference(f.name for f in attrs.fields(type(options))))
    if unknown:
        raise PluginError(
            f"option_kwargs(): {type(options).__name__} has no field {', '.join(unknown)} to "
            "exclude"
        )
    return {n: getattr(options, n) for n in names if n not in excluded}


def resolve_options(record: type[R], options: R | None, changes: dict[str, Any]) -> R:
    """The options a module is built with: ``options`` (default: the record's defaults) with
    ``changes`` applied, each checked by the record's own validators.

    A module built from a plugin's options takes the record and, for standalone use, any of
    its fields as keywords, declaring no option a second time::

        def __init__(self, hidden_size: int, options: ConvOptions | None = None, **changes: Any):
            o = resolve_options(ConvOptions, options, changes)

    so that ``Conv(hidden_size, o)`` (from ``make_bodies``), ``Conv(256)`` and
    ``Conv(256, width=8)`` all work.

    Args:
        record: the options record class (``attrs``).
        options: an instance of ``record``, or ``None`` for its defaults.
        changes: field names and their new values.

    Raises:
        UnknownOptionError: a name that is not a field of ``record`` (a ``TypeError``, as an
            unknown keyword is; it names the record and the closest fields).
        TypeError, ValueError: an invalid value, with the record's validator message after the
            field's name (``"num_heads must be an integer >= 1, got 0"``).
    """
    if options is None:
        options = record()
    elif not isinstance(options, record):
        raise TypeError(
            f"options must be a {record.__name__} record (or None for its defaults), got "
            f"{type(options).__name__}"
        )
    fields = {f.name: f for f in attrs.fields(record)}
    for name, value in changes.items():
        field = fields.get(name)
        if field is None:
            raise UnknownOptionError(
                f"{record.__name__} has no field {name!r}.{did_you_mean(name, fields)} "
                f"Its fields: {', '.join(fields)}."
            )
        if isinstance(field.validator, Validator):
            field.validator.check(name, value)  # the message starts with the field's name
    return attrs.evolve(options, **changes) if changes else options
