"""Layer patterns: the forms a pattern takes, shared layers and ``visualize``.

A pattern given to :func:`hybridzoo.build` may be

- a string of the native grammar (:mod:`hybridzoo.grammar`): ``"CCP"``, ``"C C P"``,
  ``"(CCP)*4 C"``, with per-position options in blocks: ``"C C{kernel_size=8} P"``;
- a list of layer names or symbols, and ``{"type": layer, field: value}`` entries for positions
  with options of their own: ``["conv", {"type": "C", "kernel_size": 8}, "mlp"]``;
- a :class:`~hybridzoo.positions.Pattern` from :func:`hybridzoo.parse_pattern` (any dialect).

A ``WORD`` that is a registered layer name stands for that layer (``"conv mlp"``); otherwise every
letter of it must be a layer symbol (``"CCP"`` is conv, conv, mlp). Errors point at the offending
character. (The examples use two toy layers, ``conv`` with symbol ``C`` and ``mlp`` with ``P``.)

Named patterns (``"jamba_like"``) come from plugins: see :mod:`hybridzoo.named_patterns`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from hybridzoo.errors import HybridZooError, OptionError, PatternError, UnknownLayerError
from hybridzoo.grammar import format_block
from hybridzoo.named_patterns import NamedPattern, expand_named_pattern
from hybridzoo.positions import Own, Pattern, to_pattern
from hybridzoo.registry import Registry, get_registry
from hybridzoo.validate import is_integer

__all__ = [
    "Pattern",
    "PatternLike",
    "parse_words",
    "resolve_pattern",
    "resolve_shared_layers",
    "shared_layer_entries",
    "visualize",
]

#: A pattern string, a list of layer names, symbols and ``{"type": layer, ...}`` entries, or a
#: :class:`~hybridzoo.positions.Pattern`.
PatternLike = str | Sequence[Any]
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
    if name == "parse_pattern":
        warnings.warn(
            "hybridzoo.patterns.parse_pattern (words and their positions) is deprecated; use "
            "hybridzoo.patterns.parse_words, or hybridzoo.parse_pattern for the resolved pattern",
            DeprecationWarning,
            stacklevel=2,
        )
        return parse_words
    if name == "NAMED_PATTERNS":
        warnings.warn(
            "hybridzoo.patterns.NAMED_PATTERNS is deprecated; use hybridzoo.list_patterns() or "
            "hybridzoo.get_registry().named_patterns()",
            DeprecationWarning,
            stacklevel=2,
        )
        return named_patterns()
    raise AttributeError(f"module 'hybridzoo.patterns' has no attribute {name!r}")


# -- resolution -------------------------------------------------------------------------------


def parse_words(text: str) -> list[tuple[str, int]]:
    """The words of a pattern string with their character positions, repetitions expanded
    (option blocks are parsed and dropped; the limits of :mod:`hybridzoo.grammar` hold)."""
    from hybridzoo.grammar import check_size, parse_tree

    nodes = parse_tree(text)
    check_size(nodes, lambda word: 1, text)

    def expand(items: Sequence[Any]) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        for node in items:
            part = [(node.word, node.pos)] if node.kind == "word" else expand(node.children)
            out.extend(part * node.count)
        return out

    return expand(nodes)


def resolve_pattern(value: PatternLike | Pattern, *, registry: Registry | None = None) -> list[str]:
    """Turn any accepted pattern form into the list of registered layer names (see
    :func:`hybridzoo.positions.to_pattern` for the per-position options as well)."""
    return list(to_pattern(value, registry or get_registry()).layers)


def _shared_key(key: str, registry: Registry) -> tuple[str, Own]:
    """A shared layer's key: a layer name or symbol, or one layer with a block (``A{...}``)."""
    try:
        return registry.resolve(key).name, ()
    except UnknownLayerError:
        if "{" not in key:
            raise
    pattern = to_pattern(key, registry)
    if len(pattern) != 1:
        raise PatternError(
            f"a shared layer is one layer (a name or symbol, with its own options in a block: "
            f"'C{{kernel_size=8}}'), got {len(pattern)} positions in {key!r:.80}"
        )
    return pattern.layers[0], pattern.options[0]


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
    problems of its call, :func:`visualize` alone). A key may give the shared layer options of
    its own, ``{"C{kernel_size=8}": [2, 4]}`` (see :func:`shared_layer_entries`).
    """
    shared, _, problems = shared_layer_entries(shared_layers, num_layers, registry=registry)
    return shared, problems


def shared_layer_entries(
    shared_layers: Mapping[str, Sequence[int] | int] | None,
    num_layers: int,
    *,
    registry: Registry | None = None,
) -> tuple[SharedLayers, dict[str, Own], list[str]]:
    """:func:`resolve_shared_layers`, plus ``{layer name: its own options}`` for keys with an
    option block (``"C{kernel_size=8}"``: one set of weights with its own options)."""
    if shared_layers is None:
        return (), {}, []
    example = "e.g. {'conv': [2, 4]}"
    if not isinstance(shared_layers, Mapping):
        return (
            (),
            {},
            [
                f"shared_layers must be a mapping {{layer: [positions]}}, {example}; got "
                f"{shared_layers!r}"
            ],
        )
    registry = registry or get_registry()
    shared: list[tuple[str, tuple[int, ...]]] = []
    own: dict[str, Own] = {}
    problems: list[str] = []
    for layer, positions in shared_layers.items():
        if not isinstance(layer, str):
            problems.append(
                f"shared_layers: a key must be a layer name or symbol (a string), got {layer!r} "
                f"({type(layer).__name__}); {example}"
            )
            continue
        try:
            name, options = _shared_key(layer, registry)
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
        shared.append((name, tuple(sorted(int(p) for p in positions))))
        if options:
            own[name] = options
    return tuple(shared), own, problems


def visualize(
    value: PatternLike | Pattern,
    *,
    shared_layers: Mapping[str, Sequence[int]] | None = None,
    registry: Registry | None = None,
) -> str:
    """Edifice's text picture of a pattern, plus a line for shared layers when there are any.

    A position with options of its own shows them in a block after its symbol, as the grammar
    writes them. The shared layers are checked as :func:`hybridzoo.build` checks them (an
    :class:`~hybridzoo.OptionError` naming the bad value). With two toy layers::

        >>> print(visualize("CPCP"))  # doctest: +SKIP
        Layer pattern: C → P → C → P
        Legend: C=conv, P=mlp
        >>> print(visualize("C C{kernel_size=8}"))  # doctest: +SKIP
        Layer pattern: C → C{kernel_size=8}
        Legend: C=conv
        Own options at position 2
    """
    registry = registry or get_registry()
    pattern = to_pattern(value, registry)
    shared, shared_own, problems = shared_layer_entries(
        shared_layers, len(pattern), registry=registry
    )
    if problems:
        raise OptionError(problems)
    specs = [registry.get(n) for n in pattern.layers]
    legend: dict[str, str] = {}
    for spec in specs:
        legend.setdefault(spec.symbol, spec.name)
    cells = [s.symbol + format_block(own) for s, own in zip(specs, pattern.options, strict=True)]
    lines = [
        "Layer pattern: " + " → ".join(cells),
        "Legend: " + ", ".join(f"{sym}={name}" for sym, name in legend.items()),
    ]
    marked = [str(i + 1) for i, own in enumerate(pattern.options) if own]
    if marked:
        shown = ", ".join(marked[:20]) + (f", … ({len(marked)} in all)" if len(marked) > 20 else "")
        lines.append(f"Own options at position{'s' * (len(marked) > 1)} {shown}")
    if shared:
        parts = []
        for layer, positions in shared:
            spec = registry.get(layer)
            where = ", ".join(str(p) for p in positions)
            block = format_block(shared_own.get(layer, ()))
            parts.append(
                f"{spec.symbol}={spec.name}{block} (one set of weights) after layers {where}"
            )
        lines.append("Shared: " + "; ".join(parts))
    return "\n".join(lines)
