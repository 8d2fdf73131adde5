"""The selective scan's tensor arguments as one record, shared by the backends, the one-token
update and their checks: the time step ``dt`` and the output's skip and gate, written once."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .naive import softplus

__all__ = ["ScanInputs"]


class ScanInputs(NamedTuple):
    """``u, delta [B, T, I]``, ``A [I, N]``, ``B, C [B, T, N]``, ``D [I]``, ``z [B, T, I]``,
    ``delta_bias [I]`` (D, z, delta_bias optional); without ``T`` for one decoding step."""

    u: Tensor
    delta: Tensor
    A: Tensor
    B: Tensor
    C: Tensor
    D: Tensor | None
    z: Tensor | None
    delta_bias: Tensor | None

    def to(self, dtype: torch.dtype) -> ScanInputs:
        """Every tensor in ``dtype`` (None stays None)."""
        return ScanInputs(*(None if t is None else t.to(dtype) for t in self))

    def time_step(self, delta_softplus: bool) -> Tensor:
        """``dt = delta + delta_bias``, through the exact softplus if ``delta_softplus``."""
        dt = self.delta if self.delta_bias is None else self.delta + self.delta_bias
        return softplus(dt) if delta_softplus else dt

    def read_out(self, y: Tensor) -> Tensor:
        """``(y + D ⊙ u) ⊙ silu(z)``: the state's read-out with the skip and the gate."""
        if self.D is not None:
            y = y + self.u * self.D
        if self.z is not None:
            y = y * F.silu(self.z)
        return y
