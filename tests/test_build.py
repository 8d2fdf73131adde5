"""build / HybridConfig / HybridModel: options routing, errors, shapes, step mode, persistence."""

from __future__ import annotations

import json

import pytest
import torch
from toy_layers import conv_spec

import hybridzoo
from hybridzoo import ConfigError, HybridConfig, OptionError, PatternError

pytestmark = pytest.mark.usefixtures("conv_registry")


def test_output_shapes_and_projection():
    model = hybridzoo.build("C F C", embed_dim=7, hidden_size=16)
    assert model.input_proj is not None
    assert model(torch.randn(3, 5, 7)).shape == (3, 16)
    model = hybridzoo.build("C F", embed_dim=16, hidden_size=16, output="sequence")
    assert model.input_proj is None
    assert model(torch.randn(2, 1, 16)).shape == (2, 1, 16)


def test_options_reach_the_plugin_and_all_problems_are_reported():
    model = hybridzoo.build("C", embed_dim=4, hidden_size=8, conv_kernel_size=5)
    assert model.config.layer_options["conv"].kernel_size == 5
    with pytest.raises(OptionError) as info:
        hybridzoo.build(
            "C",
            embed_dim=4,
            hidden_size=8,
            dropout=1.5,
            conv_kernel_sise=2,
            ffn_expand_factor=2,
            output="sequnce",
        )
    problems = info.value.problems
    assert len(problems) == 3
    text = str(info.value)
    assert "dropout must be a number in [0, 1), got 1.5" in text
    assert "Did you mean 'conv_kernel_size'" in text
    assert "Did you mean 'sequence'" in text


def test_options_of_layers_absent_from_the_pattern_are_validated_then_dropped_with_a_warning():
    with pytest.warns(
        hybridzoo.UnusedOptionWarning, match="ffn_expand_factor are valid but unused"
    ) as caught:
        model = hybridzoo.build("C", embed_dim=4, hidden_size=8, ffn_expand_factor=2)
    assert caught[0].filename == __file__  # the warning points at the user's call
    assert set(model.config.layer_options) == {"conv"}
    with pytest.raises(OptionError, match="ffn_expand_factor=0: must be an integer >= 1"):
        hybridzoo.build("C", embed_dim=4, ffn_expand_factor=0)


def test_bad_option_values_name_the_option():
    with pytest.raises(OptionError, match="conv_kernel_size=0: must be an integer >= 1, got 0"):
        hybridzoo.build("C", embed_dim=4, conv_kernel_size=0)
    with pytest.raises(OptionError, match="conv_kernel_size='3'"):
        hybridzoo.build("C", embed_dim=4, conv_kernel_size="3")


def test_embed_dim_required_and_validated():
    with pytest.raises(OptionError, match="needs embed_dim"):
        hybridzoo.build("C")
    with pytest.raises(OptionError, match="embed_dim must be an integer >= 1, got 0"):
        hybridzoo.build("C", embed_dim=0)


def test_unknown_layer_in_pattern():
    with pytest.raises(PatternError, match="Did you mean 'conv'"):
        hybridzoo.build(["cnov"], embed_dim=4)


def test_shared_layers_one_set_of_weights_applied_after_positions(conv_registry):
    model = hybridzoo.build(
        "C C C C", embed_dim=8, hidden_size=8, shared_layers={"ffn": [2, 4]}, dropout=0.0
    )
    assert [name for name, _ in model.config.schedule()] == [
        "conv", "conv", "ffn", "conv", "conv", "ffn",
    ]  # fmt: skip
    assert model._order[2] is model._order[5]
    assert model.param_count() == hybridzoo.param_count(
        "C C C C", hidden_size=8, shared_layers={"ffn": [2, 4]}
    )
    breakdown = hybridzoo.param_breakdown("CCCC", hidden_size=8, shared_layers={"ffn": [2, 4]})
    assert [r.shared for r in breakdown].count(True) == 1


@pytest.mark.parametrize(
    ("shared", "message"),
    [
        ({"ffn": [0]}, "positions \\[0\\] are out of range.*1..2"),
        ({"ffn": [3]}, "out of range"),
        ({"fnn": [1]}, "Did you mean 'ffn'"),
        ({"ffn": []}, "non-empty list"),
        ({"ffn": [1, 1]}, "repeated positions"),
        (["ffn"], "must be a mapping"),
    ],
)
def test_shared_layer_errors(shared, message):
    with pytest.raises(OptionError, match=message):
        hybridzoo.build("C C", embed_dim=4, shared_layers=shared)


