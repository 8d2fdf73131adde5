"""The ``ffn`` layer and :class:`hybridzoo.nn.FeedForward`: every activation, bias, exact counts,
the per-position reference, bf16, and the conformance kit in float32 and float64."""

from __future__ import annotations

import pytest
import torch
from layer_helpers import bf16_errors, kit_params, randomize

import hybridzoo
from hybridzoo.formulas import feedforward_param_count
from hybridzoo.nn import FeedForward
from hybridzoo_plugins.ffn import SPEC, FFNOptions
from hybridzoo_plugins.ffn.reference import reference_forward

ACTIVATIONS = ("gelu", "relu2", "swiglu")


@kit_params("ffn", {a: {"activation": a, "bias": a != "swiglu"} for a in ACTIVATIONS})
def test_conformance(check) -> None:
    check()


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(("expand", "inner"), [(1, None), (3, None), (4, 7)])
def test_param_count_exact(activation: str, bias: bool, expand: int, inner: int | None) -> None:
    options = FFNOptions(expand_factor=expand, activation=activation, bias=bias, inner_size=inner)
    hidden = 6
    body = SPEC.factory(options, hidden)[0]
    built = sum(p.numel() for p in body.parameters())
    assert SPEC.param_count(options, hidden) == built
    width = inner or expand * hidden
    weights = (3 if activation == "swiglu" else 2) * width * hidden
    biases = ((2 if activation == "swiglu" else 1) * width + hidden) if bias else 0
    assert built == weights + biases


def test_default_count_is_edifice() -> None:
    assert feedforward_param_count(256) == 2 * 4 * 256 * 256 + 4 * 256 + 256
    # in a model: + the block's pre-norm and the final norm (2·H each)
    assert hybridzoo.param_count("F", hidden_size=256) == 2 * 4 * 256**2 + 5 * 256 + 4 * 256


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_matches_reference(activation: str) -> None:
    body = randomize(FeedForward(5, 2, activation=activation).double())
    x = torch.randn(2, 4, 5, dtype=torch.float64)
    torch.testing.assert_close(body(x), reference_forward(body, x), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_inference_in_blocks_equals_one_product(activation: str, monkeypatch) -> None:
    import hybridzoo.nn.feedforward as ff

    monkeypatch.setattr(ff, "INFERENCE_BLOCK", 4)
    body = randomize(FeedForward(5, 2, activation=activation).double())
    x = torch.randn(3, 7, 5, dtype=torch.float64)
    with_grad = body(x)
    with torch.no_grad():
        torch.testing.assert_close(body(x), with_grad, atol=1e-13, rtol=1e-13)


def test_activations_are_the_named_functions() -> None:
    # one input channel, identity-like weights: the output is the activation itself
    h = torch.linspace(-3, 3, 13, dtype=torch.float64)
    expected = {
        "gelu": torch.nn.functional.gelu(h),
        "relu2": torch.relu(h) ** 2,
        "swiglu": torch.nn.functional.silu(h) * 2.0 * h,  # gate h, up 2h
    }
    for activation, want in expected.items():
        body = FeedForward(1, 1, activation=activation, bias=False).double()
        with torch.no_grad():
            body.up.weight.copy_(torch.tensor([[1.0], [2.0]])[: body.up.out_features])
            body.down.weight.fill_(1.0)
        got = body(h.view(1, -1, 1)).view(-1)
        torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_bf16_close_to_float64(activation: str) -> None:
    body = randomize(FeedForward(32, 2, activation=activation), std=0.2)
    errors = bf16_errors(body, reference_forward, length=600)
    assert errors.max() < 3e-2, errors.max()


def test_same_as_before_for_the_default() -> None:
    # the default body keeps its parameter names and shapes (saved models load)
    body = FeedForward(4)
    shapes = {k: tuple(v.shape) for k, v in body.state_dict().items()}
    assert shapes == {
        "up.weight": (16, 4),
        "up.bias": (16,),
        "down.weight": (4, 16),
        "down.bias": (4,),
    }


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"activation": "relu"}, ValueError, "activation.*'relu2'"),
        ({"bias": 1}, TypeError, "bias"),
        ({"inner_size": 0}, ValueError, "inner_size"),
        ({"expand_factor": 0}, ValueError, "expand_factor"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        FeedForward(4, **kwargs)


def test_bad_options() -> None:
    with pytest.raises(hybridzoo.OptionError, match="ffn_activation.*relu2"):
        hybridzoo.build("F", embed_dim=4, hidden_size=4, ffn_activation="relu_2")
    with pytest.raises(hybridzoo.OptionError, match="not both"):
        hybridzoo.build("F", embed_dim=4, hidden_size=4, ffn_inner_size=8, ffn_expand_factor=2)


@pytest.mark.parametrize("bias", [False, True])
def test_equals_nemotron_h_mlp(bias: bool) -> None:
    # squared ReLU, an inner width that is no multiple of H (from a checkpoint)
    tf = pytest.importorskip("transformers")
    from transformers.models.nemotron_h.modeling_nemotron_h import NemotronHMLP

    config = tf.NemotronHConfig(
        hidden_size=6, intermediate_size=14, mlp_hidden_act="relu2", mlp_bias=bias
    )
    theirs = randomize(NemotronHMLP(config).double(), seed=2)
    options = FFNOptions(activation="relu2", bias=bias, inner_size=14)
    ours = SPEC.factory(options, 6)[0].double()
    ours.load_state_dict({k.replace("_proj", ""): v for k, v in theirs.state_dict().items()})
    x = torch.randn(2, 5, 6, dtype=torch.float64)
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-12, rtol=1e-12)
