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
    b, groups, heads, d_k, d_v = n["B"], n["G"], n["H"], n["K"], n["V"]
    r = heads // groups
    s = state.unflatten(1, (groups, r))  # [B, G, R, K, V], a view
    w = torch.exp(g).view(b, groups, r, -1, 1)  # [B, G, R, K or 1, 1]
    q5, k5, v5 = (
        q.view(b, groups, 1, 1, d_k),
        k.view(b, groups, 1, d_k, 1),
        v.view(b, groups, r, 1, d_v),
    )
    if u is None:
        s.mul_(w).addcmul_(k5, v5)
        o = torch.matmul(q5, s).view(b, heads, d_v)  # [B, H, V]
    else:
        o = torch.matmul(q5, s).view(b, heads, d_v)
        qk = q.view(b, groups, 1, d_k) * k.view(b, groups, 1, d_k) * u.view(groups, r, d_k)
        o = o + qk.sum(-1).view(b, heads, 1) * v
        s.mul_(w).addcmul_(k5, v5)
    return (o * scale).to(q_t.dtype)
