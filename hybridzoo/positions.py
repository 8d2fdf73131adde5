"""A resolved pattern (:class:`Pattern`): the layer at each position and the options a position
sets itself, from any pattern form; and the validated options record of each such position.

Forms: a string of the native grammar (:mod:`hybridzoo.grammar`), a list of layer names or
symbols and ``{"type": layer, field: value, ...}`` entries, a :class:`Pattern` (what
:func:`hybridzoo.parse_pattern` returns, in any dialect).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs

from hybridzoo.errors import PatternError, UnknownLayerError, did_you_mean
from hybridzoo.grammar import MAX_POSITIONS, Node, check_size, format_block, parse_tree
from hybridzoo.registry import Registry

__all__ = ["Pattern", "PositionOptions", "position_records", "to_pattern"]

Own = tuple[tuple[str, Any], ...]  # a position's own options, (field, value) pairs


@attrs.frozen
class Pattern:
    """A pattern resolved to registered layers.

    Attributes:
        layers: the layer name at each position.
        options: per position, the options it sets itself (``(field, value)`` pairs; empty for
            none): they override the ``<prefix>_<field>`` keywords at that position only.
        layer_options: model-wide ``<prefix>_<field>`` options that the pattern's notation
            implies (a dialect's meaning, e.g. a mixer without the feed-forward sub-block it has
            here); the keywords of a call win over them.
        boundaries: positions before each pipeline-stage boundary (Megatron's ``|``), reported
            and written back by :func:`hybridzoo.format_pattern`; the model itself has none.
        dialect: the notation it was read from (``"native"``, ``"megatron"``, ...).
        notes: what the notation did not say and was assumed (shown by ``hybridzoo show``).
    """

    layers: tuple[str, ...] = attrs.field(converter=tuple)
    options: tuple[Own, ...] = attrs.field(converter=tuple)
    layer_options: tuple[tuple[str, Any], ...] = ()
    boundaries: tuple[int, ...] = ()
    dialect: str = "native"
    notes: tuple[str, ...] = ()
    text: str | None = attrs.field(default=None, eq=False, repr=False)
    sources: tuple[Any, ...] = attrs.field(default=(), eq=False, repr=False)

    def __len__(self) -> int:
        return len(self.layers)

    def own(self, index: int) -> dict[str, Any]:
        """The options position ``index`` (0-based) sets itself."""
        return dict(self.options[index])

    def entries(self) -> list[Any]:
        """The list form: a layer name, or ``{"type": name, field: value}`` where a position has
        its own options."""
        return [
            {"type": name, **dict(own)} if own else name
            for name, own in zip(self.layers, self.options, strict=True)
        ]

    def error(self, problems: Sequence[tuple[int, str, str]]) -> PatternError:
        """A :class:`PatternError` for ``(index, field, message)`` problems, pointing at the first
        (a caret under its value in a string pattern, else ``pattern item N``)."""
        index, field, _ = problems[0]
        lines = []
        for i, _field, message in problems:
            lines.append(f"position {i + 1} ({self.layers[i]}): {message}")
        text = lines[0] if len(lines) == 1 else f"{len(lines)} problems:\n" + "\n".join(lines)
        where = dict(self.sources[index]) if index < len(self.sources) else {}
        pos = where.get(field, where.get(""))
        if self.text is not None and pos is not None:
            return PatternError(text, pattern=self.text, position=pos)
        return PatternError(text)


class PositionOptions(Mapping[Any, dict]):
    """The options some positions set themselves, immutable and hashable:
    ``{0-based index, or a shared layer's name: {field: value}}``, with the validated records
    (:meth:`record`) that the model builds with."""

    __slots__ = ("_own", "_records")

    def __init__(self, own: Mapping[Any, Own] = (), records: Mapping[Any, Any] = ()) -> None:  # type: ignore[assignment]
        self._own = {k: tuple(v) for k, v in dict(own).items() if v}
        self._records = dict(records)

    def __getitem__(self, key: Any) -> dict:
        return dict(self._own[key])

    def __iter__(self) -> Iterator[Any]:
        return iter(self._own)

    def __len__(self) -> int:
        return len(self._own)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PositionOptions):
            return self._own == other._own
        return NotImplemented

    def __hash__(self) -> int:
        return hash(frozenset(self._own.items()))

    def own(self, key: Any) -> Own:
        """The ``(field, value)`` pairs of ``key`` (empty when it sets none)."""
        return self._own.get(key, ())

    def record(self, key: Any) -> Any:
        """The options record of ``key``, or ``None`` when it sets no options of its own."""
        return self._records.get(key)

    def __repr__(self) -> str:
        return f"PositionOptions({ {k: dict(v) for k, v in self._own.items()}!r})"


# -- native forms ------------------------------------------------------------------------------


def _fields(registry: Registry, name: str) -> tuple[str, ...]:
    return tuple(f.name for f in attrs.fields(registry.get(name).options))


def resolve_word(word: str, pos: int, text: str | None, registry: Registry) -> list[str]:
    """The layers a ``WORD`` stands for: a registered name, or a run of symbols."""
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
                    f"{word[:40]!r} is neither a registered layer name nor a run of layer "
                    f"symbols: {letter!r} is not a symbol.{hint}"
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


_Entry = tuple[str, dict, dict]  # layer, own options, {field: char position}


def _apply_block(part: list[_Entry], node: Node, text: str, registry: Registry) -> list[_Entry]:
    block = node.block
    assert block is not None
    names = list(dict.fromkeys(name for name, _, _ in part))
    fields = {name: _fields(registry, name) for name in names}
    for key, _value, key_pos, _ in block.items:
        if not any(key in fields[name] for name in names):
            known = sorted({f for name in names for f in fields[name]})
            where = names[0] if len(names) == 1 else f"none of {', '.join(names)}"
            hint = did_you_mean(key, known)
            if not hint and "_" in key:
                hint = did_you_mean(key.split("_", 1)[1], known)
            raise PatternError(
                f"{where} has no option {key!r}.{hint} Inside a block give the option's field "
                f"name: {', '.join(known) or '(none)'}",
                pattern=text,
                position=key_pos,
            )
    out = []
    for name, own, where in part:
        mine = {k: v for k, v, _, _ in block.items if k in fields[name]}
        spots = {k: p for k, _, _, p in block.items if k in fields[name]}
        if mine:
            spots[""] = block.pos
            out.append((name, {**mine, **own}, {**spots, **where}))
        else:
            out.append((name, own, where))
    return out


def _expand(nodes: Sequence[Node], text: str, registry: Registry) -> list[_Entry]:
    out: list[_Entry] = []
    for node in nodes:
        if node.kind == "word":
            part = [(n, {}, {}) for n in resolve_word(node.word, node.pos, text, registry)]
        else:
            part = _expand(node.children, text, registry)
        if node.block is not None:
            part = _apply_block(part, node, text, registry)
        out.extend(part * node.count)
    return out


def _from_text(text: str, registry: Registry) -> Pattern:
    nodes = parse_tree(text)
    check_size(nodes, lambda word: 1 if word in registry else len(word), text)
    entries = _expand(nodes, text, registry)
    return Pattern(
        layers=[name for name, _, _ in entries],
        options=[tuple(own.items()) for _, own, _ in entries],
        text=text,
        sources=tuple(tuple(where.items()) for _, _, where in entries),
    )


def _list_item(i: int, item: Any, registry: Registry) -> tuple[str, Own]:
    if isinstance(item, str):
        try:
            return registry.resolve(item).name, ()
        except UnknownLayerError as exc:
            raise PatternError(f"pattern item {i}: {exc}") from None
    if not isinstance(item, Mapping):
        raise PatternError(
            f"pattern item {i} must be a layer name or symbol, got {item!r:.80} "
            f"({type(item).__name__}); or a mapping {{'type': layer, option: value}}"
        )
    if "type" not in item:
        raise PatternError(
            f"pattern item {i} {dict(item)!r:.80} needs the key 'type' (the layer name or "
            "symbol), e.g. {'type': 'conv', 'kernel_size': 8}"
        )
    try:
        spec = registry.resolve(item["type"])
    except UnknownLayerError as exc:
        raise PatternError(f"pattern item {i}: {exc}") from None
    fields = _fields(registry, spec.name)
    own = tuple((k, v) for k, v in item.items() if k != "type")
    for key, _ in own:
        if key not in fields:
            raise PatternError(
                f"pattern item {i} ({spec.name}): unknown option {key!r}."
                f"{did_you_mean(str(key), fields)} Options: {', '.join(fields)}"
            )
    return spec.name, own


def to_pattern(value: Any, registry: Registry) -> Pattern:
    """Any accepted pattern form as a :class:`Pattern` (native grammar for strings)."""
    if isinstance(value, Pattern):
        return value
    if isinstance(value, str):
        pattern = _from_text(value, registry)
    elif isinstance(value, Sequence):
        if len(value) > MAX_POSITIONS:
            raise PatternError(
                f"the pattern has {len(value):,} positions; the cap is {MAX_POSITIONS:,}"
            )
        items = [_list_item(i, item, registry) for i, item in enumerate(value)]
        pattern = Pattern([n for n, _ in items], [own for _, own in items])
    else:
        raise PatternError(
            f"a pattern must be a string or a list of layer names, got {type(value).__name__}"
        )
    if not pattern.layers:
        shown = value if not isinstance(value, str) or len(value) < 60 else value[:57] + "..."
        raise PatternError(f"the pattern {shown!r} has no layers")
    return pattern


def native_text(pattern: Pattern, registry: Registry) -> str:
    """The pattern in the native grammar: symbols, a block where a position has options."""
    return " ".join(
        registry.get(name).symbol + format_block(own)
        for name, own in zip(pattern.layers, pattern.options, strict=True)
    )


# -- validated records -------------------------------------------------------------------------


def position_records(
    pattern: Pattern, records: Mapping[str, Any], registry: Registry
) -> tuple[dict[int, Own], dict[int, Any]]:
    """The options record of each position with options of its own: the layer's record
    (``records[name]``, from the keywords) with them replaced, validated as any option.

    Returns ``(own, records)`` keyed by 0-based index (``own`` holds the values as the record
    stores them). Every bad value is reported in one :class:`PatternError` pointing at the first.
    """
    problems: list[tuple[int, str, str]] = []
    seen: dict[tuple[str, Own], Any] = {}
    own_out: dict[int, Own] = {}
    out: dict[int, Any] = {}
    for i, (name, own) in enumerate(zip(pattern.layers, pattern.options, strict=True)):
        if not own:
            continue
        key = (name, own)
        if key not in seen:
            seen[key] = _record(i, name, own, records[name], registry, problems)
        record = seen[key]
        if record is not None:
            out[i] = record
            own_out[i] = tuple((field, getattr(record, field)) for field, _ in own)
    if problems:
        raise pattern.error(problems)
    return own_out, out


def _record(
    index: int,
    name: str,
    own: Own,
    base: Any,
    registry: Registry,
    problems: list[tuple[int, str, str]],
) -> Any:
    spec = registry.get(name)
    fields = attrs.fields_dict(spec.options)
    bad = False
    for field, value in own:
        validator = fields[field].validator
        if validator is None:
            continue
        try:
            validator(None, fields[field], value)
        except (TypeError, ValueError) as exc:
            problems.append((index, field, f"{field}={value!r}: {exc}"))
            bad = True
    if bad:
        return None
    try:
        return attrs.evolve(base, **dict(own))
    except (TypeError, ValueError) as exc:  # cross-field checks of the record
        problems.append((index, "", f"the options here ({format_block(own)[1:-1]}): {exc}"))
        return None
