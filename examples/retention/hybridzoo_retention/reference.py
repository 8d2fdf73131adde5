"""The recurrent form of retention, one time step at a time, written to read like the paper.

``S_n = γ S_{n-1} + k_nᵀ v_n``, ``o_n = q_n S_n``, then the group norm, the swish gate and the
output projection, with the weights of a :class:`~hybridzoo_retention.layer.MultiScaleRetention`.
Slow on purpose; the tests (and the conformance kit, through ``LayerSpec.reference``) compare the
chunkwise body with it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from hybridzoo_retention.formulas import head_log_decays
from hybridzoo_retention.layer import NORM_EPS, MultiScaleRetention


def _rotate(x: Tensor, n: int, base: float) -> Tensor:
    """Rotate channel pair ``(i, i + d/2)`` of ``x [..., d]`` by the angle ``n · base^(-2i/d)``."""
    d = x.shape[-1]
    half = d // 2
    out = torch.empty_like(x)
    for i in range(half):
        angle = n * base ** (-2.0 * i / d)
        a, b = x[..., i], x[..., i + half]
        out[..., i] = a * math.cos(angle) - b * math.sin(angle)
        out[..., i + half] = a * math.sin(angle) + b * math.cos(angle)
    return out


def retention_reference(body: MultiScaleRetention, x: Tensor) -> Tensor:
    """``x [B, L, H] -> [B, L, H]`` through ``body``'s weights, one position at a time."""
    batch = x.shape[0]
    heads, d_k, d_v = body.num_heads, body.head_dim, body.value_dim
    gamma = torch.tensor([math.exp(g) for g in head_log_decays(heads)], dtype=x.dtype)
    gamma = gamma.to(x.device)[None, :, None, None]  # [1, heads, 1, 1]
    state = x.new_zeros(batch, heads, d_k, d_v)
    outputs = []
    for n, x_n in enumerate(x.unbind(1)):  # x_n [B, H]
        q = _rotate((x_n @ body.q_proj.weight.T).view(batch, heads, d_k), n, body.rope_base)
        k = _rotate((x_n @ body.k_proj.weight.T).view(batch, heads, d_k), n, body.rope_base)
        v = (x_n @ body.v_proj.weight.T).view(batch, heads, d_v)
        q = q / math.sqrt(d_k)
        state = gamma * state + k[..., :, None] * v[..., None, :]  # [B, heads, d_k, d_v]
        o = torch.einsum("bhk,bhkv->bhv", q, state)
        mean = o.mean(-1, keepdim=True)
        var = ((o - mean) ** 2).mean(-1, keepdim=True)
        o = ((o - mean) / torch.sqrt(var + NORM_EPS)).reshape(batch, heads * d_v)
        o = o * body.norm_weight + body.norm_bias
        gate = x_n @ body.g_proj.weight.T
        gate = gate * torch.sigmoid(gate)  # swish
        outputs.append((gate * o) @ body.o_proj.weight.T)
    return torch.stack(outputs, dim=1)