@pytest.mark.parametrize("positional_encoding", [None, "sinusoidal"])
def test_step_and_prefill_equal_forward(positional_encoding):
    torch.manual_seed(0)
    kw = dict(embed_dim=5, hidden_size=8, dropout=0.0, positional_encoding=positional_encoding)
    model = hybridzoo.build(
        "C F C", output="sequence", shared_layers={"conv": [1, 3]}, **kw
    ).double()
    model.eval()
    x = torch.randn(2, 9, 5, dtype=torch.float64)
    full = model(x)
    state = model.init_state(2)
    steps = torch.stack([model.step(x[:, t], state)[0] for t in range(9)], dim=1)
    torch.testing.assert_close(steps, full, rtol=1e-10, atol=1e-10)
    y1, state = model.prefill(x[:, :4])
    y2 = torch.stack([model.step(x[:, t], state)[0] for t in range(4, 9)], dim=1)
    torch.testing.assert_close(torch.cat([y1, y2], 1), full, rtol=1e-10, atol=1e-10)
    y3, _ = model.prefill(x[:, 6:], model.prefill(x[:, :6])[1])
    torch.testing.assert_close(y3, full[:, 6:], rtol=1e-10, atol=1e-10)


def test_step_errors():
    model = hybridzoo.build("C", embed_dim=4, hidden_size=8)
    state = model.init_state(2)
    with pytest.raises(hybridzoo.ShapeError, match="\\[batch, 4\\]"):
        model.step(torch.randn(2, 3), state)
    with pytest.raises(hybridzoo.StateError, match="batch size 3"):
        model.step(torch.randn(3, 4), state)
    with pytest.raises(hybridzoo.StateError, match="batch_size must be an integer >= 1"):
        model.init_state(0)
    with pytest.raises(hybridzoo.ShapeError, match="expected input \\[batch, seq_len, 4\\]"):
        model(torch.randn(2, 4))


def test_sinusoidal_encoding_is_vaswani():
    model = hybridzoo.build("C", embed_dim=6, hidden_size=6, positional_encoding="sinusoidal")
    pe = model._positions(0, 3, torch.zeros(1, dtype=torch.float64))
    t, i = 2, 2
    assert pe[t, i].item() == pytest.approx(torch.sin(torch.tensor(t / 10000 ** (i / 6))).item())
    assert pe[t, i + 1].item() == pytest.approx(
        torch.cos(torch.tensor(t / 10000 ** (i / 6))).item()
    )


def test_config_round_trip_and_save_load(tmp_path):
    model = hybridzoo.build(
        "C F", embed_dim=3, hidden_size=8, conv_kernel_size=2, shared_layers={"conv": [2]}
    ).eval()
    data = json.loads(json.dumps(model.config.to_dict()))
    assert HybridConfig.from_dict(data) == model.config
    model.save(tmp_path / "m")
    loaded = hybridzoo.HybridModel.load(tmp_path / "m").eval()
    x = torch.randn(2, 4, 3)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_from_dict_errors():
    with pytest.raises(ConfigError, match="unknown config keys \\['hiden_size'\\]"):
        HybridConfig.from_dict({"pattern": ["conv"], "embed_dim": 2, "hiden_size": 3})
    with pytest.raises(ConfigError, match="config_version"):
        HybridConfig.from_dict({"pattern": ["conv"], "embed_dim": 2, "config_version": 99})


def test_replace_and_flat_options():
    config = HybridConfig.create("C", embed_dim=3, conv_kernel_size=2)
    assert config.flat_options() == {"conv_kernel_size": 2}
    assert config.replace(hidden_size=32).hidden_size == 32
    assert config.replace(conv_kernel_size=5).layer_options["conv"].kernel_size == 5


def test_state_size():
    assert hybridzoo.state_numel("C F C", hidden_size=8, conv_kernel_size=3) == 2 * 2 * 8


def test_stateless_layer_refuses_step_mode(conv_registry):
    import attrs

    spec = attrs.evolve(
        conv_spec(name="nostep", symbol="N"), capabilities=hybridzoo.Capabilities(stateful=False)
    )
    conv_registry.register(spec)
    model = hybridzoo.build("N", embed_dim=3)
    with pytest.raises(hybridzoo.StateError, match="'nostep'"):
        model.init_state(1)


def test_factory_returning_the_wrong_thing_is_a_plugin_error(conv_registry):
    import attrs

    conv_registry.register(attrs.evolve(conv_spec(name="bad", symbol="B"), factory=lambda o, h: 3))
    with pytest.raises(hybridzoo.PluginError, match="factory must return 1 nn.Module"):
        hybridzoo.build("B", embed_dim=3)


def test_build_from_a_config_refuses_other_arguments():
    config = HybridConfig.create("C", embed_dim=3)
    assert hybridzoo.build(config).config == config
    with pytest.raises(OptionError, match="takes no other arguments, got dropout"):
        hybridzoo.build(config, dropout=0.0)
    assert hybridzoo.build(config.replace(dropout=0.0)).config.dropout == 0.0
