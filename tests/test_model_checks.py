"""What the model checks: inputs (type, dtype), states from other models, step mode with dropout,
the plugins' formulas and factories; the norms; the public surface and deprecated names."""

from __future__ import annotations

import warnings

import attrs
import numpy as np
import pytest
import torch
from toy_layers import conv_spec

import hybridzoo
from hybridzoo import PluginError, ShapeError, StateError, StepModeWarning

pytestmark = pytest.mark.usefixtures("conv_registry")


def conv_model(**options) -> hybridzoo.HybridModel:
    options = {"embed_dim": 3, "hidden_size": 8, "dropout": 0.0, **options}
    return hybridzoo.build("C C", output="sequence", **options).eval()


# -- states from another model ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("other", "message"),
    [
        (
            {"conv_kernel_size": 4},
            "block 1 \\(conv\\): kernel_size is 4 in the model that made the state and 3 in",
        ),
        ({"hidden_size": 16, "embed_dim": 8}, "made for hidden_size 16, this model has .* 8"),
        ({"shared_layers": {"conv": [1]}}, "holds 3 block states \\(conv conv conv\\)"),
    ],
)
def test_a_state_of_another_model_is_refused_naming_the_difference(other, message):
    model, foreign = conv_model(), conv_model(**other)
    x = torch.randn(1, 3, model.config.embed_dim)
    state = foreign.init_state(1)
    with pytest.raises(StateError, match=message):
        model.step(x[:, 0], state)
    with pytest.raises(StateError, match=message):
        model.prefill(x, state)


def test_attention_windows_of_different_sizes_do_not_share_states():
    """The case of the fault pass: a window-8 state stepped by a window-4 model."""
    kw = {"embed_dim": 8, "hidden_size": 16, "attention_num_heads": 2, "attention_head_dim": 8}
    small = hybridzoo.build("A", attention_window_size=4, **kw).eval()
    large = hybridzoo.build("A", attention_window_size=8, **kw).eval()
    with pytest.raises(StateError, match="window_size is 8 in the model that made the state"):
        small.step(torch.randn(1, 8), large.init_state(1))


def test_models_of_one_structure_share_states():
    a, b = conv_model(), conv_model()
    x = torch.randn(2, 5, 3)
    _, state = a.prefill(x[:, :3])
    with torch.no_grad():
        y, _ = b.prefill(x[:, 3:], state)  # accepted: same structure, other weights
    assert y.shape == (2, 2, 8)


@pytest.mark.parametrize("bad", ["abc", None, [1, 2], {"layers": []}])
def test_step_and_prefill_type_check_the_state(bad):
    model = conv_model()
    with pytest.raises(StateError, match="expected a HybridState"):
        model.step(torch.randn(1, 3), bad)
    if bad is not None:  # prefill(x, None) starts fresh
        with pytest.raises(StateError, match="expected a HybridState"):
            model.prefill(torch.randn(1, 2, 3), bad)


# -- inputs --------------------------------------------------------------------------------------


def test_the_input_must_have_the_model_dtype():
    model = conv_model().double()
    message = "input has dtype torch.float32 but the model's parameters are torch.float64"
    with pytest.raises(ShapeError, match=message):
        model(torch.randn(1, 2, 3))
    with pytest.raises(ShapeError, match=message):
        model.step(torch.randn(1, 3), model.init_state(1))
    with pytest.raises(ShapeError, match="model.to\\(torch.float32\\)"):
        model.prefill(torch.randn(1, 2, 3))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts for the model
        assert conv_model()(torch.randn(1, 2, 3, dtype=torch.bfloat16)).shape == (1, 2, 8)


@pytest.mark.parametrize("make", [np.zeros, lambda shape: np.zeros(shape).tolist()])
def test_numpy_arrays_and_lists_are_refused_with_the_fix(make):
    model = conv_model()
    kind = "numpy.ndarray" if make is np.zeros else "list"
    with pytest.raises(ShapeError, match=f"expected a torch.Tensor .*got a {kind}: .*as_tensor"):
        model(make((1, 2, 3)))
    with pytest.raises(ShapeError, match=f"got a {kind}"):
        model.step(make((1, 3)), model.init_state(1))
    with pytest.raises(ShapeError, match=f"got a {kind}"):
        model.prefill(make((1, 2, 3)))
    assert len(model.init_state(np.int64(2)).layers) == 2


# -- step mode is inference-only ---------------------------------------------------------------


def test_step_with_dropout_active_warns_once():
    model = conv_model(dropout=0.1).train()
    state = model.init_state(1)
    with pytest.warns(StepModeWarning, match="dropout active") as caught, torch.no_grad():
        for _ in range(3):
            model.step(torch.randn(1, 3), state)
        model.prefill(torch.randn(1, 2, 3))
    assert len(caught) == 1
    for quiet in (conv_model(dropout=0.1).eval(), conv_model(dropout=0.0).train()):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            quiet.step(torch.randn(1, 3), quiet.init_state(1))
    for doc in (hybridzoo.HybridModel.step.__doc__, hybridzoo.HybridModel.prefill.__doc__):
        assert "nference" in doc


