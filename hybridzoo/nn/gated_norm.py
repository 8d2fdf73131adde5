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


#: elements per block of rows: each pass over a block stays in the cache, and the temporaries of
#: one block are reused by the next instead of allocating (and page-faulting) full-size ones
_BLOCK = 1 << 16


def _row_blocks(rows: int, width: int) -> list[slice]:
    step = max(1, _BLOCK // width)
    return [slice(r, min(r + step, rows)) for r in range(0, rows, step)]


def _rstd(u: Tensor, group_size: int, eps: float) -> Tensor:
    """``1 / sqrt(mean(u²) + eps)`` per group: ``[n, C] -> [n, groups, 1]``."""
    ss = torch.linalg.vector_norm(_grouped(u, group_size), dim=-1, keepdim=True)
    return torch.rsqrt(ss.square_().div_(group_size).add_(eps))


def _forward_rows(
    x: Tensor, g: Tensor, w: Tensor, out: Tensor, group_size: int, eps: float, before: bool
) -> Tensor:
    """One block ``[n, C]`` in the compute dtype: writes ``out``, returns ``rstd [n, G, 1]``."""
    s = F.silu(g)
    u = x if before else s.mul_(x)  # gate first: s becomes x·s
    rstd = _rstd(u, group_size, eps)
    torch.mul(_grouped(u, group_size), rstd, out=_grouped(out, group_size))
    out.mul_(w)
    if before:
        out.mul_(s)
    return rstd


def _backward_rows(
    x: Tensor,
    g: Tensor,
    w: Tensor,
    rstd: Tensor,
    do: Tensor,
    dx: Tensor,
    dg: Tensor,
    group_size: int,
    before: bool,
) -> Tensor:
    """One block: writes ``dx`` and ``dg``, returns the block's part of ``dweight [C]``."""
    sig = torch.sigmoid(g)
    s = g * sig  # silu(g)
    dsilu = torch.rsub(sig, 1).mul_(g).add_(1).mul_(sig)  # σ(g)·(1 + g·(1 - σ(g)))
    y = x.clone() if before else x * s
    _grouped(y, group_size).mul_(rstd)  # the normalised input of the RMS
    tmp = torch.empty_like(y)
    if before:  # out = y · w · s
        dy = do * s
        dweight = torch.mul(dy, y, out=tmp).sum(0)
        dy.mul_(w)
        torch.mul(do, y, out=dg).mul_(w).mul_(dsilu)
    else:  # out = y · w with y = rms_norm(x · s)
        dy = do * w
        dweight = torch.mul(do, y, out=tmp).sum(0)
    # through the RMS of each group: du = rstd · (dy - y · mean(dy · y))
    mean = _grouped(torch.mul(dy, y, out=tmp), group_size).mean(-1, keepdim=True)
    torch.mul(_grouped(y, group_size), mean, out=_grouped(tmp, group_size))
    du = _grouped(dy.sub_(tmp), group_size).mul_(rstd).flatten(-2)
    if before:
        dx.copy_(du)
    else:
        torch.mul(du, s, out=dx)
        torch.mul(du, x, out=dg).mul_(dsilu)
    return dweight


def _forward(
    x: Tensor, gate: Tensor, weight: Tensor, group_size: int, eps: float, before: bool
) -> tuple[Tensor, Tensor]:
    """``(out in x's dtype, rstd [rows, groups, 1])``, block by block."""
    dtype, width = _compute_dtype(x.dtype), x.shape[-1]
    x2, g2 = x.reshape(-1, width), gate.reshape(-1, width)
    w = weight.to(dtype)
    out = torch.empty(x2.shape, dtype=dtype, device=x.device)
    rstd = torch.empty(x2.shape[0], width // group_size, 1, dtype=dtype, device=x.device)
    for rows in _row_blocks(x2.shape[0], width):
        xb, gb = x2[rows].to(dtype), g2[rows].to(dtype)
        rstd[rows] = _forward_rows(xb, gb, w, out[rows], group_size, eps, before)
    return out.view(x.shape).to(x.dtype), rstd


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
        out, rstd = _forward(x, gate, weight, group_size, eps, norm_before_gate)
        ctx.save_for_backward(x, gate, weight, rstd)
        ctx.group_size, ctx.norm_before_gate = group_size, norm_before_gate
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: Tensor) -> tuple[Tensor | None, ...]:
        x, gate, weight, rstd = ctx.saved_tensors
        dtype, width = _compute_dtype(x.dtype), x.shape[-1]
        x2, g2, do2 = (t.reshape(-1, width) for t in (x, gate, dout))
        w = weight.to(dtype)
        dx = torch.empty(x2.shape, dtype=dtype, device=x.device)
        dg = torch.empty_like(dx)
        dweight = torch.zeros(width, dtype=dtype, device=x.device)
        for rows in _row_blocks(x2.shape[0], width):
            xb, gb, dob = (t[rows].to(dtype) for t in (x2, g2, do2))
            dweight += _backward_rows(
                xb, gb, w, rstd[rows], dob, dx[rows], dg[rows], ctx.group_size, ctx.norm_before_gate
            )
        grads = (dx.view(x.shape).to(x.dtype), dg.view(gate.shape).to(gate.dtype))
        return (*grads, dweight.to(weight.dtype), None, None, None)


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
    if torch.is_grad_enabled() and (x.requires_grad or gate.requires_grad or weight.requires_grad):
        return _GatedRMSNorm.apply(x, gate, weight, group, float(eps), bool(norm_before_gate))
    if x.numel() <= _BLOCK:  # one block, no record for a backward pass (step mode)
        dtype = _compute_dtype(x.dtype)
        out = torch.empty(x.shape, dtype=dtype, device=x.device)
        args = (x.to(dtype), gate.to(dtype), weight.to(dtype), out, group, float(eps))
        _forward_rows(*args, bool(norm_before_gate))
        return out.to(x.dtype)
    return _forward(x, gate, weight, group, float(eps), bool(norm_before_gate))[0]


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
