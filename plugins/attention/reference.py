"""The obvious sliding-window attention: full ``L×L`` scores, a band mask, plain rotary.

Slow (``O(L²)`` memory), written to read like the maths; tests compare the fast body with it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from hybridzoo_plugins.attention.layer import SlidingWindowAttention


def _layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def _rotate(x: Tensor, positions: Tensor, base: float) -> Tensor:
    """Rotate channel pair ``(i, i + d/2)`` of ``x [..., L, d]`` by ``t · base^(-2i/d)``."""
    d = x.shape[-1]
    half = d // 2
    out = torch.empty_like(x)
    for i in range(half):
        theta = positions * base ** (-2.0 * i / d)  # [L]
        cos, sin = torch.cos(theta), torch.sin(theta)
        a, b = x[..., i], x[..., i + half]
        out[..., i] = a * cos - b * sin
        out[..., i + half] = a * sin + b * cos
    return out


def reference_forward(layer: SlidingWindowAttention, x: Tensor) -> Tensor:
    """``layer``'s output for ``x [B, L, H]`` (positions ``0 .. L-1``), from its parameters only."""
    batch, length, _ = x.shape
    nh, hd = layer.num_heads, layer.head_dim

    def linear(module: torch.nn.Linear, inp: Tensor) -> Tensor:
        out = inp @ module.weight.T
        return out if module.bias is None else out + module.bias

    def heads(t: Tensor) -> Tensor:
        return t.view(batch, length, nh, hd).transpose(1, 2)  # [B, nh, L, hd]

    q = heads(linear(layer.q_proj, x))
    k = heads(linear(layer.k_proj, x))
    v = heads(linear(layer.v_proj, x))
    if isinstance(layer.q_norm, torch.nn.LayerNorm):
        q = _layer_norm(q, layer.q_norm.weight, layer.q_norm.bias, layer.q_norm.eps)
        k = _layer_norm(k, layer.k_norm.weight, layer.k_norm.bias, layer.k_norm.eps)
    positions = torch.arange(length, dtype=torch.float64).to(x.dtype)
    q, k = _rotate(q, positions, layer.rope_base), _rotate(k, positions, layer.rope_base)

    scores = q @ k.transpose(-1, -2) / math.sqrt(hd)  # [B, nh, L, L]
    t = torch.arange(length)[:, None]
    s = torch.arange(length)[None, :]
    allowed = s <= t
    if layer.window_size is not None:
        allowed &= s > t - layer.window_size
    scores = scores.masked_fill(~allowed, float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v  # [B, nh, L, hd]
    out = out.transpose(1, 2).reshape(batch, length, nh * hd)
    return linear(layer.o_proj, out)
