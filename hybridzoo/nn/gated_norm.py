"""Gated RMSNorm: the output norm of Mamba-2 and Gated DeltaNet, group-wise when asked.

With ``s = silu(gate)`` and an RMS taken over each group of ``group_size`` consecutive channels:

- gate before the norm (Mamba-2, ``norm_before_gate=False``): ``out = rms_norm(x · s) · w``;
- gate after the norm (Gated DeltaNet, fla's ``FusedRMSNormGated``, ``norm_before_gate=True``):
  ``out = rms_norm(x) · w · s``;

where ``rms_norm(u) = u / sqrt(mean(u²) + eps)`` over a group and ``w`` is one weight per channel.
Mamba-2 with G groups normalises each group's ``I/G`` channels separately (transformers'
``MambaRMSNormGated`` with ``group_size = I/G``); Gated DeltaNet normalises each head
(``[..., heads, head_v_dim]`` with a weight of ``head_v_dim`` shared by the heads).

The backward pass is written by hand: it keeps only the inputs and one reciprocal RMS per group
and recomputes the rest, instead of the half-dozen intermediates autograd would store. Half
precision inputs are computed in float32; float32 and float64 stay as they are.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from hybridzoo.validate import at_least, boolean, positive

__all__ = ["GatedRMSNorm", "gated_rms_norm"]


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _grouped(t: Tensor, group_size: int) -> Tensor:
    """``[..., C] -> [..., C / group_size, group_size]`` (a view)."""
    return t.unflatten(-1, (-1, group_size))


def _silu_grad(g: Tensor) -> Tensor:
    """d silu(g) / dg = σ(g) · (1 + g · (1 - σ(g)))."""
    sig = torch.sigmoid(g)
    return sig * (1 + g * (1 - sig))


class _GatedRMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        gate: Tensor,
        weight: Tensor,
        group_size: int,
        eps: float,
        norm_before_gate: bool,
    ) -> Tensor:
        dtype = _compute_dtype(x.dtype)
        xc, gc, wc = x.to(dtype), gate.to(dtype), weight.to(dtype)
        s = F.silu(gc)
        u = xc if norm_before_gate else xc * s
        ug = _grouped(u, group_size)
        rstd = torch.rsqrt(ug.square().mean(-1, keepdim=True) + eps)  # [..., groups, 1]
        y = (ug * rstd).flatten(-2)
        out = y * wc * s if norm_before_gate else y * wc
        ctx.save_for_backward(x, gate, weight, rstd)
        ctx.group_size, ctx.norm_before_gate = group_size, norm_before_gate
        return out.to(x.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: Tensor) -> tuple[Tensor | None, ...]:
        x, gate, weight, rstd = ctx.saved_tensors
        group_size, before = ctx.group_size, ctx.norm_before_gate
        dtype = _compute_dtype(x.dtype)
        xc, gc, wc, do = x.to(dtype), gate.to(dtype), weight.to(dtype), dout.to(dtype)
        s = F.silu(gc)
        u = xc if before else xc * s
        y = (_grouped(u, group_size) * rstd).flatten(-2)  # the normalised u
        if before:
            dy = do * wc * s
            dweight = (do * y * s).reshape(-1, weight.shape[0]).sum(0)
            dgate = do * y * wc * _silu_grad(gc)
        else:
            dy = do * wc
            dweight = (do * y).reshape(-1, weight.shape[0]).sum(0)
        # through the RMS of each group: du = rstd · (dy - y · mean(dy · y))
        dyg, yg = _grouped(dy, group_size), _grouped(y, group_size)
        du = (rstd * (dyg - yg * (dyg * yg).mean(-1, keepdim=True))).flatten(-2)
        if before:
            dx = du
        else:
            dx = du * s
            dgate = du * xc * _silu_grad(gc)
        return dx.to(x.dtype), dgate.to(gate.dtype), dweight.to(weight.dtype), None, None, None


def gated_rms_norm(
    x: Tensor,
    gate: Tensor,
    weight: Tensor,
    *,
    group_size: int | None = None,
    eps: float = 1e-5,
    norm_before_gate: bool = False,
) -> Tensor:
    """The gated RMSNorm of ``x [..., C]`` with ``gate`` (same shape) and ``weight [C]``.

    Args:
        x, gate: the values and the gate logits, ``[..., C]`` (``silu(gate)`` gates).
        weight: one scale per channel, ``[C]``.
        group_size: channels per RMS group (must divide ``C``); ``None``: one group of ``C``.
        eps: added to the mean square.
        norm_before_gate: ``False``: ``rms_norm(x·silu(gate))·w`` (Mamba-2); ``True``:
            ``rms_norm(x)·w·silu(gate)`` (Gated DeltaNet).

    Returns:
        ``[..., C]`` in ``x``'s dtype; differentiable in ``x``, ``gate`` and ``weight``.
    """
    channels = x.shape[-1]
    if gate.shape != x.shape:
        raise ValueError(f"gate must have x's shape {tuple(x.shape)}, got {tuple(gate.shape)}")
    if weight.shape != (channels,):
        raise ValueError(f"weight must have shape ({channels},), got {tuple(weight.shape)}")
    group = channels if group_size is None else group_size
    if group < 1 or channels % group:
        raise ValueError(f"group_size must divide the {channels} channels, got {group_size!r}")
    if x.numel() == 0:
        return x * weight  # an empty result of the right shape, dtype and device
    return _GatedRMSNorm.apply(x, gate, weight, group, float(eps), bool(norm_before_gate))


class GatedRMSNorm(nn.Module):
    """Gated RMSNorm over the last dimension, in groups of ``group_size`` channels.

    Args:
        hidden_size: channels ``C`` (the weight's length).
        group_size: channels per RMS group (a divisor of ``C``); ``None``: all of them.
        eps: added to the mean square. Default 1e-5.
        norm_before_gate: see :func:`gated_rms_norm`. Default ``False`` (Mamba-2's order).
        device, dtype: where and how to create the weight (initialised to ones).

    Parameters: ``weight [C]``, the name of transformers' ``norm.weight``.
    """

    def __init__(
        self,
        hidden_size: int,
        *,
        group_size: int | None = None,
        eps: float = 1e-5,
        norm_before_gate: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.hidden_size = at_least(1).check("hidden_size", hidden_size)
        group = self.hidden_size if group_size is None else group_size
        self.group_size = at_least(1).check("group_size", group)
        if self.hidden_size % self.group_size:
            raise ValueError(
                f"group_size must divide hidden_size = {hidden_size}, got {group_size!r}"
            )
        self.eps = positive.check("eps", eps)
        self.norm_before_gate = boolean.check("norm_before_gate", norm_before_gate)
        self.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))

    def forward(self, x: Tensor, gate: Tensor) -> Tensor:
        """``x, gate [..., C] -> [..., C]``."""
        return gated_rms_norm(
            x,
            gate,
            self.weight,
            group_size=self.group_size,
            eps=self.eps,
            norm_before_gate=self.norm_before_gate,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.hidden_size}, group_size={self.group_size}, eps={self.eps}, "
            f"norm_before_gate={self.norm_before_gate}"
        )
