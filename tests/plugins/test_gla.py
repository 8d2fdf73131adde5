"""GLA layer: body vs the time-step reference, decoding state, prefill, counts, gradients."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hybridzoo.nn import FeedForward
from hybridzoo_plugins.gla import GLAOptions
from hybridzoo_plugins.gla.formulas import gla_param_count, key_width, param_count, state_size
from hybridzoo_plugins.gla.layer import GatedLinearAttention, make_bodies
from hybridzoo_plugins.gla.reference import reference_forward, reference_scan

TOL = {"atol": 1e-10, "rtol": 1e-10}  # float64
HIDDEN = 12


def make_layer(
    *, heads: int = 2, head_dim: int = 4, expand_k: float = 0.5, chunk_size: int = 8, seed: int = 0
) -> GatedLinearAttention:
    """A float64 layer with every parameter random (the norm weight and gate bias matter too)."""
    torch.manual_seed(seed)
    layer = GatedLinearAttention(
        HIDDEN,
        num_heads=heads,
        head_dim=head_dim,
        expand_k=expand_k,
        gate_low_rank_dim=3,
        chunk_size=chunk_size,
    ).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0.0, 0.7)
    return layer.eval()


def inputs(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, length, HIDDEN, generator=gen, dtype=torch.float64)


@given(
    heads=st.integers(1, 3),
    head_dim=st.sampled_from([2, 4, 6]),
    expand_k=st.sampled_from([0.5, 1.0, 2.0]),
    chunk_size=st.sampled_from([1, 4, 16, 64]),
    length=st.integers(1, 40),
    seed=st.integers(0, 1000),
)
def test_forward_matches_reference(
    heads: int, head_dim: int, expand_k: float, chunk_size: int, length: int, seed: int
) -> None:
    layer = make_layer(heads=heads, head_dim=head_dim, expand_k=expand_k, chunk_size=chunk_size)
    x = inputs(2, length, seed)
    torch.testing.assert_close(layer(x), reference_forward(layer, x), **TOL)


def test_strong_forget_gate_matches_reference() -> None:
    layer = make_layer(chunk_size=16)
    layer.gate_logit_normalizer = 0.05  # log α down to about -20 per step
    x = inputs(2, 50)
    torch.testing.assert_close(layer(x), reference_forward(layer, x), **TOL)


@pytest.mark.parametrize("length", [1, 9, 20])
def test_step_equals_forward(length: int) -> None:
    layer = make_layer()
    x = inputs(3, length)
    state = layer.init_state(3)
    address = state[0].data_ptr()
    outs = []
    for x_t in x.unbind(1):
        y_t, state = layer.step(x_t, state)
        outs.append(y_t)
    assert state[0].data_ptr() == address  # updated in place
    torch.testing.assert_close(torch.stack(outs, 1), layer(x), **TOL)
    torch.testing.assert_close(state[0], reference_scan(layer, x)[1], **TOL)


@pytest.mark.parametrize(("prefix", "length"), [(1, 5), (8, 20), (13, 30)])
def test_prefill_then_steps_equals_forward(prefix: int, length: int) -> None:
    layer = make_layer()
    x = inputs(2, length)
    y_pre, state = layer.prefill(x[:, :prefix])
    outs = [y_pre]
    for x_t in x[:, prefix:].unbind(1):
        y_t, state = layer.step(x_t, state)
        outs.append(y_t.unsqueeze(1))
    torch.testing.assert_close(torch.cat(outs, 1), layer(x), **TOL)


def test_prefill_chained_from_a_state() -> None:
    layer = make_layer()
    x = inputs(2, 25)
    y_1, state = layer.prefill(x[:, :11])
    y_2, state = layer.prefill(x[:, 11:], state)
    y_ref, state_ref = reference_scan(layer, x)
    torch.testing.assert_close(torch.cat([y_1, y_2], 1), y_ref, **TOL)
    torch.testing.assert_close(state[0], state_ref, **TOL)


def test_init_state_shape_dtype() -> None:
    layer = make_layer(heads=3, head_dim=4, expand_k=0.5)
    (s,) = layer.init_state(5)
    assert s.shape == (5, 3, 2, 4) and s.dtype == torch.float64 and not s.any()
    assert s[0].numel() == state_size(GLAOptions(num_heads=3, head_dim=4, expand_k=0.5), HIDDEN)


@pytest.mark.parametrize(
    ("hidden", "kwargs"),
    [
        (256, {}),
        (12, {"num_heads": 3, "head_dim": 4, "expand_k": 0.25, "gate_low_rank_dim": 5}),
        (10, {"num_heads": 1, "head_dim": 6, "expand_k": 1.5, "ffn_expand_factor": 2}),
    ],
)
def test_param_count_equals_numel(hidden: int, kwargs: dict) -> None:
    options = GLAOptions(**kwargs)
    bodies = make_bodies(options, hidden)
    assert isinstance(bodies[0], GatedLinearAttention) and isinstance(bodies[1], FeedForward)
    numel = [sum(p.numel() for p in body.parameters()) for body in bodies]
    assert gla_param_count(options, hidden) == numel[0]
    assert param_count(options, hidden) == sum(numel)


def test_edifice_defaults_are_fla_widths() -> None:
    layer = GatedLinearAttention(256)
    assert layer.q_proj.out_features == 128 and layer.v_proj.out_features == 256
    assert key_width(64, 0.5) == 32


def test_gradients_reach_every_parameter() -> None:
    layer = make_layer()
    layer(inputs(2, 11)).square().sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_float32_runs_and_keeps_dtype() -> None:
    layer = GatedLinearAttention(HIDDEN, num_heads=2, head_dim=4)
    x = torch.randn(2, 70, HIDDEN)
    y, (s,) = layer.prefill(x)
    assert y.dtype == torch.float32 and s.dtype == torch.float32 and torch.isfinite(y).all()


def test_bad_options_are_named() -> None:
    with pytest.raises(ValueError, match="expand_k"):
        GatedLinearAttention(HIDDEN, head_dim=5, expand_k=0.5)
    with pytest.raises(ValueError, match="chunk_size"):
        GatedLinearAttention(HIDDEN, chunk_size=48)
    with pytest.raises(ValueError, match="num_heads"):
        GatedLinearAttention(HIDDEN, num_heads=0)
    with pytest.raises(TypeError, match="hidden_size"):
        GatedLinearAttention(12.0)
    with pytest.raises(ValueError, match="gate_logit_normalizer"):
        GatedLinearAttention(HIDDEN, gate_logit_normalizer=0)
    with pytest.raises(ValueError, match="expand_k"):
        GLAOptions(head_dim=3, expand_k=0.5)
    with pytest.raises(ValueError, match="gate_low_rank_dim"):
        GatedLinearAttention(HIDDEN, gate_low_rank_dim=0)
    with pytest.raises(ValueError, match="norm_eps"):
        GatedLinearAttention(HIDDEN, norm_eps=-1.0)
