"""Selective scan (Mamba-1): fused compiled CPU kernels and a pure-torch fallback.

``selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, *, initial_state,
output_final_state, backend="auto", seq_idx=None)``; see :mod:`.interface` for how the backend is
chosen and which dtypes are accepted, :mod:`.packing` for ``seq_idx``.
``causal_conv1d``: Mamba's causal depthwise convolution (+ SiLU), channel-last, same backends.
``selective_state_update``: one decoding step of the scan, updating the state in place.
``kernel_cache_dir()``: where the compiled kernels are cached (see :mod:`.build`).
The time-step references live in :mod:`hybridzoo.ops.selective_scan.naive` (not exported); the
C++ sources in ``csrc/``.
"""

from __future__ import annotations

from .build import kernel_cache_dir
from .conv import causal_conv1d
from .interface import BACKENDS, selective_scan, selective_scan_backend
from .update import selective_state_update

__all__ = [
    "BACKENDS",
    "causal_conv1d",
    "kernel_cache_dir",
    "selective_scan",
    "selective_scan_backend",
    "selective_state_update",
]
