"""One decoding step of the selective scan, updating the state in place."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from . import fused
from .interface import _DTYPES, _resolve_backend
from .naive import softplus

__all__ = ["selective_state_update"]


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
        raise ValueError(f"state must be a tensor [B, I, N], got {getattr(state, 'shape', state)}")
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
    if state.dtype not in _DTYPES:
        raise TypeError(f"selective_state_update supports float32 and float64, got {state.dtype}")
    for name, (t, shape, meaning) in expected.items():
        if t is None:
            continue
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must have shape {meaning} = {shape}, got {tuple(t.shape)}")
        if t.dtype != state.dtype:
            raise TypeError(f"{name}.dtype must be state.dtype = {state.dtype}, got {t.dtype}")


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
    (the state is still updated in place).
    """
    _check(state, u, delta, A, B, C, D, z, delta_bias)
    tensors = (state, u, delta, A, B, C, D, z, delta_bias)
    wants_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    if _resolve_backend(backend, state.device) == "compiled" and not wants_grad:
        if not state.is_contiguous():
            raise ValueError("state must be contiguous for the compiled backend (updated in place)")

        def last_contiguous(t: Tensor) -> Tensor:
            return t if t.stride(-1) == 1 else t.contiguous()

        return fused.load_extension().step(
            state,
            last_contiguous(u),
            last_contiguous(delta),
            A.contiguous(),
            last_contiguous(B),
            last_contiguous(C),
            None if D is None else D.contiguous(),
            None if z is None else last_contiguous(z),
            None if delta_bias is None else delta_bias.contiguous(),
            bool(delta_softplus),
        )
    dt = delta if delta_bias is None else delta + delta_bias
    if delta_softplus:
        dt = softplus(dt)
    decay = torch.exp(dt.unsqueeze(-1) * A)  # [B, I, N]
    state.mul_(decay).addcmul_((dt * u).unsqueeze(-1), B.unsqueeze(1))
    y = torch.bmm(state, C.unsqueeze(-1)).squeeze(-1)  # [B, I]
    if D is not None:
        y = y + D * u
    if z is not None:
        y = y * F.silu(z)
    return y
