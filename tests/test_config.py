"""ModelOptions and HybridConfig: one declaration per model option, validation on every path,
immutability, replace, from_dict; numpy scalars wherever Python numbers are accepted."""

from __future__ import annotations

import inspect
import json

import attrs
import numpy as np
import pytest
from toy_layers import ConvOptions

import hybridzoo
from hybridzoo import ConfigError, HybridConfig, ModelOptions, OptionError
from hybridzoo.config import LayerOptions
from hybridzoo.model_options import MODEL_OPTIONS

FIELDS = [f.name for f in attrs.fields(ModelOptions)]


pytestmark = pytest.mark.usefixtures("conv_registry")


def config(**options):
    return HybridConfig.create("C F", embed_dim=3, hidden_size=8, **options)


# -- one declaration ---------------------------------------------------------------------------


def test_every_model_option_is_a_config_field_a_build_keyword_and_a_dict_key():
    assert tuple(FIELDS) == MODEL_OPTIONS
    assert set(FIELDS) <= {f.name for f in attrs.fields(HybridConfig)}
    for func in (hybridzoo.build, hybridzoo.param_count, hybridzoo.state_numel):
        params = inspect.signature(func).parameters
        assert all(params[name].kind is inspect.Parameter.KEYWORD_ONLY for name in FIELDS)
    assert set(FIELDS) <= set(config().to_dict())
    assert all(name in hybridzoo.build.__doc__ for name in FIELDS)
    assert config().model_options == ModelOptions(embed_dim=3, hidden_size=8)


# -- immutable, hashable, validated ---------------------------------------------------------


def test_config_is_immutable_and_hashable():
    a, b = config(conv_kernel_size=2), config(conv_kernel_size=2)
    assert a == b and hash(a) == hash(b) and len({a, b, config()}) == 2
    assert isinstance(a.layer_options, LayerOptions)
    with pytest.raises(TypeError):
        a.layer_options["conv"] = ConvOptions(5)  # type: ignore[index]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        a.hidden_size = 16  # type: ignore[misc]


def test_the_raw_constructor_validates_and_fills_in_the_defaults(conv_registry):
    raw = HybridConfig(pattern=("conv",), embed_dim=8)
    assert raw == HybridConfig.create(["conv"], embed_dim=8)
    assert raw.layer_options["conv"] == ConvOptions()
    assert hybridzoo.HybridModel(raw).param_count() == hybridzoo.param_count(raw)
    mapping = HybridConfig(pattern="C", embed_dim=4, layer_options={"conv": {"kernel_size": 2}})
    assert mapping.layer_options["conv"].kernel_size == 2
    with pytest.raises(OptionError) as info:
        HybridConfig(pattern=("conv",), embed_dim=0, hiden_size=3, layer_options={"ffn": {}})
    text = str(info.value)
    assert "embed_dim must be an integer >= 1, got 0" in text
    assert "unknown model option 'hiden_size'. Did you mean 'hidden_size'?" in text
    assert "layer_options['ffn']: the model has no ffn layer" in text
    with pytest.raises(OptionError, match="must be an integer >= 1"):
        attrs.evolve(raw, hidden_size=0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"norm_eps": True}, "norm_eps must be a number in \\(0, inf\\), got True \\(bool\\)"),
        ({"norm_eps": float("inf")}, "norm_eps must be a number in \\(0, inf\\), got inf"),
        ({"norm_eps": 0.0}, "norm_eps must be a number in \\(0, inf\\), got 0.0"),
        ({"norm": "batchnorm"}, "norm must be one of 'layernorm', 'rmsnorm'"),
        ({"norm": "rmsnrom"}, "Did you mean 'rmsnorm'"),
        ({"shared_layers": {1: [1]}}, "a key must be a layer name or symbol \\(a string\\), got 1"),
        ({"shared_layers": {"ffn": "2"}}, "must be a non-empty list of 1-based positions"),
        ({"hidden_size": 8.0}, "hidden_size must be an integer >= 1, got 8.0"),
        ({"shared_layers": {"F": [1], "ffn": [2]}}, "'ffn' is given twice"),
    ],
)
def test_bad_model_options_name_the_value(options, message):
    with pytest.raises(OptionError, match=message):
        HybridConfig.create("C F", embed_dim=3, **{"hidden_size": 8, **options})


