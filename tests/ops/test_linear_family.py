"""Properties every chunked linear-recurrence kernel shares (GLA, simple GLA, SSD, gated delta
rule): equal to its time-step reference (outputs, final states, every gradient; float64), for any
chunk size; equal to its one-token step; packed documents equal separate calls; no output reads
a later input, NaN and inf included; batch size 0."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from family import KERNELS, Dims, Problem, problems, seq_idx_for, spike
from hypothesis import given
from hypothesis import strategies as st

# float64 chunked vs loop: summation order and products of exponentials only (observed <= 1e-13)
RTOL, ATOL = 1e-9, 1e-9
CHUNKS = st.sampled_from([1, 2, 4, 8, 16, 64])

kernels = pytest.mark.parametrize("name", sorted(KERNELS))


def _weights(o: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return (
        torch.randn(o.shape, generator=gen, dtype=o.dtype),
        torch.randn(s.shape, generator=gen, dtype=s.dtype),
    )


def _grads(o, s, leaves, w_o, w_s):
    return torch.autograd.grad((o * w_o).sum() + (s * w_s).sum(), leaves, allow_unused=True)


def _close(got, want, rtol=RTOL, atol=ATOL) -> None:
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


@kernels
@given(data=st.data())
def test_chunk_equals_reference_outputs_states_and_gradients(name: str, data) -> None:
    p: Problem = data.draw(problems(KERNELS[name]))
    b, t = p.args[0].shape[:2]
    seq_idx = seq_idx_for(data.draw, b, t) if data.draw(st.booleans()) else None
    if data.draw(st.booleans()):  # a few steps of enormous (or infinite) decay
        value = data.draw(st.sampled_from([-math.exp(25), -1e4, -math.inf]))
        if KERNELS[name].name != "ssd" or math.isfinite(value):
            spike(p, [(0, data.draw(st.integers(0, t - 1)))], value)
    leaves = p.leaves()
    for x in leaves:
        x.requires_grad_(True)
    o, s = p.chunk(chunk_size=data.draw(CHUNKS), seq_idx=seq_idx)
    o_ref, s_ref = p.naive(seq_idx=seq_idx)
    _close((o, s), (o_ref, s_ref))
    w_o, w_s = _weights(o, s)
    _close(_grads(o, s, leaves, w_o, w_s), _grads(o_ref, s_ref, leaves, w_o, w_s))


@kernels
@given(data=st.data())
def test_step_equals_reference(name: str, data) -> None:
    p: Problem = data.draw(problems(KERNELS[name], max_t=12))
    o_ref, s_ref = p.naive()
    state = p.initial_state.clone() if p.initial_state is not None else torch.zeros_like(s_ref)
    address = state.data_ptr()
    outs = [p.kernel.step(p.at(t), state, p.kwargs) for t in range(o_ref.shape[1])]
    assert state.data_ptr() == address  # updated in place
    torch.testing.assert_close(torch.stack(outs, 1), o_ref, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(state, s_ref, rtol=RTOL, atol=ATOL)


@kernels
@given(data=st.data())
def test_packed_documents_equal_separate_calls(name: str, data) -> None:
    p: Problem = data.draw(problems(KERNELS[name], max_t=40))
    b, t = p.args[0].shape[:2]
    seq_idx = seq_idx_for(data.draw, b, t)
    chunk = data.draw(CHUNKS)
    leaves = p.leaves()
    for x in leaves:
        x.requires_grad_(True)
    o, s = p.chunk(chunk_size=chunk, seq_idx=seq_idx)
    w_o, w_s = _weights(o, s)
    loss = 0.0
    for row in range(b):
        bounds = [0, *(seq_idx[row, 1:] != seq_idx[row, :-1]).nonzero()[:, 0].add(1).tolist(), t]
        for i, (t0, t1) in enumerate(itertools.pairwise(bounds)):
            init = None if i > 0 or p.initial_state is None else p.initial_state[row : row + 1]
            o_d, s_d = p.chunk(
                args=p.rows(row, row + 1, t0, t1), initial_state=init, chunk_size=chunk
            )
            torch.testing.assert_close(o[row : row + 1, t0:t1], o_d, rtol=RTOL, atol=ATOL)
            loss = loss + (o_d * w_o[row : row + 1, t0:t1]).sum()
        torch.testing.assert_close(s[row : row + 1], s_d, rtol=RTOL, atol=ATOL)
        loss = loss + (s_d * w_s[row : row + 1]).sum()
    got = _grads(o, s, leaves, w_o, w_s)
    want = torch.autograd.grad(loss, leaves, allow_unused=True)
    _close(got, want)


@kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@given(data=st.data())
def test_a_bad_value_never_reaches_an_earlier_output(name: str, dtype, data) -> None:
    kernel = KERNELS[name]
    p: Problem = data.draw(problems(kernel, dtype=dtype, max_t=40))
    b, t = p.args[0].shape[:2]
    s = data.draw(st.integers(0, t - 1))
    which = data.draw(st.sampled_from([i for i, timed in enumerate(kernel.timed) if timed]))
    bad = data.draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    chunk = data.draw(CHUNKS)
    seq_idx = seq_idx_for(data.draw, b, t) if data.draw(st.booleans()) else None
    o_clean, _ = p.chunk(chunk_size=chunk, seq_idx=seq_idx)
    p.args[which] = p.args[which].clone()
    p.args[which][data.draw(st.integers(0, b - 1)), s] = bad
    o_bad, _ = p.chunk(chunk_size=chunk, seq_idx=seq_idx)
    assert torch.equal(o_bad[:, :s], o_clean[:, :s])


@kernels
@given(data=st.data())
def test_float32_agrees_with_the_float64_reference(name: str, data) -> None:
    p: Problem = data.draw(problems(KERNELS[name], max_t=100))
    o_ref, s_ref = p.naive()
    p32 = Problem(
        p.kernel,
        [x.float() for x in p.args],
        {k: v.float() if isinstance(v, torch.Tensor) else v for k, v in p.kwargs.items()},
        None if p.initial_state is None else p.initial_state.float(),
    )
    o, s = p32.chunk(chunk_size=data.draw(CHUNKS))
    assert o.dtype == s.dtype == torch.float32
    # 2e-5 of the result's scale, or, where the result is a sum that cancels (a state of terms
    # ~0.1 adding up to 1e-4), 4 times the rounding of the float32 time-step loop itself
    o_loop, s_loop = p32.naive()
    for fast, loop, ref in ((o, o_loop, o_ref), (s, s_loop, s_ref)):
        loop_error = (loop.double() - ref).abs().max().item()
        atol = max(2e-5 * ref.abs().max().item(), 4 * loop_error) + 1e-30
        torch.testing.assert_close(fast.double(), ref, rtol=0, atol=atol)


@kernels
def test_batch_size_zero_returns_empty_outputs(name: str) -> None:
    kernel = KERNELS[name]
    p = kernel.problem(
        Dims(0, 7, 2, 2, 3, 4), torch.float32, 0, 1.0, True, {"scale": None, "bonus": True}
    )
    leaves = p.leaves()
    for x in leaves:
        x.requires_grad_(True)
    o, s = p.chunk(chunk_size=4)
    assert o.shape[:2] == (0, 7) and s.shape == kernel.state_shape(Dims(0, 7, 2, 2, 3, 4))
    grads = torch.autograd.grad(o.sum() + s.sum(), leaves, allow_unused=True)
    assert all(g is None or g.shape == x.shape for g, x in zip(grads, leaves, strict=True))


@kernels
def test_low_precision_inputs_run_in_float32(name: str) -> None:
    kernel = KERNELS[name]
    p = kernel.problem(
        Dims(1, 9, 2, 2, 4, 5), torch.float64, 3, 1.0, False, {"scale": None, "bonus": False}
    )
    o_ref, _ = p.naive()
    half = Problem(kernel, [x.bfloat16() for x in p.args], p.kwargs, None)
    o, s = half.chunk(chunk_size=4)
    assert o.dtype == torch.bfloat16 and s.dtype == torch.float32
    torch.testing.assert_close(o.double(), o_ref, rtol=3e-2, atol=3e-2 * o_ref.abs().max().item())


@kernels
def test_gradcheck(name: str) -> None:
    p = KERNELS[name].problem(
        Dims(1, 6, 2, 1 if KERNELS[name].name in ("simple_gla", "ssd") else 2, 3, 2),
        torch.float64,
        1,
        1.0,
        True,
        {"scale": None, "bonus": True},
    )
    leaves = p.leaves()
    names = [*range(len(p.args)), *(k for k, v in p.kwargs.items() if isinstance(v, torch.Tensor))]

    def f(*xs):
        args = list(xs[: len(p.args)])
        kwargs = dict(p.kwargs)
        for key, x in zip(names[len(p.args) :], xs[len(p.args) : -1], strict=True):
            kwargs[key] = x
        return p.kernel.chunk(
            *args, **kwargs, initial_state=xs[-1], output_final_state=True, chunk_size=4
        )

    assert torch.autograd.gradcheck(f, [x.requires_grad_(True) for x in leaves])
