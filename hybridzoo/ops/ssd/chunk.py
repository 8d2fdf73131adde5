"""Mamba-2's SSD as a scalar-decay linear recurrence: queries ``C``, keys ``B``, values
``dt · x``, log decay ``dt · A``, scale 1, and the state transposed to ``[B, H, P, N]``."""

from __future__ import annotations

import torch

from hybridzoo.ops._checks import sizes
from hybridzoo.ops._common import step_inputs
from hybridzoo.ops.gla.chunk import chunk_gla


def chunk_ssd(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    *,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int = 64,
    seq_idx: torch.Tensor | None = None,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mamba-2's selective state-space scan (SSD), chunkwise parallel.

    Per head, with the state ``h [P, N]`` (mamba_ssm's and transformers' layout):
    ``h_t = exp(dt_t A) h_{t-1} + dt_t x_t ⊗ B_t`` and ``y_t = h_t C_t``. No ``D`` skip and no
    gate: the layer adds them.

    Args:
        x: ``[B, T, H, P]``.
        dt: ``[B, T, H]``, already positive (the layer applies its bias and softplus).
        A: ``[H]``, negative (``-exp(A_log)``).
        B, C: ``[B, T, G, N]``; head ``h`` reads group ``h // (H / G)``.
        initial_state: ``[B, H, P, N]`` or None (zeros); belongs to each row's first document.
        output_final_state: also return the final state.
        chunk_size: positions per chunk, a power of two; changes speed only.
        seq_idx: ``[B, T]`` integers, non-decreasing along T: the state restarts from zero where
            it changes (packed documents).
        backend: ``"auto"``, ``"compiled"`` or ``"torch"``, as :func:`~hybridzoo.ops.chunk_gla`'s.

    Returns:
        ``(y [B, T, H, P] in x's dtype, h_T [B, H, P, N] or None)``, computed in float64 for
        float64 inputs and in float32 otherwise. Differentiable in every tensor argument.
    """
    sizes("chunk_ssd", x, dt, A, B, C, initial_state)
    state = None if initial_state is None else initial_state.transpose(-1, -2)
    y, final = chunk_gla(
        C,
        B,
        x * dt.unsqueeze(-1).to(x.dtype),
        dt * A.to(dt.dtype),
        scale=1.0,
        initial_state=state,
        output_final_state=output_final_state,
        chunk_size=chunk_size,
        seq_idx=seq_idx,
        backend=backend,
    )
    return y, (None if final is None else final.transpose(-1, -2))


def ssd_step(
    x_t: torch.Tensor,
    dt_t: torch.Tensor,
    A: torch.Tensor,
    B_t: torch.Tensor,
    C_t: torch.Tensor,
    state: torch.Tensor,
) -> torch.Tensor:
    """Advance :func:`chunk_ssd` by one token; ``state [B, H, P, N]`` is updated in place.

    ``h ← exp(dt_t A) h + dt_t x_t ⊗ B_t`` and ``y_t = h C_t``. ``x_t [B, H, P]``, ``dt_t
    [B, H]``, ``A [H]``, ``B_t, C_t [B, G, N]``. The maths runs in the state's dtype; inference
    only (no autograd through the in-place update). Returns ``y_t [B, H, P]`` in x_t's dtype.
    """
    n, (x, d, a, bt, ct) = step_inputs("chunk_ssd", (x_t, dt_t, A, B_t, C_t), state)
    b, g, r = n["B"], n["G"], n["H"] // n["G"]
    h = state.view(b, g, r, n["P"], n["N"])
    h.mul_(torch.exp(d * a).view(b, g, r, 1, 1))
    p, d_n = n["P"], n["N"]
    h.addcmul_((x * d.unsqueeze(-1)).view(b, g, r, p, 1), bt.view(b, g, 1, 1, d_n))
    y = torch.matmul(h, ct.view(b, g, 1, d_n, 1)).view(b, n["H"], p)
    return y.to(x_t.dtype)
