"""The time-step reference of the gated delta rule (tests only): one step per token, as the paper
writes it. Same arguments and results as :func:`~hybridzoo.ops.chunk_gated_delta_rule` without
``chunk_size``."""

from __future__ import annotations

import torch

from hybridzoo.ops._common import resolve_scale
from hybridzoo.ops._naive import run_steps


def naive_gated_delta_rule(q, k, v, log_decay, beta, *, scale=None, **run):
    """``S_t = exp(g_t) (I - β_t k_t k_tᵀ) S_{t-1} + β_t k_t v_tᵀ``, ``o_t = scale · S_tᵀ q_t``
    (value head h reads query/key head ``h // (H / G)``). ``run``: initial_state,
    output_final_state, seq_idx."""
    scale = resolve_scale(scale, q.shape[-1])
    r = v.shape[2] // q.shape[2]
    eye = torch.eye(q.shape[-1], dtype=torch.float64 if v.dtype == torch.float64 else None)

    def step(s, q_t, k_t, v_t, g_t, b_t):
        q_t, k_t = (x.repeat_interleave(r, 1) for x in (q_t, k_t))  # [B, H, K]
        kk = k_t.unsqueeze(-1) * k_t.unsqueeze(-2)  # [B, H, K, K]
        transition = torch.exp(g_t)[..., None, None] * (eye.to(s) - b_t[..., None, None] * kk)
        s = transition @ s + b_t[..., None, None] * k_t.unsqueeze(-1) * v_t.unsqueeze(-2)
        return s, scale * (s * q_t.unsqueeze(-1)).sum(-2)  # Sᵀ q: [B, H, V]

    shape = lambda n: (n["B"], n["H"], n["K"], n["V"])  # noqa: E731
    return run_steps("chunk_gated_delta_rule", step, (q, k, v, log_decay, beta), shape, **run)
