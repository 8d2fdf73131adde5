"""The registry: entry-point discovery of builtins, run-time registration, conflicts, validation."""

from __future__ import annotations

import importlib.metadata as md

import attrs
import pytest
from toy_layers import ConvOptions, conv_spec

import hybridzoo
from hybridzoo import (
    LayerSpec,
    OptionError,
    PluginConflictError,
    PluginError,
    Registry,
    UnknownLayerError,
)
from hybridzoo.options import option_table
from hybridzoo.plugin import at_least, option


def test_builtins_are_entry_points():
    names = {ep.name for ep in md.entry_points(group="hybridzoo.layers")}
    assert {"ffn", "kan", "attention", "mamba", "gla", "rwkv"} <= names
    registry = Registry()
    assert "ffn" in registry.names()
    dist, version = registry.source("ffn")
    assert dist == "hybridzoo" and version == hybridzoo.__version__


def test_loading_is_lazy_and_in_a_fixed_order():
    registry = Registry()
    assert "not loaded" in repr(registry)
    registry.names()
    plugins = [p.name for p in registry.plugins()]
    keys = [(p.distribution or "", p.name) for p in registry.plugins()]
    assert keys == sorted(keys)
    assert "ffn" in plugins


def test_runtime_registration_and_build():
    registry = Registry()
    with hybridzoo.use_registry(registry):
        hybridzoo.register_layer(conv_spec())
        assert registry.source("conv") == (None, None)
        model = hybridzoo.build("C F C", embed_dim=5, hidden_size=8, conv_kernel_size=4)
        assert model.param_count() == hybridzoo.param_count(
            "C F C", embed_dim=5, hidden_size=8, conv_kernel_size=4
        )
        hybridzoo.unregister_layer("conv")
        with pytest.raises(UnknownLayerError):
            registry.get("conv")


def test_decorator_and_context_manager():
    registry = Registry()
    with hybridzoo.use_registry(registry):

        @hybridzoo.layer(
            name="deco", symbol="J", options=ConvOptions, param_count=lambda o, h: h * h + h
        )
        def make(options, hidden_size):
            """A linear map."""
            import torch

            return torch.nn.Linear(hidden_size, hidden_size)

        assert registry.get("deco").description == "A linear map."
        assert registry.get("deco").option_prefix == "deco"
        with hybridzoo.temporary_layers(conv_spec()):
            assert "conv" in registry
        assert "conv" not in registry
        assert "deco" in registry


def test_taken_name_symbol_prefix_are_errors_naming_both():
    registry = Registry()
    registry.register(conv_spec())
    with pytest.raises(PluginConflictError, match="'conv'.*already used by 'conv'"):
        registry.register(conv_spec())
    with pytest.raises(PluginConflictError, match="symbol 'F' is already used by 'ffn'"):
        registry.register(conv_spec(name="conv2", symbol="F"))
    with pytest.raises(PluginConflictError, match="option prefix 'ffn'"):
        registry.register(conv_spec(name="conv3", symbol="Q", prefix="ffn"))
    # replace=True replaces a layer of the same name, and only that
    registry.register(conv_spec(symbol="Q"), replace=True)
    assert registry.by_symbol("Q").name == "conv"
    with pytest.raises(UnknownLayerError):
        registry.by_symbol("C")


def test_unknown_layer_suggests_close_names():
    registry = Registry()
    with pytest.raises(UnknownLayerError, match="Did you mean 'ffn'"):
        registry.get("fnn")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "Bad Name"}, "lower-case identifier"),
        ({"symbol": "XY"}, "exactly one letter"),
        ({"symbol": "1"}, "exactly one letter"),
        ({"symbol": "x"}, "ASCII uppercase"),
        ({"symbol": "Ｘ"}, "ASCII uppercase"),  # fullwidth X
        ({"symbol": "É"}, "ASCII uppercase"),
        ({"symbol": "Σ"}, "ASCII uppercase"),
        ({"option_prefix": "9x"}, "option_prefix"),
        ({"options": dict}, "attrs class"),
        ({"factory": 3}, "factory must be callable"),
        ({"sub_blocks": 0}, "sub_blocks must be >= 1"),
        ({"api_version": hybridzoo.PLUGIN_API_VERSION + 1}, "upgrade hybridzoo"),
    ],
)
def test_runtime_specs_are_validated(change, message):
    registry = Registry()
    spec = attrs.evolve(conv_spec(), **change)
    with pytest.raises(PluginError, match=message):
        registry.register(spec)


def test_options_need_defaults():
    @attrs.frozen
    class NoDefault:
        size: int

    with pytest.raises(PluginError, match="every option needs a default; size"):
        Registry().register(attrs.evolve(conv_spec(), options=NoDefault))


def test_non_spec_is_rejected():
    with pytest.raises(PluginError, match="must return hybridzoo.LayerSpec"):
        Registry().register("conv")  # type: ignore[arg-type]


