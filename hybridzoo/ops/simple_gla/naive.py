"""The time-step reference of the scalar-decay linear recurrence (tests only): one step per
token. Same arguments and results as :func:`~hybridzoo.ops.chunk_simple_gla` without
``chunk_size``."""

from __future__ import annotations

import torch

from hybridzoo.ops._common import resolve_scale
from hybridzoo.ops._naive import run_steps


def naive_simple_gla(q, k, v, log_decay, *, scale=None, **run):
    """``S_t = exp(g_t) S_{t-1} + k_tᵀ v_t``, ``o_t = scale · q_t S_t`` (head h reads query/key
    group ``h // (H / G)``). ``run``: initial_state, output_final_state, seq_idx."""
    scale = resolve_scale(scale, q.shape[-1])
    r = v.shape[2] // q.shape[2]

    def step(state, q_t, k_t, v_t, g_t):
        q_t, k_t = (x.repeat_interleave(r, 1) for x in (q_t, k_t))  # [B, H, K]
        state = torch.exp(g_t)[..., None, None] * state + k_t.unsqueeze(-1) * v_t.unsqueeze(-2)
        return state, (q_t.unsqueeze(-1) * state).sum(-2) * scale

    shape = lambda n: (n["B"], n["H"], n["K"], n["V"])  # noqa: E731
    return run_steps("chunk_simple_gla", step, (q, k, v, log_decay), shape, **run)
