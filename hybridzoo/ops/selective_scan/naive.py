"""The obvious time-step reference of the selective scan: one loop over t, the paper's recurrence.

Slow (and O(T²) under autograd because of ``x[:, t]`` indexing): for tests only. Same signature and
maths as :func:`hybridzoo.ops.selective_scan.selective_scan`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["naive_selective_scan", "softplus"]


def softplus(x: Tensor) -> Tensor:
    """``log(1 + exp(x))`` without a threshold (``F.softplus`` returns ``x`` above 20)."""
    return torch.logaddexp(x, torch.zeros_like(x))


def naive_selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    *,
    initial_state: Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Reference selective scan (see the fast version for the argument shapes)::

    dt_t = softplus(delta_t + delta_bias)            # or delta_t + delta_bias
    h_t  = exp(dt_t ⊙ A) ⊙ h_{t-1} + (dt_t ⊙ u_t) B_t  # [B, I, N]
    y_t  = h_t C_t + D ⊙ u_t,  then  y_t *= silu(z_t)
    """
    batch, length, channels = u.shape
    dt = delta if delta_bias is None else delta + delta_bias
    if delta_softplus:
        dt = softplus(dt)
    h = u.new_zeros(batch, channels, A.shape[1]) if initial_state is None else initial_state
    ys = []
    for t in range(length):
        decay = torch.exp(dt[:, t, :, None] * A)  # [B, I, N]
        h = decay * h + (dt[:, t] * u[:, t])[:, :, None] * B[:, t, None, :]
        y = (h * C[:, t, None, :]).sum(-1)  # [B, I]
        if D is not None:
            y = y + D * u[:, t]
        if z is not None:
            y = y * F.silu(z[:, t])
        ys.append(y)
    y = torch.stack(ys, dim=1) if ys else u.new_zeros(batch, 0, channels)
    return y, (h if output_final_state else None)
