"""causal_conv1d: both backends equal a per-step loop (outputs, final window, all gradients)."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hybridzoo.ops.selective_scan import causal_conv1d
from hybridzoo.ops.selective_scan.fused import extension_error, load_extension

TOL = {"rtol": 1e-10, "atol": 1e-10}


@pytest.fixture(scope="module", params=["compiled", "torch"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "compiled":
        if os.environ.get("HYBRIDZOO_NO_COMPILE", "") not in ("", "0"):
            pytest.skip("HYBRIDZOO_NO_COMPILE is set: the compiled backend is off")
        if load_extension() is None:
            message = f"compiled kernel unavailable: {extension_error()}"
            if os.environ.get("HYBRIDZOO_REQUIRE_COMPILED", "") not in ("", "0"):
                pytest.fail(message)
            pytest.skip(message)
    return request.param


def loop_conv(x, weight, bias, window, silu):
    """out_t = act(bias + sum_k w[:, k] x_{t-K+1+k}), one step at a time; final K-1 inputs."""
    batch, length, channels = x.shape
    size = weight.shape[1] - 1
    past = [window[:, :, j] for j in range(size)] if window is not None else []
    past = past or [x.new_zeros(batch, channels) for _ in range(size)]
    outs = []
    for t in range(length):
        past = [*past, x[:, t]]
        acc = sum(weight[:, k] * past[k] for k in range(size + 1))
        acc = acc + bias if bias is not None else acc
        outs.append(acc * torch.sigmoid(acc) if silu else acc)
        past = past[1:]
    out = torch.stack(outs, 1) if outs else x.new_zeros(batch, 0, channels)
    final = torch.stack(past, -1) if size else x.new_zeros(batch, channels, 0)
    return out, final


@given(
    batch=st.integers(1, 3),
    length=st.integers(1, 100),  # > 64: several time chunks
    channels=st.integers(1, 20),
    kernel=st.integers(1, 5),
    use_bias=st.booleans(),
    use_window=st.booleans(),
    silu=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_matches_loop(backend, batch, length, channels, kernel, use_bias, use_window, silu, seed):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(True)

    xz = rnd(batch, length, 2 * channels)  # x is a strided slice, as in the mixer
    w = rnd(channels, kernel)
    b = rnd(channels) if use_bias else None
    win = rnd(batch, channels, kernel - 1) if use_window else None
    leaves = [t for t in (xz, w, b, win) if t is not None]
    wo = torch.randn(batch, length, channels, generator=g, dtype=torch.float64)
    wf = torch.randn(batch, channels, kernel - 1, generator=g, dtype=torch.float64)

    def grads(out, final):
        loss = (out * wo).sum() + (final * wf).sum()
        gs = torch.autograd.grad(loss, leaves, allow_unused=True)  # K = 1: no window
        return [torch.zeros_like(t) if g is None else g for g, t in zip(gs, leaves, strict=True)]

    x = xz[..., :channels]
    out, final = causal_conv1d(
        x,
        w,
        b,
        initial_window=win,
        activation="silu" if silu else None,
        output_final_window=True,
        backend=backend,
    )
    ref_out, ref_final = loop_conv(x, w, b, win, silu)
    torch.testing.assert_close(out, ref_out, **TOL)
    torch.testing.assert_close(final, ref_final, **TOL)
    for got, ref in zip(grads(out, final), grads(ref_out, ref_final), strict=True):
        torch.testing.assert_close(got, ref, **TOL)


def test_errors():
    x = torch.randn(2, 5, 3)
    with pytest.raises(ValueError, match=r"weight must have shape \[I, K\]"):
        causal_conv1d(x, torch.randn(4, 2))
    with pytest.raises(ValueError, match="initial_window"):
        causal_conv1d(x, torch.randn(3, 4), initial_window=torch.zeros(2, 3, 2))
    with pytest.raises(ValueError, match="activation"):
        causal_conv1d(x, torch.randn(3, 4), activation="relu")
    with pytest.raises(TypeError, match="weight.dtype"):
        causal_conv1d(x, torch.randn(3, 4, dtype=torch.float64))
