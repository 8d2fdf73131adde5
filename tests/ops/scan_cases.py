"""Shared helpers of the Mamba-1 kernel tests (selective scan, causal conv1d, their packing,
threading and vector-maths tests): backends, random inputs, runs with gradients, comparisons."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import pytest
import torch
from hypothesis import strategies as st

from hybridzoo.ops.selective_scan import causal_conv1d
from hybridzoo.ops.selective_scan import fused as fused_module
from hybridzoo.ops.selective_scan.chunked import chunked_selective_scan
from hybridzoo.ops.selective_scan.fused import fused_selective_scan
from hybridzoo.ops.selective_scan.inputs import ScanInputs

# float64 tolerances, relative to the largest magnitude of the reference tensor.
RTOL64 = 1e-10
# float32 kernel vs float64 reference.
RTOL32 = 1e-4

NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state")
PER_TIME = ("u", "delta", "B", "C", "z")


def require_compiled() -> None:
    """Skip (with the reason) where the compiled backend is switched off or cannot be built;
    fail instead where HYBRIDZOO_REQUIRE_COMPILED=1 (CI machines that have a compiler)."""
    if os.environ.get("HYBRIDZOO_NO_COMPILE", "") not in ("", "0"):
        pytest.skip("HYBRIDZOO_NO_COMPILE is set: the compiled backend is off")
    if fused_module.load_extension() is None:
        message = f"compiled kernel unavailable: {fused_module.extension_error()}"
        if os.environ.get("HYBRIDZOO_REQUIRE_COMPILED", "") not in ("", "0"):
            pytest.fail(message)
        pytest.skip(message)


def backend_fixture() -> Callable:
    """A module-scoped fixture over both backends (the compiled one skipped where it is off);
    assign it to ``backend`` in a test module."""

    @pytest.fixture(scope="module", params=["compiled", "torch"])
    def backend(request: pytest.FixtureRequest) -> str:
        if request.param == "compiled":
            require_compiled()
        return request.param

    return backend


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` inside the block, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def make_inputs(
    seed: int,
    batch: int,
    length: int,
    channels: int,
    state: int,
    *,
    decay: float = 1.0,
    optional: tuple[bool, bool, bool, bool] = (True, True, True, True),
    dtype: torch.dtype = torch.float64,
) -> dict[str, torch.Tensor | None]:
    """Random inputs; ``decay`` scales |A| (strong decays: exp(dt·A) underflows to 0)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)

    use_d, use_z, use_bias, use_h0 = optional
    A = -(torch.rand(channels, state, generator=g, dtype=torch.float64) * decay + 0.05)
    return {
        "u": rnd(batch, length, channels),
        "delta": rnd(batch, length, channels, scale=2.0),
        "A": A.to(dtype),
        "B": rnd(batch, length, state),
        "C": rnd(batch, length, state),
        "D": rnd(channels) if use_d else None,
        "z": rnd(batch, length, channels) if use_z else None,
        "delta_bias": rnd(channels) if use_bias else None,
        "initial_state": rnd(batch, channels, state) if use_h0 else None,
    }


def positive_steps(inputs: dict, softplus: bool) -> dict:
    """Without softplus, time steps are taken as given: keep them positive (decays ≤ 1)."""
    if softplus:
        return inputs
    out = dict(inputs, delta=inputs["delta"].abs())
    if inputs["delta_bias"] is not None:
        out["delta_bias"] = inputs["delta_bias"].abs() * 0.1
    return out


def weighted_grads(outputs: dict[str, torch.Tensor], leaves: dict[str, torch.Tensor]) -> dict:
    """The outputs and the gradients of a fixed random weighting of them w.r.t. every leaf."""
    g = torch.Generator().manual_seed(1)
    loss = sum(
        (out * torch.randn(out.shape, generator=g, dtype=torch.float64).to(out.dtype)).sum()
        for out in outputs.values()
    )
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    named = {
        f"d{k}": torch.zeros_like(leaf) if gr is None else gr
        for (k, leaf), gr in zip(leaves.items(), grads, strict=True)
    }
    return {**outputs, **named}


