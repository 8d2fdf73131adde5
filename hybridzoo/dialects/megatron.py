"""Megatron-LM's ``--hybrid-layer-pattern``: one symbol per layer.

Megatron's grammar (``megatron/core/models/hybrid/hybrid_layer_allocation.py``)::

    pattern := main ( "/" mtp )*      "/" starts a multi-token-prediction (MTP) part
    main    := segment ( "|" segment )*  "|" is a pipeline-stage boundary
    segment := symbol*

Symbols: ``M`` Mamba (a Mamba-2 mixer), ``G`` Gated DeltaNet, ``*`` self-attention, ``D``
DeepSeek Sparse Attention, ``+`` Multi-Latent Attention, ``-`` MLP, ``E`` MoE; a GPT block
(attention then MLP) is two symbols, ``*-``. Which hybridzoo layer a symbol is comes from the
plugins' notations; a symbol no installed layer declares is a clear error. Boundaries ``|`` are
kept in the :class:`~hybridzoo.positions.Pattern` (``boundaries``) and written back; the model
itself is one stage. MTP parts are refused until supported; empty ones (``"M*M*/"``) mean none,
as in Megatron.
"""

from __future__ import annotations

import warnings
from typing import Any

from hybridzoo.dialects import build_pattern, gather_settings, notation_table, position_notation
from hybridzoo.errors import DialectWarning, PatternError, user_stacklevel
from hybridzoo.grammar import MAX_POSITIONS
from hybridzoo.notation import UNSET, Setting
from hybridzoo.positions import Pattern
from hybridzoo.registry import Registry

__all__ = ["MEGATRON_SYMBOLS", "format_megatron", "parse_megatron"]

#: Megatron-LM's layer symbols and what each is there.
MEGATRON_SYMBOLS = {
    "M": "Mamba (a Mamba-2 mixer)",
    "G": "Gated DeltaNet",
    "*": "self-attention",
    "D": "DeepSeek Sparse Attention",
    "+": "Multi-Latent Attention",
    "-": "MLP",
    "E": "MoE",
}


def _listing(table: dict[str, Any]) -> str:
    return ", ".join(f"{token}={spec.name}" for token, (spec, _) in table.items()) or "(none)"


def parse_megatron(text: Any, registry: Registry) -> Pattern:
    """A Megatron pattern string as a :class:`Pattern` (see the module docstring)."""
    if not isinstance(text, str):
        raise PatternError(f"a Megatron pattern is a string, got {type(text).__name__}")
    if len(text) > MAX_POSITIONS * 2:
        raise PatternError(
            f"the Megatron pattern has {len(text):,} characters; at most {MAX_POSITIONS:,} "
            "layers are allowed",
            pattern=text,
            position=MAX_POSITIONS,
        )
    main, slash, rest = text.partition("/")
    if slash and rest.replace("/", ""):
        raise PatternError(
            "'/' starts Megatron's multi-token-prediction (MTP) parts ('M*M*/MM/MM'), which "
            "hybridzoo does not build yet; give the main pattern only",
            pattern=text,
            position=len(main),
        )
    table = notation_table(registry, "megatron", None)
    items, sources, boundaries = [], [], []
    for pos, ch in enumerate(main):
        if ch == "|":
            if not items or (boundaries and boundaries[-1] == len(items)):
                raise PatternError(
                    "an empty pipeline segment ('|' with no layer before it)",
                    pattern=text,
                    position=pos,
                )
            boundaries.append(len(items))
        elif ch in table:
            items.append(table[ch])
            sources.append(pos)
        elif ch in MEGATRON_SYMBOLS:
            raise PatternError(
                f"Megatron's {ch!r} ({MEGATRON_SYMBOLS[ch]}) is no hybridzoo layer: no installed "
                f"plugin declares it. Symbols with a layer here: {_listing(table)}",
                pattern=text,
                position=pos,
            )
        else:
            known = ", ".join(f"{k} ({v})" for k, v in MEGATRON_SYMBOLS.items())
            raise PatternError(
                f"{ch!r} is not a Megatron layer symbol; Megatron's symbols: {known}, and '|' "
                "between pipeline stages",
                pattern=text,
                position=pos,
            )
    if not items:
        raise PatternError(f"the Megatron pattern {text[:60]!r} has no layers")
    if boundaries and boundaries[-1] == len(items):
        raise PatternError(
            "an empty pipeline segment (a trailing '|')", pattern=text, position=len(main) - 1
        )
    return build_pattern(
        items, {}, dialect="megatron", boundaries=boundaries, text=text, sources=sources
    )


def format_megatron(config: Any, boundaries: tuple[int, ...], registry: Registry) -> str:
    """``config``'s pattern as a Megatron string (``|`` at ``boundaries``). A setting the string
    cannot hold (a window other than Megatron's default) is a :class:`DialectWarning`."""
    symbols, found, defaults = [], [], {}
    for i, name in enumerate(config.pattern):
        spec = registry.get(name)
        notation, settings = position_notation(
            spec, config.options_of(name, i), "megatron", None, i
        )
        symbols.append(notation.token)
        found.append(settings)
        for _, value in notation.options:
            if isinstance(value, Setting):
                defaults[value.key] = value.default
    settings = gather_settings(found, "megatron")
    differ = {k: v for k, v in settings.items() if defaults[k] is UNSET or v != defaults[k]}
    if differ:
        given = ", ".join(f"{k}={v!r}" for k, v in differ.items())
        warnings.warn(
            f"Megatron's pattern string does not hold {given}: give it to Megatron with its "
            "own arguments",
            DialectWarning,
            stacklevel=user_stacklevel(),
        )
    for cut in sorted(boundaries, reverse=True):
        if 0 < cut < len(symbols):
            symbols.insert(cut, "|")
    return "".join(symbols)
