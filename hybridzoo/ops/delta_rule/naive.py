"""The time-step reference of the gated delta rule (tests only): one step per token, as the
paper writes it. It runs in float64 for float64 inputs and in float32 otherwise."""

from __future__ import annotations

import torch

from hybridzoo.ops._checks import delta_sizes
from hybridzoo.ops._common import compute_dtype, document_starts, resolve_scale


def naive_gated_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor,
    beta: torch.Tensor,
    *,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    seq_idx: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``S_t = exp(g_t) (I - β_t k_t k_tᵀ) S_{t-1} + β_t k_t v_tᵀ``, ``o_t = scale · S_tᵀ q_t``,
    a loop over t; the state is zeroed first at a document start. Arguments as
    :func:`~hybridzoo.ops.chunk_gated_delta_rule` without ``chunk_size``."""
    n = delta_sizes(q, k, v, log_decay, beta, initial_state)
    scale = resolve_scale(scale, n["K"])
    dt = compute_dtype(v.dtype)
    starts = document_starts(seq_idx, n["B"], n["T"])
    s = v.new_zeros(n["B"], n["H"], n["K"], n["V"], dtype=dt)
    if initial_state is not None:
        s = initial_state.to(dt)
    if n["G"] != n["H"]:
        q, k = (x.repeat_interleave(n["H"] // n["G"], 2) for x in (q, k))
    eye = torch.eye(n["K"], dtype=dt, device=v.device)
    outs = []
    steps = zip(*(x.to(dt).unbind(1) for x in (q, k, v, log_decay, beta)), strict=True)
    for t, (q_t, k_t, v_t, g_t, b_t) in enumerate(steps):
        if starts is not None:
            s = torch.where(starts[:, t, None, None, None], 0.0, s)
        kk = k_t.unsqueeze(-1) * k_t.unsqueeze(-2)  # [B, H, K, K]
        transition = torch.exp(g_t)[..., None, None] * (eye - b_t[..., None, None] * kk)
        s = transition @ s + b_t[..., None, None] * k_t.unsqueeze(-1) * v_t.unsqueeze(-2)
        outs.append(scale * (s * q_t.unsqueeze(-1)).sum(-2))  # Sᵀ q: [B, H, V]
    return torch.stack(outs, 1).to(v.dtype), (s if output_final_state else None)
