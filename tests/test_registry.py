"""The registry: entry-point discovery of builtins, run-time registration, conflicts, validation."""

from __future__ import annotations

import importlib.metadata as md

import attrs
import pytest
from toy_layers import ConvOptions, conv_spec

import hybridzoo
from hybridzoo import LayerSpec, PluginConflictError, PluginError, Registry, UnknownLayerError


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
        assert model.num_parameters() == hybridzoo.param_count(
            "C F C", embed_dim=5, hidden_size=8, conv_kernel_size=4
        )
        hybridzoo.unregister_layer("conv")
        with pytest.raises(UnknownLayerError):
            registry.get("conv")


def test_decorator_and_context_manager():
    registry = Registry()
    with hybridzoo.use_registry(registry):

        @hybridzoo.layer(
            name="deco", symbol="D", options=ConvOptions, param_count=lambda o, h: h * h + h
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