def test_autoload_can_be_disabled(monkeypatch):
    monkeypatch.setenv("HYBRIDZOO_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert Registry().names() == []
    monkeypatch.delenv("HYBRIDZOO_DISABLE_PLUGIN_AUTOLOAD")
    monkeypatch.setenv("HYBRIDZOO_DISABLE_PLUGINS", "ffn")
    registry = Registry()
    assert "ffn" not in registry.names()
    assert [p.status for p in registry.plugins() if p.name == "ffn"] == ["disabled"]


def test_list_and_glob():
    registry = Registry()
    registry.register(conv_spec())
    assert registry.list("c*") == ["conv"]
    assert isinstance(registry.get("conv"), LayerSpec)


def test_factory_and_reference_may_be_import_strings() -> None:
    ffn = hybridzoo.get_layer("ffn")
    spec = attrs.evolve(
        ffn,
        name="lazy_ffn",
        symbol="Q",
        option_prefix="lazy_ffn",
        factory="hybridzoo.nn:FeedForward",
        reference="hybridzoo.nn.feedforward:FeedForward",
    )
    assert "hybridzoo.nn:FeedForward" in repr(spec.factory)
    body = spec.factory(8, 2)
    assert sum(p.numel() for p in body.parameters()) == 2 * 8 * 16 + 16 + 8
    with pytest.raises(hybridzoo.PluginError, match="'package.module:function', got 'no colon'"):
        attrs.evolve(ffn, factory="no colon")
    broken = attrs.evolve(ffn, factory="hybridzoo.nn:NoSuchThing")
    with pytest.raises(hybridzoo.PluginError, match=r"cannot import 'hybridzoo\.nn:NoSuchThing'"):
        broken.factory(ffn.options(), 8)


def test_a_permanent_registration_inside_a_temporary_block_survives_it() -> None:
    registry = Registry(autoload=False)
    with hybridzoo.use_registry(registry):
        hybridzoo.register_layer(conv_spec())
        with hybridzoo.temporary_layers(conv_spec(name="temp", symbol="T")):
            hybridzoo.register_layer(conv_spec(name="kept", symbol="K"))
            assert {"temp", "kept"} <= set(registry.names())
        assert registry.names() == ["conv", "kept"]
        # a replaced layer comes back, and a layer replaced again inside the block stays
        with hybridzoo.temporary_layers(conv_spec(symbol="Q"), replace=True):
            assert registry.get("conv").symbol == "Q"
        assert registry.get("conv").symbol == "C"
        with hybridzoo.temporary_layers(conv_spec(symbol="Q"), replace=True):
            hybridzoo.register_layer(conv_spec(symbol="R"), replace=True)
        assert registry.get("conv").symbol == "R"


def _options_with(field: str) -> type:
    return attrs.make_class(
        "Opts", {field: option(2, doc="a field", validator=at_least(1))}, frozen=True
    )


def _overlapping(prefix: str, field: str, symbol: str) -> LayerSpec:
    return attrs.evolve(
        conv_spec(name=prefix, symbol=symbol),
        options=_options_with(field),
        param_count=lambda o, h: 0,
    )


@pytest.mark.parametrize("short_first", [True, False])
def test_overlapping_option_prefixes_are_refused_naming_both(short_first: bool) -> None:
    # "base" + field "state_size" and "base_state" + field "size" both spell base_state_size
    short, long = _overlapping("base", "state_size", "B"), _overlapping("base_state", "size", "S")
    first, second = (short, long) if short_first else (long, short)
    registry = Registry(autoload=False)
    registry.register(first)
    with pytest.raises(PluginConflictError) as info:
        registry.register(second)
    message = str(info.value)
    assert "'base_state_size'" in message and f"'{first.name}'" in message
    assert f"layer '{second.name}'" in message
    with pytest.raises(PluginConflictError, match="'base_state_size' is ambiguous"):
        option_table([short, long])
    # prefixes that overlap without a shared option name are fine, and route exactly
    registry = Registry(autoload=False)
    registry.register(short)
    registry.register(_overlapping("base_state", "width", "W"))
    table = {k: (spec.name, field) for k, (spec, field) in option_table(registry.specs()).items()}
    assert table == {
        "base_state_size": ("base", "state_size"),
        "base_state_width": ("base_state", "width"),
    }


def test_unknown_option_is_reported_for_the_longest_matching_prefix() -> None:
    registry = Registry(autoload=False)
    registry.register(_overlapping("base", "depth", "B"))
    registry.register(_overlapping("base_state", "width", "S"))
    with hybridzoo.use_registry(registry), pytest.raises(OptionError) as info:
        hybridzoo.build("B S", embed_dim=4, hidden_size=4, base_state_widht=3)
    assert "for layer 'base_state'" in str(info.value)
    assert "Did you mean 'base_state_width'" in str(info.value)
