"""The public selective scan: input checks and the choice of backend.

Backends (one algorithm, two implementations of the same recurrence; both exact):

- ``"compiled"``: the fused C++ CPU kernel of ``selective_scan.cpp`` (see :mod:`.fused`).
- ``"torch"``: plain torch ops, chunked and checkpointed (see :mod:`.chunked`); any device.

``backend="auto"`` (the default) picks ``"compiled"`` for CPU tensors unless the environment
variable ``HYBRIDZOO_NO_COMPILE`` is set to a non-empty value other than ``0`` or the kernel cannot
be compiled (then a ``RuntimeWarning`` says why, once per process), and ``"torch"`` for tensors
on any other device.  :func:`selective_scan_backend` says which one ``"auto"`` uses.  Asking for
``"compiled"`` explicitly never falls back: it raises if the kernel is unavailable.
"""

from __future__ import annotations

import os
from typing import Literal

import torch
from torch import Tensor

from .chunked import chunked_selective_scan
from .fused import extension_error, fused_selective_scan, load_extension

__all__ = ["BACKENDS", "selective_scan", "selective_scan_backend"]

BACKENDS = ("auto", "compiled", "torch")
"""Values accepted by ``backend=``."""

_DTYPES = (torch.float32, torch.float64)


def _compile_disabled() -> bool:
    return os.environ.get("HYBRIDZOO_NO_COMPILE", "") not in ("", "0")


def selective_scan_backend(device: torch.device | str = "cpu") -> Literal["compiled", "torch"]:
    """The backend that ``backend="auto"`` uses for tensors on ``device``.

    On CPU this compiles the kernel if that was not tried yet in this process (it may take a
    few tens of seconds the first time; the build is cached on disk).
    """
    if torch.device(device).type != "cpu" or _compile_disabled():
        return "torch"
    return "compiled" if load_extension() is not None else "torch"


def _resolve_backend(backend: str, device: torch.device) -> Literal["compiled", "torch"]:
    if backend == "torch":
        return "torch"
    if backend == "auto":
        return selective_scan_backend(device)
    if backend == "compiled":
        if device.type != "cpu":
            raise ValueError(
                f"backend='compiled' runs on CPU tensors only, got tensors on {device}; "
                "use backend='torch' or 'auto'"
            )
        if _compile_disabled():
            raise RuntimeError(
                "backend='compiled' was requested but HYBRIDZOO_NO_COMPILE is set; unset it or "
                "use backend='torch' or 'auto'"
            )
        if load_extension() is None:
            raise RuntimeError(f"backend='compiled' is unavailable: {extension_error()}")
        return "compiled"
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


def _check_shape(name: str, t: Tensor, expected: tuple[int, ...], meaning: str) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if tuple(t.shape) != expected:
        raise ValueError(f"{name} must have shape {meaning} = {expected}, got {tuple(t.shape)}")


def _check_inputs(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    delta_bias: Tensor | None,
    initial_state: Tensor | None,
) -> None:
    if not isinstance(u, Tensor):
        raise TypeError(f"u must be a torch.Tensor, got {type(u).__name__}")
    if u.dim() != 3:
        raise ValueError(f"u must have shape [B, T, I], got {tuple(u.shape)}")
    batch, length, channels = u.shape
    if not isinstance(A, Tensor):
        raise TypeError(f"A must be a torch.Tensor, got {type(A).__name__}")
    if A.dim() != 2 or A.shape[0] != channels:
        raise ValueError(f"A must have shape [I, N] with I = {channels}, got {tuple(A.shape)}")
    state = A.shape[1]
    _check_shape("delta", delta, (batch, length, channels), "[B, T, I]")
    _check_shape("B", B, (batch, length, state), "[B, T, N]")
    _check_shape("C", C, (batch, length, state), "[B, T, N]")
    optional = {"D": D, "z": z, "delta_bias": delta_bias, "initial_state": initial_state}
    if D is not None:
        _check_shape("D", D, (channels,), "[I]")
    if delta_bias is not None:
        _check_shape("delta_bias", delta_bias, (channels,), "[I]")
    if z is not None:
        _check_shape("z", z, (batch, length, channels), "[B, T, I]")
    if initial_state is not None:
        _check_shape("initial_state", initial_state, (batch, channels, state), "[B, I, N]")
    named = {"u": u, "delta": delta, "A": A, "B": B, "C": C}
    named.update({k: v for k, v in optional.items() if v is not None})
    if u.dtype not in _DTYPES:
        raise TypeError(f"selective_scan supports float32 and float64, got u.dtype = {u.dtype}")
    for name, t in named.items():
        if t.dtype != u.dtype:
            raise TypeError(
                f"all inputs must share u's dtype {u.dtype}, got {name}.dtype = {t.dtype}"
            )
        if t.device != u.device:
            raise ValueError(
                f"all inputs must be on u's device {u.device}, got {name} on {t.device}"
            )


def selective_scan(
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
    backend: str = "auto",
) -> tuple[Tensor, Tensor | None]:
    """Selective state-space scan of Mamba-1 (Gu & Dao 2023), channel-last.

    Per channel i and state index n, with ``dt = softplus(delta + delta_bias)`` if
    ``delta_softplus`` else ``delta + delta_bias``::

        h_t = exp(dt_t ⊙ A) ⊙ h_{t-1} + (dt_t ⊙ u_t) B_t      # [B, I, N]
        y_t = h_t C_t + D ⊙ u_t ;  y_t *= silu(z_t) if z is given

    Args:
        u: input, ``[B, T, I]``.
        delta: time steps before bias/softplus, ``[B, T, I]``.
        A: state matrix (diagonal per channel), ``[I, N]``.
        B, C: input-dependent input/output vectors shared over channels, ``[B, T, N]``.
        D: skip weight, ``[I]``.  z: gate, ``[B, T, I]``.  delta_bias: ``[I]``.
        delta_softplus: apply softplus (exact, no threshold) to ``delta + delta_bias``.
        initial_state: ``h_0``, ``[B, I, N]`` (zeros if None).
        output_final_state: also return ``h_T``.
        backend: ``"auto"``, ``"compiled"`` or ``"torch"`` (see the module docstring).

    Returns:
        ``(y [B, T, I], h_T [B, I, N] or None)``.  Differentiable in every tensor argument;
        float32 and float64 (all inputs of one dtype, one device).
    """
    _check_inputs(u, delta, A, B, C, D, z, delta_bias, initial_state)
    chosen = _resolve_backend(backend, u.device)
    scan = fused_selective_scan if chosen == "compiled" else chunked_selective_scan
    y, h_final = scan(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus), initial_state)
    return y, (h_final if output_final_state else None)
