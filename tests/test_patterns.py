"""Named patterns (Edifice's lists), the pattern language, visualize."""

from __future__ import annotations

import pytest
from toy_layers import conv_spec

import hybridzoo
from hybridzoo import PatternError, Registry
from hybridzoo.patterns import resolve_pattern

M, A, G, R, F = "mamba", "attention", "gla", "rwkv", "ffn"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("jamba_like", [M, A, M, A, M, A]),
        ("zamba_like", [M] * 6),
        ("mamba_gla", [M, M, G, M, M, G]),
        ("rwkv_attention", [R, R, R, A, R, R]),
        ("full_hybrid", [M, A, G, R, M, F]),
        ("ssm_stack", [M] * 6),
    ],
)
def test_named_patterns_match_edifice(name, expected):
    assert hybridzoo.pattern(name, 6) == expected


def test_named_pattern_lengths_and_errors():
    assert hybridzoo.pattern("full_hybrid", 8)[6:] == [M, A]
    assert hybridzoo.pattern("jamba_like", 1) == [M]
    with pytest.raises(PatternError, match="num_layers must be an integer >= 1, got 0"):
        hybridzoo.pattern("jamba_like", 0)
    with pytest.raises(PatternError, match="Did you mean 'jamba_like'"):
        hybridzoo.pattern("jamba_lik", 4)


@pytest.fixture
def registry():
    reg = Registry(autoload=False)
    reg.register(conv_spec())
    reg.register(conv_spec(name="ffn", symbol="F", prefix="ffn"))
    with hybridzoo.use_registry(reg):
        yield reg


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CFC", ["conv", "ffn", "conv"]),
        ("C F C", ["conv", "ffn", "conv"]),
        ("C, F → C", ["conv", "ffn", "conv"]),
        ("C -> F", ["conv", "ffn"]),
        ("conv ffn", ["conv", "ffn"]),
        ("(CF)*2", ["conv", "ffn", "conv", "ffn"]),
        ("(C F*2)*2 C", ["conv", "ffn", "ffn", "conv", "ffn", "ffn", "conv"]),
        ("((C)*2 F)*2", ["conv", "conv", "ffn", "conv", "conv", "ffn"]),
    ],
)
def test_string_patterns(registry, text, expected):
    assert resolve_pattern(text) == expected


def test_list_patterns(registry):
    assert resolve_pattern(["conv", "F", "C"]) == ["conv", "ffn", "conv"]
    with pytest.raises(PatternError, match="pattern item 1"):
        resolve_pattern(["conv", "nope"])
    with pytest.raises(PatternError, match="must be a layer name or symbol, got 3"):
        resolve_pattern(["conv", 3])


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ("C F X", 4, "'X' is not a symbol|unknown layer symbol 'X'"),
        ("CFX", 2, "'X' is not a symbol"),
        ("(C F", 4, "unclosed"),
        ("C F)", 3, "unexpected '\\)'"),
        ("(CF)*0", 5, "count must be >= 1"),
        ("(CF)*", 5, "expected a repetition count"),
        ("C + F", 2, "unexpected character '\\+'"),
        ("()", 0, "empty group"),
    ],
)
def test_errors_point_at_the_position(registry, text, position, message):
    with pytest.raises(PatternError, match=message) as info:
        resolve_pattern(text)
    assert info.value.position == position
    caret_line = str(info.value).splitlines()[-1]
    assert caret_line.index("^") - 2 == position


def test_empty_pattern(registry):
    with pytest.raises(PatternError, match="has no layers"):
        resolve_pattern("  ")


def test_visualize_is_edifice_text():
    registry = Registry(autoload=False)
    for name, symbol in [("mamba", "M"), ("attention", "A"), ("gla", "G"), ("ffn", "F")]:
        registry.register(conv_spec(name=name, symbol=symbol))
    text = hybridzoo.visualize("M A G F", registry=registry)
    assert text == "Layer pattern: M → A → G → F\nLegend: M=mamba, A=attention, G=gla, F=ffn"
    text = hybridzoo.visualize("MMA", shared_layers={"attention": [1, 2]}, registry=registry)
    assert text.splitlines()[1] == "Legend: M=mamba, A=attention"
    assert text.splitlines()[2] == "Shared: A=attention (one set of weights) after layers 1, 2"
