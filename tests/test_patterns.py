"""Named patterns (Edifice's lists, from the builtin patterns plugin), the pattern language,
shared layers, visualize."""

from __future__ import annotations

import pytest
from toy_layers import conv_spec

import hybridzoo
from hybridzoo import OptionError, PatternError, PluginConflictError, Registry
from hybridzoo.patterns import resolve_pattern
from hybridzoo.plugin import NamedPattern

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
    assert hybridzoo.expand_named_pattern(name, 6) == expected
    (info,) = hybridzoo.list_patterns(name)
    assert info.available and info.source == "hybridzoo" and set(info.layers) == set(expected)


def test_named_pattern_lengths_and_errors():
    expand = hybridzoo.expand_named_pattern
    assert expand("full_hybrid", 8)[6:] == [M, A]
    assert expand("jamba_like", 1) == [M]
    with pytest.raises(PatternError, match="num_layers must be an integer >= 1, got 0"):
        expand("jamba_like", 0)
    with pytest.raises(PatternError, match="Did you mean 'jamba_like'"):
        expand("jamba_lik", 4)


@pytest.mark.parametrize("function", ["expand_named_pattern", "pattern"])
@pytest.mark.parametrize(("name", "num_layers"), [(None, 2), (3, 2), ("jamba_like", None)])
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_bad_named_pattern_arguments_are_clear_errors(function, name, num_layers):
    with pytest.raises(PatternError, match=repr(name) if name != "jamba_like" else "None"):
        getattr(hybridzoo, function)(name, num_layers)


def test_a_pattern_whose_layer_is_disabled_is_listed_as_unavailable(monkeypatch):
    monkeypatch.setenv("HYBRIDZOO_DISABLE_PLUGINS", "gla")
    registry = Registry()
    infos = {p.name: p for p in hybridzoo.list_patterns(registry=registry)}
    assert not infos["mamba_gla"].available and infos["mamba_gla"].missing == ("gla",)
    assert not infos["full_hybrid"].available and infos["jamba_like"].available
    with pytest.raises(PatternError, match="needs the layer 'gla', which is not registered"):
        hybridzoo.expand_named_pattern("mamba_gla", 3, registry=registry)
    with hybridzoo.use_registry(registry), pytest.raises(PatternError, match="DISABLE_PLUGINS=gla"):
        hybridzoo.build_pattern("mamba_gla", 3, embed_dim=8)


def test_run_time_named_patterns_and_their_conflicts():
    registry = Registry(autoload=False)
    registry.register(conv_spec())
    mix = NamedPattern("mix", ("conv", "other"), "conv, then other")
    registry.register_pattern(mix)
    assert hybridzoo.list_patterns(registry=registry)[0].missing == ("other",)
    with pytest.raises(PluginConflictError, match="named pattern 'mix'.*already used"):
        registry.register_pattern(NamedPattern("mix", ("conv",), "all conv"))
    registry.register_pattern(NamedPattern("mix", ("conv",), "all conv"), replace=True)
    assert hybridzoo.expand_named_pattern("mix", 2, registry=registry) == ["conv", "conv"]
    with registry.registered(NamedPattern("temp", ("conv",))):
        assert "temp" in registry.named_patterns()
    assert list(registry.named_patterns()) == ["mix"]
    assert registry.unregister_pattern("mix").rule == "all conv"
    with pytest.raises(hybridzoo.PluginError, match="give the cycle of layers"):
        registry.register_pattern(NamedPattern("empty", ()))


def test_a_function_pattern_is_checked_when_expanded():
    registry = Registry(autoload=False)
    registry.register(conv_spec())
    registry.register_pattern(NamedPattern("odd", (), function=lambda n: ["conv", "ghost"][:n]))
    assert hybridzoo.expand_named_pattern("odd", 1, registry=registry) == ["conv"]
    with pytest.raises(PatternError, match="needs the layer 'ghost'"):
        hybridzoo.expand_named_pattern("odd", 2, registry=registry)


@pytest.fixture
def registry(conv_ffn_registry):
    return conv_ffn_registry


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


@pytest.mark.parametrize(
    ("shared", "message"),
    [
        ({"conv": [4]}, r"positions \[4\] are out of range.*positions run 1..3"),
        ({"conv": [0, 1]}, r"positions \[0\] are out of range"),
        ({"conv": [1, 1]}, "repeated positions"),
        ({"conv": []}, "non-empty list"),
        ({"conv": "2"}, "non-empty list"),
        ({"nope": [1]}, "unknown layer 'nope'"),
        ({1: [1]}, r"a key must be a layer name or symbol \(a string\), got 1"),
        ([("conv", 1)], "must be a mapping"),
    ],
)
def test_visualize_checks_shared_layers_as_build_does(registry, shared, message):
    with pytest.raises(OptionError, match=message):
        hybridzoo.visualize("C F C", shared_layers=shared)
    with pytest.raises(OptionError, match=message):
        hybridzoo.build("C F C", embed_dim=4, hidden_size=8, shared_layers=shared)
