"""The body parts of the Mamba-2 and Gated DeltaNet layers (:mod:`hybridzoo.nn`): the gated
RMSNorm (against an obvious formula and transformers' two gated norms, gradients by gradcheck),
the short convolution's step mode, the initialisers and the converters' state-dict reader."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hybridzoo.nn.gated_norm import GatedRMSNorm, gated_rms_norm
from hybridzoo.nn.init import log_uniform_, time_step_bias_
from hybridzoo.nn.interop import load_converted, source_state_dict
from hybridzoo.nn.short_conv import ShortConvolution
from hybridzoo.nn.step_cache import DerivedTensors

F64 = torch.float64


def _obvious(x, gate, weight, group_size, eps, norm_before_gate):
    """The gated RMSNorm written out, group by group."""
    s = gate * torch.sigmoid(gate)
    u = x if norm_before_gate else x * s
    groups = u.split(group_size, dim=-1)
    y = torch.cat([g / torch.sqrt(g.pow(2).mean(-1, keepdim=True) + eps) for g in groups], -1)
    return y * weight * s if norm_before_gate else y * weight


@given(
    groups=st.integers(1, 3),
    group_size=st.integers(1, 5),
    norm_before_gate=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_gated_norm_matches_the_formula_and_its_gradients(
    groups: int, group_size: int, norm_before_gate: bool, seed: int
) -> None:
    gen = torch.Generator().manual_seed(seed)
    width = groups * group_size
    x, gate = (torch.randn(2, 3, width, generator=gen, dtype=F64) for _ in range(2))
    weight = torch.randn(width, generator=gen, dtype=F64)
    args = (group_size, 1e-5, norm_before_gate)
    torch.testing.assert_close(
        gated_rms_norm(x, gate, weight, group_size=group_size, norm_before_gate=norm_before_gate),
        _obvious(x, gate, weight, *args),
        rtol=1e-12,
        atol=1e-12,
    )
    inputs = tuple(t.clone().requires_grad_(True) for t in (x, gate, weight))
    assert torch.autograd.gradcheck(
        lambda a, b, c: gated_rms_norm(
            a, b, c, group_size=group_size, norm_before_gate=norm_before_gate
        ),
        inputs,
    )


@pytest.mark.parametrize("norm_before_gate", [False, True])
def test_gated_norm_matches_transformers(norm_before_gate: bool) -> None:
    pytest.importorskip("transformers")
    if norm_before_gate:  # Gated DeltaNet: per head, the gate after the norm
        from transformers.models.qwen3_next.modeling_qwen3_next import Qwen3NextRMSNormGated

        theirs = Qwen3NextRMSNormGated(6, eps=1e-6)
        ours = GatedRMSNorm(6, eps=1e-6, norm_before_gate=True)
    else:  # Mamba-2 with 3 groups: the gate first, an RMS per group
        from transformers.models.mamba2.modeling_mamba2 import MambaRMSNormGated

        theirs = MambaRMSNormGated(6, group_size=2, eps=1e-6)
        ours = GatedRMSNorm(6, group_size=2, eps=1e-6)
    with torch.no_grad():
        theirs.weight.normal_()
        ours.weight.copy_(theirs.weight)
    x, gate = torch.randn(4, 5, 6), torch.randn(4, 5, 6)
    torch.testing.assert_close(ours(x, gate), theirs(x, gate), rtol=1e-6, atol=1e-6)


def test_gated_norm_half_precision_is_computed_in_float32() -> None:
    x, gate = torch.randn(3, 8) * 100, torch.randn(3, 8)
    norm = GatedRMSNorm(8, group_size=4)
    y = norm(x.bfloat16(), gate.bfloat16())
    assert y.dtype == torch.bfloat16
    expected = norm(x.bfloat16().float(), gate.bfloat16().float())
    torch.testing.assert_close(y.float(), expected, rtol=1e-2, atol=1e-2)
    assert norm(torch.empty(0, 8), torch.empty(0, 8)).shape == (0, 8)


def test_gated_norm_errors_name_the_value() -> None:
    with pytest.raises(ValueError, match="group_size must divide hidden_size = 6"):
        GatedRMSNorm(6, group_size=4)
    with pytest.raises(ValueError, match="eps"):
        GatedRMSNorm(6, eps=0.0)
    norm = GatedRMSNorm(6)
    with pytest.raises(ValueError, match="gate must have x's shape"):
        norm(torch.randn(2, 6), torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"weight must have shape \(6,\)"):
        gated_rms_norm(torch.randn(2, 6), torch.randn(2, 6), torch.ones(3))


@pytest.mark.parametrize(("kernel", "bias"), [(1, False), (3, True), (4, False)])
def test_short_convolution_steps_equal_the_sequence_form(kernel: int, bias: bool) -> None:
    torch.manual_seed(0)
    conv = ShortConvolution(5, kernel, bias=bias, dtype=F64)
    reference = torch.nn.Conv1d(5, 5, kernel, groups=5, padding=kernel - 1, bias=bias).double()
    reference.load_state_dict(conv.state_dict())  # nn.Conv1d's names and shapes
    x = torch.randn(2, 9, 5, dtype=F64)
    y, window = conv(x, output_final_window=True)
    expected = torch.nn.functional.silu(reference(x.transpose(1, 2))[..., :9]).transpose(1, 2)
    torch.testing.assert_close(y, expected)
    state = conv.init_window(2)
    with torch.no_grad():
        ys = torch.stack([conv.step(x_t, state) for x_t in x.unbind(1)], 1)
    torch.testing.assert_close(ys, y)
    torch.testing.assert_close(state, window)


def test_initialisers() -> None:
    torch.manual_seed(0)
    bias = time_step_bias_(torch.empty(1000), 0.001, 0.1, 0.002)
    dt = torch.nn.functional.softplus(bias.double())
    assert dt.min() >= 0.002 - 1e-7 and dt.max() <= 0.1 + 1e-7
    assert (dt < 0.01).float().mean() > 0.2  # log-uniform: many small steps
    a = torch.exp(log_uniform_(torch.empty(1000, dtype=F64), 1.0, 16.0))
    assert a.min() >= 1.0 and a.max() <= 16.0 and a.mean() > 7.0


def test_source_state_dict_and_load_converted() -> None:
    source = torch.nn.Linear(3, 2).double().eval()
    state = {f"model.0.{k}": v for k, v in source.state_dict().items()}
    assert sorted(source_state_dict(state, prefix="model.0.", required="weight")) == [
        "bias",
        "weight",
    ]
    with pytest.raises(ValueError, match="no 'weight' in the state dict"):
        source_state_dict(state, prefix="model.1.", required="weight")
    with pytest.raises(TypeError, match="module or a state dict"):
        source_state_dict([1, 2], required="weight")  # type: ignore[arg-type]
    copy = load_converted(
        lambda **fk: torch.nn.Linear(3, 2, **fk), source_state_dict(source, required="bias"), source
    )
    assert copy.weight.dtype == F64 and not copy.training
    torch.testing.assert_close(copy.weight, source.weight)


def test_derived_tensors_follow_their_parameters() -> None:
    cache = DerivedTensors()
    p = torch.nn.Parameter(torch.ones(3))
    calls = []

    def make() -> torch.Tensor:
        calls.append(1)
        return p * 2

    with torch.no_grad():
        first = cache.get("twice", (p,), make)
        assert cache.get("twice", (p,), make) is first and len(calls) == 1
        p.add_(1.0)  # a new version
        torch.testing.assert_close(cache.get("twice", (p,), make), torch.full((3,), 4.0))
        cache.clear()
        cache.get("twice", (p,), make)
    assert len(calls) == 3
    y = cache.get("twice", (p,), make)  # autograd records: never cached, gradients flow
    assert y.requires_grad and len(calls) == 4
