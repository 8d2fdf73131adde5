"""A base class giving per-position layers (no mixing along time) the step protocol for free."""

from __future__ import annotations

import torch
from torch import nn


class Positionwise(nn.Module):
    """Base for bodies that act on each position independently (FFN, KAN, ...).

    Such a layer needs no recurrent state: ``init_state`` returns an empty tuple, ``step`` runs
    ``forward`` on a length-1 sequence and ``prefill`` is ``forward``. Subclasses implement
    ``forward(x: [B, L, H]) -> [B, L, H]`` only.
    """

    def init_state(self, batch_size: int) -> tuple[()]:
        return ()

    def step(self, x_t: torch.Tensor, state: tuple[()]) -> tuple[torch.Tensor, tuple[()]]:
        return self(x_t.unsqueeze(1)).squeeze(1), state

    def prefill(
        self, x: torch.Tensor, state: tuple[()] | None = None
    ) -> tuple[torch.Tensor, tuple[()]]:
        return self(x), ()
