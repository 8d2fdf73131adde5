"""Every notation's pattern errors point at the fault: the error's ``position`` is the 0-based
index of the offending character, and the message's last line puts a caret under it.

The cases are the table in ``pattern_errors.json``: one row per bad pattern, giving the notation,
the text, the position of its fault and a regular expression the message must match."""

from __future__ import annotations

import json
from pathlib import Path

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
CASES = json.loads((Path(__file__).parent / "pattern_errors.json").read_text(encoding="utf-8"))


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
