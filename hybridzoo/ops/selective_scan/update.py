"""One decoding step of the selective scan, updating the state in place."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from hybridzoo.errors import ShapeError

from . import fused
from .interface import _resolve_backend, check_dtypes, check_shape, compute_dtype
from .naive import softplus

__all__ = ["selective_state_update"]

_SAME_DTYPE = (torch.float32, torch.float64)


def _check(
    state: Tensor,
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    delta_bias: Tensor | None,
) -> None:
    if not isinstance(state, Tensor) or state.dim() != 3:
        raise ShapeError(f"state must be a tensor [B, I, N], got {getattr(state, 'shape', state)}")
    batch, channels, size = state.shape
    expected = {
        "u": (u, (batch, channels), "[B, I]"),
        "delta": (delta, (batch, channels), "[B, I]"),
        "A": (A, (channels, size), "[I, N]"),
        "B": (B, (batch, size), "[B, N]"),
        "C": (C, (batch, size), "[B, N]"),
        "D": (D, (channels,), "[I]"),
        "z": (z, (batch, channels), "[B, I]"),
        "delta_bias": (delta_bias, (channels,), "[I]"),
    }
    # a decoding step is latency-bound: the checks call out only when something is off
    dtype, same = state.dtype, state.dtype in _SAME_DTYPE
    for name, (t, shape, meaning) in expected.items():
        if t is None:
            continue
        if not isinstance(t, Tensor) or t.shape != shape:
            check_shape(name, t, shape, meaning)
        same = same and t.dtype == dtype
    if not same:
        named = {k: v[0] for k, v in expected.items()}
        check_dtypes("selective_state_update", "state", state, named)


def _step(
    state: Tensor,
    inputs: tuple[Tensor | None, ...],
    softplus_dt: bool,
    compiled: bool,
) -> Tensor:
    """The step on a float32/float64 ``state`` (updated in place); inputs of its dtype."""
    u, delta, A, B, C, D, z, delta_bias = inputs
    if compiled:
        if not state.is_contiguous():
            raise ValueError("state must be contiguous for the compiled backend (updated in place)")
        inner = fused.last_dim_contiguous
        return fused.load_extension().step(
            state, inner(u), inner(delta), A.contiguous(), inner(B), inner(C),
            fused.contiguous(D), inner(z), fused.contiguous(delta_bias), softplus_dt,
        )  # fmt: skip
    dt = delta if delta_bias is None else delta + delta_bias
    if softplus_dt:
        dt = softplus(dt)
    decay = torch.exp(dt.unsqueeze(-1) * A)  # [B, I, N]
    state.mul_(decay).addcmul_((dt * u).unsqueeze(-1), B.unsqueeze(1))
    y = torch.bmm(state, C.unsqueeze(-1)).squeeze(-1)  # [B, I]
    if D is not None:
        y = y + D * u
    if z is not None:
        y = y * F.silu(z)
    return y


def selective_state_update(
    state: Tensor,
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    *,
    backend: str = "auto",
) -> Tensor:
    """One step of :func:`~hybridzoo.ops.selective_scan.selective_scan`; ``state`` is updated.

    ``state`` ``[B, I, N]`` becomes ``exp(dt ⊙ A) ⊙ state + (dt ⊙ u) B`` and the step's output
    ``y = state C + D ⊙ u`` (times ``silu(z)``) ``[B, I]`` is returned; ``u``, ``delta``, ``z``:
    ``[B, I]``, ``B``, ``C``: ``[B, N]``, ``A``: ``[I, N]``, ``D``, ``delta_bias``: ``[I]``.

    The compiled backend (one fused pass, no thread pool for small batches) is used when the
    backend resolves to it (see :func:`~hybridzoo.ops.selective_scan.selective_scan_backend`)
    and no gradient is being recorded; otherwise the torch ops below, which support autograd
    (the state is still updated in place).  A bfloat16/float16 state is updated in float32 and
    written back (inputs in its dtype or float32); ``y`` has the state's dtype.
    """
    _check(state, u, delta, A, B, C, D, z, delta_bias)
    inputs = (u, delta, A, B, C, D, z, delta_bias)
    wants_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (state, *inputs)
    )
    compiled = _resolve_backend(backend, state.device) == "compiled" and not wants_grad
    work = compute_dtype(state.dtype)
    if work == state.dtype:
        return _step(state, inputs, bool(delta_softplus), compiled)
    wide = state.to(work)
    y = _step(
        wide,
        tuple(None if t is None else t.to(work) for t in inputs),
        bool(delta_softplus),
        compiled,
    )
    state.copy_(wide)
    return y.to(state.dtype)
