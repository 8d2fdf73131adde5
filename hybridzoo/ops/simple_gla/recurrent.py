"""One decoding step of the scalar-decay linear recurrence, updating the state in place."""

from __future__ import annotations

import torch

from hybridzoo.ops._common import resolve_scale, step_inputs


def simple_gla_step(
    q_t: torch.Tensor,
    k_t: torch.Tensor,
    v_t: torch.Tensor,
    log_decay_t: torch.Tensor,
    state: torch.Tensor,
    *,
    scale: float | None = None,
) -> torch.Tensor:
    """Advance :func:`~hybridzoo.ops.chunk_simple_gla` by one token; ``state`` is updated in place.

    ``S ← exp(g_t) S + k_tᵀ v_t`` and ``o_t = scale · q_t S`` (the new state).

    Args:
        q_t, k_t: ``[B, G, K]`` (G divides H; head h reads group ``h // (H / G)``).
        v_t: ``[B, H, V]``.
        log_decay_t: ``[B, H]``.
        state: ``[B, H, K, V]``, modified in place (the maths runs in its dtype). Inference only:
            autograd cannot differentiate through the in-place update.
        scale: output scale, default ``K ** -0.5``.

    Returns:
        ``o_t [B, H, V]`` in ``v_t``'s dtype.
    """
    n, (q, k, v, w) = step_inputs("chunk_simple_gla", (q_t, k_t, v_t, log_decay_t), state)
    scale = resolve_scale(scale, n["K"])
    b, g, r = n["B"], n["G"], n["H"] // n["G"]
    s = state.view(b, g, r, n["K"], n["V"])
    s.mul_(torch.exp(w).view(b, g, r, 1, 1))
    d_k, d_v = n["K"], n["V"]
    s.addcmul_(k.view(b, g, 1, d_k, 1), v.view(b, g, r, 1, d_v))
    o = torch.matmul(q.view(b, g, 1, 1, d_k), s).view(b, n["H"], d_v)  # [B, H, V]
    return (o * scale).to(v_t.dtype)
