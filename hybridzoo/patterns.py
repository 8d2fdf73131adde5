"""Layer patterns: the named ones of Edifice, the pattern mini-language, and ``visualize``.

A pattern given to :func:`hybridzoo.build` may be

- a list of layer names or symbols: ``["mamba", "mamba", "attention"]`` or ``["M", "M", "A"]``;
- a string in the pattern language below: ``"MMAG"``, ``"M M A G"``, ``"(MMA)*4 F"``.

Grammar of the string form (whitespace, ``,``, ``→`` and ``->`` separate items and are
otherwise ignored)::

    pattern  := item*
    item     := atom ( "*" COUNT )?          COUNT >= 1 repeats the atom
    atom     := WORD | "(" pattern ")"
    WORD     := letter (letter | digit | "_")*

A ``WORD`` that is a registered layer name stands for that layer (``"mamba attention"``);
otherwise every letter of it must be a layer symbol (``"MMA"`` is mamba, mamba, attention).
Errors point at the offending character.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from hybridzoo.errors import PatternError, UnknownLayerError, close_matches, did_you_mean
from hybridzoo.registry import Registry, get_registry

__all__ = ["NAMED_PATTERNS", "parse_pattern", "pattern", "resolve_pattern", "visualize"]

PatternLike = str | Sequence[str]


def _every(k: int, hit: str, other: str) -> Callable[[int], list[str]]:
    return lambda n: [hit if i % k == 0 else other for i in range(1, n + 1)]


_FULL_CYCLE = ("mamba", "attention", "gla", "rwkv", "mamba", "ffn")

#: The named patterns of Edifice (positions counted 1..n).
NAMED_PATTERNS: dict[str, Callable[[int], list[str]]] = {
    "jamba_like": _every(2, "attention", "mamba"),
    "zamba_like": lambda n: ["mamba"] * n,
    "mamba_gla": _every(3, "gla", "mamba"),
    "rwkv_attention": _every(4, "attention", "rwkv"),
    "full_hybrid": lambda n: [_FULL_CYCLE[(i - 1) % 6] for i in range(1, n + 1)],
    "ssm_stack": lambda n: ["mamba"] * n,
}

_NAMED_DOCS = {
    "jamba_like": "attention at even positions, mamba at odd ones",
    "zamba_like": "all mamba (meant for use with a shared attention block)",
    "mamba_gla": "gla every 3rd layer, else mamba",
    "rwkv_attention": "attention every 4th layer, else rwkv",
    "full_hybrid": "cycle mamba, attention, gla, rwkv, mamba, ffn",
    "ssm_stack": "all mamba",
}


def named_patterns(registry: Registry | None = None) -> dict[str, Callable[[int], list[str]]]:
    """The builtin named patterns plus those that plugins contribute."""
    registry = registry or get_registry()
    merged = dict(NAMED_PATTERNS)
    for name, rule in registry.named_patterns().items():
        merged.setdefault(name, rule)
    return merged


def pattern(name: str, num_layers: int, *, registry: Registry | None = None) -> list[str]:
    """The layer names of the named pattern ``name`` with ``num_layers`` layers.

    >>> pattern("jamba_like", 4)
    ['mamba', 'attention', 'mamba', 'attention']
    """
    rules = named_patterns(registry)
    if name not in rules:
        raise PatternError(
            f"unknown named pattern {name!r}.{did_you_mean(name, rules)} "
            f"Named patterns: {', '.join(sorted(rules))}"
        )
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise PatternError(f"num_layers must be an integer >= 1, got {num_layers!r}")
    return list(rules[name](num_layers))


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


def visualize(
    value: PatternLike,
    *,
    shared_layers: Mapping[str, Sequence[int]] | None = None,
    registry: Registry | None = None,
) -> str:
    """Edifice's text picture of a pattern, plus a line for shared layers when there are any.

    >>> print(visualize("MAGF"))
    Layer pattern: M → A → G → F
    Legend: M=mamba, A=attention, G=gla, F=ffn
    """
    registry = registry or get_registry()
    names = resolve_pattern(value, registry=registry)
    specs = [registry.get(n) for n in names]
    legend: dict[str, str] = {}
    for spec in specs:
        legend.setdefault(spec.symbol, spec.name)
    lines = [
        "Layer pattern: " + " → ".join(s.symbol for s in specs),
        "Legend: " + ", ".join(f"{sym}={name}" for sym, name in legend.items()),
    ]
    if shared_layers:
        parts = []
        for layer, positions in shared_layers.items():
            spec = registry.get(layer)
            where = ", ".join(str(p) for p in positions)
            parts.append(f"{spec.symbol}={spec.name} (one set of weights) after layers {where}")
        lines.append("Shared: " + "; ".join(parts))
    return "\n".join(lines)


def describe_named_patterns(registry: Registry | None = None) -> dict[str, str]:
    """``{name: one-line rule}`` of the named patterns (for the CLI)."""
    out = dict(_NAMED_DOCS)
    for name in named_patterns(registry):
        out.setdefault(name, "(from a plugin)")
    return out


def suggest_pattern_name(name: str, registry: Registry | None = None) -> list[str]:
    """Close matches among the named patterns."""
    return close_matches(name, named_patterns(registry))
