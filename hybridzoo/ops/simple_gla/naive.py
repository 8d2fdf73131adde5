"""The time-step reference of the scalar-decay linear recurrence (tests only): one step per token.

It runs in float64 for float64 inputs and in float32 otherwise.
"""

from __future__ import annotations

import torch

from hybridzoo.ops._checks import simple_gla_sizes
from hybridzoo.ops._common import compute_dtype, document_starts, resolve_scale


def naive_simple_gla(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor,
    *,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    seq_idx: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``S_t = exp(g_t) S_{t-1} + k_tᵀ v_t``, ``o_t = scale · q_t S_t``, a loop over t.

    Same arguments and results as :func:`~hybridzoo.ops.chunk_simple_gla` without
    ``chunk_size``. At a document start (``seq_idx`` changes) the state is zeroed first.
    """
    n = simple_gla_sizes(q, k, v, log_decay, initial_state)
    b, h, d_k, d_v, r = n["B"], n["H"], n["K"], n["V"], n["H"] // n["G"]
    scale = resolve_scale(scale, d_k)
    dt = compute_dtype(v.dtype)
    starts = document_starts(seq_idx, b, n["T"])
    state = q.new_zeros(b, h, d_k, d_v, dtype=dt) if initial_state is None else initial_state.to(dt)
    outputs = []
    qs, ks = (x.to(dt).repeat_interleave(r, 2).unbind(1) for x in (q, k))  # [B, H, K] per t
    vs, gs = (x.to(dt).unbind(1) for x in (v, log_decay))
    for t, (q_t, k_t, v_t, g_t) in enumerate(zip(qs, ks, vs, gs, strict=True)):
        if starts is not None:
            state = torch.where(starts[:, t, None, None, None], 0.0, state)
        kv = k_t.unsqueeze(-1) * v_t.unsqueeze(-2)  # [B, H, K, V]
        state = torch.exp(g_t)[..., None, None] * state + kv
        outputs.append((q_t.unsqueeze(-1) * state).sum(-2) * scale)
    o = torch.stack(outputs, dim=1).to(v.dtype)  # [B, T, H, V]
    return o, (state if output_final_state else None)
