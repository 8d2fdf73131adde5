"""The time-step reference of the gated linear recurrence (tests only): one step per token, as the
paper writes it, in float64 for float64 inputs and in float32 otherwise. Same arguments and
results as :func:`~hybridzoo.ops.chunk_gla` without ``chunk_size``."""

from __future__ import annotations

import torch

from hybridzoo.ops._checks import gla_layout
from hybridzoo.ops._common import resolve_scale
from hybridzoo.ops._naive import run_steps


def naive_gla(q, k, v, log_decay, *, scale=None, bonus=None, **run):
    """``S_t = diag(exp(g_t)) S_{t-1} + k_tᵀ v_t``, ``o_t = scale · q_t S_t``; with ``bonus = u``
    ``o_t = scale · q_t (S_{t-1} + diag(u) k_tᵀ v_t)``. Head h reads query/key group
    ``h // (H / G)``; a ``[B, T, H]`` decay is one per head. ``run``: initial_state,
    output_final_state, seq_idx."""
    scale = resolve_scale(scale, q.shape[-1])
    r = v.shape[2] // q.shape[2]

    def step(state, q_t, k_t, v_t, g_t, u):
        q_t, k_t = (x.repeat_interleave(r, 1) for x in (q_t, k_t))  # [B, H, K]
        decay = torch.exp(g_t if g_t.dim() == 3 else g_t.unsqueeze(-1))  # [B, H, K or 1]
        kv = k_t.unsqueeze(-1) * v_t.unsqueeze(-2)  # [B, H, K, V]
        read = state + u.unsqueeze(-1) * kv if u is not None else None
        state = decay.unsqueeze(-1) * state + kv
        o_t = (q_t.unsqueeze(-1) * (state if read is None else read)).sum(-2)  # [B, H, V]
        return state, o_t * scale

    shape = lambda n: (n["B"], n["H"], n["K"], n["V"])  # noqa: E731
    tensors = (q, k, v, log_decay, bonus)
    return run_steps(gla_layout(log_decay), step, tensors, shape, **run)
