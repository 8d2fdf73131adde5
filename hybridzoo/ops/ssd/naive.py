"""The time-step reference of Mamba-2's SSD scan (tests only), in Mamba-2's own notation. Same
arguments and results as :func:`~hybridzoo.ops.chunk_ssd` without ``chunk_size``."""

from __future__ import annotations

import torch

from hybridzoo.ops._naive import run_steps


def naive_ssd(x, dt, A, B, C, **run):
    """``h_t = exp(dt_t A) h_{t-1} + dt_t x_t ⊗ B_t``, ``y_t = h_t C_t`` (head h reads group
    ``h // (H / G)``). ``run``: initial_state, output_final_state, seq_idx."""
    r = x.shape[2] // B.shape[2]

    def step(h, x_t, dt_t, a, b_t, c_t):
        b_t, c_t = (z.repeat_interleave(r, 1) for z in (b_t, c_t))  # [B, H, N]
        decay = torch.exp(dt_t * a)[..., None, None]  # [B, H, 1, 1]
        h = decay * h + (dt_t[..., None] * x_t)[..., :, None] * b_t[..., None, :]
        return h, (h * c_t[..., None, :]).sum(-1)  # [B, H, P]

    shape = lambda n: (n["B"], n["H"], n["P"], n["N"])  # noqa: E731
    return run_steps("chunk_ssd", step, (x, dt, A, B, C), shape, **run)
