"""One decoding step of the gated linear recurrence, updating the state in place."""

from __future__ import annotations

import torch

from hybridzoo.ops._checks import gla_layout
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
    """Advance :func:`~hybridzoo.ops.chunk_gla` by one token; ``state`` is updated in place.

    ``S ← diag(exp(log_decay_t)) S + k_tᵀ v_t`` and ``o_t = scale · q_t S`` (new state); with
    ``bonus = u`` the RWKV-6 form ``o_t = scale · q_t (S_old + diag(u) k_tᵀ v_t)``.

    Args:
        q_t, k_t: ``[B, G, K]`` (G divides H; head h reads group ``h // (H / G)``).
        v_t: ``[B, H, V]``.
        log_decay_t: ``[B, H, K]`` (per key channel) or ``[B, H]`` (one per head).
        state: ``[B, H, K, V]``, modified in place (the maths runs in its dtype). Meant for
            inference: autograd cannot differentiate through the in-place update.
        scale: output scale, default ``K ** -0.5``.
        bonus: ``[H, K]`` or None.

    Returns:
        ``o_t [B, H, V]`` in ``q_t``'s dtype. Nothing larger than ``[B, H, K]`` is allocated.
    """
    layout = gla_layout(log_decay_t, step=True)
    n, (q, k, v, g, u) = step_inputs(layout, (q_t, k_t, v_t, log_decay_t, bonus), state)
    scale = resolve_scale(scale, n["K"])
    w = torch.exp(g).unsqueeze(-1) if g.dim() == 3 else torch.exp(g)[..., None, None]
    r = n["H"] // n["G"]
    if r > 1:  # groups of R heads: [B, G, R, ...] views, q and k broadcast over R
        q, k, v, u = q.unsqueeze(2), k.unsqueeze(2), v.unflatten(1, (-1, r)), _grouped(u, r)
        state, w = state.unflatten(1, (-1, r)), w.unflatten(1, (-1, r))
    if u is None:
        state.mul_(w).addcmul_(k.unsqueeze(-1), v.unsqueeze(-2))
        o = torch.matmul(q.unsqueeze(-2), state).squeeze(-2)  # [B, (G, R,) V]
    else:
        o = torch.matmul(q.unsqueeze(-2), state).squeeze(-2)
        o = o + (q * u * k).sum(-1, keepdim=True) * v
        state.mul_(w).addcmul_(k.unsqueeze(-1), v.unsqueeze(-2))
    o = o * scale
    return (o.flatten(1, 2) if r > 1 else o).to(q_t.dtype)


def _grouped(u: torch.Tensor | None, r: int) -> torch.Tensor | None:
    return None if u is None else u.unflatten(0, (-1, r))  # [G, R, K]
