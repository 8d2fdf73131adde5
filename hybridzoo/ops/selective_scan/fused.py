"""The compiled backend: the fused C++ CPU kernels of ``csrc/`` in autograd Functions.

The kernels are compiled on first use, never at import, and cached on disk (see :mod:`.build`
for where, how to clear it, and why a cache that other users can write is refused).  If they
cannot be built, :func:`load_extension` returns ``None`` and remembers why
(:func:`extension_error`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from hybridzoo.ops._common import needs_grad

from .build import BuildOnce, build_extension
from .inputs import ScanInputs

__all__ = ["CHECKPOINT_CHUNK", "extension_error", "fused_selective_scan", "load_extension"]

CHECKPOINT_CHUNK = 64
"""Time steps between two stored states; the backward pass recomputes one chunk at a time."""


class _Extension(BuildOnce):
    """The selective-scan kernels, compiled at most once per process."""

    def __init__(self, build: Any = build_extension) -> None:
        hint = " (full text: hybridzoo.ops.selective_scan.fused.extension_error())"
        super().__init__(build, "selective-scan", hint)


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
        softplus: bool,
        chunk: int,
        seq_idx: Tensor | None,
        h0: Tensor | None,
        *inputs: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        y, h_final, checkpoints = _EXTENSION.ops.fwd(*inputs, h0, seq_idx, softplus, True, chunk)
        ctx.save_for_backward(*inputs, seq_idx, checkpoints)
        ctx.softplus = softplus
        ctx.chunk = chunk
        ctx.has_h0 = h0 is not None
        ctx.set_materialize_grads(False)
        return y, h_final

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Tensor | None, dh_final: Tensor | None) -> tuple[Any, ...]:
        *inputs, seq_idx, checkpoints = ctx.saved_tensors
        dy = torch.zeros_like(inputs[0]) if dy is None else dy.contiguous()
        if dh_final is not None:
            dh_final = dh_final.contiguous()
        *grads, dh0 = _EXTENSION.ops.bwd(
            *inputs, seq_idx, checkpoints, dy, dh_final, ctx.softplus, ctx.chunk
        )
        # the optional inputs (D, z, delta_bias) that were not given get no gradient
        grads = [None if t is None else g for g, t in zip(grads, inputs, strict=True)]
        return None, None, None, dh0 if ctx.has_h0 else None, *grads


def last_dim_contiguous(t: Tensor | None) -> Tensor | None:
    """``t`` itself if its last dimension is contiguous (or None), else a contiguous copy."""
    return t if t is None or t.stride(-1) == 1 else t.contiguous()


def contiguous(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.contiguous()


def kernel_layout(x: ScanInputs) -> ScanInputs:
    """The inputs as the kernels read them: the per-time tensors (any batch and time strides)
    with their last dimension contiguous, the others contiguous."""
    inner = last_dim_contiguous
    return ScanInputs(
        inner(x.u), inner(x.delta), contiguous(x.A), inner(x.B), inner(x.C),
        contiguous(x.D), inner(x.z), contiguous(x.delta_bias),
    )  # fmt: skip


def fused_selective_scan(
    x: ScanInputs,
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
    x = kernel_layout(x)
    h0, seq_idx = contiguous(initial_state), contiguous(seq_idx)
    if needs_grad(*x, h0):
        return _FusedScan.apply(delta_softplus, chunk, seq_idx, h0, *x)
    y, h_final, _ = _EXTENSION.ops.fwd(*x, h0, seq_idx, delta_softplus, False, chunk)
    return y, h_final