# -- plugin formulas and factories -------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "count", "message"),
    [
        ("param_count", -5, hybridzoo.param_count, "param_count formula returned -5 \\(int\\)"),
        ("param_count", 2.5, hybridzoo.param_count, "returned 2.5 \\(float\\)"),
        ("param_count", "x", hybridzoo.param_count, "returned 'x' \\(str\\)"),
        ("param_count", None, hybridzoo.param_count, "returned None .*not an integer >= 0"),
        ("state_size", -3, hybridzoo.state_numel, "state_size formula returned -3"),
        ("state_size", 1.5, hybridzoo.state_numel, "state_size formula returned 1.5"),
        ("active_param_count", -1, hybridzoo.active_param_count, "active_param_count formula"),
        ("hidden_size_multiple", 0, hybridzoo.param_count, "returned 0 .*not an integer >= 1"),
    ],
)
def test_plugin_formula_results_are_checked(
    conv_registry, monkeypatch, field, value, count, message
):
    arity = 1 if field == "hidden_size_multiple" else 2
    formula = (lambda o: value) if arity == 1 else (lambda o, h: value)
    conv_registry.register(attrs.evolve(conv_spec("bad", "B"), **{field: formula}))
    monkeypatch.setattr(conv_registry, "source", lambda name: ("hybridzoo-bad", "1.2"))
    with pytest.raises(PluginError, match=message) as info:
        count("B", hidden_size=8)
    assert str(info.value).startswith("layer 'bad': its ")
    assert str(info.value).endswith("(from distribution 'hybridzoo-bad' 1.2)")
    assert info.value.distribution == "hybridzoo-bad"


def test_good_formula_results_are_plain_ints(conv_registry):
    spec = attrs.evolve(
        conv_spec("good", "Y"),
        param_count=lambda o, h: np.int64(10),
        state_size=lambda o, h: None,  # a state that grows with the sequence
        active_param_count=lambda o, h: 4,
    )
    conv_registry.register(spec)
    count = hybridzoo.param_count("Y", hidden_size=8)  # body, its norm, the final norm
    assert count == 10 + 16 + 16 and type(count) is int
    conv = 8 * 3 + 8
    assert hybridzoo.active_param_count("Y C", hidden_size=8) == (4 + 16) + (conv + 16) + 16
    assert hybridzoo.param_count("Y C", hidden_size=8) == (10 + 16) + (conv + 16) + 16
    assert hybridzoo.state_numel("Y", hidden_size=8) is None


def test_a_formula_or_factory_that_raises_is_a_plugin_error_naming_the_layer(conv_registry):
    def boom(*args):
        raise RuntimeError("boom")

    conv_registry.register(attrs.evolve(conv_spec("bad", "B"), factory=boom))
    conv_registry.register(attrs.evolve(conv_spec("odd", "O"), param_count=boom))
    message = "layer 'bad': its factory raised RuntimeError: boom .*\\(registered at run time\\)"
    with pytest.raises(PluginError, match=message) as e:
        hybridzoo.build("B", embed_dim=3)
    assert isinstance(e.value.__cause__, RuntimeError)
    with pytest.raises(PluginError, match="'odd'.*param_count formula raised RuntimeError") as e:
        hybridzoo.param_count("O")
    assert isinstance(e.value.__cause__, RuntimeError)


# -- norms ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_every_norm_is_counted_exactly(norm):
    shared = {"F": [1]}
    model = hybridzoo.build("C F C", embed_dim=5, hidden_size=8, norm=norm, shared_layers=shared)
    kinds = {type(m).__name__ for m in model.modules() if "Norm" in type(m).__name__}
    assert kinds == {"LayerNorm" if norm == "layernorm" else "RMSNorm"}
    assert model.param_count() == hybridzoo.param_count(model.config)
    if norm == "rmsnorm":
        assert not any("bias" in name and "norm" in name for name, _ in model.named_parameters())


def test_rmsnorm_is_the_obvious_formula_in_float32_for_low_precision():
    from hybridzoo.norms import RMSNorm

    norm = RMSNorm(6, eps=1e-6).double()
    torch.nn.init.normal_(norm.weight)
    x = torch.randn(3, 6, dtype=torch.float64)
    expected = norm.weight * x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(norm(x), expected, rtol=1e-12, atol=1e-12)
    low = norm.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.double(), expected, rtol=2e-2, atol=2e-2)


# -- the public surface ------------------------------------------------------------------------


def test_the_public_surface():
    for name in (
        "build", "build_pattern", "load", "HybridConfig", "HybridModel", "HybridState",
        "ModelOptions", "list_layers", "list_patterns", "get_layer", "visualize",
        "param_count", "param_breakdown", "state_numel", "HybridZooError", "StateError",
    ):  # fmt: skip
        assert name in hybridzoo.__all__ and getattr(hybridzoo, name) is not None
    assert "jamba_like" in [info.name for info in hybridzoo.list_patterns("*like")]
    with pytest.raises(hybridzoo.UnknownLayerError, match="given by its name .*got None"):
        hybridzoo.get_layer(None)
    with pytest.raises(hybridzoo.OptionError, match="shell-style pattern .*got None"):
        hybridzoo.list_layers(None)


def test_deprecated_names_warn_and_agree():
    model = conv_model()
    with pytest.warns(DeprecationWarning, match="use HybridModel.param_count"):
        assert model.num_parameters() == model.param_count()
    with pytest.warns(DeprecationWarning, match="use hybridzoo.state_numel"):
        assert hybridzoo.state_size(model.config) == hybridzoo.state_numel(model.config)