def internal_scan(backend: str, chunk: int) -> Callable:
    """The backend's scan with its internal chunk size set (checkpoints of the compiled kernel,
    chunks of the torch one), with the signature of ``selective_scan``; no input checks."""

    def fn(u, delta, A, B, C, D, z, bias, sp, *, initial_state, output_final_state, seq_idx=None):
        args = (ScanInputs(u, delta, A, B, C, D, z, bias), sp, initial_state)
        if backend == "compiled":
            return fused_selective_scan(*args, seq_idx=seq_idx, chunk=chunk)
        return chunked_selective_scan(*args, seq_idx=seq_idx, chunk_size=chunk)

    return fn


def scan_run(fn: Callable, inputs: dict, softplus: bool, **kwargs) -> dict:
    """Output, final state and the gradients of a fixed random loss w.r.t. every given input;
    ``fn`` has the signature of ``selective_scan``."""
    inputs = positive_steps(inputs, softplus)
    leaves = {
        k: v.detach().clone().requires_grad_(True) for k, v in inputs.items() if v is not None
    }
    args = {k: leaves.get(k) for k in NAMES}
    y, h = fn(
        *(args[k] for k in NAMES[:8]),
        softplus,
        initial_state=args["initial_state"],
        output_final_state=True,
        **kwargs,
    )
    return weighted_grads({"y": y, "h": h}, leaves)


CONV_DRAWS = {
    "channels": st.integers(1, 20),  # partial and several SIMD blocks
    "kernel": st.integers(1, 5),
    "use_bias": st.booleans(),
    "use_window": st.booleans(),
    "silu": st.booleans(),
    "seed": st.integers(0, 2**16),
}
"""The hypothesis draws of a causal-conv1d case besides its batch and length."""


def conv_inputs(
    seed: int,
    batch: int,
    length: int,
    channels: int,
    kernel: int,
    use_bias: bool = True,
    use_window: bool = True,
    dtype: torch.dtype = torch.float64,
) -> dict[str, torch.Tensor | None]:
    """Random conv inputs; x is a strided slice of a wider tensor, as in the mixer."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)

    return {
        "x": rnd(batch, length, 2 * channels)[..., :channels],
        "weight": rnd(channels, kernel),
        "bias": rnd(channels) if use_bias else None,
        "initial_window": rnd(batch, channels, kernel - 1) if use_window else None,
    }


def conv_run(inputs: dict, silu: bool, fn: Callable = causal_conv1d, **kwargs) -> dict:
    """Output, final window and all gradients of ``fn`` (the signature of ``causal_conv1d``) on
    ``inputs`` = {x, weight, bias, initial_window} (None entries are left out)."""
    leaves = {
        k: v.detach().clone().requires_grad_(True) for k, v in inputs.items() if v is not None
    }
    out, final = fn(
        leaves["x"],
        leaves["weight"],
        leaves.get("bias"),
        initial_window=leaves.get("initial_window"),
        activation="silu" if silu else None,
        output_final_window=True,
        **kwargs,
    )
    return weighted_grads({"out": out, "final": final}, leaves)


def assert_close(got: dict, ref: dict, rtol: float) -> None:
    """Every tensor of ``got`` finite and within ``rtol`` of the reference's largest magnitude
    (at least 1)."""
    assert got.keys() == ref.keys()
    for key, r in ref.items():
        x = got[key]
        assert torch.isfinite(x).all(), f"{key}: non-finite values"
        scale = r.abs().max().item() if r.numel() else 0.0
        err = (x.double() - r.double()).abs().max().item() if r.numel() else 0.0
        assert err <= rtol * max(scale, 1.0), f"{key}: max error {err:.3g} (scale {scale:.3g})"
