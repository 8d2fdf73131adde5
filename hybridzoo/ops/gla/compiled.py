"""The compiled backend of the gated linear recurrence (``recurrence.cpp``): GLA, RWKV-6's bonus
form, and the scalar-decay form of simple GLA and SSD, in an autograd Function.

The kernel runs the recurrence position by position per (batch row, head), the state in a local
buffer; the backward pass recomputes the states of one block of positions at a time from
checkpoints stored every ``interval`` positions (:func:`checkpoint_interval`). Exact for any
decay and causal by construction. See :mod:`hybridzoo.ops._compile` for how it is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from torch.autograd.function import once_differentiable

from hybridzoo.errors import OptionError
from hybridzoo.ops._compile import Kernel, compile_disabled

_HERE = Path(__file__).parent
KERNEL = Kernel(
    _HERE / "recurrence.cpp", "hybridzoo_linear_recurrence", headers=(_HERE / "recurrence.h",)
)

BACKENDS = ("auto", "compiled", "torch")
"""Values of the kernels' ``backend=``: ``"compiled"`` (the fused C++ CPU kernel), ``"torch"``
(the chunked pure-torch form, any device) or ``"auto"`` (compiled on CPU when it can be built
and ``HYBRIDZOO_NO_COMPILE`` is unset, else torch)."""

STATE_BUFFER = 1 << 18
"""Elements of recomputed states a backward task holds at once (about 1 MiB in float32)."""


def resolve_backend(backend: object, device: torch.device) -> Literal["compiled", "torch"]:
    """The backend that runs for ``backend`` (one of :data:`BACKENDS`) on ``device``."""
    if backend not in BACKENDS:
        raise OptionError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return "torch"
    usable = device.type == "cpu" and not compile_disabled()
    if backend == "auto":
        return "compiled" if usable and KERNEL.load() is not None else "torch"
    if not usable:
        why = "HYBRIDZOO_NO_COMPILE is set" if compile_disabled() else f"tensors are on {device}"
        raise OptionError(f"backend='compiled' runs on CPU only and {why}; use 'auto' or 'torch'")
    if KERNEL.load() is None:
        raise RuntimeError(f"backend='compiled' is unavailable: {KERNEL.error}")
    return "compiled"


def checkpoint_interval(chunk_size: int, d_k: int, d_v: int) -> int:
    """Positions between stored states: ``chunk_size``, fewer for large states."""
    return max(1, min(chunk_size, STATE_BUFFER // max(d_k * d_v, 1)))


def _ready(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    x = x.to(dtype)
    return x if x.stride(-1) == 1 else x.contiguous()


def compiled_recurrence(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor,
    bonus: torch.Tensor | None,
    initial_state: torch.Tensor | None,
    starts: torch.Tensor | None,
    scale: float,
    interval: int,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(o [B, T, H, V], S_T [B, H, K, V])`` in ``dtype``; q, k ``[B, T, G, K]``, log_decay
    ``[B, T, H, K]`` or ``[B, T, H, 1]`` (scalar decay), arguments already checked."""
    empty = v.new_empty(0, dtype=dtype)
    u = empty if bonus is None else bonus.to(dtype).contiguous()
    s0 = empty if initial_state is None else initial_state.to(dtype).contiguous()
    st = v.new_empty(0, dtype=torch.bool) if starts is None else starts.contiguous()
    q, k, v, g = (_ready(x, dtype) for x in (q, k, v, log_decay))
    leaves = (q, k, v, g, bonus, initial_state)
    if torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in leaves):
        return _Recurrence.apply(q, k, v, g, u, s0, st, scale, interval)
    o, s_end, _ = KERNEL.ops.fwd(q, k, v, torch.exp(g), u, s0, st, scale, interval, False)
    return o, s_end


class _Recurrence(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, q, k, v, g, u, s0, starts, scale: float, interval: int):
        w = torch.exp(g)
        o, s_end, ckpt = KERNEL.ops.fwd(q, k, v, w, u, s0, starts, scale, interval, True)
        ctx.save_for_backward(q, k, v, w, u, starts, ckpt)
        ctx.scale, ctx.interval, ctx.has_s0 = scale, interval, s0.numel() > 0
        ctx.set_materialize_grads(False)
        return o, s_end

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, do: torch.Tensor | None, ds_end: torch.Tensor | None):
        q, k, v, w, u, starts, ckpt = ctx.saved_tensors
        do = torch.zeros_like(v) if do is None else do.contiguous()
        ds_end = v.new_empty(0) if ds_end is None else ds_end.contiguous()
        dq, dk, dv, dw, du, ds0 = KERNEL.ops.bwd(
            q, k, v, w, u, starts, ckpt, do, ds_end, ctx.scale, ctx.interval
        )
        b, t, g, d_k = q.shape
        r = v.shape[2] // g
        if r > 1:  # a query/key head serves r value heads: sum their gradients
            dq, dk = (x.view(b, t, g, r, d_k).sum(3) for x in (dq, dk))
        du = du.sum(0) if u.numel() else None
        return dq, dk, dv, dw.mul_(w), du, ds0 if ctx.has_s0 else None, None, None, None
