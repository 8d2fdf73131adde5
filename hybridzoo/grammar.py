"""The native pattern language: a parser with limits, option blocks, and its writer.

Grammar (whitespace, ``,``, ``→`` and ``->`` separate items and are otherwise ignored)::

    pattern  := item*
    item     := atom block? ( "*" COUNT )?     COUNT >= 1 repeats the atom (and its block)
    atom     := WORD | "(" pattern ")"
    block    := "{" ( KEY "=" VALUE ( [","] KEY "=" VALUE )* )? "}"
    WORD     := letter (letter | digit | "_")*          ASCII only
    KEY      := a field of the layer's options record (``kernel_size``, not the keyword
                ``conv_kernel_size``)
    VALUE    := None | True | False | an integer | a float (1e-5, inf) | 'text' | "text" | word

A ``WORD`` that is a registered layer name stands for that layer; otherwise each of its letters
is a layer symbol. A block after a layer gives that position its own options, which override the
``<prefix>_<field>`` keywords there only: ``"C C P{inner=16} C"``. A block after a group or a run
of symbols applies to each position inside whose layer has that field (a key that no layer
inside has is an error), and an inner block wins over an outer one:
``"(C C P{inner=16})*3"``, ``"(C C{kernel_size=2}){kernel_size=8} C"``. (The examples use two
toy layers, ``conv`` with symbol ``C`` and options ``kernel_size``, and ``mlp`` with ``P`` and
``inner``; ``hybridzoo layers`` lists the installed ones.)

Limits, checked before anything is expanded, each a :class:`~hybridzoo.PatternError` with a caret
(a huge pattern is quoted as a window around the fault): at most :data:`MAX_POSITIONS` positions,
groups nested at most :data:`MAX_DEPTH` deep, at most :data:`MAX_CHARS` characters, counts and
numbers of ASCII digits only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from hybridzoo.errors import PatternError

__all__ = [
    "MAX_CHARS",
    "MAX_DEPTH",
    "MAX_POSITIONS",
    "Block",
    "Node",
    "format_value",
    "parse_tree",
]

#: The most positions a pattern may expand to (any form: string, list, dialect).
MAX_POSITIONS = 100_000
#: The deepest nesting of groups ``( ... )`` in a pattern string.
MAX_DEPTH = 32
#: The longest pattern string accepted.
MAX_CHARS = 1_000_000

_SEPARATORS = " \t\n\r,→"
_WORD_START = re.compile(r"[A-Za-z]")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DIGITS = re.compile(r"[0-9]+")
_WORDS = {"None": None, "none": None, "null": None, "True": True, "true": True}
_WORDS |= {"False": False, "false": False}
_FLOATS = {"inf": math.inf, "+inf": math.inf, "-inf": -math.inf, "nan": math.nan}
#: a number with more characters than this is refused (no option takes such a number)
_MAX_NUMBER_CHARS = 40


@attrs.frozen
class Block:
    """An option block ``{key=value, ...}``: ``items`` are ``(key, value, key pos, value pos)``."""

    pos: int
    items: tuple[tuple[str, Any, int, int], ...]


@attrs.frozen
class Node:
    """One item of a parsed pattern: a word (``kind="word"``) or a group of items."""

    kind: str
    pos: int
    word: str = ""
    children: tuple[Node, ...] = ()
    block: Block | None = None
    count: int = 1
    count_pos: int | None = None


def _describe(ch: str) -> str:
    return repr(ch) if ch.isascii() else f"{ch!r} (U+{ord(ch):04X}, not ASCII)"


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, message: str, pos: int | None = None) -> PatternError:
        return PatternError(message, pattern=self.text, position=self.pos if pos is None else pos)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip(self) -> None:
        text = self.text
        while self.pos < len(text):
            if text[self.pos] in _SEPARATORS:
                self.pos += 1
            elif text.startswith("->", self.pos):
                self.pos += 2
            else:
                break

    def sequence(self, depth: int, opened: int | None) -> list[Node]:
        items: list[Node] = []
        while True:
            self.skip()
            ch = self.peek()
            if not ch:
                if opened is not None:
                    raise self.error("unclosed '(': expected ')'")
                return items
            if ch == ")":
                if opened is None:
                    raise self.error("unexpected ')' with no matching '('")
                return items
            items.append(self.item(depth))

    def item(self, depth: int) -> Node:
        start, ch = self.pos, self.peek()
        if ch == "(":
            if depth >= MAX_DEPTH:
                raise self.error(f"groups nest deeper than {MAX_DEPTH} levels (the cap)", start)
            self.pos += 1
            inner = self.sequence(depth + 1, start)
            self.pos += 1  # the ')'
            if not inner:
                raise self.error("empty group '()'", start)
            node = Node("group", start, children=tuple(inner))
        elif _WORD_START.match(ch):
            word = _WORD.match(self.text, self.pos).group()  # type: ignore[union-attr]
            self.pos += len(word)
            node = Node("word", start, word=word)
        else:
            what = "a layer name, a symbol or '('"
            if ch == "{":
                what = "a layer or a group before an option block '{'"
            raise self.error(f"unexpected character {_describe(ch)}: expected {what}", start)
        save = self.pos
        while self.peek() in (" ", "\t"):
            self.pos += 1
        if self.peek() == "{":
            node = attrs.evolve(node, block=self.block())
            save = self.pos
        self.pos = save
        save = self.pos
        self.skip()
        if self.peek() != "*":
            self.pos = save
            return node
        self.pos += 1
        self.skip()
        count_pos = self.pos
        digits = _DIGITS.match(self.text, self.pos)
        if digits is None:
            got = self.peek()
            extra = f", got {_describe(got)}" if got else ""
            raise self.error(
                f"expected a repetition count (ASCII digits 0-9) after '*'{extra}", count_pos
            )
        self.pos = digits.end()
        text = digits.group()
        if len(text) > len(str(MAX_POSITIONS)):
            raise self.error(
                f"the repetition count {text[:12]}{'…' * (len(text) > 12)} exceeds "
                f"{MAX_POSITIONS:,}, the most positions a pattern may have",
                count_pos,
            )
        count = int(text)
        if count < 1:
            raise self.error("the repetition count must be >= 1", count_pos)
        return attrs.evolve(node, count=count, count_pos=count_pos)

    def block(self) -> Block:
        start = self.pos
        self.pos += 1  # the '{'
        items: list[tuple[str, Any, int, int]] = []
        seen: set[str] = set()
        while True:
            while self.peek() and self.peek() in " \t\n\r,":
                self.pos += 1
            ch = self.peek()
            if not ch:
                raise self.error("unclosed option block '{': expected '}'", start)
            if ch == "}":
                self.pos += 1
                return Block(start, tuple(items))
            key_pos = self.pos
            key = _KEY.match(self.text, self.pos)
            if key is None:
                raise self.error(
                    f"unexpected character {_describe(ch)} in an option block: expected an "
                    "option name (e.g. kernel_size=8) or '}'"
                )
            self.pos = key.end()
            while self.peek() in (" ", "\t"):
                self.pos += 1
            if self.peek() != "=":
                raise self.error(f"expected '=' after the option name {key.group()!r}")
            self.pos += 1
            while self.peek() in (" ", "\t"):
                self.pos += 1
            value_pos = self.pos
            value = self.value()
            if key.group() in seen:
                raise self.error(f"the option {key.group()!r} is given twice", key_pos)
            seen.add(key.group())
            items.append((key.group(), value, key_pos, value_pos))

    def value(self) -> Any:
        start, ch = self.pos, self.peek()
        if ch in ("'", '"'):
            end = self.text.find(ch, start + 1)
            if end < 0:
                raise self.error(f"unclosed string: expected a closing {ch}", start)
            self.pos = end + 1
            return self.text[start + 1 : end]
        for word, number in _FLOATS.items():
            if self.text.startswith(word, start) and not _continues(self.text, start + len(word)):
                self.pos += len(word)
                return number
        match = _NUMBER.match(self.text, start)
        if match is not None and not _continues(self.text, match.end()):
            text = match.group()
            if len(text) > _MAX_NUMBER_CHARS:
                raise self.error(f"the number {text[:12]}… is too long", start)
            self.pos = match.end()
            return float(text) if any(c in text for c in ".eE") else int(text)
        word = _KEY.match(self.text, start)
        if word is not None:
            self.pos = word.end()
            return _WORDS.get(word.group(), word.group())
        what = _describe(ch) if ch else "the end of the pattern"
        raise self.error(
            f"expected a value (None, True, False, a number, 'text' or a word), got {what}", start
        )


def _continues(text: str, end: int) -> bool:
    """A value token is followed by more of a word (``12ab``, ``1٣``): not a clean end."""
    return end < len(text) and (text[end].isalnum() or text[end] in "_.")


def parse_tree(text: str) -> list[Node]:
    """Parse a pattern string into its items (nothing expanded); a :class:`PatternError` with a
    caret for anything malformed, too long or nested too deep."""
    if not isinstance(text, str):
        raise PatternError(f"a pattern string must be a str, got {type(text).__name__}")
    if len(text) > MAX_CHARS:
        raise PatternError(
            f"the pattern has {len(text):,} characters; the cap is {MAX_CHARS:,}",
            pattern=text,
            position=MAX_CHARS,
        )
    return _Parser(text).sequence(0, None)


def check_size(
    nodes: Sequence[Node], word_size: Callable[[str], int], text: str | None = None
) -> int:
    """The number of positions ``nodes`` expand to (``word_size(word)`` per word), refusing more
    than :data:`MAX_POSITIONS` before anything is expanded."""
    total = 0
    for node in nodes:
        if node.kind == "word":
            inner = word_size(node.word)
        else:
            inner = check_size(node.children, word_size, text)
        size = inner * node.count
        total += size
        if total > MAX_POSITIONS:
            where = node.pos
            if size > MAX_POSITIONS and node.count_pos is not None:
                where = node.count_pos
            raise PatternError(
                f"the pattern expands to more than {MAX_POSITIONS:,} positions (the cap)",
                pattern=text,
                position=where,
            )
    return total


def format_value(value: Any) -> str:
    """A value as the grammar writes it (``None``, ``True``, ``128``, ``1e-05``, ``'swiglu'``)."""
    if value is None or isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if value != value else repr(value)
    if isinstance(value, str) and "'" not in value:
        return f"'{value}'"
    if isinstance(value, str) and '"' not in value:
        return f'"{value}"'
    raise PatternError(
        f"the option value {value!r} cannot be written in a pattern string (None, True, False, "
        "numbers and strings can); give the pattern as a list of entries instead"
    )


def format_block(options: Sequence[tuple[str, Any]]) -> str:
    """``{kernel_size=8, bias=None}`` (empty for no options)."""
    if not options:
        return ""
    return "{" + ", ".join(f"{k}={format_value(v)}" for k, v in options) + "}"
