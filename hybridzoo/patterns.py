"""Layer patterns: the pattern mini-language, shared layers and ``visualize``.

A pattern given to :func:`hybridzoo.build` may be

- a list of layer names or symbols: ``["conv", "conv", "mlp"]`` or ``["C", "C", "P"]``;
- a string in the pattern language below: ``"CCP"``, ``"C C P"``, ``"(CCP)*4 C"``.

Grammar of the string form (whitespace, ``,``, ``→`` and ``->`` separate items and are
otherwise ignored)::

    pattern  := item*
    item     := atom ( "*" COUNT )?          COUNT >= 1 repeats the atom
    atom     := WORD | "(" pattern ")"
    WORD     := letter (letter | digit | "_")*

A ``WORD`` that is a registered layer name stands for that layer (``"conv mlp"``); otherwise every
letter of it must be a layer symbol (``"CCP"`` is conv, conv, mlp). Errors point at the offending
character. (The examples use two toy layers, ``conv`` with symbol ``C`` and ``mlp`` with ``P``.)

Named patterns (``"jamba_like"``) come from plugins: see :mod:`hybridzoo.named_patterns`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from hybridzoo.errors import (
    HybridZooError,
    OptionError,
    PatternError,
    UnknownLayerError,
    did_you_mean,
)
from hybridzoo.named_patterns import NamedPattern, expand_named_pattern
from hybridzoo.registry import Registry, get_registry
from hybridzoo.validate import is_integer

__all__ = [
    "PatternLike",
    "parse_pattern",
    "resolve_pattern",
    "resolve_shared_layers",
    "visualize",
]

PatternLike = str | Sequence[str]
SharedLayers = tuple[tuple[str, tuple[int, ...]], ...]


def named_patterns(registry: Registry | None = None) -> dict[str, NamedPattern]:
    """Every registered named pattern (``{name: pattern}``, each callable as
    ``pattern(num_layers)``)."""
    return (registry or get_registry()).named_patterns()


def pattern(name: str, num_layers: int, *, registry: Registry | None = None) -> list[str]:
    """Deprecated alias of :func:`hybridzoo.expand_named_pattern` (``pattern`` elsewhere means any
    pattern, while this expands a *named* one)."""
    warnings.warn(
        "hybridzoo.pattern() is deprecated; use hybridzoo.expand_named_pattern(name, num_layers)",
        DeprecationWarning,
        stacklevel=2,
    )
    return expand_named_pattern(name, num_layers, registry=registry)


def __getattr__(name: str) -> Any:
    if name == "NAMED_PATTERNS":
        warnings.warn(
            "hybridzoo.patterns.NAMED_PATTERNS is deprecated; use hybridzoo.list_patterns() or "
            "hybridzoo.get_registry().named_patterns()",
            DeprecationWarning,
            stacklevel=2,
        )
        return named_patterns()
    raise AttributeError(f"module 'hybridzoo.patterns' has no attribute {name!r}")


# -- the string language -----------------------------------------------------------------------

_SEPARATORS = " \t\n,→"


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, message: str, pos: int | None = None) -> PatternError:
        return PatternError(message, pattern=self.text, position=self.pos if pos is None else pos)

    def skip(self) -> None:
        while self.pos < len(self.text):
            if self.text[self.pos] in _SEPARATORS:
                self.pos += 1
            elif self.text.startswith("->", self.pos):
                self.pos += 2
            else:
                break

    def sequence(self, depth: int) -> list[tuple[str, int]]:
        items: list[tuple[str, int]] = []
        while True:
            self.skip()
            if self.pos >= len(self.text):
                if depth:
                    raise self.error("unclosed '(': expected ')'")
                return items
            ch = self.text[self.pos]
            if ch == ")":
                if not depth:
                    raise self.error("unexpected ')' with no matching '('")
                return items
            items.extend(self.item(depth))

    def item(self, depth: int) -> list[tuple[str, int]]:
        start = self.pos
        ch = self.text[self.pos]
        if ch == "(":
            self.pos += 1
            inner = self.sequence(depth + 1)
            self.pos += 1  # the ')'
            if not inner:
                raise self.error("empty group '()'", start)
            atom = inner
        elif ch.isalpha():
            while self.pos < len(self.text) and (
                self.text[self.pos].isalnum() or self.text[self.pos] == "_"
            ):
                self.pos += 1
            atom = [(self.text[start : self.pos], start)]
        else:
            raise self.error(
                f"unexpected character {ch!r}: expected a layer name, a symbol or '('", start
            )
        save = self.pos
        self.skip()
        if self.pos < len(self.text) and self.text[self.pos] == "*":
            self.pos += 1
            self.skip()
            num_start = self.pos
            while self.pos < len(self.text) and self.text[self.pos].isdigit():
                self.pos += 1
            if num_start == self.pos:
                raise self.error("expected a repetition count after '*'", num_start)
            count = int(self.text[num_start : self.pos])
            if count < 1:
                raise self.error("the repetition count must be >= 1", num_start)
            return atom * count
        self.pos = save
        return atom


def parse_pattern(text: str) -> list[tuple[str, int]]:
    """Parse the string form into ``(word, position)`` pairs, with repetitions expanded."""
    return _Parser(text).sequence(0)


def _resolve_word(word: str, pos: int, text: str | None, registry: Registry) -> list[str]:
    if word in registry:
        return [word]
    names: list[str] = []
    for offset, letter in enumerate(word):
        try:
            names.append(registry.by_symbol(letter).name)
        except UnknownLayerError as exc:
            if len(word) > 1:
                hint = did_you_mean(word, registry.names())
                message = (
                    f"{word!r} is neither a registered layer name nor a run of layer symbols: "
                    f"{letter!r} is not a symbol.{hint}"
                )
            else:
                message = str(exc)
            symbols = ", ".join(f"{s.symbol}={s.name}" for s in registry.specs())
            raise PatternError(
                f"{message} Symbols: {symbols}",
                pattern=text,
                position=None if text is None else pos + offset,
            ) from None
    return names


def resolve_pattern(value: PatternLike, *, registry: Registry | None = None) -> list[str]:
    """Turn any accepted pattern form into the list of registered layer names."""
    registry = registry or get_registry()
    if isinstance(value, str):
        words = parse_pattern(value)
        names = [n for word, pos in words for n in _resolve_word(word, pos, value, registry)]
    elif isinstance(value, Sequence):
        names = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise PatternError(
                    f"pattern item {i} must be a layer name or symbol, got {item!r} "
                    f"({type(item).__name__})"
                )
            try:
                names.append(registry.resolve(item).name)
            except UnknownLayerError as exc:
                raise PatternError(f"pattern item {i}: {exc}") from None
    else:
        raise PatternError(
            f"a pattern must be a string or a list of layer names, got {type(value).__name__}"
        )
    if not names:
        raise PatternError(f"the pattern {value!r} has no layers")
    return names


def resolve_shared_layers(
    shared_layers: Mapping[str, Sequence[int] | int] | None,
    num_layers: int,
    *,
    registry: Registry | None = None,
) -> tuple[SharedLayers, list[str]]:
    """Check ``{layer: [1-based positions]}`` for a pattern of ``num_layers`` layers.

    Returns ``(((layer name, sorted positions), ...), problems)``: one line per problem (a key
    that is not a registered layer name or symbol, positions that are not integers in
    ``1..num_layers``, repeated or missing); the caller raises them (``build`` with the other
    problems of its call, :func:`visualize` alone).
    """
    if shared_layers is None:
        return (), []
    example = "e.g. {'conv': [2, 4]}"
    if not isinstance(shared_layers, Mapping):
        return (), [
            f"shared_layers must be a mapping {{layer: [positions]}}, {example}; got "
            f"{shared_layers!r}"
        ]
    registry = registry or get_registry()
    shared: list[tuple[str, tuple[int, ...]]] = []
    problems: list[str] = []
    for layer, positions in shared_layers.items():
        if not isinstance(layer, str):
            problems.append(
                f"shared_layers: a key must be a layer name or symbol (a string), got {layer!r} "
                f"({type(layer).__name__}); {example}"
            )
            continue
        try:
            spec = registry.resolve(layer)
        except HybridZooError as exc:
            problems.append(f"shared_layers: {exc}")
            continue
        if is_integer(positions):
            positions = [positions]  # type: ignore[list-item]
        if isinstance(positions, str) or not isinstance(positions, Sequence) or not positions:
            problems.append(
                f"shared_layers[{layer!r}] must be a non-empty list of 1-based positions, "
                f"got {positions!r}"
            )
            continue
        bad = [p for p in positions if not is_integer(p) or not 1 <= p <= num_layers]
        if bad:
            problems.append(
                f"shared_layers[{layer!r}]: positions {bad} are out of range; the pattern "
                f"has {num_layers} layers, so positions run 1..{num_layers}"
            )
            continue
        if len(set(positions)) != len(positions):
            problems.append(f"shared_layers[{layer!r}]: repeated positions {list(positions)}")
            continue
        shared.append((spec.name, tuple(sorted(int(p) for p in positions))))
    return tuple(shared), problems


def visualize(
    value: PatternLike,
    *,
    shared_layers: Mapping[str, Sequence[int]] | None = None,
    registry: Registry | None = None,
) -> str:
    """Edifice's text picture of a pattern, plus a line for shared layers when there are any.

    The shared layers are checked as :func:`hybridzoo.build` checks them (an
    :class:`~hybridzoo.OptionError` naming the bad value). With two toy layers::

        >>> print(visualize("CPCP"))  # doctest: +SKIP
        Layer pattern: C → P → C → P
        Legend: C=conv, P=mlp
    """
    registry = registry or get_registry()
    names = resolve_pattern(value, registry=registry)
    shared, problems = resolve_shared_layers(shared_layers, len(names), registry=registry)
    if problems:
        raise OptionError(problems)
    specs = [registry.get(n) for n in names]
    legend: dict[str, str] = {}
    for spec in specs:
        legend.setdefault(spec.symbol, spec.name)
    lines = [
        "Layer pattern: " + " → ".join(s.symbol for s in specs),
        "Legend: " + ", ".join(f"{sym}={name}" for sym, name in legend.items()),
    ]
    if shared:
        parts = []
        for layer, positions in shared:
            spec = registry.get(layer)
            where = ", ".join(str(p) for p in positions)
            parts.append(f"{spec.symbol}={spec.name} (one set of weights) after layers {where}")
        lines.append("Shared: " + "; ".join(parts))
    return "\n".join(lines)
