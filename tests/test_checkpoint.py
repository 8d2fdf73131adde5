"""Saved models: digest, atomic replacement, dtype and eval mode on load, hybridzoo.load, and the
errors that name the file (or the distribution of a missing layer)."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
import torch
from toy_layers import conv_spec

import hybridzoo
from hybridzoo import CheckpointError, HybridModel, Registry, UnknownLayerError
from hybridzoo import checkpoint as ckpt

pytestmark = pytest.mark.usefixtures("conv_registry")


def small(**options) -> HybridModel:
    torch.manual_seed(len(options))
    return hybridzoo.build("C F", embed_dim=3, hidden_size=8, conv_kernel_size=2, **options)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_load_keeps_the_saved_dtype_and_returns_eval_mode(tmp_path, dtype):
    model = small().to(dtype)
    assert model.training
    model.save(tmp_path / "m")
    for loaded in (hybridzoo.load(tmp_path / "m"), HybridModel.load(tmp_path / "m")):
        assert type(loaded) is HybridModel and not loaded.training
        assert loaded.config == model.config
        assert_same_weights(loaded, model)
        x = torch.randn(2, 4, 3, dtype=dtype)
        assert torch.equal(loaded(x), model.eval()(x))
    wide = hybridzoo.load(tmp_path / "m", dtype=torch.float64)
    assert {p.dtype for p in wide.parameters()} == {torch.float64}
    assert "eval mode" in hybridzoo.load.__doc__ and "eval mode" in HybridModel.load.__doc__


def test_mixed_dtypes_are_kept(tmp_path):
    model = small()
    model.blocks[0].double()
    model.save(tmp_path / "m")
    assert_same_weights(hybridzoo.load(tmp_path / "m"), model)


def test_config_json_records_the_kind_the_digest_and_each_layers_distribution(tmp_path):
    small().save(tmp_path / "m")
    data = json.loads((tmp_path / "m" / "config.json").read_text())
    assert data["kind"] == "HybridModel" and data["config"]["pattern"] == ["conv", "ffn"]
    weights = (tmp_path / "m" / "model.safetensors").read_bytes()
    assert data["weights"]["sha256"] == hashlib.sha256(weights).hexdigest()
    assert data["weights"]["dtype"] == "float32"
    assert data["layers"] == {
        "conv": {"distribution": None, "version": None},
        "ffn": {"distribution": "hybridzoo", "version": hybridzoo.__version__},
    }


def flip_byte(path, offset=-3):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def test_a_flipped_byte_is_a_checkpoint_error_naming_the_file(tmp_path):
    small().save(tmp_path / "m")
    flip_byte(tmp_path / "m" / "model.safetensors")
    with pytest.raises(CheckpointError, match="m/model.safetensors does not match .*config.json"):
        hybridzoo.load(tmp_path / "m")


def test_weights_from_another_save_are_refused(tmp_path):
    """What an interrupted non-atomic save leaves: a config with another save's weights."""
    small().save(tmp_path / "a")
    small(dropout=0.0).save(tmp_path / "b")
    (tmp_path / "a" / "model.safetensors").write_bytes(
        (tmp_path / "b" / "model.safetensors").read_bytes()
    )
    with pytest.raises(CheckpointError, match="SHA-256 differs"):
        hybridzoo.load(tmp_path / "a")


