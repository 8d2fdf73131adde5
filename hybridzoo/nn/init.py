"""Initialisations shared by the selective-SSM and linear-recurrence plugins."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["log_uniform_", "time_step_bias_"]


@torch.no_grad()
def time_step_bias_(bias: Tensor, dt_min: float, dt_max: float, dt_floor: float) -> Tensor:
    """Fill ``bias`` with ``softplus⁻¹(dt)``, ``dt`` log-uniform in ``[dt_min, dt_max]`` and at
    least ``dt_floor`` (Mamba's time-step initialisation: ``softplus(bias) = dt``)."""
    u = torch.rand(bias.shape, device=bias.device, dtype=torch.float64)
    log_min, log_max = math.log(dt_min), math.log(dt_max)
    dt = torch.exp(u * (log_max - log_min) + log_min).clamp(min=dt_floor)
    return bias.copy_(dt + torch.log(-torch.expm1(-dt)))


@torch.no_grad()
def log_uniform_(param: Tensor, low: float, high: float) -> Tensor:
    """Fill ``param`` with ``log U(low, high)`` (``A_log`` for decay rates ``A = U(low, high)``)."""
    a = torch.empty(param.shape, device=param.device, dtype=torch.float64).uniform_(low, high)
    return param.copy_(torch.log(a))
