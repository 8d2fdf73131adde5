"""Every notation's pattern errors point at the fault: the error's ``position`` is the 0-based
index of the offending character, and the message's last line puts a caret under it.

One row per bad pattern: the notation, the text, the position of its fault and a regular
expression the message must match."""

from __future__ import annotations

import pytest

import hybridzoo
from hybridzoo import PatternError, parse_pattern
from hybridzoo.patterns import resolve_pattern

# notation -> (the toy-layer registry fixture its cases run under, None for the installed
# layers; the call that parses a text in it)
NOTATIONS = {
    "native": ("conv_ffn_registry", resolve_pattern),
    "option-block": (
        "conv_mlp_registry",
        lambda text: hybridzoo.build(text, embed_dim=4, hidden_size=4),
    ),
    "megatron": (None, lambda text: parse_pattern(text, dialect="megatron")),
}
# the Megatron cases run as they did among the dialect tests: with its warnings ignored
MARKS = {"megatron": pytest.mark.filterwarnings("ignore::hybridzoo.DialectWarning")}
CASES = [
    ("native", "C F X", 4, "'X' is not a symbol|unknown layer symbol 'X'"),
    ("native", "CFX", 2, "'X' is not a symbol"),
    ("native", "(C F", 4, "unclosed"),
    ("native", "C F)", 3, "unexpected '\\)'"),
    ("native", "(CF)*0", 5, "count must be >= 1"),
    ("native", "(CF)*", 5, "expected a repetition count"),
    ("native", "C + F", 2, "unexpected character '\\+'"),
    ("native", "()", 0, "empty group"),
    (
        "option-block",
        "C C{kernel_size=0}",
        16,
        "position 2 \\(conv\\): kernel_size=0: must be an integer >= 1",
    ),
    ("option-block", "C{kernel=3}", 2, "conv has no option 'kernel'. Did you mean 'kernel_size'"),
    ("option-block", "C{conv_kernel_size=3}", 2, "Did you mean 'kernel_size'"),
    ("option-block", "(C P){width=3}", 6, "none of conv, mlp has"),
    ("option-block", "C{kernel_size=3 kernel_size=4}", 16, "given twice"),
    ("option-block", "C{kernel_size 3}", 14, "expected '='"),
    ("option-block", "C{kernel_size=3", 1, "unclosed option block"),
    ("option-block", "C{kernel_size=}", 14, "expected a value"),
    ("option-block", "C{kernel_size=3٣}", 14, "expected a value"),
    ("option-block", "{kernel_size=3}", 0, "a layer or a group before an option block"),
    ("megatron", "M*M*/MM/MM", 4, "multi-token-prediction"),
    ("megatron", "M-D-", 2, "'D' \\(DeepSeek Sparse Attention\\) is no hybridzoo layer"),
    ("megatron", "M+", 1, "Multi-Latent Attention"),
    ("megatron", "M-x", 2, "'x' is not a Megatron layer symbol"),
    ("megatron", "M||-", 2, "empty pipeline segment"),
    ("megatron", "M-|", 2, "trailing"),
    ("megatron", "M M", 1, "' ' is not a Megatron layer symbol"),
]
"""(notation, text, position of the fault, a regular expression the message matches)."""


@pytest.mark.parametrize(
    ("notation", "text", "position", "message"),
    [
        pytest.param(*case, id=f"{case[0]}: {case[1]}", marks=MARKS.get(case[0], ()))
        for case in CASES
    ],
)
def test_errors_point_at_the_fault(request, notation, text, position, message):
    fixture, parse = NOTATIONS[notation]
    if fixture is not None:
        request.getfixturevalue(fixture)
    with pytest.raises(PatternError, match=message) as info:
        parse(text)
    assert info.value.position == position
    caret_line = str(info.value).splitlines()[-1]
    assert caret_line.index("^") - 2 == position
