"""Selective scan (Mamba-1): a fused compiled CPU kernel and a pure-torch fallback.

``selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, *, initial_state,
output_final_state, backend="auto")``; see :mod:`.interface` for how the backend is chosen.
``causal_conv1d``: Mamba's causal depthwise convolution (+ SiLU), channel-last, same backends.
``selective_state_update``: one decoding step of the scan, updating the state in place.
The time-step reference lives in :mod:`hybridzoo.ops.selective_scan.naive` (not exported).
"""

from __future__ import annotations

from .conv import causal_conv1d
from .interface import BACKENDS, selective_scan, selective_scan_backend
from .update import selective_state_update

__all__ = [
    "BACKENDS",
    "causal_conv1d",
    "selective_scan",
    "selective_scan_backend",
    "selective_state_update",
]
