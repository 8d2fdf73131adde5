"""The compiled backend: the fused C++ CPU kernel ``selective_scan.cpp`` in an autograd Function.

The kernel is compiled on first use with ``torch.utils.cpp_extension.load`` (needs a C++ compiler
and ``ninja``), never at import.  The build is cached by torch in its extensions directory
(``$TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``) under a name that includes a
hash of the source, the CPU model/flags and the torch version, so later processes only load the
shared library.  The first set of compiler
flags tuned for the host CPU (``-march=native``, OpenMP) is tried, then portable ones.  If every
attempt fails, :func:`load_extension` returns ``None`` and remembers why (:func:`extension_error`).
"""

from __future__ import annotations

import hashlib
import platform
import threading
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["CHECKPOINT_CHUNK", "extension_error", "fused_selective_scan", "load_extension"]

CHECKPOINT_CHUNK = 64
"""Time steps between two stored states; the backward pass recomputes one chunk at a time."""

_SOURCE = Path(__file__).with_name("selective_scan.cpp")
_NAMESPACE = "hybridzoo_selective_scan"  # the TORCH_LIBRARY namespace in the .cpp file
_FLAG_SETS: tuple[tuple[list[str], list[str]], ...] = (
    (["-O3", "-march=native", "-fopenmp", "-ffp-contract=fast", "-Wno-psabi"], ["-fopenmp"]),
    (["-O3", "-fopenmp", "-ffp-contract=fast", "-Wno-psabi"], ["-fopenmp"]),
    (["-O3", "-ffp-contract=fast", "-Wno-psabi"], []),
)


def _cpu_fingerprint() -> bytes:
    """The host's CPU model and feature flags (Linux), so that a cache directory shared between
    machines never hands a ``-march=native`` build to a CPU that lacks its instructions."""
    try:
        with open("/proc/cpuinfo", "rb") as f:
            lines = [ln for ln in f.read().splitlines() if ln.startswith((b"model name", b"flags"))]
        return b"\n".join(sorted(set(lines)))
    except OSError:
        return platform.processor().encode() + platform.machine().encode()


def _build() -> Any:
    """Compiles and loads the kernel; returns ``torch.ops.<namespace>``; raises on failure."""
    from torch.utils.cpp_extension import load

    source = _SOURCE.read_bytes()
    digest = hashlib.sha256(source + _cpu_fingerprint() + torch.__version__.encode()).hexdigest()
    digest = digest[:10]
    errors = []
    for cflags, ldflags in _FLAG_SETS:
        try:
            load(
                name=f"hybridzoo_selective_scan_{digest}",
                sources=[str(_SOURCE)],
                extra_cflags=cflags,
                extra_ldflags=ldflags,
                is_python_module=False,
                verbose=False,
            )
        except Exception as exc:  # compiler missing, ninja missing, unsupported flag...
            errors.append(f"{' '.join(cflags)}: {type(exc).__name__}: {exc}")
            continue
        return getattr(torch.ops, _NAMESPACE)
    raise RuntimeError("could not compile the selective-scan kernel:\n" + "\n".join(errors))


class _Extension:
    """Compiles at most once per process (thread-safe) and remembers the outcome."""

    def __init__(self, build: Any = _build) -> None:
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
        softplus: bool,
        chunk: int,
    ) -> tuple[Tensor, Tensor]:
        ops = _EXTENSION.ops
        y, h_final, checkpoints = ops.fwd(
            u, delta, A, B, C, D, z, delta_bias, h0, softplus, True, chunk
        )
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, checkpoints)
        ctx.softplus = softplus
        ctx.chunk = chunk
        ctx.has_h0 = h0 is not None
        ctx.set_materialize_grads(False)
        return y, h_final

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Tensor | None, dh_final: Tensor | None) -> tuple[Any, ...]:
        u, delta, A, B, C, D, z, delta_bias, checkpoints = ctx.saved_tensors
        dy = torch.zeros_like(u) if dy is None else dy.contiguous()
        if dh_final is not None:
            dh_final = dh_final.contiguous()
        du, ddelta, dA, dB, dC, dD, dz, dbias, dh0 = _EXTENSION.ops.bwd(
            u, delta, A, B, C, D, z, delta_bias, checkpoints, dy, dh_final, ctx.softplus, ctx.chunk
        )
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
        )


def _last_dim_contiguous(t: Tensor) -> Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


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
    chunk: int = CHECKPOINT_CHUNK,
) -> tuple[Tensor, Tensor]:
    """Runs the compiled kernel (which must be loaded); inputs already validated, CPU.

    ``u``, ``delta``, ``z``, ``B``, ``C`` may have any batch and time strides; their last
    dimension is made contiguous if it is not.  Returns (y [B, T, I], final state [B, I, N]).
    """
    if _EXTENSION.ops is None:
        raise RuntimeError("the selective-scan extension is not loaded (call load_extension())")
    u, delta, B, C = (_last_dim_contiguous(t) for t in (u, delta, B, C))
    A = A.contiguous()
    z = None if z is None else _last_dim_contiguous(z)
    D = None if D is None else D.contiguous()
    delta_bias = None if delta_bias is None else delta_bias.contiguous()
    h0 = None if initial_state is None else initial_state.contiguous()
    tensors = (u, delta, A, B, C, D, z, delta_bias, h0)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return _FusedScan.apply(u, delta, A, B, C, D, z, delta_bias, h0, delta_softplus, chunk)
    y, h_final, _ = _EXTENSION.ops.fwd(
        u, delta, A, B, C, D, z, delta_bias, h0, delta_softplus, False, chunk
    )
    return y, h_final
