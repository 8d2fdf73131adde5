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


def _rotate(x: Tensor, base: float, positions: Tensor) -> Tensor:
    """Rotate channel pair ``(i, i + d/2)`` of ``x [B, h, L, d]`` by ``p · base^(-2i/d)`` for the
    position ``p`` of each ``positions [B, L]``."""
    d = x.shape[-1]
    half = d // 2
    positions = positions.to(torch.float64)[:, None]  # [B, 1, L]
    out = torch.empty_like(x)
    for i in range(half):
        theta = positions * base ** (-2.0 * i / d)  # [B, 1, L], in float64
        cos, sin = torch.cos(theta).to(x.dtype), torch.sin(theta).to(x.dtype)
        a, b = x[..., i], x[..., i + half]
        out[..., i] = a * cos - b * sin
        out[..., i + half] = a * sin + b * cos
    return out


def _conv(layer: SlidingWindowAttention, x: Tensor, doc: Tensor) -> Tensor:
    """``out[t] = bias + Σ_j w[j] · x[t - (K-1) + j]`` per channel, over the inputs of t's own
    document ``doc [B, L]`` only (zeros before it)."""
    assert layer.conv is not None
    weight, bias = layer.conv.weight[:, 0], layer.conv.bias  # [H, K], [H]
    size = weight.shape[1]
    out = torch.empty_like(x)
    for t in range(x.shape[1]):
        acc = bias.expand(x.shape[0], -1).clone()
        for j in range(size):
            s = t - (size - 1) + j
            if s >= 0:
                same = (doc[:, s] == doc[:, t])[:, None]  # [B, 1]
                acc = acc + torch.where(same, weight[:, j] * x[:, s], 0.0)
        out[:, t] = acc
    return out


def reference_forward(
    layer: SlidingWindowAttention, x: Tensor, *, seq_idx: Tensor | None = None
) -> Tensor:
    """``layer``'s output for ``x [B, L, H]`` (positions ``0 .. L-1``), from its parameters only.

    ``seq_idx [B, L]``: packed documents, each attending within itself from position 0."""
    batch, length, _ = x.shape
    d = layer.head_dim
    groups = layer.num_heads // layer.num_kv_heads
    doc = x.new_zeros(batch, length, dtype=torch.long) if seq_idx is None else seq_idx
    positions = torch.zeros_like(doc)  # each position's distance to its document's start
    for t in range(1, length):
        positions[:, t] = torch.where(doc[:, t] == doc[:, t - 1], positions[:, t - 1] + 1, 0)
    if layer.conv is not None:
        x = _conv(layer, x, doc)

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
        q, k = _rotate(q, layer.rope_base, positions), _rotate(k, layer.rope_base, positions)

    t = torch.arange(length, device=x.device)[:, None]
    s = torch.arange(length, device=x.device)[None, :]
    allowed = (s <= t) & (doc[:, :, None] == doc[:, None, :])  # [B, L, L]
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
