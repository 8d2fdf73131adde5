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
from hybridzoo.ops._common import Call, needs_grad
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


def resolve_backend(
    backend: object, device: torch.device, kernel: Kernel | None = None
) -> Literal["compiled", "torch"]:
    """The backend that runs for ``backend`` (one of :data:`BACKENDS`) on ``device``, for
    ``kernel`` (default: this module's)."""
    kernel = KERNEL if kernel is None else kernel
    if backend not in BACKENDS:
        raise OptionError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return "torch"
    usable = device.type == "cpu" and not compile_disabled()
    if backend == "auto":
        return "compiled" if usable and kernel.load() is not None else "torch"
    if not usable:
        why = "HYBRIDZOO_NO_COMPILE is set" if compile_disabled() else f"tensors are on {device}"
        raise OptionError(f"backend='compiled' runs on CPU only and {why}; use 'auto' or 'torch'")
    if kernel.load() is None:
        raise RuntimeError(f"backend='compiled' is unavailable: {kernel.error}")
    return "compiled"


def checkpoint_interval(chunk_size: int, d_k: int, d_v: int) -> int:
    """Positions between stored states: ``chunk_size``, fewer for large states."""
    return max(1, min(chunk_size, STATE_BUFFER // max(d_k * d_v, 1)))


def ready(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x`` in ``dtype`` with its last dimension contiguous (what the kernels read)."""
    x = x.to(dtype)
    return x if x.stride(-1) == 1 else x.contiguous()


def compiled_recurrence(
    call: Call,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor,
    extra: torch.Tensor | None,
    initial_state: torch.Tensor | None,
    kernel: Kernel | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The kernel's result (:meth:`~hybridzoo.ops._common.Call.result`) from ``kernel``
    (default: the gated linear recurrence; ``extra`` its bonus ``[H, K]`` or None; the delta
    rule's kernel takes β ``[B, T, H, 1]`` there). q, k ``[B, T, G, K]``, log_decay
    ``[B, T, H, K]`` or ``[B, T, H, 1]`` (one decay per head); arguments already checked."""
    kernel = KERNEL if kernel is None else kernel
    dtype, starts, scale = call.dtype, call.starts, call.scale
    interval = checkpoint_interval(call.chunk_size, call.n["K"], call.n["V"])
    empty = v.new_empty(0, dtype=dtype)
    x = empty if extra is None else ready(extra, dtype).contiguous()
    s0 = empty if initial_state is None else initial_state.to(dtype).contiguous()
    st = v.new_empty(0, dtype=torch.bool) if starts is None else starts.contiguous()
    q, k, v, g = (ready(t, dtype) for t in (q, k, v, log_decay))
    if needs_grad(q, k, v, g, extra, initial_state):
        o, s_end = _Recurrence.apply(kernel, q, k, v, g, x, s0, st, scale, interval)
    else:
        o, s_end, _ = kernel.ops.fwd(q, k, v, torch.exp(g), x, s0, st, scale, interval, False)
    return call.result(o, s_end)


class _Recurrence(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, kernel: Kernel, q, k, v, g, x, s0, starts, scale: float, interval: int):
        w = torch.exp(g)
        o, s_end, ckpt = kernel.ops.fwd(q, k, v, w, x, s0, starts, scale, interval, True)
        ctx.save_for_backward(q, k, v, w, x, starts, ckpt)
        ctx.kernel, ctx.scale, ctx.interval, ctx.has_s0 = kernel, scale, interval, s0.numel() > 0
        ctx.set_materialize_grads(False)
        return o, s_end

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, do: torch.Tensor | None, ds_end: torch.Tensor | None):
        q, k, v, w, x, starts, ckpt = ctx.saved_tensors
        do = torch.zeros_like(v) if do is None else do.contiguous()
        ds_end = v.new_empty(0) if ds_end is None else ds_end.contiguous()
        dq, dk, dv, dw, dx, ds0 = ctx.kernel.ops.bwd(
            q, k, v, w, x, starts, ckpt, do, ds_end, ctx.scale, ctx.interval
        )
        dx = None if not x.numel() else dx.sum(0) if dx.dim() > x.dim() else dx  # bonus: per row
        ds0 = ds0 if ctx.has_s0 else None
        return None, dq, dk, dv, dw.mul_(w), dx, ds0, None, None, None
