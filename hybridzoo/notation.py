"""How a layer is written in other projects' notations: the records a plugin declares in
``LayerSpec.notations`` (API version 2, additive), read by the dialects
(:mod:`hybridzoo.dialects`).

The core knows the other projects' vocabularies (Megatron-LM's symbols, transformers' layer
types and per-model config fields) but no hybridzoo layer: which layer a symbol or a layer type
is comes from the plugins. A plugin says, for each notation that means its layer::

    Notation("megatron", "-")                                 # Megatron's MLP symbol
    Notation("transformers", "mlp", {"bias": False}, models=("nemotron_h",))

``options`` are what the token means for the layer's options (``{"bias": False}``): parsing
gives the positions these options (model-wide where every position of the layer agrees), and a
position is written with the token only if its options agree. A :class:`Setting` takes a value
from the other project's model configuration (``Setting("sliding_window")``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["DIALECTS", "UNSET", "Notation", "Setting", "notations_for"]

#: The notations a plugin can declare (see :mod:`hybridzoo.dialects`).
DIALECTS = ("megatron", "transformers")
#: A layer's places in a decoder layer (see :attr:`Notation.role`).
ROLES = ("mixer", "dense", "sparse")


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


#: A setting's default meaning "not set here: the layer's keyword or default holds".
UNSET: Any = _Unset()


@attrs.frozen
class Setting:
    """An option value read from the other project's model configuration.

    Attributes:
        key: the configuration's field (transformers' ``sliding_window``, ``num_experts``).
        default: the value when the configuration does not give ``key`` (that project's own
            default); :data:`UNSET` leaves the option to the user's keywords. A pattern given
            without a configuration (a Megatron string, a list of layer types) uses it too.
    """

    key: str
    default: Any = UNSET


def _options(value: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(dict(value).items())


@attrs.frozen
class Notation:
    """One way another project writes this layer.

    Attributes:
        dialect: ``"megatron"`` or ``"transformers"``.
        token: the symbol (Megatron: ``"*"``) or layer type (transformers: ``"full_attention"``).
        options: ``{field: value or Setting}``: what the token means for this layer's options.
        models: transformers ``model_type`` values where this meaning holds (``()``: any model
            without a more specific notation).
        note: what the other project's layer has and this one lacks (an output gate, another
            activation), warned about when a pattern is read or written with this notation.
        role: the layer's place in a transformers decoder layer that folds its feed-forward in
            (Jamba, Qwen3-Next, ...): ``"mixer"``, or its feed-forward, ``"dense"`` (an MLP) or
            ``"sparse"`` (a mixture of experts).
    """

    dialect: str = attrs.field(validator=attrs.validators.in_(DIALECTS))
    token: str
    options: tuple[tuple[str, Any], ...] = attrs.field(default=(), converter=_options)
    models: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    note: str = ""
    role: str = attrs.field(default="mixer", validator=attrs.validators.in_(ROLES))

    def applies_to(self, model_type: str | None) -> int:
        """2 for a notation of ``model_type``, 1 for a generic one, 0 if it does not apply."""
        if not self.models:
            return 1
        return 2 if model_type in self.models else 0


def notations_for(notations: Any, dialect: str, model_type: str | None) -> list[Notation]:
    """The ``notations`` (a layer spec's) of ``dialect`` that apply to ``model_type``, the most
    specific first (those of ``model_type`` itself before the generic ones; otherwise in their
    declared order)."""
    mine = [n for n in notations if n.dialect == dialect and n.applies_to(model_type)]
    return sorted(mine, key=lambda n: -n.applies_to(model_type))


def notation_problem(notations: tuple[Any, ...], options: type) -> str | None:
    """What is wrong with a spec's ``notations`` (``None`` when nothing)."""
    fields = {f.name for f in attrs.fields(options)}
    for notation in notations:
        if not isinstance(notation, Notation):
            return f"notations must be hybridzoo.plugin.Notation records, got {notation!r:.80}"
        unknown = [k for k, _ in notation.options if k not in fields]
        if unknown:
            return (
                f"its {notation.dialect} notation {notation.token!r} sets {', '.join(unknown)}, "
                f"which its options record does not have ({', '.join(sorted(fields))})"
            )
    return None
