"""The obvious attention: an explicit convolution loop, full ``L×L`` scores per query head with
its kv head, a band mask, rotary channel pair by channel pair.

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


def _rotate(x: Tensor, base: float) -> Tensor:
    """Rotate channel pair ``(i, i + d/2)`` of ``x [..., L, d]`` by ``t · base^(-2i/d)``."""
    d = x.shape[-1]
    half = d // 2
    positions = torch.arange(x.shape[-2], dtype=torch.float64)
    out = torch.empty_like(x)
    for i in range(half):
        theta = positions * base ** (-2.0 * i / d)  # [L], in float64
        cos, sin = torch.cos(theta).to(x.dtype), torch.sin(theta).to(x.dtype)
        a, b = x[..., i], x[..., i + half]
        out[..., i] = a * cos - b * sin
        out[..., i + half] = a * sin + b * cos
    return out


def _conv(layer: SlidingWindowAttention, x: Tensor) -> Tensor:
    """``out[t] = bias + Σ_j w[j] · x[t - (K-1) + j]`` per channel, zeros before position 0."""
    assert layer.conv is not None
    weight, bias = layer.conv.weight[:, 0], layer.conv.bias  # [H, K], [H]
    size = weight.shape[1]
    out = torch.empty_like(x)
    for t in range(x.shape[1]):
        acc = bias.expand(x.shape[0], -1).clone()
        for j in range(size):
            s = t - (size - 1) + j
            if s >= 0:
                acc = acc + weight[:, j] * x[:, s]
        out[:, t] = acc
    return out


def reference_forward(layer: SlidingWindowAttention, x: Tensor) -> Tensor:
    """``layer``'s output for ``x [B, L, H]`` (positions ``0 .. L-1``), from its parameters only."""
    batch, length, _ = x.shape
    d = layer.head_dim
    groups = layer.num_heads // layer.num_kv_heads
    if layer.conv is not None:
        x = _conv(layer, x)

    def linear(module: torch.nn.Linear, inp: Tensor) -> Tensor:
        out = inp @ module.weight.T
        return out if module.bias is None else out + module.bias

    def heads(t: Tensor, n: int) -> Tensor:
        return t.view(batch, length, n, d).transpose(1, 2)  # [B, n, L, d]

    q = heads(linear(layer.q_proj, x), layer.num_heads)
    k = heads(linear(layer.k_proj, x), layer.num_kv_heads)
    v = heads(linear(layer.v_proj, x), layer.num_kv_heads)
    if isinstance(layer.q_norm, torch.nn.LayerNorm):
        q = _layer_norm(q, layer.q_norm.weight, layer.q_norm.bias, layer.q_norm.eps)
        k = _layer_norm(k, layer.k_norm.weight, layer.k_norm.bias, layer.k_norm.eps)
    if layer.rope_base is not None:
        q, k = _rotate(q, layer.rope_base), _rotate(k, layer.rope_base)

    t = torch.arange(length)[:, None]
    s = torch.arange(length)[None, :]
    allowed = s <= t
    if layer.window_size is not None:
        allowed &= s > t - layer.window_size
    outs = []
    for h in range(layer.num_heads):
        kv = h // groups  # the kv head this query head reads
        scores = q[:, h] @ k[:, kv].transpose(-1, -2) / math.sqrt(d)  # [B, L, L]
        scores = scores.masked_fill(~allowed, float("-inf"))
        outs.append(torch.softmax(scores, dim=-1) @ v[:, kv])  # [B, L, d]
    out = torch.stack(outs, 2).reshape(batch, length, layer.num_heads * d)
    return linear(layer.o_proj, out)
