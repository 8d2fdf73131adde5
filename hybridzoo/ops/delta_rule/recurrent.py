"""One decoding step of the gated delta rule, updating the state in place."""

from __future__ import annotations

import torch

from hybridzoo.ops._common import resolve_scale, step_inputs


def gated_delta_rule_step(
    q_t: torch.Tensor,
    k_t: torch.Tensor,
    v_t: torch.Tensor,
    log_decay_t: torch.Tensor,
    beta_t: torch.Tensor,
    state: torch.Tensor,
    *,
    scale: float | None = None,
) -> torch.Tensor:
    """Advance :func:`~hybridzoo.ops.chunk_gated_delta_rule` by one token, in place.

    ``S ← exp(g_t) S``, then ``S ← S + β_t k_t (v_t - Sᵀ k_t)ᵀ`` (the same as
    ``exp(g_t) (I - β_t k_t k_tᵀ) S + β_t k_t v_tᵀ``), and ``o_t = scale · Sᵀ q_t``.

    Args:
        q_t, k_t: ``[B, G, K]`` (G divides H; value head h reads head ``h // (H / G)``).
        v_t: ``[B, H, V]``. log_decay_t, beta_t: ``[B, H]``.
        state: ``[B, H, K, V]``, modified in place (the maths runs in its dtype). Inference only:
            autograd cannot differentiate through the in-place update.
        scale: output scale, default ``K ** -0.5``.

    Returns:
        ``o_t [B, H, V]`` in ``v_t``'s dtype.
    """
    tensors = (q_t, k_t, v_t, log_decay_t, beta_t)
    n, (q, k, v, g, b) = step_inputs("chunk_gated_delta_rule", tensors, state)
    scale = resolve_scale(scale, n["K"])
    if n["G"] != n["H"]:
        q, k = (x.repeat_interleave(n["H"] // n["G"], 1) for x in (q, k))
    state.mul_(torch.exp(g)[..., None, None])
    error = v - torch.matmul(k.unsqueeze(-2), state).squeeze(-2)  # v - Sᵀ k: [B, H, V]
    state.addcmul_(k.unsqueeze(-1), (b.unsqueeze(-1) * error).unsqueeze(-2))
    o = torch.matmul(q.unsqueeze(-2), state).squeeze(-2)  # Sᵀ q
    return (o * scale).to(v_t.dtype)
