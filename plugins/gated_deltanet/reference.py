"""The obvious Gated DeltaNet layer: one position at a time, from the layer's parameters only.

Shares no code with :class:`~hybridzoo_plugins.gated_deltanet.layer.GatedDeltaNet`: the
convolutions are dot products with the last inputs, the delta rule the explicit read, correct
and write of each head's ``[dk, dv]`` memory, the norm and the gate written out. Slow on purpose;
the tests and the conformance kit compare the fast layer with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover
    from hybridzoo_plugins.gated_deltanet.layer import GatedDeltaNet

__all__ = ["reference_forward", "reference_scan"]


def _silu(x: Tensor) -> Tensor:
    return x / (1 + torch.exp(-x))


def _conv_step(past: list[Tensor], weight: Tensor) -> Tensor:
    """``silu(Σ_j weight[:, j] · past[j])``: ``past`` the last K inputs ``[B, C]``, oldest first."""
    return _silu((torch.stack(past, dim=-1) * weight[:, 0, :]).sum(-1))


def reference_scan(
    layer: GatedDeltaNet,
    u: Tensor,
    state: tuple[Tensor, ...] | None = None,
    seq_idx: Tensor | None = None,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """``layer`` applied to ``u [B, T, H]`` from ``state = (window [B, 2K + V, c-1], S)`` (None:
    zeros); returns ``(y [B, T, H], the state after the last position)``. With ``seq_idx [B,
    T]``, the convolutions' past and the memory are zeroed where a new document starts."""
    batch, length, _ = u.shape
    h, hv, dk, dv = layer.num_heads, layer.num_v_heads, layer.head_k_dim, layer.head_v_dim
    convs = (layer.q_conv1d, layer.k_conv1d, layer.v_conv1d)
    k_size = layer.q_conv1d.kernel_size
    widths = (h * dk, h * dk, hv * dv)
    if state is None:
        pasts = [[u.new_zeros(batch, c) for _ in range(k_size - 1)] for c in widths]
        S = u.new_zeros(batch, hv, dk, dv)
    else:
        windows = state[0].split(widths, dim=1)  # q, k, v channels
        pasts = [[w[:, :, j] for j in range(k_size - 1)] for w in windows]
        S = state[1]
    scale = dk**-0.5
    outputs = []
    for t in range(length):
        if seq_idx is not None and t > 0:  # a new document forgets everything before it
            keep = seq_idx[:, t] == seq_idx[:, t - 1]  # [B]; where: a NaN never crosses
            pasts = [[torch.where(keep[:, None], p_j, 0.0) for p_j in p] for p in pasts]
            S = torch.where(keep[:, None, None, None], S, 0.0)
        u_t = u[:, t]
        conv_out = []
        projs = (layer.q_proj, layer.k_proj, layer.v_proj)
        for i, (proj, conv) in enumerate(zip(projs, convs, strict=True)):
            pasts[i] = [*pasts[i], u_t @ proj.weight.T]
            conv_out.append(_conv_step(pasts[i], conv.weight))
            pasts[i] = pasts[i][1:]
        q, k = (c.reshape(batch, h, dk) for c in conv_out[:2])
        q = q / torch.sqrt((q * q).sum(-1, keepdim=True) + 1e-6)
        k = k / torch.sqrt((k * k).sum(-1, keepdim=True) + 1e-6)
        v = conv_out[2].reshape(batch, hv, dv)
        beta = torch.sigmoid(u_t @ layer.b_proj.weight.T)  # [B, hv]
        a = u_t @ layer.a_proj.weight.T + layer.dt_bias
        dt = torch.logaddexp(a, torch.zeros_like(a))  # softplus
        alpha = torch.exp(-torch.exp(layer.A_log) * dt)  # decay in (0, 1), [B, hv]
        heads, outs = [], []
        for j in range(hv):
            q_j, k_j = q[:, j * h // hv], k[:, j * h // hv]  # the query/key head of value head j
            S_j = alpha[:, j, None, None] * S[:, j]  # [B, dk, dv]
            stored = torch.einsum("bk,bkv->bv", k_j, S_j)  # what k_j reads now
            S_j = S_j + beta[:, j, None, None] * k_j[:, :, None] * (v[:, j] - stored)[:, None, :]
            heads.append(S_j)
            outs.append(scale * torch.einsum("bk,bkv->bv", q_j, S_j))
        S = torch.stack(heads, dim=1)
        o = torch.stack(outs, dim=1)  # [B, hv, dv]
        # per-head RMSNorm, then the swish gate
        o = o / torch.sqrt(o.pow(2).mean(-1, keepdim=True) + layer.o_norm.eps) * layer.o_norm.weight
        gate = (u_t @ layer.g_proj.weight.T).reshape(batch, hv, dv)
        o = (o * _silu(gate)).reshape(batch, hv * dv)
        outputs.append(o @ layer.o_proj.weight.T)
    y = torch.stack(outputs, 1) if outputs else u.new_zeros(batch, 0, layer.hidden_size)
    if k_size > 1:  # the last inputs of the q, k, v channels, oldest first
        window = torch.stack([torch.cat(p, dim=1) for p in zip(*pasts, strict=True)], -1)
    else:
        window = u.new_zeros(batch, sum(widths), 0)
    return y, (window, S)


def reference_forward(layer: GatedDeltaNet, u: Tensor) -> Tensor:
    """``layer``'s output for ``u [B, T, H]`` from a zero state (the kit's reference hook)."""
    return reference_scan(layer, u)[0]
