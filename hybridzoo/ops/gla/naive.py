"""The time-step reference of the gated linear recurrence: a plain loop that reads like the paper.

Slow on purpose (one step per token); the tests compare :func:`hybridzoo.ops.gla.chunk_gla` with
it. It runs in float64 for float64 inputs and in float32 otherwise.
"""

from __future__ import annotations

import torch

from hybridzoo.ops._checks import gla_sizes
from hybridzoo.ops._common import compute_dtype, document_starts, resolve_scale


def naive_gla(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor,
    *,
    scale: float | None = None,
    bonus: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    seq_idx: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Gated linear recurrence, one time step at a time.

    ``S_t = diag(exp(log_decay_t)) S_{t-1} + k_tᵀ v_t`` and ``o_t = scale · q_t S_t``; with
    ``bonus = u`` the RWKV-6 form ``o_t = scale · q_t (S_{t-1} + diag(u) k_tᵀ v_t)``.

    Args:
        q, k, log_decay: ``[B, T, H, K]``; ``log_decay <= 0`` is the log of the forget gate.
        v: ``[B, T, H, V]``.
        scale: output scale, default ``K ** -0.5``.
        bonus: ``[H, K]`` or None.
        initial_state: ``[B, H, K, V]`` or None (zeros).
        output_final_state: also return ``S_T``.
        seq_idx: ``[B, T]`` document numbers: the state is zeroed before a document's first step.

    Returns:
        ``(o [B, T, H, V] in q's dtype, S_T [B, H, K, V] in the compute dtype or None)``.

    Same signature as :func:`~hybridzoo.ops.gla.chunk_gla` except ``chunk_size`` (no chunks here).
    """
    n = gla_sizes(q, k, v, log_decay, bonus, initial_state)
    b, h, d_k, d_v = n["B"], n["H"], n["K"], n["V"]
    starts = document_starts(seq_idx, b, n["T"])
    scale = resolve_scale(scale, d_k)
    dt = compute_dtype(q.dtype)
    zeros = initial_state is None
    state = q.new_zeros(b, h, d_k, d_v, dtype=dt) if zeros else initial_state.to(dt)
    u = None if bonus is None else bonus.to(dt)
    outputs = []
    # unbind along time (never x[:, t] inside the loop: autograd would be O(T²) in memory)
    steps = zip(*(x.to(dt).unbind(1) for x in (q, k, v, log_decay)), strict=True)
    for t, (q_t, k_t, v_t, g_t) in enumerate(steps):  # [B, H, K], [B, H, K], [B, H, V], [B, H, K]
        if starts is not None:
            state = torch.where(starts[:, t, None, None, None], 0.0, state)
        kv = k_t.unsqueeze(-1) * v_t.unsqueeze(-2)  # [B, H, K, V]
        if u is None:
            state = torch.exp(g_t).unsqueeze(-1) * state + kv
            o_t = (q_t.unsqueeze(-1) * state).sum(-2)  # [B, H, V]
        else:
            o_t = (q_t.unsqueeze(-1) * (state + u.unsqueeze(-1) * kv)).sum(-2)
            state = torch.exp(g_t).unsqueeze(-1) * state + kv
        outputs.append(o_t * scale)
    o = torch.stack(outputs, dim=1).to(q.dtype)  # [B, T, H, V]
    return o, (state if output_final_state else None)
