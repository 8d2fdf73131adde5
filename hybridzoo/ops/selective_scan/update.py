"""One decoding step of the selective scan, updating the state in place."""

from __future__ import annotations

import torch
from torch import Tensor

from hybridzoo.errors import ShapeError
from hybridzoo.ops._common import needs_grad

from . import fused
from .inputs import ScanInputs
from .interface import _resolve_backend, check_dtypes, check_shape, compute_dtype

__all__ = ["selective_state_update"]

_SAME_DTYPE = (torch.float32, torch.float64)


_MEANINGS = ("[B, I]", "[B, I]", "[I, N]", "[B, N]", "[B, N]", "[I]", "[B, I]", "[I]")
"""The shapes of :class:`ScanInputs` in one decoding step."""


def _check(state: Tensor, x: ScanInputs) -> None:
    if not isinstance(state, Tensor) or state.dim() != 3:
        raise ShapeError(f"state must be a tensor [B, I, N], got {getattr(state, 'shape', state)}")
    batch, channels, size = state.shape
    bi, i_ = (batch, channels), (channels,)
    shapes = (bi, bi, (channels, size), (batch, size), (batch, size), i_, bi, i_)
    # a decoding step is latency-bound: the checks call out only when something is off
    dtype, same = state.dtype, state.dtype in _SAME_DTYPE
    for name, t, shape, meaning in zip(x._fields, x, shapes, _MEANINGS, strict=True):
        if t is None:
            continue
        if not isinstance(t, Tensor) or t.shape != shape:
            check_shape(name, t, shape, meaning)
        same = same and t.dtype == dtype
    if not same:
        check_dtypes("selective_state_update", "state", state, x._asdict())


def _step(state: Tensor, x: ScanInputs, softplus_dt: bool, compiled: bool) -> Tensor:
    """The step on a float32/float64 ``state`` (updated in place); inputs of its dtype."""
    if compiled:
        if not state.is_contiguous():
            raise ValueError("state must be contiguous for the compiled backend (updated in place)")
        return fused.load_extension().step(state, *fused.kernel_layout(x), softplus_dt)
    dt = x.time_step(softplus_dt)
    decay = torch.exp(dt.unsqueeze(-1) * x.A)  # [B, I, N]
    state.mul_(decay).addcmul_((dt * x.u).unsqueeze(-1), x.B.unsqueeze(1))
    y = torch.bmm(state, x.C.unsqueeze(-1)).squeeze(-1)  # [B, I]
    return x.read_out(y)


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
    x = ScanInputs(u, delta, A, B, C, D, z, delta_bias)
    _check(state, x)
    compiled = _resolve_backend(backend, state.device) == "compiled" and not needs_grad(state, *x)
    work = compute_dtype(state.dtype)
    if work == state.dtype:
        return _step(state, x, bool(delta_softplus), compiled)
    wide = state.to(work)
    y = _step(wide, x.to(work), bool(delta_softplus), compiled)
    state.copy_(wide)
    return y.to(state.dtype)
