"""The obvious GLA layer: one time step at a time, from the layer's parameters only.

Slow on purpose; written to read like the paper. Tests compare the fast body with it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hybridzoo_plugins.gla.layer import GatedLinearAttention


def reference_scan(
    layer: GatedLinearAttention,
    x: Tensor,
    state: Tensor | None = None,
    *,
    seq_idx: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """``layer``'s output for ``x [B, L, H]`` from ``state [B, heads, dk, dv]`` (None = zeros),
    and the state after the last position. With ``seq_idx [B, L]`` (packed documents) the
    state is forgotten where a row's document number changes."""
    batch = x.shape[0]
    nh, dk, dv = layer.num_heads, layer.head_k_dim, layer.head_v_dim
    w_gate_down, w_gate_up = layer.gk_proj[0].weight, layer.gk_proj[1].weight
    b_gate_up = layer.gk_proj[1].bias
    norm_weight, eps = layer.g_norm.weight, layer.g_norm.eps
    if state is None:
        state = x.new_zeros(batch, nh, dk, dv)
    outputs = []
    for t, x_t in enumerate(x.unbind(1)):  # [B, H]
        if seq_idx is not None and t > 0:  # a new document starts from nothing
            keep = seq_idx[:, t] == seq_idx[:, t - 1]  # [B]
            state = torch.where(keep[:, None, None, None], state, 0.0)
        q_t = (x_t @ layer.q_proj.weight.T).view(batch, nh, dk)
        k_t = (x_t @ layer.k_proj.weight.T).view(batch, nh, dk)
        v_t = (x_t @ layer.v_proj.weight.T).view(batch, nh, dv)
        gate_logits = (x_t @ w_gate_down.T) @ w_gate_up.T + b_gate_up
        # forget gate α_t ∈ (0, 1), one per key channel
        alpha_t = torch.sigmoid(gate_logits) ** (1.0 / layer.gate_logit_normalizer)
        alpha_t = alpha_t.view(batch, nh, dk)
        # S_t = diag(α_t) S_{t-1} + k_tᵀ v_t ;  o_t = q_t S_t / √dk
        state = alpha_t.unsqueeze(-1) * state + k_t.unsqueeze(-1) * v_t.unsqueeze(-2)
        o_t = torch.einsum("bhk,bhkv->bhv", q_t, state) / dk**0.5
        # per-head RMSNorm, swish output gate, output projection
        o_t = o_t / torch.sqrt((o_t**2).mean(-1, keepdim=True) + eps) * norm_weight
        gate = x_t @ layer.g_proj.weight.T
        y_t = (o_t.reshape(batch, nh * dv) * gate * torch.sigmoid(gate)) @ layer.o_proj.weight.T
        outputs.append(y_t)
    return torch.stack(outputs, 1), state


def reference_forward(
    layer: GatedLinearAttention, x: Tensor, *, seq_idx: Tensor | None = None
) -> Tensor:
    """``layer``'s output for ``x [B, L, H]`` from a zero state (the kit's reference hook);
    ``seq_idx``: see :func:`reference_scan`."""
    return reference_scan(layer, x, seq_idx=seq_idx)[0]