def test_numpy_scalars_are_accepted_as_python_numbers():
    made = HybridConfig.create(
        "C F C",
        embed_dim=np.int64(3),
        hidden_size=np.int32(8),
        dropout=np.float32(0.25),
        norm_eps=np.float64(1e-6),
        shared_layers={"ffn": [np.int64(1), np.int16(3)]},
        conv_kernel_size=np.int64(2),
    )
    assert made == HybridConfig.create(
        "C F C",
        embed_dim=3,
        hidden_size=8,
        dropout=0.25,
        norm_eps=1e-6,
        shared_layers={"ffn": [1, 3]},
        conv_kernel_size=2,
    )
    assert type(made.hidden_size) is int and type(made.dropout) is float
    assert made.shared_layers == (("ffn", (1, 3)),)
    json.dumps(made.to_dict())  # plain values only


@pytest.mark.parametrize("value", [0.0, 256, None, 1e-5, "last", (), {}])
def test_build_from_a_config_refuses_any_option_whatever_its_value(value):
    """Even a value equal to the default is refused: options are detected by presence."""
    for name in [*FIELDS, "conv_kernel_size"]:
        with pytest.raises(OptionError, match=f"takes no other arguments, got {name}"):
            hybridzoo.build(config(), **{name: value})


# -- replace -------------------------------------------------------------------------------------


def test_replace_parses_a_string_pattern_and_keeps_every_option():
    base = config(conv_kernel_size=2, dropout=0.0, norm="rmsnorm", shared_layers={"ffn": [1]})
    again = base.replace(pattern="(CF)*2")
    assert again.pattern == ("conv", "ffn", "conv", "ffn")
    for name in FIELDS:
        assert getattr(again, name) == getattr(base, name)
    assert again.layer_options == base.layer_options
    assert base.replace(hidden_size=16).layer_options["conv"].kernel_size == 2


def test_replace_shared_layers_none_removes_them_as_in_build():
    base = config(shared_layers={"ffn": [2]}, conv_kernel_size=2)
    for empty in (None, {}):
        cleared = base.replace(shared_layers=empty)
        assert cleared.shared_layers == ()
        assert cleared == config(conv_kernel_size=2)


def test_schedule_is_what_its_docstring_says():
    made = HybridConfig.create("C C", embed_dim=8, hidden_size=8, shared_layers={"ffn": [1]})
    assert made.schedule() == [("conv", 0), ("ffn", None), ("conv", 1)]
    assert '[("conv", 0), ("mlp", None), ("conv", 1)]' in HybridConfig.schedule.__doc__


# -- from_dict -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"pattern": "CF"}, ConfigError, 'got the string \'CF\'.*\\["conv", "ffn"\\]'),
        ({"pattern": 3}, ConfigError, "'pattern' must be a list of layer names, got int"),
        ({"config_version": True}, ConfigError, "config_version must be the integer 1, 2 or 3"),
        ({"config_version": 1.0}, ConfigError, "got 1.0 \\(float\\)"),
        ({"config_version": 4}, ConfigError, "pip install -U hybridzoo"),
        ({"layer_options": [1]}, OptionError, "layer_options must be a mapping"),
        ({"layer_options": {"conv": [1]}}, OptionError, "must be a ConvOptions record or a map"),
        ({"layer_options": {"conv": {"kernel": 2}}}, OptionError, "unknown option 'conv_kernel'"),
        ({"layer_options": {"cnov": {}}}, OptionError, "Did you mean 'conv'"),
        ({"embed_dim": 1e30}, OptionError, "embed_dim must be an integer >= 1, got 1e\\+30"),
        ({"hidden_size": "8"}, OptionError, "hidden_size must be an integer >= 1, got '8'"),
        ({"norm": 1}, OptionError, "norm must be one of"),
    ],
)
def test_from_dict_errors_name_the_value(change, error, message):
    data = {**config().to_dict(), **change}
    with pytest.raises(error, match=message):
        HybridConfig.from_dict(data)


def test_a_version_1_config_still_reads():
    data = config(conv_kernel_size=2).to_dict()
    assert data["config_version"] == 2 and data["norm"] == "layernorm"
    del data["norm"]
    old = HybridConfig.from_dict({**data, "config_version": 1})
    assert old == config(conv_kernel_size=2)


def test_save_and_load_a_config_file(tmp_path):
    made = config(conv_kernel_size=2, norm="rmsnorm")
    made.save(tmp_path / "c.json")
    assert HybridConfig.load(tmp_path / "c.json") == made
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ConfigError, match="bad.json: not a JSON config"):
        HybridConfig.load(tmp_path / "bad.json")
