"""Per-position options: the grammar's option blocks, list entries, validation with a caret, and
every place a config goes (counting, the model, JSON, save/load, replace, visualize, states)."""

from __future__ import annotations

import json
import math

import attrs
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from toy_layers import ConvOptions

import hybridzoo
from hybridzoo import ConfigError, HybridConfig, OptionError, PatternError
from hybridzoo.positions import to_pattern


@pytest.fixture
def registry(conv_mlp_registry):
    return conv_mlp_registry


def own(text: str) -> list[dict]:
    return [dict(o) for o in to_pattern(text, hybridzoo.get_registry()).options]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("C C{kernel_size=8} P", [{}, {"kernel_size": 8}, {}]),
        ("C {kernel_size=8}", [{"kernel_size": 8}]),
        ("(C P{inner=16})*2", [{}, {"inner": 16}, {}, {"inner": 16}]),
        ("(C C{kernel_size=2}){kernel_size=8} C", [{"kernel_size": 8}, {"kernel_size": 2}, {}]),
        ("CPC{kernel_size=5}", [{"kernel_size": 5}, {}, {"kernel_size": 5}]),
        ("(C P){kernel_size=5, inner=3}", [{"kernel_size": 5}, {"inner": 3}]),
        ("C{kernel_size=4}*2 -> P", [{"kernel_size": 4}, {"kernel_size": 4}, {}]),
        ("conv{kernel_size=6}", [{"kernel_size": 6}]),
    ],
)
def test_blocks_give_positions_their_options(registry, text, expected):
    assert own(text) == expected


def test_block_values(registry):
    values = "{a=None, b=none, c=null, d=True, e=false, f=-3, g=1e-5, h=.5, i='x y', j=\"z\", "
    values += "k=silu, l=inf, m=-inf}"
    from hybridzoo.grammar import parse_tree

    (node,) = parse_tree("C" + values)
    got = {k: v for k, v, _, _ in node.block.items}
    assert got == {
        "a": None, "b": None, "c": None, "d": True, "e": False, "f": -3, "g": 1e-5, "h": 0.5,
        "i": "x y", "j": "z", "k": "silu", "l": math.inf, "m": -math.inf,
    }  # fmt: skip


def test_list_entries_and_their_errors(registry):
    pattern = to_pattern(["C", {"type": "conv", "kernel_size": 8}, "P"], registry)
    assert pattern.layers == ("conv", "conv", "mlp") and dict(pattern.options[1]) == {
        "kernel_size": 8
    }
    assert pattern.entries() == ["conv", {"type": "conv", "kernel_size": 8}, "mlp"]
    with pytest.raises(PatternError, match="needs the key 'type'"):
        to_pattern([{"kernel_size": 8}], registry)
    with pytest.raises(PatternError, match="unknown option 'kernel'.*Did you mean 'kernel_size'"):
        to_pattern([{"type": "C", "kernel": 8}], registry)


def test_a_bad_list_entry_names_its_position(registry):
    with pytest.raises(PatternError, match="position 2 \\(conv\\): kernel_size=0") as info:
        hybridzoo.param_count(["C", {"type": "C", "kernel_size": 0}], hidden_size=4)
    assert info.value.position is None


def test_cross_field_checks_and_hidden_size_multiples_per_position(registry):
    with pytest.raises(OptionError, match="hidden_size=6 must be a multiple of 4 for layer 'wide'"):
        HybridConfig.create("W W{kernel_size=4}", hidden_size=6)
    assert HybridConfig.create("W W{kernel_size=2}", hidden_size=6, wide_kernel_size=3)


def test_own_options_override_the_keywords_there_only(registry):
    config = HybridConfig.create("C C{kernel_size=8} C", hidden_size=4, conv_kernel_size=2)
    assert [config.options_of("conv", i).kernel_size for i in range(3)] == [2, 8, 2]
    model = hybridzoo.build(config)
    assert [b.sub_blocks[0].body.k for b in model.blocks] == [2, 8, 2]
    assert model.param_count() == hybridzoo.param_count(config)
    assert hybridzoo.param_count(config) == hybridzoo.param_count("C C C", hidden_size=4) + 4 * (
        8 + 2 * 2 - 3 * 3
    )


