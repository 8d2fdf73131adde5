"""Pure-torch selective scan: the fallback backend, any device, autograd through torch itself.

The sequence is cut into chunks of ``chunk_size`` steps.  Inside a chunk the decays and inputs are
materialised as ``[B, chunk, I, N]`` and the recurrence runs step by step over ``unbind`` views
(``x[:, t]`` indexing in a loop would make the backward pass O(T²)); the states are ``stack``-ed and
read out with one batched matmul.  Under autograd every chunk is checkpointed: only the chunk's
inputs and its initial state are kept, and the chunk is recomputed in the backward pass, so memory
stays O(B·T·I + B·I·N·T/chunk), never O(B·T·I·N).  Packing (``seq_idx``): at a document start the
carried state is replaced by zeros (``masked_fill``, a select: nothing of the previous document
leaks, not even a NaN).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from hybridzoo.ops._common import needs_grad

from .inputs import ScanInputs
from .packing import document_starts

__all__ = ["CHUNK_SIZE", "chunked_selective_scan"]

CHUNK_SIZE = 32
"""Time steps per chunk of the torch backend."""


def _scan_chunk(
    h: Tensor, dt: Tensor, du: Tensor, A: Tensor, B: Tensor, C: Tensor, restart: Tensor | None
) -> tuple[Tensor, Tensor]:
    """One chunk: h [Bt, I, N]; dt, du [Bt, c, I]; B, C [Bt, c, N]; restart [Bt, c] bool or None
    -> (y [Bt, c, I], h_end)."""
    decay = torch.exp(dt.unsqueeze(-1) * A)  # [Bt, c, I, N]
    inject = du.unsqueeze(-1) * B.unsqueeze(2)  # [Bt, c, I, N]
    states = []
    starts = [None] * dt.shape[1] if restart is None else restart[:, :, None, None].unbind(1)
    for a_t, b_t, r_t in zip(decay.unbind(1), inject.unbind(1), starts, strict=True):
        if r_t is not None:
            h = h.masked_fill(r_t, 0.0)
        h = torch.addcmul(b_t, a_t, h)  # [Bt, I, N]
        states.append(h)
    hs = torch.stack(states, dim=1)  # [Bt, c, I, N]
    y = torch.matmul(hs, C.unsqueeze(-1)).squeeze(-1)  # [Bt, c, I]
    return y, h


def chunked_selective_scan(
    x: ScanInputs,
    delta_softplus: bool,
    initial_state: Tensor | None,
    *,
    seq_idx: Tensor | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> tuple[Tensor, Tensor]:
    """Selective scan in plain torch ops; inputs already validated (``seq_idx`` int64 [B, T] or
    None). Returns (y, final state)."""
    u, A = x.u, x.A
    batch, length, channels = u.shape
    dt = x.time_step(delta_softplus)
    du = dt * u  # [Bt, T, I]
    h = u.new_zeros(batch, channels, A.shape[1]) if initial_state is None else initial_state
    recompute = needs_grad(*x, initial_state)
    if length == 0:
        return u.new_zeros(batch, 0, channels), h
    ys = []
    restarts: tuple = (None,) * -(-length // chunk_size)
    if seq_idx is not None:
        restarts = document_starts(seq_idx).split(chunk_size, 1)
    # split (not slicing in a loop): its backward is one concatenation.
    for dt_c, du_c, B_c, C_c, r_c in zip(
        dt.split(chunk_size, 1),
        du.split(chunk_size, 1),
        x.B.split(chunk_size, 1),
        x.C.split(chunk_size, 1),
        restarts,
        strict=True,
    ):
        if recompute:
            y_c, h = checkpoint(_scan_chunk, h, dt_c, du_c, A, B_c, C_c, r_c, use_reentrant=False)
        else:
            y_c, h = _scan_chunk(h, dt_c, du_c, A, B_c, C_c, r_c)
        ys.append(y_c)
    y = torch.cat(ys, dim=1) if ys else u.new_zeros(batch, 0, channels)
    return x.read_out(y), h