def test_a_save_that_fails_midway_leaves_the_previous_model_whole(tmp_path, monkeypatch):
    first, second = small(), small(dropout=0.0, norm="rmsnorm")
    first.save(tmp_path / "m")

    def crash(path):
        raise RuntimeError("crash while saving")

    with monkeypatch.context() as patch:
        patch.setattr(ckpt, "sha256_file", crash)
        with pytest.raises(RuntimeError, match="crash while saving"):
            second.save(tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary left
    assert_same_weights(hybridzoo.load(tmp_path / "m"), first)
    second.save(tmp_path / "m")
    assert hybridzoo.load(tmp_path / "m").config == second.config
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_a_crash_between_the_renames_says_where_the_previous_model_is(tmp_path, monkeypatch):
    small().save(tmp_path / "m")
    rename, calls = os.rename, []

    def crash_on_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("power cut")
        rename(src, dst)

    monkeypatch.setattr(ckpt.os, "rename", crash_on_second)
    with pytest.raises(OSError, match="power cut"):
        small(dropout=0.0).save(tmp_path / "m")
    with pytest.raises(CheckpointError, match="left the previous model in .*m\\..*\\.old"):
        hybridzoo.load(tmp_path / "m")


def test_other_files_in_the_directory_are_kept(tmp_path, monkeypatch):
    small().save(tmp_path / "m")
    (tmp_path / "m" / "notes.txt").write_text("mine")
    small(dropout=0.0).save(tmp_path / "m")
    assert (tmp_path / "m" / "notes.txt").read_text() == "mine"
    assert hybridzoo.load(tmp_path / "m").config.dropout == 0.0
    replace, calls = os.replace, []

    def crash_before_the_config(src, dst):  # new weights in place, old config.json
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("power cut")
        replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", crash_before_the_config)
    with pytest.raises(OSError):
        small(norm="rmsnorm").save(tmp_path / "m")
    with pytest.raises(CheckpointError, match="does not match"):
        hybridzoo.load(tmp_path / "m")


def test_a_model_saved_by_hybridzoo_0_1_still_loads(tmp_path):
    """The bare config as config.json, no digest."""
    from safetensors.torch import save_file

    model = small()
    (tmp_path / "old").mkdir()
    data = {**model.config.to_dict(), "config_version": 1}
    del data["norm"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(data))
    save_file(model.state_dict(), str(tmp_path / "old" / "model.safetensors"))
    assert_same_weights(HybridModel.load(tmp_path / "old"), model)
    (tmp_path / "old" / "model.safetensors").write_bytes(b"\x08\x00\x00")
    with pytest.raises(CheckpointError, match="cannot be read as safetensors"):
        hybridzoo.load(tmp_path / "old")


def test_load_errors_name_the_file(tmp_path, monkeypatch):
    with pytest.raises(CheckpointError, match="nowhere/config.json not found"):
        hybridzoo.load(tmp_path / "nowhere")
    (tmp_path / "file").write_text("")
    with pytest.raises(CheckpointError, match="is not a directory"):
        small().save(tmp_path / "file")
    small().save(tmp_path / "m")
    config = tmp_path / "m" / "config.json"
    data = json.loads(config.read_text())
    for bad, message in [
        ("{nope", "config.json cannot be read as JSON"),
        (json.dumps({**data, "kind": "Robot"}), "unknown kind 'Robot'"),
        (json.dumps({**data, "weights": {"file": "../m/model.safetensors"}}), "a file name in"),
        (json.dumps({**data, "config": {**data["config"], "hidden_size": 0}}), "hidden_size"),
    ]:
        config.write_text(bad)
        with pytest.raises(hybridzoo.HybridZooError, match=message) as info:
            hybridzoo.load(tmp_path / "m")
        assert "m/config.json" in str(info.value)
    config.write_text(json.dumps({**data, "kind": "Other"}))
    monkeypatch.setitem(ckpt.KINDS, "Other", "collections:OrderedDict")
    with pytest.raises(CheckpointError, match="holds a Other, not a HybridModel"):
        HybridModel.load(tmp_path / "m")


@pytest.mark.parametrize(
    ("source", "registry", "message"),
    [
        (None, {}, "registered at run time: register it again"),
        (
            {"distribution": "hybridzoo-conv", "version": "0.3.0"},
            {},
            "provided by hybridzoo-conv 0.3.0: pip install it \\(hybridzoo-conv==0.3.0\\)",
        ),
        (
            {"distribution": "hybridzoo", "version": "0.1.0"},
            {"disabled": ["ffn"]},
            "disabled by HYBRIDZOO_DISABLE_PLUGINS: remove 'ffn'",
        ),
    ],
)
def test_a_missing_layer_says_where_it_came_from(tmp_path, source, registry, message):
    small().save(tmp_path / "m")
    config = tmp_path / "m" / "config.json"
    data = json.loads(config.read_text())
    missing = "ffn" if registry else "conv"
    if source is not None:
        data["layers"][missing] = source
    config.write_text(json.dumps(data))
    fresh = Registry(**registry)
    if missing == "ffn":
        fresh.register(conv_spec())
    with hybridzoo.use_registry(fresh), pytest.raises(UnknownLayerError, match=message) as info:
        hybridzoo.load(tmp_path / "m")
    assert info.value.name == missing


def test_a_bad_saved_config_is_named_by_its_file_when_read_alone_and_when_loaded(tmp_path):
    hybridzoo.build("F", embed_dim=8, hidden_size=8).save(tmp_path / "m")
    path = tmp_path / "m" / "config.json"
    data = json.loads(path.read_text())
    data["config"]["hidden_size"] = 0
    path.write_text(json.dumps(data))
    for read in (ckpt.read_config, hybridzoo.load):
        with pytest.raises(hybridzoo.ConfigError, match=f"{path}: hidden_size must be"):
            read(tmp_path / "m")
