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

from hybridzoo.nn.reference import ConvWindow, continuing, forget, silu, softplus

if TYPE_CHECKING:  # pragma: no cover
    from hybridzoo_plugins.gated_deltanet.layer import GatedDeltaNet

__all__ = ["reference_forward", "reference_scan"]


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
        windows = [ConvWindow.zeros(u, batch, c, k_size) for c in widths]
        S = u.new_zeros(batch, hv, dk, dv)
    else:  # the q, k, v channels
        windows = [ConvWindow(w) for w in state[0].split(widths, dim=1)]
        S = state[1]
    scale = dk**-0.5
    projs = (layer.q_proj, layer.k_proj, layer.v_proj)
    outputs = []
    for t in range(length):
        keep = continuing(seq_idx, t)  # a new document forgets everything before it
        for window in windows:
            window.forget(keep)
        S = forget(keep, S)
        u_t = u[:, t]
        conv_out = [
            silu(window(u_t @ proj.weight.T, conv.weight[:, 0, :]))
            for window, proj, conv in zip(windows, projs, convs, strict=True)
        ]
        q, k = (c.reshape(batch, h, dk) for c in conv_out[:2])
        q = q / torch.sqrt((q * q).sum(-1, keepdim=True) + 1e-6)
        k = k / torch.sqrt((k * k).sum(-1, keepdim=True) + 1e-6)
        v = conv_out[2].reshape(batch, hv, dv)
        beta = torch.sigmoid(u_t @ layer.b_proj.weight.T)  # [B, hv]
        a = u_t @ layer.a_proj.weight.T + layer.dt_bias
        dt = softplus(a)
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
        o = (o * silu(gate)).reshape(batch, hv * dv)
        outputs.append(o @ layer.o_proj.weight.T)
    y = torch.stack(outputs, 1) if outputs else u.new_zeros(batch, 0, layer.hidden_size)
    return y, (torch.cat([w.state for w in windows], dim=1), S)  # q, k, v channels


def reference_forward(layer: GatedDeltaNet, u: Tensor) -> Tensor:
    """``layer``'s output for ``u [B, T, H]`` from a zero state (the kit's reference hook)."""
    return reference_scan(layer, u)[0]
