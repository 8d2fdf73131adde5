"""Causal depthwise convolution over time with a fused SiLU: Mamba's ``conv1d`` step, channel-last.

``out[b, t, i] = act(bias[i] + sum_k weight[i, k] · x[b, t - (K-1) + k, i])`` where the K-1
inputs before ``t = 0`` come from ``initial_window`` (zeros if None).  Same backends as
:func:`~hybridzoo.ops.selective_scan.selective_scan` (chosen the same way): ``"compiled"`` runs
the fused kernels of ``csrc/conv.cpp``, ``"torch"`` uses ``F.conv1d`` (with packing: one masked
tap at a time).  Also the short convolution of other mixers (Mamba-2, Gated DeltaNet).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from hybridzoo.errors import ShapeError

from . import fused
from .interface import _resolve_backend, check_dtypes, compute_dtype
from .packing import check_seq_idx, first_readable

__all__ = ["causal_conv1d"]

_ACTIVATIONS = ("silu", None)


class _FusedConv(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        window: Tensor | None,
        seq_idx: Tensor | None,
        silu: bool,
    ) -> Tensor:
        ctx.save_for_backward(x, weight, bias, window, seq_idx)
        ctx.silu = silu
        return fused.load_extension().conv_fwd(x, weight, bias, window, seq_idx, silu)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: Tensor) -> tuple[Any, ...]:
        x, weight, bias, window, seq_idx = ctx.saved_tensors
        dx, dw, db, dwin = fused.load_extension().conv_bwd(
            x, weight, bias, window, seq_idx, dout.contiguous(), ctx.silu
        )
        return (
            dx,
            dw,
            db if bias is not None else None,
            dwin if window is not None else None,
            None,
            None,
        )


def _final_window(x: Tensor, window: Tensor | None, size: int, low: Tensor | None) -> Tensor:
    """The last ``size`` inputs, ``[B, I, size]``, reaching back into ``window`` if T < size;
    with packing (``low`` [B]: the first position the last step may read) zeros before the last
    document's start."""
    batch, length, channels = x.shape
    if size == 0:
        return x.new_zeros(batch, channels, 0)
    tail = x[:, max(0, length - size) :].transpose(1, 2)  # [B, I, min(T, size)]
    if length >= size:
        final = tail.contiguous()
    else:
        prev = window if window is not None else x.new_zeros(batch, channels, size)
        final = torch.cat([prev[:, :, length:], tail], dim=-1)
    if low is None:
        return final
    positions = torch.arange(length - size, length, device=x.device)
    return final.masked_fill((positions < low[:, None])[:, None, :], 0.0)


def _torch_conv(
    x: Tensor, weight: Tensor, bias: Tensor | None, window: Tensor | None, low: Tensor | None
) -> Tensor:
    """Pre-activation ``[B, I, T]`` in torch ops: ``F.conv1d``, or with packing one masked tap at
    a time (``low`` [B, T]: the first position each output may read)."""
    batch, _, channels = x.shape
    size = weight.shape[1] - 1
    prev = window if window is not None else x.new_zeros(batch, channels, size)
    seq = torch.cat([prev, x.transpose(1, 2)], dim=-1)  # [B, I, K-1+T]
    if low is None:
        return F.conv1d(seq, weight.unsqueeze(1), bias, groups=channels)  # [B, I, T]
    length = x.shape[1]
    positions = torch.arange(length, device=x.device)
    out = (
        x.new_zeros(batch, channels, length)
        if bias is None
        else bias[:, None].expand(batch, channels, length)
    )
    for k in range(size + 1):  # tap k reads position t - size + k, index t + k of `seq`
        unread = (positions - size + k < low)[:, None, :]  # [B, 1, T]
        out = out + weight[:, k, None] * seq[:, :, k : k + length].masked_fill(unread, 0.0)
    return out


def causal_conv1d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    *,
    initial_window: Tensor | None = None,
    activation: str | None = "silu",
    output_final_window: bool = False,
    backend: str = "auto",
    seq_idx: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Causal depthwise conv1d over time, channel-last, with an optional SiLU.

    Args:
        x: ``[B, T, I]`` (any batch/time strides, e.g. a slice of a projection).
        weight: ``[I, K]`` (``nn.Conv1d(I, I, K, groups=I).weight.squeeze(1)``).
        bias: ``[I]`` or None.
        initial_window: the K-1 inputs before ``t = 0``, ``[B, I, K-1]`` (zeros if None); with
            ``seq_idx``, seen by the row's first document only.
        activation: ``"silu"`` or None.
        output_final_window: also return the last K-1 inputs ``[B, I, K-1]`` (with ``seq_idx``:
            of the row's last document, zeros before its start).
        backend: ``"auto"``, ``"compiled"`` or ``"torch"``.
        seq_idx: packing, ``[B, T]`` integer, non-decreasing along T: an output never reads an
            input of another document (it reads zeros instead; see :mod:`.packing`).

    Returns:
        ``(out [B, T, I] contiguous, final window or None)`` in x's dtype; differentiable in
        every tensor.  float32 and float64, and bfloat16/float16 computed in float32 (each of
        weight, bias, initial_window in x's dtype or float32).
    """
    if not isinstance(x, Tensor) or x.dim() != 3:
        raise ShapeError(f"x must be a tensor of shape [B, T, I], got {getattr(x, 'shape', x)!r}")
    batch, length, channels = x.shape
    if not isinstance(weight, Tensor) or weight.dim() != 2 or weight.shape[0] != channels:
        shape = tuple(getattr(weight, "shape", ()))
        raise ShapeError(f"weight must have shape [I, K] with I = {channels}, got {shape}")
    size = weight.shape[1] - 1
    if bias is not None and tuple(bias.shape) != (channels,):
        raise ShapeError(f"bias must have shape [I] = ({channels},), got {tuple(bias.shape)}")
    if initial_window is not None and tuple(initial_window.shape) != (batch, channels, size):
        raise ShapeError(
            f"initial_window must have shape [B, I, K-1] = {(batch, channels, size)}, "
            f"got {tuple(initial_window.shape)}"
        )
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")
    named = {"weight": weight, "bias": bias, "initial_window": initial_window}
    check_dtypes("causal_conv1d", "x", x, named)
    seq = check_seq_idx(seq_idx, batch, length, x.device)
    silu = activation == "silu"
    work = compute_dtype(x.dtype)
    xw, weight, bias, window = (None if t is None else t.to(work) for t in (x, *named.values()))
    low = None if seq is None or length == 0 else first_readable(seq, batch, length, size)
    if _resolve_backend(backend, x.device) == "compiled":
        xc = xw if xw.stride(-1) == 1 else xw.contiguous()
        win = None if window is None else window.contiguous()
        args = (xc, weight.contiguous(), None if bias is None else bias.contiguous(), win, seq)
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in args):
            out = _FusedConv.apply(*args, silu)
        else:
            out = fused.load_extension().conv_fwd(*args, silu)
    else:
        out = _torch_conv(xw, weight, bias, window, low)
        if silu:
            out = F.silu(out)
        out = out.transpose(1, 2).contiguous()  # [B, T, I]
    final = None
    if output_final_window:
        last_low = None if low is None else low[:, -1]
        final = _final_window(xw, window, size, last_low).to(x.dtype)
    return out.to(x.dtype), final
