"""chunk_gla specifics: exact under any decay (issue: RWKV's chunked forward broke down under
strong decay), grouping invariance, chained calls, argument errors. The properties shared by the
whole family are in test_linear_family.py."""

from __future__ import annotations

import math

import pytest
import torch
from family import KERNELS, Problem, problems
from hypothesis import given
from hypothesis import strategies as st

import hybridzoo.ops.gla.chunk as chunk_module
from hybridzoo.errors import HybridZooError
from hybridzoo.ops import chunk_gla, gla_step

RTOL, ATOL = 1e-9, 1e-9


def _step_mode(q, k, v, g, bonus, scale):
    b, _, h, d_k = q.shape
    state = q.new_zeros(b, h, d_k, v.shape[-1])
    steps = zip(*(x.unbind(1) for x in (q, k, v, g)), strict=True)
    outs = [gla_step(*xs, state, scale=scale, bonus=bonus) for xs in steps]
    return torch.stack(outs, 1), state


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bonus", [False, True])
@pytest.mark.parametrize("time_decay", [8.0, 15.0, 25.0, 100.0])
@pytest.mark.parametrize("backend", ["compiled", "torch"])
def test_strong_decay_equals_step_mode(dtype, bonus: bool, time_decay: float, backend) -> None:
    """RWKV-6's log decay is ``-exp(time_decay)``: -exp(8) was 1.4e-4 off step mode, -exp(15)
    3e-2, -exp(25) NaN; -exp(100) is -inf in float32. Mixed with weak decays (where the weights
    that matter live), the chunked form equals the step mode to rounding."""
    gen = torch.Generator().manual_seed(0)
    b, t, h, d_k, d_v = 2, 150, 2, 8, 8
    q, k = (torch.randn(b, t, h, d_k, generator=gen, dtype=torch.float64) for _ in range(2))
    v = torch.randn(b, t, h, d_v, generator=gen, dtype=torch.float64)
    g = -0.05 * torch.rand(b, t, h, d_k, generator=gen, dtype=torch.float64)
    strong = torch.rand(b, t, h, d_k, generator=gen) < 0.3
    g = torch.where(strong, -math.exp(time_decay), g)
    u = torch.randn(h, d_k, generator=gen, dtype=torch.float64) if bonus else None
    q, k, v, g = (x.to(dtype) for x in (q, k, v, g))
    u = None if u is None else u.to(dtype)
    o_step, s_step = _step_mode(q, k, v, g, u, 1.0)
    for chunk in (16, 64):
        o, s = chunk_gla(
            q,
            k,
            v,
            g,
            scale=1.0,
            bonus=u,
            output_final_state=True,
            chunk_size=chunk,
            backend=backend,
        )
        tol = 1e-12 if dtype == torch.float64 else 2e-6
        torch.testing.assert_close(o, o_step, rtol=0, atol=tol * o_step.abs().max().item())
        torch.testing.assert_close(s, s_step, rtol=0, atol=tol * s_step.abs().max().item())


@pytest.mark.parametrize("backend", ["compiled", "torch"])
def test_strong_decay_gradients_are_finite(backend: str) -> None:
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 70, 2, 4, generator=gen) for _ in range(3))
    g = torch.full((1, 70, 2, 4), -math.exp(25.0))
    g[:, ::3] = -math.inf
    leaves = [x.requires_grad_() for x in (q, k, v, g)]
    o, s = chunk_gla(*leaves, bonus=torch.randn(2, 4), output_final_state=True, backend=backend)
    grads = torch.autograd.grad(o.sum() + s.sum(), leaves)
    assert all(torch.isfinite(x).all() for x in (o, s, *grads))


