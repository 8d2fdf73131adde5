"""The norms of the model's pre-norm blocks and final norm (the ``norm`` model option)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["RMSNorm", "make_norm"]


class RMSNorm(nn.Module):
    """``weight · x / sqrt(mean(x²) + eps)`` over the last dimension, no bias; computed in
    float32 for lower-precision inputs (as transformers' RMSNorm), in float64 for float64."""

    def __init__(self, size: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.to(torch.promote_types(x.dtype, torch.float32))
        h = F.rms_norm(h, h.shape[-1:], eps=self.eps)
        return self.weight * h.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def make_norm(norm: str, size: int, eps: float) -> nn.Module:
    """The norm module of the ``norm`` model option (``"layernorm"`` or ``"rmsnorm"``)."""
    if norm == "rmsnorm":
        return RMSNorm(size, eps)
    return nn.LayerNorm(size, eps=eps)
