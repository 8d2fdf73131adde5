"""Numerical kernels shared by layer plugins, with flash-linear-attention's state vocabulary:
``initial_state=None, output_final_state=False`` → ``(out, final_state)``.

- :func:`chunk_gla` / :func:`gla_step`: the gated linear recurrence
  ``S_t = diag(exp(log_decay_t)) S_{t-1} + k_tᵀ v_t`` (GLA; with ``bonus`` the RWKV-6 form),
  chunkwise-parallel.
- :func:`selective_scan` / :func:`causal_conv1d`: Mamba-1's selective scan and its depthwise
  causal convolution, a fused compiled C++ kernel with a pure-torch fallback
  (:func:`selective_scan_backend` says which one runs).

Each kernel has a plain time-step reference beside it (``naive.py``) that the tests compare it
with; the references are not exported.
"""

from hybridzoo.ops.gla import chunk_gla, gla_step
from hybridzoo.ops.selective_scan import causal_conv1d, selective_scan, selective_scan_backend

__all__ = ["causal_conv1d", "chunk_gla", "gla_step", "selective_scan", "selective_scan_backend"]