@given(p=problems(KERNELS["gla-torch"], max_t=60), data=st.data())
def test_grouping_changes_nothing_and_calls_chain_by_state(p: Problem, data) -> None:
    chunk = data.draw(st.sampled_from([1, 4, 16]))
    o_all, s_all = p.chunk(chunk_size=chunk)
    with pytest.MonkeyPatch.context() as patch:  # every chunk its own group
        patch.setattr(chunk_module, "GROUP_ELEMENTS", 1)
        o_one, s_one = p.chunk(chunk_size=chunk)
    torch.testing.assert_close(o_one, o_all, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(s_one, s_all, rtol=RTOL, atol=ATOL)
    t = o_all.shape[1]
    split = data.draw(st.integers(1, t))
    o_1, s_1 = p.chunk(args=p.rows(0, None, 0, split), chunk_size=chunk)
    if split < t:
        o_2, s_1 = p.chunk(args=p.rows(0, None, split, t), initial_state=s_1, chunk_size=chunk)
        o_1 = torch.cat([o_1, o_2], 1)
    torch.testing.assert_close(o_1, o_all, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(s_1, s_all, rtol=RTOL, atol=ATOL)


def test_bad_arguments_are_named() -> None:
    q = torch.randn(1, 5, 2, 3)
    v = torch.randn(1, 5, 2, 4)
    cases = [
        (dict(chunk_size=48), "chunk_size"),
        (dict(chunk_size=0), "chunk_size"),
        (dict(bonus=torch.zeros(3, 2)), "bonus"),
        (dict(initial_state=torch.zeros(1, 2, 4, 3)), "initial_state"),
        (dict(scale="1"), "scale"),
        (dict(seq_idx=torch.zeros(1, 5)), "seq_idx must be an integer"),
        (dict(seq_idx=torch.zeros(1, 4, dtype=torch.long)), "seq_idx must have shape"),
        (dict(seq_idx=torch.tensor([[0, 1, 1, 0, 2]])), "non-decreasing"),
    ]
    for kwargs, match in cases:
        with pytest.raises(HybridZooError, match=match):
            chunk_gla(q, q, v, -q.abs(), **kwargs)
    with pytest.raises(ValueError, match="log_decay"):  # the errors are also ValueErrors
        chunk_gla(q, q, v, q[:, :4])
    with pytest.raises(HybridZooError, match="v must"):
        chunk_gla(q, q, v[:, :4], -q.abs())
    with pytest.raises(HybridZooError, match="q must have 4"):
        chunk_gla(q[0], q, v, -q.abs())
    with pytest.raises(HybridZooError, match="state must"):
        gla_step(q[:, 0], q[:, 0], v[:, 0], q[:, 0], torch.zeros(1, 2, 3, 3))
    with pytest.raises(HybridZooError, match="backend must be one of"):
        chunk_gla(q, q, v, -q.abs(), backend="fast")
    with pytest.raises(HybridZooError, match="G must divide H"):
        chunk_gla(
            torch.randn(1, 5, 2, 3),
            torch.randn(1, 5, 2, 3),
            torch.randn(1, 5, 3, 4),
            -torch.rand(1, 5, 3),
        )


def test_a_decay_of_another_rank_is_named() -> None:
    q, v = torch.randn(1, 5, 2, 3), torch.randn(1, 5, 2, 4)
    with pytest.raises(HybridZooError, match=r"log_decay must be \[B, T, H, K\] .* or \[B, T, H\]"):
        chunk_gla(q, q, v, -torch.rand(1, 5))
    with pytest.raises(HybridZooError, match=r"log_decay_t must be \[B, H, K\] .* or \[B, H\]"):
        gla_step(q[:, 0], q[:, 0], v[:, 0], -torch.rand(1), torch.zeros(1, 2, 3, 4))


@pytest.mark.parametrize("backend", ["torch", "compiled"])
@given(p=problems(KERNELS["simple_gla-torch"], max_t=40))
def test_a_scalar_decay_equals_the_same_decay_on_every_channel(backend: str, p: Problem) -> None:
    """The scalar form (its own chunked path without a bonus) against the per-channel form."""
    q, k, v, g = p.args
    wide = g.unsqueeze(-1).expand(*g.shape, q.shape[-1])
    o, s = p.chunk(backend=backend)
    o_wide, s_wide = p.chunk(args=[q, k, v, wide], backend=backend)
    torch.testing.assert_close(o, o_wide, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(s, s_wide, rtol=RTOL, atol=ATOL)


def test_the_old_scalar_decay_names_warn_and_run_chunk_gla() -> None:
    import hybridzoo.ops as ops
    import hybridzoo.ops.simple_gla as old

    for module in (ops, old):
        with pytest.warns(DeprecationWarning, match="use hybridzoo.ops.chunk_gla"):
            assert module.chunk_simple_gla is chunk_gla
        with pytest.warns(DeprecationWarning, match="use hybridzoo.ops.gla_step"):
            assert module.simple_gla_step is gla_step
    with pytest.raises(AttributeError, match="has no attribute 'chunk_simpel_gla'"):
        ops.chunk_simpel_gla  # noqa: B018
