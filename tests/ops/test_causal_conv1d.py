"""causal_conv1d: both backends equal a per-step loop (outputs, final window, all gradients)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scan_cases import CONV_DRAWS, RTOL64, assert_close, backend_fixture, conv_inputs, conv_run

from hybridzoo.ops.selective_scan import causal_conv1d
from hybridzoo.ops.selective_scan.naive import naive_causal_conv1d

backend = backend_fixture()


@given(batch=st.integers(1, 3), length=st.integers(1, 100), **CONV_DRAWS)  # > 64: time chunks
def test_matches_loop(backend, batch, length, channels, kernel, use_bias, use_window, silu, seed):
    inputs = conv_inputs(seed, batch, length, channels, kernel, use_bias, use_window)
    got = conv_run(inputs, silu, backend=backend)
    assert_close(got, conv_run(inputs, silu, fn=naive_causal_conv1d), RTOL64)


def test_low_precision_inputs_compute_in_float32(backend):
    inputs = conv_inputs(0, 2, 70, 9, 4, True, True)
    half = {k: v.to(torch.bfloat16) for k, v in inputs.items()}
    half["weight"] = inputs["weight"].float()  # float32 parameters with bf16 activations
    ref = conv_run({k: v.double() for k, v in half.items()}, True, fn=naive_causal_conv1d)
    got = conv_run(half, True, backend=backend)
    assert got["out"].dtype == torch.bfloat16 and got["dweight"].dtype == torch.float32
    assert got["final"].dtype == torch.bfloat16 and got["dx"].dtype == torch.bfloat16
    # Only the rounding of the bf16 results (2^-8 relative) remains.
    assert_close(got, ref, 1e-2)


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
    with pytest.raises(TypeError, match="float32 and float64"):
        causal_conv1d(x.to(torch.int32), torch.randn(3, 4).to(torch.int32))
