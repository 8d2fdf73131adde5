"""The pattern limits: refused before any expansion, always a PatternError with a caret, and a huge
pattern quoted as a window around the fault."""

from __future__ import annotations

import tracemalloc

import pytest

import hybridzoo
from hybridzoo import PatternError
from hybridzoo.grammar import MAX_CHARS, MAX_DEPTH, MAX_POSITIONS
from hybridzoo.patterns import resolve_pattern


@pytest.fixture
def registry(conv_mlp_registry):
    return conv_mlp_registry


def refused(text: str) -> PatternError:
    """The error ``text`` gets, with at most a small amount of memory used on the way."""
    tracemalloc.start()
    try:
        with pytest.raises(PatternError) as info:
            resolve_pattern(text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * len(text) + (2 << 20), f"{peak:,} bytes used to refuse the pattern"
    caret = str(info.value).splitlines()[-1]
    assert caret.strip() == "^" and info.value.position is not None
    return info.value


def test_the_cap_is_a_documented_constant_and_holds_exactly(registry):
    assert MAX_POSITIONS == 100_000 and "MAX_POSITIONS" in hybridzoo.grammar.__doc__
    assert len(resolve_pattern(f"(C)*{MAX_POSITIONS}")) == MAX_POSITIONS
    assert len(resolve_pattern(["C"] * MAX_POSITIONS)) == MAX_POSITIONS
    error = refused(f"(C)*{MAX_POSITIONS} C")
    assert "more than 100,000 positions" in str(error) and error.position == len("(C)*100000 ")
    with pytest.raises(PatternError, match="the cap is 100,000"):
        resolve_pattern(["C"] * (MAX_POSITIONS + 1))


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("(C)*100000000", 4),  # 14 characters that used to ask for 10^8 layers
        (
            "((((((((((C)*10)*10)*10)*10)*10)*10)*10)*10)*10)*10",
            33,
        ),  # 52 characters, 10^10: the count
        # that first passes the cap
        ("((C)*1000 P)*1000", 13),
        ("C" * (MAX_POSITIONS + 1), 0),  # one run of symbols
    ],
)
def test_too_many_positions_are_refused_before_expansion(registry, text, position):
    error = refused(text)
    assert "positions" in str(error) and error.position == position


def test_deep_nesting_is_refused_with_a_caret(registry):
    assert resolve_pattern("(" * MAX_DEPTH + "C" + ")" * MAX_DEPTH) == ["conv"]
    error = refused("(" * (MAX_DEPTH + 1) + "C" + ")" * (MAX_DEPTH + 1))
    assert f"deeper than {MAX_DEPTH}" in str(error) and error.position == MAX_DEPTH
    error = refused("(" * 100_000 + "C" + ")" * 100_000)  # no RecursionError
    assert error.position == MAX_DEPTH


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ("C*٣", 2, "ASCII digits.*U\\+0663"),  # an Arabic-Indic digit, which int() accepts
        ("C*²", 2, "ASCII digits"),
        ("C*" + "9" * 5000, 2, "exceeds 100,000"),  # int() of this raises ValueError
        ("C*99999999999999999999", 2, "exceeds 100,000"),
        ("Ｃ", 0, "U\\+FF23, not ASCII"),
        ("C C{kernel_size=" + "9" * 500 + "}", 16, "too long"),
    ],
)
def test_bad_counts_and_characters_are_pattern_errors(registry, text, position, message):
    with pytest.raises(PatternError, match=message) as info:
        resolve_pattern(text)
    assert info.value.position == position


def test_a_huge_pattern_is_quoted_as_a_window_around_the_fault(registry):
    text = "C " * 20_000 + "X" + " C" * 20_000
    with pytest.raises(PatternError) as info:
        resolve_pattern(text)
    lines = str(info.value).splitlines()
    quoted, caret = lines[-2], lines[-1]
    assert len(quoted) < 100 and quoted.startswith("  …") and quoted.endswith("…")
    assert quoted[caret.index("^")] == "X"
    assert len(str(info.value)) < 600
    with pytest.raises(PatternError, match="characters; the cap is") as info:
        resolve_pattern("C" * (MAX_CHARS + 1))
    assert len(str(info.value)) < 600


def test_the_native_grammar_keeps_its_meaning(registry):
    assert resolve_pattern("(C P)*2 -> C") == ["conv", "mlp", "conv", "mlp", "conv"]
    assert resolve_pattern("C P*2") == ["conv", "mlp", "mlp"]
