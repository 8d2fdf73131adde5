"""The registry of architectures that from_transformers/to_transformers convert (no
transformers needed): the builtins found through entry points, run-time registration, conflicts,
and an entry point that fails to load reported when asked for."""

from __future__ import annotations

import importlib.metadata as md

import pytest

from hybridzoo import ConversionError
from hybridzoo.lm import architectures as registry
from hybridzoo.lm.architectures import Architecture, find_architecture, register_architecture


def test_the_builtin_architectures_are_found_through_entry_points() -> None:
    found = {a.model_type: a.name for a in registry.architectures()}
    assert found["mamba"] == "MambaForCausalLM" and found["mamba2"] == "Mamba2ForCausalLM"
    assert found["nemotron_h"] == "NemotronHForCausalLM"
    assert all(callable(a.to_transformers) for a in registry.architectures())


def test_register_refuses_a_taken_model_type_unless_replaced(monkeypatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", registry._Registry())
    mine = Architecture(name="ToyForCausalLM", model_type="toy", from_transformers="a.b:c")
    assert register_architecture(mine) is mine and find_architecture("toy") is mine
    other = Architecture(name="OtherToy", model_type="toy", from_transformers="a.b:d")
    with pytest.raises(ConversionError, match="'toy' is already converted by ToyForCausalLM"):
        register_architecture(other)
    assert register_architecture(other, replace=True) is find_architecture("toy")
    with pytest.raises(ConversionError, match="expected an Architecture record, got str"):
        register_architecture("toy")  # type: ignore[arg-type]
    with pytest.raises(ConversionError, match="model_type 'tyo'.*Did you mean 'toy'"):
        find_architecture("tyo")


def test_an_entry_point_that_fails_is_named_when_asked_for(monkeypatch) -> None:
    broken = md.EntryPoint("broken", "no_such_module_here:ARCH", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(md, "entry_points", lambda group: [broken])
    monkeypatch.setattr(registry, "_REGISTRY", registry._Registry())
    with pytest.raises(
        ConversionError,
        match="entry point broken = no_such_module_here:ARCH failed: ModuleNotFoundError",
    ):
        find_architecture("mamba")


@pytest.mark.parametrize(
    ("env", "found"),
    [
        ({"HYBRIDZOO_DISABLE_PLUGINS": "nemotron_h"}, {"mamba", "mamba2"}),
        ({"HYBRIDZOO_DISABLE_PLUGINS": "hybridzoo"}, set()),
        ({"HYBRIDZOO_DISABLE_PLUGIN_AUTOLOAD": "1"}, set()),
    ],
)
def test_the_plugin_switches_hold_for_architectures(monkeypatch, env, found) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(registry, "_REGISTRY", registry._Registry())
    assert {a.model_type for a in registry.architectures()} == found
