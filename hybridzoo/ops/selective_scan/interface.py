"""The public selective scan: input checks and the choice of backend.

Backends (one algorithm, two implementations of the same recurrence; both exact):

- ``"compiled"``: the fused C++ CPU kernel of ``selective_scan.cpp`` (see :mod:`.fused`).
- ``"torch"``: plain torch ops, chunked and checkpointed (see :mod:`.chunked`); any device.

``backend="auto"`` (the default) picks ``"compiled"`` for CPU tensors unless the environment
variable ``HYBRIDZOO_NO_COMPILE`` is set to a non-empty value other than ``0`` or the kernel cannot
be compiled (then a ``RuntimeWarning`` says why, once per process), and ``"torch"`` for tensors
on any other device.  :func:`selective_scan_backend` says which one ``"auto"`` uses.  Asking for
``"compiled"`` explicitly never falls back: it raises if the kernel is unavailable.

Dtypes: float32 and float64 inputs are computed in their own dtype (all inputs of one dtype);
bfloat16 and float16 inputs are computed in float32 (each input in u's dtype or float32, e.g.
float32 ``A`` and ``D`` with bfloat16 activations) and the results returned in u's dtype.

Packing: ``seq_idx [B, T]`` (any integer dtype, non-decreasing along T) numbers the documents
packed in each row; where it changes, a new document starts from a zero state (see
:mod:`.packing`).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from hybridzoo.errors import ShapeError
from hybridzoo.ops._common import compute_dtype

from .build import compile_disabled
from .chunked import chunked_selective_scan
from .fused import extension_error, fused_selective_scan, load_extension
from .inputs import ScanInputs
from .packing import check_seq_idx

__all__ = ["BACKENDS", "selective_scan", "selective_scan_backend"]

BACKENDS = ("auto", "compiled", "torch")
"""Values accepted by ``backend=``."""

_DTYPES = (torch.float32, torch.float64)
_LOW_PRECISION = (torch.bfloat16, torch.float16)  # computed in float32
DTYPES_TEXT = "float32 and float64 (and bfloat16/float16, computed in float32)"


def check_dtypes(what: str, ref_name: str, ref: Tensor, named: dict[str, Tensor | None]) -> None:
    """``ref`` float32/float64: every tensor of ``named`` has its dtype; bfloat16/float16: each
    has its dtype or float32.  TypeError otherwise, naming the tensor."""
    if ref.dtype not in _DTYPES + _LOW_PRECISION:
        raise TypeError(f"{what} supports {DTYPES_TEXT}, got {ref_name}.dtype = {ref.dtype}")
    allowed = (ref.dtype, torch.float32) if ref.dtype in _LOW_PRECISION else (ref.dtype,)
    for name, t in named.items():
        if t is not None and t.dtype not in allowed:
            valid = " or ".join(str(d) for d in allowed)
            raise TypeError(
                f"{name}.dtype must be {valid} (as {ref_name} is {ref.dtype}), got {t.dtype}"
            )


def selective_scan_backend(device: torch.device | str = "cpu") -> Literal["compiled", "torch"]:
    """The backend that ``backend="auto"`` uses for tensors on ``device``.

    On CPU this compiles the kernel if that was not tried yet in this process (it may take a
    few tens of seconds the first time; the build is cached on disk).
    """
    if torch.device(device).type != "cpu" or compile_disabled():
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
        if compile_disabled():
            raise RuntimeError(
                "backend='compiled' was requested but HYBRIDZOO_NO_COMPILE is set; unset it or "
                "use backend='torch' or 'auto'"
            )
        if load_extension() is None:
            raise RuntimeError(f"backend='compiled' is unavailable: {extension_error()}")
        return "compiled"
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


def check_shape(name: str, t: Tensor, expected: tuple[int, ...], meaning: str) -> None:
    """TypeError unless ``t`` is a tensor; :class:`~hybridzoo.errors.ShapeError` unless its shape
    is ``expected`` (``meaning`` spells it, e.g. ``"[B, T, I]"``)."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if tuple(t.shape) != expected:
        raise ShapeError(f"{name} must have shape {meaning} = {expected}, got {tuple(t.shape)}")


def _check_inputs(x: ScanInputs, initial_state: Tensor | None) -> None:
    u, delta, A, B, C, D, z, delta_bias = x
    if not isinstance(u, Tensor):
        raise TypeError(f"u must be a torch.Tensor, got {type(u).__name__}")
    if u.dim() != 3:
        raise ShapeError(f"u must have shape [B, T, I], got {tuple(u.shape)}")
    batch, length, channels = u.shape
    if not isinstance(A, Tensor):
        raise TypeError(f"A must be a torch.Tensor, got {type(A).__name__}")
    if A.dim() != 2 or A.shape[0] != channels:
        raise ShapeError(f"A must have shape [I, N] with I = {channels}, got {tuple(A.shape)}")
    state = A.shape[1]
    check_shape("delta", delta, (batch, length, channels), "[B, T, I]")
    check_shape("B", B, (batch, length, state), "[B, T, N]")
    check_shape("C", C, (batch, length, state), "[B, T, N]")
    optional = {"D": D, "z": z, "delta_bias": delta_bias, "initial_state": initial_state}
    if D is not None:
        check_shape("D", D, (channels,), "[I]")
    if delta_bias is not None:
        check_shape("delta_bias", delta_bias, (channels,), "[I]")
    if z is not None:
        check_shape("z", z, (batch, length, channels), "[B, T, I]")
    if initial_state is not None:
        check_shape("initial_state", initial_state, (batch, channels, state), "[B, I, N]")
    named = {"delta": delta, "A": A, "B": B, "C": C, **optional}
    check_dtypes("selective_scan", "u", u, named)
    for name, t in named.items():
        if t is not None and t.device != u.device:
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
    seq_idx: Tensor | None = None,
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
        initial_state: ``h_0``, ``[B, I, N]`` (zeros if None); with ``seq_idx``, the state of
            each row's first document only.
        output_final_state: also return ``h_T`` (with ``seq_idx``: of each row's last document).
        backend: ``"auto"``, ``"compiled"`` or ``"torch"`` (see the module docstring).
        seq_idx: packing, ``[B, T]`` integer, non-decreasing along T: where it changes the state
            restarts from zero (``h_{t-1}`` is replaced by zeros, so nothing of the previous
            document, not even a NaN, reaches the next).  See :mod:`.packing`.

    Returns:
        ``(y [B, T, I], h_T [B, I, N] or None)`` in u's dtype.  Differentiable in every tensor
        argument; float32 and float64, and bfloat16/float16 computed in float32 (see the module
        docstring).  Outputs at t never depend on inputs after t (NaN and inf included).
    """
    x = ScanInputs(u, delta, A, B, C, D, z, delta_bias)
    _check_inputs(x, initial_state)
    seq = check_seq_idx(seq_idx, u.shape[0], u.shape[1], u.device)
    chosen = _resolve_backend(backend, u.device)
    scan = fused_selective_scan if chosen == "compiled" else chunked_selective_scan
    work = compute_dtype(u.dtype)
    h0 = None if initial_state is None else initial_state.to(work)
    y, h_final = scan(x.to(work), bool(delta_softplus), h0, seq_idx=seq)
    y = y.to(u.dtype)
    return y, (h_final.to(u.dtype) if output_final_state else None)