def test_the_config_carries_them_through_json_save_and_replace(registry, tmp_path):
    config = HybridConfig.create("C{kernel_size=5} P", hidden_size=4, embed_dim=4)
    data = config.to_dict()
    assert data["config_version"] == 3 and data["position_options"] == {"1": {"kernel_size": 5}}
    assert HybridConfig.from_json(json.dumps(data)) == config
    plain = HybridConfig.create("C P", hidden_size=4).to_dict()
    assert plain["config_version"] == 2 and "position_options" not in plain
    model = hybridzoo.build(config)
    model.save(tmp_path)
    assert hybridzoo.load(tmp_path).config == config
    kept = config.replace(conv_kernel_size=2, hidden_size=8)
    assert (
        kept.options_of("conv", 0).kernel_size == 5 and kept.layer_options["conv"].kernel_size == 2
    )
    assert attrs.evolve(config, dropout=0.0).position_options == config.position_options
    assert not config.replace(pattern="C P").position_options
    for bad, message in [
        ({"0": {"kernel_size": 5}}, "outside the pattern's 1..2"),
        ({"x": {"kernel_size": 5}}, "keys are 1-based positions"),
        ({"1": 5}, "must map to"),
        ({"1": {"kernel_size": 0}}, "kernel_size=0"),
    ]:
        with pytest.raises((ConfigError, PatternError), match=message):
            HybridConfig.from_dict({**data, "position_options": bad})


def test_visualize_marks_the_positions_with_their_own_options(registry):
    text = hybridzoo.visualize("C C{kernel_size=8} P", shared_layers={"P{inner=2}": [1]})
    assert text.splitlines() == [
        "Layer pattern: C → C{kernel_size=8} → P",
        "Legend: C=conv, P=mlp",
        "Own options at position 2",
        "Shared: P=mlp{inner=2} (one set of weights) after layers 1",
    ]


def test_shared_layers_take_their_own_options(registry):
    config = HybridConfig.create("C C", hidden_size=4, shared_layers={"C{kernel_size=7}": [1]})
    assert config.options_of("conv", None) == ConvOptions(7)
    assert config.options_of("conv", 0) == ConvOptions()
    assert HybridConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["shared_layer_options"] == {"conv": {"kernel_size": 7}}
    assert hybridzoo.build(config).shared["conv"].sub_blocks[0].body.k == 7
    assert config.replace(dropout=0.0).options_of("conv", None).kernel_size == 7
    with pytest.raises(OptionError, match="shared layer .*kernel_size=0"):
        HybridConfig.create("C", hidden_size=4, shared_layers={"C{kernel_size=0}": [1]})
    with pytest.raises(OptionError, match="a shared layer is one layer"):
        HybridConfig.create("C", hidden_size=4, shared_layers={"CC{kernel_size=2}": [1]})


def test_a_state_of_other_position_options_is_refused(registry):
    one = hybridzoo.build("C C{kernel_size=4}", embed_dim=4, hidden_size=4).eval()
    other = hybridzoo.build("C C{kernel_size=5}", embed_dim=4, hidden_size=4).eval()
    with torch.no_grad(), pytest.raises(hybridzoo.StateError, match="kernel_size is 5"):
        one.step(torch.zeros(1, 4), other.init_state(1))


def test_the_old_word_parser_is_a_deprecated_alias(registry):
    import hybridzoo.patterns as patterns

    with pytest.warns(DeprecationWarning, match="use hybridzoo.patterns.parse_words"):
        old = patterns.parse_pattern
    assert (
        old("(C P)*2")
        == [("C", 1), ("P", 3), ("C", 1), ("P", 3)]
        == patterns.parse_words("(C P)*2")
    )


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.text("ab_ x'", max_size=4),
    st.floats(allow_nan=False, width=32),
)
_BLOCKS = st.dictionaries(st.sampled_from(["a", "b_c"]), _VALUES, max_size=2)


@given(st.lists(st.tuples(st.sampled_from("CP"), _BLOCKS), min_size=1, max_size=6))
def test_blocks_are_written_and_read_back_alike(entries):
    """Any values a block can hold survive the native writer and the parser."""
    from hybridzoo.grammar import format_block, parse_tree

    text = " ".join(symbol + format_block(tuple(own.items())) for symbol, own in entries)
    nodes = parse_tree(text)
    assert [n.word for n in nodes] == [symbol for symbol, _ in entries]
    read = [{k: v for k, v, _, _ in n.block.items} if n.block else {} for n in nodes]
    assert read == [own for _, own in entries]
