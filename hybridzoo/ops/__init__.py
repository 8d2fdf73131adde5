"""Numerical kernels shared by layer plugins.

One family of chunkwise-parallel linear recurrences, in flash-linear-attention's vocabulary:
inputs ``[B, T, H, D]`` (batch, time, heads, features), ``initial_state=None,
output_final_state=False`` → ``(out, final_state or None)``, a state per head whose first
feature axis is the key's (``S [K, V]``, except SSD's ``[P, N]``, Mamba-2's layout):

- :func:`chunk_gla` / :func:`gla_step`: ``S_t = diag(exp(g_t)) S_{t-1} + k_tᵀ v_t``,
  ``o_t = scale · q_t S_t``; with ``bonus = u`` (RWKV-6)
  ``o_t = scale · q_t (S_{t-1} + diag(u) k_tᵀ v_t)``. The log decay is per key channel
  ``[B, T, H, K]`` (GLA, RWKV-6) or one scalar per head ``[B, T, H]`` (simple GLA, RetNet: a
  cheaper chunked form); q and k may be shared by groups of heads. State ``[B, H, K, V]``.
- :func:`chunk_ssd` / :func:`ssd_step`: Mamba-2's SSD, ``h_t = exp(dt_t A) h_{t-1} + dt_t x_t ⊗
  B_t``, ``y_t = h_t C_t`` (on chunk_gla's scalar decay). State ``[B, H, P, N]`` (Mamba-2's
  layout).
- :func:`chunk_gated_delta_rule` / :func:`gated_delta_rule_step`:
  ``S_t = exp(g_t) (I - β_t k_t k_tᵀ) S_{t-1} + β_t k_t v_tᵀ``, ``o_t = scale · S_tᵀ q_t``, in
  the WY / UT-transform form. State ``[B, H, K, V]``.

Shared contract:

- ``g`` is a log decay (``<= 0``); any strength is exact, ``-inf`` included (forget all), in
  float32 and float64: no exponential of a difference of cumulative sums is taken.
- Maths in float64 for float64 inputs, in float32 for float32/bfloat16/float16; outputs in the
  input dtype, final states in the compute dtype. Differentiable in every tensor argument, with
  memory that does not grow with ``T × chunk_size`` (states between chunks are kept, the rest
  recomputed).
- ``chunk_size`` (a power of two) changes speed only: results agree to rounding for every value.
- Packing: ``seq_idx [B, T]`` (integers, non-decreasing in each row) numbers documents packed in
  a row; where it changes the state restarts from zero (``initial_state`` belongs to a row's
  first document). The kernels take the boundaries; nothing loops over documents.
- Containment: no output at ``t`` reads an input after ``t``; a NaN or inf planted at position
  ``s`` leaves every output before ``s`` bitwise unchanged, whatever ``chunk_size``.
- Step functions update ``state`` in place and are inference-only (no autograd through them).
- ``backend="auto"`` (default) runs a fused C++ CPU recurrence (compiled on first use into the
  private kernel cache, see :mod:`hybridzoo.ops._compile`; per (batch row, head), position by
  position, the backward pass recomputing checkpointed blocks) and falls back to the chunked
  pure-torch form (any device; the delta rule's in the WY / UT-transform form) when it cannot be
  built, on other devices or with ``HYBRIDZOO_NO_COMPILE`` set; ``"compiled"`` and ``"torch"``
  pick one. Both are tested against the references, NaN containment and packing included.

Also here: :func:`selective_scan` / :func:`causal_conv1d` (Mamba-1's selective scan and its
depthwise causal convolution, a fused compiled C++ kernel with a pure-torch fallback;
:func:`selective_scan_backend` says which one runs).

Each kernel has a plain time-step reference beside it (``naive.py``) that the tests compare it
with; the references are not exported.
"""

import warnings
from typing import Any

from hybridzoo.ops.delta_rule import chunk_gated_delta_rule, gated_delta_rule_step
from hybridzoo.ops.gla import chunk_gla, gla_step
from hybridzoo.ops.selective_scan import causal_conv1d, selective_scan, selective_scan_backend
from hybridzoo.ops.ssd import chunk_ssd, ssd_step

__all__ = [
    "causal_conv1d",
    "chunk_gated_delta_rule",
    "chunk_gla",
    "chunk_ssd",
    "gated_delta_rule_step",
    "gla_step",
    "selective_scan",
    "selective_scan_backend",
    "ssd_step",
]

_RENAMED = {"chunk_simple_gla": "chunk_gla", "simple_gla_step": "gla_step"}
"""Old names (deprecated for one release): ``chunk_gla`` and ``gla_step`` now take the
``[B, T, H]`` scalar decay and the grouped q and k that these took."""


def _renamed(module: str, name: str) -> Any:
    """The kernel an old ``module.name`` now is, with a :class:`DeprecationWarning`."""
    if name not in _RENAMED:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    new = _RENAMED[name]
    warnings.warn(
        f"{module}.{name} is deprecated; use hybridzoo.ops.{new} (it takes the [B, T, H] "
        "scalar decay per head and grouped q and k)",
        DeprecationWarning,
        stacklevel=3,
    )
    return globals()[new]


def __getattr__(name: str) -> Any:
    return _renamed(__name__, name)
