"""The transformer feed-forward body: ``Linear(H, eH) → GELU → Linear(eH, H)``."""

from __future__ import annotations

import torch
from torch import nn

from hybridzoo.nn.positionwise import Positionwise

__all__ = ["FeedForward"]


class FeedForward(Positionwise):
    """``Linear(H, e·H) → GELU (exact, erf) → Linear(e·H, H)``, both with bias.

    Parameters: ``2·e·H² + e·H + H`` (see :func:`hybridzoo.plugin.feedforward_param_count`).
    """

    def __init__(self, hidden_size: int, expand_factor: int = 4) -> None:
        super().__init__()
        inner = expand_factor * hidden_size
        self.up = nn.Linear(hidden_size, inner)
        self.act = nn.GELU()
        self.down = nn.Linear(inner, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.up(x)))
