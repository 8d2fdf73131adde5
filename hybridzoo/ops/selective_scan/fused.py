"""The compiled backend: the fused C++ CPU kernels of ``csrc/`` in autograd Functions.

The kernels are compiled on first use, never at import, and cached on disk (see :mod:`.build`
for where, how to clear it, and why a cache that other users can write is refused).  If they
cannot be built, :func:`load_extension` returns ``None`` and remembers why
(:func:`extension_error`).
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .build import build_extension

__all__ = ["CHECKPOINT_CHUNK", "extension_error", "fused_selective_scan", "load_extension"]

CHECKPOINT_CHUNK = 64
"""Time steps between two stored states; the backward pass recomputes one chunk at a time."""


class _Extension:
    """Compiles at most once per process (thread-safe) and remembers the outcome."""

    def __init__(self, build: Any = build_extension) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._tried = False
        self.ops: Any = None
        self.error: str | None = None

    def load(self) -> Any:
        with self._lock:
            if not self._tried:
                self._tried = True
                try:
                    self.ops = self._build()
                except Exception as exc:
                    self.error = str(exc)
                    reason = self.error if len(self.error) < 600 else self.error[:600] + " [...]"
                    warnings.warn(
                        "hybridzoo: the compiled selective-scan kernel is unavailable; the "
                        f"pure-torch backend is used instead (slower). Reason: {reason} "
                        "(full text: hybridzoo.ops.selective_scan.fused.extension_error())",
                        RuntimeWarning,
                        stacklevel=3,
                    )
            return self.ops


_EXTENSION = _Extension()


def load_extension() -> Any:
    """The compiled ops (``fwd``, ``bwd``), compiling them on the first call; None if impossible."""
    return _EXTENSION.load()


def extension_error() -> str | None:
    """Why the kernel could not be compiled (None if it was, or if it was not tried yet)."""
    return _EXTENSION.error


class _FusedScan(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        u: Tensor,
        delta: Tensor,
        A: Tensor,
        B: Tensor,
        C: Tensor,
        D: Tensor | None,
        z: Tensor | None,
        delta_bias: Tensor | None,
        h0: Tensor | None,
        seq_idx: Tensor | None,
        softplus: bool,
        chunk: int,
    ) -> tuple[Tensor, Tensor]:
        y, h_final, checkpoints = _EXTENSION.ops.fwd(
            u, delta, A, B, C, D, z, delta_bias, h0, seq_idx, softplus, True, chunk
        )
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, seq_idx, checkpoints)
        ctx.softplus = softplus
        ctx.chunk = chunk
        ctx.has_h0 = h0 is not None
        ctx.set_materialize_grads(False)
        return y, h_final

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Tensor | None, dh_final: Tensor | None) -> tuple[Any, ...]:
        u, delta, A, B, C, D, z, delta_bias, seq_idx, checkpoints = ctx.saved_tensors
        dy = torch.zeros_like(u) if dy is None else dy.contiguous()
        if dh_final is not None:
            dh_final = dh_final.contiguous()
        du, ddelta, dA, dB, dC, dD, dz, dbias, dh0 = _EXTENSION.ops.bwd(
            u, delta, A, B, C, D, z, delta_bias, seq_idx, checkpoints, dy, dh_final,
            ctx.softplus, ctx.chunk,
        )  # fmt: skip
        return (
            du,
            ddelta,
            dA,
            dB,
            dC,
            dD if D is not None else None,
            dz if z is not None else None,
            dbias if delta_bias is not None else None,
            dh0 if ctx.has_h0 else None,
            None,
            None,
            None,
        )


def last_dim_contiguous(t: Tensor | None) -> Tensor | None:
    """``t`` itself if its last dimension is contiguous (or None), else a contiguous copy."""
    return t if t is None or t.stride(-1) == 1 else t.contiguous()


def contiguous(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.contiguous()


def fused_selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    delta_bias: Tensor | None,
    delta_softplus: bool,
    initial_state: Tensor | None,
    *,
    seq_idx: Tensor | None = None,
    chunk: int = CHECKPOINT_CHUNK,
) -> tuple[Tensor, Tensor]:
    """Runs the compiled kernel (which must be loaded); inputs already validated, CPU, float32 or
    float64; ``seq_idx`` (packing) int64 ``[B, T]`` or None.

    ``u``, ``delta``, ``z``, ``B``, ``C`` may have any batch and time strides; their last
    dimension is made contiguous if it is not.  Returns (y [B, T, I], final state [B, I, N]).
    """
    if _EXTENSION.ops is None:
        raise RuntimeError("the selective-scan extension is not loaded (call load_extension())")
    u, delta, B, C, z = (last_dim_contiguous(t) for t in (u, delta, B, C, z))
    A, D, delta_bias, h0, seq_idx = (
        contiguous(t) for t in (A, D, delta_bias, initial_state, seq_idx)
    )
    tensors = (u, delta, A, B, C, D, z, delta_bias, h0)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return _FusedScan.apply(
            u, delta, A, B, C, D, z, delta_bias, h0, seq_idx, delta_softplus, chunk
        )
    y, h_final, _ = _EXTENSION.ops.fwd(
        u, delta, A, B, C, D, z, delta_bias, h0, seq_idx, delta_softplus, False, chunk
    )
    return y, h_final
