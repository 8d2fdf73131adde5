"""Causal depthwise convolution over time with a fused SiLU: Mamba's ``conv1d`` step, channel-last.

``out[b, t, i] = act(bias[i] + sum_k weight[i, k] · x[b, t - (K-1) + k, i])`` where the K-1
inputs before ``t = 0`` come from ``initial_window`` (zeros if None).  Same backends as
:func:`~hybridzoo.ops.selective_scan.selective_scan` (chosen the same way): ``"compiled"`` runs
the fused kernels of ``selective_scan.cpp``, ``"torch"`` uses ``F.conv1d``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import fused
from .interface import _DTYPES, _resolve_backend

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
        silu: bool,
    ) -> Tensor:
        ctx.save_for_backward(x, weight, bias, window)
        ctx.silu = silu
        return fused.load_extension().conv_fwd(x, weight, bias, window, silu)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: Tensor) -> tuple[Any, ...]:
        x, weight, bias, window = ctx.saved_tensors
        dx, dw, db, dwin = fused.load_extension().conv_bwd(
            x, weight, bias, window, dout.contiguous(), ctx.silu
        )
        return (
            dx,
            dw,
            db if bias is not None else None,
            dwin if window is not None else None,
            None,
        )


def _final_window(x: Tensor, window: Tensor | None, size: int) -> Tensor:
    """The last ``size`` inputs, ``[B, I, size]``, reaching back into ``window`` if T < size."""
    batch, length, channels = x.shape
    if size == 0:
        return x.new_zeros(batch, channels, 0)
    tail = x[:, max(0, length - size) :].transpose(1, 2)  # [B, I, min(T, size)]
    if length >= size:
        return tail.contiguous()
    prev = window if window is not None else x.new_zeros(batch, channels, size)
    return torch.cat([prev[:, :, length:], tail], dim=-1)


def causal_conv1d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    *,
    initial_window: Tensor | None = None,
    activation: str | None = "silu",
    output_final_window: bool = False,
    backend: str = "auto",
) -> tuple[Tensor, Tensor | None]:
    """Causal depthwise conv1d over time, channel-last, with an optional SiLU.

    Args:
        x: ``[B, T, I]`` (any batch/time strides, e.g. a slice of a projection).
        weight: ``[I, K]`` (``nn.Conv1d(I, I, K, groups=I).weight.squeeze(1)``).
        bias: ``[I]`` or None.
        initial_window: the K-1 inputs before ``t = 0``, ``[B, I, K-1]`` (zeros if None).
        activation: ``"silu"`` or None.
        output_final_window: also return the last K-1 inputs ``[B, I, K-1]``.
        backend: ``"auto"``, ``"compiled"`` or ``"torch"``.

    Returns:
        ``(out [B, T, I] contiguous, final window or None)``; differentiable in every tensor.
    """
    if not isinstance(x, Tensor) or x.dim() != 3:
        raise ValueError(f"x must be a tensor of shape [B, T, I], got {getattr(x, 'shape', x)!r}")
    batch, _, channels = x.shape
    if not isinstance(weight, Tensor) or weight.dim() != 2 or weight.shape[0] != channels:
        shape = tuple(getattr(weight, "shape", ()))
        raise ValueError(f"weight must have shape [I, K] with I = {channels}, got {shape}")
    size = weight.shape[1] - 1
    if bias is not None and tuple(bias.shape) != (channels,):
        raise ValueError(f"bias must have shape [I] = ({channels},), got {tuple(bias.shape)}")
    if initial_window is not None and tuple(initial_window.shape) != (batch, channels, size):
        raise ValueError(
            f"initial_window must have shape [B, I, K-1] = {(batch, channels, size)}, "
            f"got {tuple(initial_window.shape)}"
        )
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")
    if x.dtype not in _DTYPES:
        raise TypeError(f"causal_conv1d supports float32 and float64, got x.dtype = {x.dtype}")
    for name, t in (("weight", weight), ("bias", bias), ("initial_window", initial_window)):
        if t is not None and t.dtype != x.dtype:
            raise TypeError(f"{name}.dtype must be x.dtype = {x.dtype}, got {t.dtype}")
    silu = activation == "silu"
    if _resolve_backend(backend, x.device) == "compiled":
        xc = x if x.stride(-1) == 1 else x.contiguous()
        window = None if initial_window is None else initial_window.contiguous()
        args = (xc, weight.contiguous(), None if bias is None else bias.contiguous(), window)
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in args):
            out = _FusedConv.apply(*args, silu)
        else:
            out = fused.load_extension().conv_fwd(*args, silu)
    else:
        seq = x.transpose(1, 2)  # [B, I, T]
        prev = initial_window if initial_window is not None else x.new_zeros(batch, channels, size)
        seq = torch.cat([prev, seq], dim=-1)  # [B, I, K-1+T]
        out = F.conv1d(seq, weight.unsqueeze(1), bias, groups=channels)  # [B, I, T]
        if silu:
            out = F.silu(out)
        out = out.transpose(1, 2).contiguous()  # [B, T, I]
    final = _final_window(x, initial_window, size) if output_final_window else None
    return out, final
