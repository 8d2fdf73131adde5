"""The feed-forward written out position by position from its weights (slow, obvious)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from hybridzoo.nn import FeedForward


def _act(h: Tensor, activation: str) -> Tensor:
    if activation == "gelu":  # exact GELU: x Φ(x)
        return 0.5 * h * (1.0 + torch.erf(h / math.sqrt(2.0)))
    if activation == "relu2":
        return torch.clamp(h, min=0.0) ** 2
    gate, up = h[: h.shape[0] // 2], h[h.shape[0] // 2 :]  # swiglu: gate first
    return gate / (1.0 + torch.exp(-gate)) * up


def reference_forward(body: FeedForward, x: Tensor) -> Tensor:
    """``body``'s output for ``x [B, L, H]``, one position at a time."""
    out = torch.empty_like(x)
    up_b = body.up.bias if body.up.bias is not None else 0.0
    down_b = body.down.bias if body.down.bias is not None else 0.0
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            h = body.up.weight @ x[b, t] + up_b
            out[b, t] = body.down.weight @ _act(h, body.activation) + down_b
    return out
