"""selective_scan: both backends equal the time-step reference (outputs, states, all gradients)."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scan_cases import (
    NAMES,
    RTOL32,
    RTOL64,
    assert_close,
    backend_fixture,
    internal_scan,
    make_inputs,
    require_compiled,
)
from scan_cases import scan_run as run

from hybridzoo.ops.selective_scan import fused as fused_module
from hybridzoo.ops.selective_scan import (
    selective_scan,
    selective_scan_backend,
    selective_state_update,
)
from hybridzoo.ops.selective_scan.naive import naive_selective_scan

backend = backend_fixture()


shapes = st.tuples(
    st.integers(1, 3),  # batch
    st.one_of(st.just(1), st.integers(1, 40)),  # length
    st.integers(1, 20),  # channels: partial and several SIMD blocks (8 doubles, 16 floats)
    st.integers(1, 5),  # state size
)


@given(
    shape=shapes,
    seed=st.integers(0, 2**16),
    optional=st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()),
    softplus=st.booleans(),
    decay=st.sampled_from([1.0, 30.0, 3000.0]),
    chunk=st.integers(1, 9),
)
def test_backend_matches_reference_float64(backend, shape, seed, optional, softplus, decay, chunk):
    inputs = make_inputs(seed, *shape, decay=decay, optional=optional)
    ref = run(naive_selective_scan, inputs, softplus)
    # Internal chunk sizes drawn small so that T crosses many (and partial) chunks.
    internal = internal_scan(backend, chunk)
    assert_close(run(internal, inputs, softplus), ref, RTOL64)
    # The public entry point with its default chunking.
    assert_close(run(selective_scan, inputs, softplus, backend=backend), ref, RTOL64)


@given(shape=shapes, seed=st.integers(0, 2**16), softplus=st.booleans())
def test_float32_matches_float64_reference(backend, shape, seed, softplus):
    inputs64 = make_inputs(seed, *shape)
    inputs32 = {k: None if v is None else v.float() for k, v in inputs64.items()}
    ref = run(naive_selective_scan, inputs64, softplus)
    got = run(selective_scan, inputs32, softplus, backend=backend)
    assert all(v.dtype == torch.float32 for v in got.values())
    assert_close(got, ref, RTOL32)


@given(
    shape=shapes,
    seed=st.integers(0, 2**16),
    split=st.floats(0.0, 1.0),
)
def test_initial_state_chaining(backend, shape, seed, split):
    batch, length, channels, state = shape
    x = make_inputs(seed, batch, length, channels, state)
    cut = int(split * length)
    per_time = ("u", "delta", "B", "C", "z")

    def part(sl: slice, h0):
        p = {k: (v[:, sl] if k in per_time else v) for k, v in x.items()}
        return selective_scan(
            *(p[k] for k in NAMES[:8]),
            True,
            initial_state=h0,
            output_final_state=True,
            backend=backend,
        )

    y_all, h_all = part(slice(None), x["initial_state"])
    y1, h1 = part(slice(0, cut), x["initial_state"])
    y2, h2 = part(slice(cut, None), h1)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y_all, rtol=RTOL64, atol=RTOL64)
    torch.testing.assert_close(h2, h_all, rtol=RTOL64, atol=RTOL64)


def test_extreme_time_steps_stay_finite(backend):
    x = make_inputs(0, 2, 17, 9, 4, decay=1e6, dtype=torch.float32)
    x["delta"] = x["delta"] * 60.0  # softplus(±120): dt ≈ 0 and dt ≈ 120
    y, h = selective_scan(
        *(x[k] for k in NAMES[:8]), True, output_final_state=True, backend=backend
    )
    assert torch.isfinite(y).all() and torch.isfinite(h).all()
    ref_y, ref_h = naive_selective_scan(*(x[k] for k in NAMES[:8]), True, output_final_state=True)
    torch.testing.assert_close(y, ref_y, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(h, ref_h, rtol=1e-4, atol=1e-4)


def test_final_state_only_when_asked(backend):
    x = make_inputs(0, 1, 5, 3, 2)
    y, h = selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], backend=backend)
    assert h is None and y.shape == (1, 5, 3)


def test_strided_inputs(backend):
    """Views with a time stride (slices of a projection) are read in place, same result."""
    g = torch.Generator().manual_seed(0)
    proj = torch.randn(2, 11, 5 + 2 * 3, generator=g, dtype=torch.float64)
    delta, B, C = proj.split([5, 3, 3], dim=-1)
    u = torch.randn(2, 11, 5, dtype=torch.float64, generator=g)
    A = -torch.rand(5, 3, dtype=torch.float64, generator=g)
    y, _ = selective_scan(u, delta, A, B, C, delta_softplus=True, backend=backend)
    ref, _ = naive_selective_scan(u, delta, A, B, C, delta_softplus=True)
    torch.testing.assert_close(y, ref, rtol=RTOL64, atol=RTOL64)


@given(shape=shapes, seed=st.integers(0, 2**16), optional=st.tuples(*[st.booleans()] * 3))
def test_state_update_equals_one_scan_step(backend, shape, seed, optional):
    batch, _, channels, state = shape
    x = make_inputs(seed, batch, 1, channels, state, optional=(*optional, True))
    y_ref, h_ref = naive_selective_scan(
        *(x[k] for k in NAMES[:8]), True, initial_state=x["initial_state"], output_final_state=True
    )
    h = x["initial_state"].clone()
    per_time = ("u", "delta", "B", "C", "z")
    step = {k: (v[:, 0] if k in per_time and v is not None else v) for k, v in x.items()}
    y = selective_state_update(h, *(step[k] for k in NAMES[:8]), True, backend=backend)
    torch.testing.assert_close(y, y_ref[:, 0], rtol=RTOL64, atol=RTOL64)
    torch.testing.assert_close(h, h_ref, rtol=RTOL64, atol=RTOL64)  # updated in place


def test_backend_choice(monkeypatch):
    require_compiled()
    assert selective_scan_backend() == "compiled"
    assert selective_scan_backend("meta") == "torch"
    monkeypatch.setenv("HYBRIDZOO_NO_COMPILE", "1")
    assert selective_scan_backend() == "torch"
    x = make_inputs(0, 1, 3, 2, 2)
    args = [x[k] for k in NAMES[:5]]
    with pytest.raises(RuntimeError, match="HYBRIDZOO_NO_COMPILE"):
        selective_scan(*args, backend="compiled")
    selective_scan(*args)  # auto: the torch backend, no error
    with pytest.raises(ValueError, match="backend must be one of"):
        selective_scan(*args, backend="cuda")


def test_failed_compile_falls_back_with_a_warning(monkeypatch):
    def broken_build():
        raise RuntimeError("no compiler here")

    monkeypatch.delenv("HYBRIDZOO_NO_COMPILE", raising=False)
    monkeypatch.setattr(fused_module, "_EXTENSION", fused_module._Extension(broken_build))
    with pytest.warns(RuntimeWarning, match="no compiler here"):
        assert selective_scan_backend() == "torch"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only
        assert selective_scan_backend() == "torch"
    x = make_inputs(0, 1, 3, 2, 2)
    args = [x[k] for k in NAMES[:5]]
    y, _ = selective_scan(*args)
    torch.testing.assert_close(y, naive_selective_scan(*args)[0])
    with pytest.raises(RuntimeError, match="no compiler here"):
        selective_scan(*args, backend="compiled")


def test_input_errors():
    x = make_inputs(0, 2, 3, 4, 2)
    good = [x[k] for k in NAMES[:5]]
    with pytest.raises(ValueError, match=r"delta must have shape \[B, T, I\]"):
        selective_scan(good[0], good[1][:, :2], *good[2:])
    with pytest.raises(ValueError, match=r"A must have shape \[I, N\]"):
        selective_scan(good[0], good[1], good[2][:3], *good[3:])
    with pytest.raises(ValueError, match=r"C must have shape"):
        selective_scan(*good[:4], good[4][..., :1])
    with pytest.raises(ValueError, match=r"initial_state must have shape"):
        selective_scan(*good, initial_state=torch.zeros(2, 4, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="float32 and float64"):  # float16 is accepted now
        selective_scan(*(t.to(torch.int32) for t in good))
    with pytest.raises(TypeError, match=r"B\.dtype"):
        selective_scan(*good[:3], good[3].float(), good[4])


def test_low_precision_inputs_compute_in_float32(backend):
    x = make_inputs(0, 2, 37, 9, 3)
    half = {k: v.to(torch.bfloat16) for k, v in x.items()}
    half.update(A=x["A"].float(), D=x["D"].float())  # float32 parameters, bf16 activations
    ref = run(naive_selective_scan, {k: v.double() for k, v in half.items()}, True)
    got = run(selective_scan, half, True, backend=backend)
    assert got["y"].dtype == got["h"].dtype == got["du"].dtype == torch.bfloat16
    assert got["dA"].dtype == got["dD"].dtype == torch.float32
    assert_close(got, ref, 1e-2)  # the rounding of the bf16 results (2^-8) only
    # one decoding step on a bf16 state: computed in float32, written back
    step = {k: v[:, 0] if k in ("u", "delta", "B", "C", "z") else v for k, v in half.items()}
    state = half["initial_state"].clone()
    y = selective_state_update(state, *(step[k] for k in NAMES[:8]), True, backend=backend)
    wide = {k: v.double() for k, v in step.items()}
    ref_state = wide["initial_state"].clone()
    y_ref = selective_state_update(ref_state, *(wide[k] for k in NAMES[:8]), True)
    assert y.dtype == state.dtype == torch.bfloat16
    assert_close({"y": y, "h": state}, {"y": y_ref, "h": ref_state}, 1e-2)
