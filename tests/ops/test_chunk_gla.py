"""The chunked gated linear recurrence equals the time-step loop (float64, tight tolerance)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import hybridzoo.ops.gla.chunk as chunk_module
from hybridzoo.ops.gla import chunk_gla, gla_step
from hybridzoo.ops.gla.naive import naive_gla

# float64 chunked vs loop: differences come from summation order and exp of differences of
# cumulative sums only; observed <= 1e-12 on these shapes.
RTOL, ATOL = 1e-9, 1e-9


@st.composite
def problems(draw: st.DrawFn, max_t: int = 80) -> dict:
    """Random small problems: T from 1, strong or weak decays, with/without bonus and state."""
    b = draw(st.integers(1, 2))
    t = draw(st.integers(1, max_t))
    h = draw(st.integers(1, 3))
    d_k = draw(st.integers(1, 6))
    d_v = draw(st.integers(1, 6))
    strength = draw(st.sampled_from([0.05, 1.0, 30.0]))  # max -log_decay per step
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    return {
        "q": randn(b, t, h, d_k),
        "k": randn(b, t, h, d_k),
        "v": randn(b, t, h, d_v),
        "log_decay": -torch.rand(b, t, h, d_k, generator=gen, dtype=torch.float64) * strength,
        "bonus": randn(h, d_k) if draw(st.booleans()) else None,
        "initial_state": randn(b, h, d_k, d_v) if draw(st.booleans()) else None,
        "scale": draw(st.sampled_from([None, 1.0, 0.3])),
        "chunk_size": draw(st.sampled_from([1, 2, 4, 8, 16, 64])),
        # 1: every chunk its own group (the group loops and their carries are exercised)
        "group_elements": draw(st.sampled_from([1, chunk_module.GROUP_ELEMENTS])),
    }


def _inputs(p: dict) -> list[torch.Tensor]:
    names = ("q", "k", "v", "log_decay", "bonus", "initial_state")
    return [p[n] for n in names if p[n] is not None]


def _run(fn, p: dict, **extra) -> tuple[torch.Tensor, torch.Tensor]:
    kwargs = {n: p[n] for n in ("bonus", "initial_state", "scale")}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(chunk_module, "GROUP_ELEMENTS", p["group_elements"])
        return fn(
            p["q"], p["k"], p["v"], p["log_decay"], output_final_state=True, **kwargs, **extra
        )


@given(problems())
def test_chunk_equals_loop_outputs_states_and_gradients(p: dict) -> None:
    leaves = _inputs(p)
    for x in leaves:
        x.requires_grad_(True)
    o, s = _run(chunk_gla, p, chunk_size=p["chunk_size"])
    o_ref, s_ref = _run(naive_gla, p)
    torch.testing.assert_close(o, o_ref, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(s, s_ref, rtol=RTOL, atol=ATOL)

    gen = torch.Generator().manual_seed(0)
    w_o = torch.randn(o.shape, generator=gen, dtype=o.dtype)
    w_s = torch.randn(s.shape, generator=gen, dtype=s.dtype)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(chunk_module, "GROUP_ELEMENTS", p["group_elements"])
        grads = torch.autograd.grad((o * w_o).sum() + (s * w_s).sum(), leaves)
    grads_ref = torch.autograd.grad((o_ref * w_o).sum() + (s_ref * w_s).sum(), leaves)
    for got, want in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(got, want, rtol=RTOL, atol=ATOL)


@given(problems(), st.data())
def test_two_calls_chained_by_state_equal_one_call(p: dict, data: st.DataObject) -> None:
    t = p["q"].shape[1]
    split = data.draw(st.integers(0, t))
    o_all, s_all = _run(chunk_gla, p, chunk_size=p["chunk_size"])
    first = {**p, **{n: p[n][:, :split] for n in ("q", "k", "v", "log_decay")}}
    second = {**p, **{n: p[n][:, split:] for n in ("q", "k", "v", "log_decay")}}
    if split == 0:
        o_1, s_1 = p["q"].new_zeros(o_all[:, :0].shape), p["initial_state"]
    else:
        o_1, s_1 = _run(chunk_gla, first, chunk_size=p["chunk_size"])
    if split == t:
        o_2, s_2 = p["q"].new_zeros(o_all[:, :0].shape), s_1
    else:
        o_2, s_2 = _run(chunk_gla, {**second, "initial_state": s_1}, chunk_size=p["chunk_size"])
    torch.testing.assert_close(torch.cat([o_1, o_2], 1), o_all, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(s_2, s_all, rtol=RTOL, atol=ATOL)


@given(problems(max_t=20))
def test_step_equals_loop(p: dict) -> None:
    o_ref, s_ref = _run(naive_gla, p)
    b, _, h, d_k = p["q"].shape
    d_v = p["v"].shape[-1]
    init = p["initial_state"]
    state = init.clone() if init is not None else p["q"].new_zeros(b, h, d_k, d_v)
    address = state.data_ptr()
    outs = []
    steps = zip(*(p[n].unbind(1) for n in ("q", "k", "v", "log_decay")), strict=True)
    for q_t, k_t, v_t, g_t in steps:
        outs.append(gla_step(q_t, k_t, v_t, g_t, state, scale=p["scale"], bonus=p["bonus"]))
    assert state.data_ptr() == address  # updated in place
    torch.testing.assert_close(torch.stack(outs, 1), o_ref, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(state, s_ref, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("bonus", [False, True])
def test_gradcheck(bonus: bool) -> None:
    gen = torch.Generator().manual_seed(1)
    b, t, h, d_k, d_v = 1, 6, 2, 3, 2

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64, requires_grad=True)

    g = (-3 * torch.rand(b, t, h, d_k, generator=gen, dtype=torch.float64)).requires_grad_()
    args = [r(b, t, h, d_k), r(b, t, h, d_k), r(b, t, h, d_v), g, r(b, h, d_k, d_v)]
    if bonus:
        args.append(r(h, d_k))

    def f(q, k, v, g, s0, u=None):
        kw = {"initial_state": s0, "bonus": u, "output_final_state": True, "chunk_size": 4}
        return chunk_gla(q, k, v, g, **kw)

    assert torch.autograd.gradcheck(f, args)


@pytest.mark.parametrize("bonus", [False, True])
def test_float32_strong_decay_is_finite_and_accurate(bonus: bool) -> None:
    gen = torch.Generator().manual_seed(2)
    b, t, h, d_k, d_v = 2, 300, 2, 16, 16
    q, k = (torch.randn(b, t, h, d_k, generator=gen, dtype=torch.float64) for _ in range(2))
    v = torch.randn(b, t, h, d_v, generator=gen, dtype=torch.float64)
    g = -30 * torch.rand(b, t, h, d_k, generator=gen, dtype=torch.float64)
    u = torch.randn(h, d_k, generator=gen, dtype=torch.float64) if bonus else None
    o_ref, s_ref = naive_gla(q, k, v, g, bonus=u, output_final_state=True)
    leaves = [x.float().requires_grad_() for x in (q, k, v, g)]
    u32 = None if u is None else u.float()
    o, s = chunk_gla(*leaves, bonus=u32, output_final_state=True, chunk_size=64)
    grads = torch.autograd.grad(o.sum() + s.sum(), leaves)
    assert all(torch.isfinite(x).all() for x in (o, s, *grads))
    assert o.dtype == torch.float32
    torch.testing.assert_close(o.double(), o_ref, rtol=0, atol=1e-3 * o_ref.abs().max().item())
    torch.testing.assert_close(s.double(), s_ref, rtol=0, atol=1e-3 * s_ref.abs().max().item())


def test_low_precision_inputs_run_in_float32() -> None:
    q, k, g = torch.randn(3, 1, 9, 2, 4).bfloat16().unbind(0)
    v = torch.randn(1, 9, 2, 5).bfloat16()
    o, s = chunk_gla(q, k, v, -g.abs(), output_final_state=True, chunk_size=4)
    assert o.dtype == torch.bfloat16 and s.dtype == torch.float32
    o_ref, _ = naive_gla(q.float(), k.float(), v.float(), -g.float().abs())
    torch.testing.assert_close(o.float(), o_ref, rtol=2e-2, atol=2e-2)


def test_bad_arguments_are_named() -> None:
    q = torch.randn(1, 5, 2, 3)
    v = torch.randn(1, 5, 2, 4)
    with pytest.raises(ValueError, match="chunk_size"):
        chunk_gla(q, q, v, -q.abs(), chunk_size=48)
    with pytest.raises(ValueError, match="chunk_size"):
        chunk_gla(q, q, v, -q.abs(), chunk_size=0)
    with pytest.raises(ValueError, match="bonus"):
        chunk_gla(q, q, v, -q.abs(), bonus=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="initial_state"):
        chunk_gla(q, q, v, -q.abs(), initial_state=torch.zeros(1, 2, 4, 3))
    with pytest.raises(ValueError, match="log_decay"):
        chunk_gla(q, q, v, q[:, :4])
    with pytest.raises(ValueError, match="v must"):
        chunk_gla(q, q, v[:, :4], -q.abs())
    with pytest.raises(ValueError, match="q must have 4"):
        chunk_gla(q[0], q, v, -q.abs())
    with pytest.raises(TypeError, match="scale"):
        chunk_gla(q, q, v, -q.abs(), scale="1")
    with pytest.raises(ValueError, match="state must"):
        gla_step(q[:, 0], q[:, 0], v[:, 0], q[:, 0], torch.zeros(1, 2, 3, 3))
