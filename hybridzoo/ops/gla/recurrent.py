"""One decoding step of the gated linear recurrence, updating the state in place."""

from __future__ import annotations

import torch

from hybridzoo.ops._common import resolve_scale, step_inputs


def gla_step(
    q_t: torch.Tensor,
    k_t: torch.Tensor,
    v_t: torch.Tensor,
    log_decay_t: torch.Tensor,
    state: torch.Tensor,
    *,
    scale: float | None = None,
    bonus: torch.Tensor | None = None,
) -> torch.Tensor:
    """Advance the recurrence by one token; ``state`` is updated in place.

    ``S ← diag(exp(log_decay_t)) S + k_tᵀ v_t`` and ``o_t = scale · q_t S`` (new state); with
    ``bonus = u`` the RWKV-6 form ``o_t = scale · q_t (S_old + diag(u) k_tᵀ v_t)``.

    Args:
        q_t, k_t, log_decay_t: ``[B, H, K]``.
        v_t: ``[B, H, V]``.
        state: ``[B, H, K, V]``, modified in place (the math runs in its dtype). Meant for
            inference: autograd cannot differentiate through the in-place update.
        scale: output scale, default ``K ** -0.5``.
        bonus: ``[H, K]`` or None.

    Returns:
        ``o_t [B, H, V]`` in ``q_t``'s dtype. Nothing larger than ``[B, H, K]`` is allocated.
    """
    n, (q, k, v, g, u) = step_inputs("chunk_gla", (q_t, k_t, v_t, log_decay_t, bonus), state)
    scale = resolve_scale(scale, n["K"])
    if u is None:
        state.mul_(torch.exp(g).unsqueeze(-1)).addcmul_(k.unsqueeze(-1), v.unsqueeze(-2))
        o = torch.matmul(q.unsqueeze(-2), state).squeeze(-2)  # [B, H, V]
    else:
        o = torch.matmul(q.unsqueeze(-2), state).squeeze(-2)  # [B, H, V]
        o = o + (q * u * k).sum(-1, keepdim=True) * v
        state.mul_(torch.exp(g).unsqueeze(-1)).addcmul_(k.unsqueeze(-1), v.unsqueeze(-2))
    return (o * scale).to(q_t.dtype)
