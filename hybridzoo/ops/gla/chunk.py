"""Chunkwise-parallel gated linear recurrence (GLA, and RWKV-6 with a bonus), in plain PyTorch.

The sequence is cut into chunks of ``C`` positions. Writing ``b_t`` for the cumulative log decay
inside a chunk (``b_t = Σ_{s≤t} log_decay_s``, per key channel, non-increasing), the recurrence
``S_t = diag(exp(g_t)) S_{t-1} + k_tᵀ v_t`` unrolls to

- state carried between chunks: ``S_end = diag(exp(b_C)) S_0 + Σ_s (k_s ⊙ exp(b_C - b_s))ᵀ v_s``;
- output from the carried state: ``(q_t ⊙ exp(b_t)) S_0``;
- output from inside the chunk: ``Σ_{s≤t} [Σ_k q_tk k_sk exp(b_tk - b_sk)] v_s``.

Every exponent above is ``<= 0`` except in the intra-chunk weights, where the usual factorisation
``(q_t e^{b_t}) · (k_s e^{-b_s})`` overflows float32 once a chunk's decay passes ~88 nats (a
log decay of -30 per step does that in 3 steps). So the chunk is split again into sub-chunks of
``SUB_CHUNK`` positions (the secondary chunking of flash-linear-attention):

- a pair of different sub-chunks ``i > j`` factorises around the reference point ``r_i``, the
  cumulative decay just before sub-chunk ``i``: ``(q_t e^{b_t - r_i}) · (k_s e^{r_i - b_s})``,
  both factors ``<= 1`` (they can only underflow, where the true weight is smaller still);
- inside one sub-chunk the weights ``exp(b_t - b_s)`` (``t >= s``) are formed pair by pair,
  an elementwise ``[sub, sub, K]`` product per sub-chunk, exact for any decay.

With ``bonus`` (RWKV-6) the query sees ``S_{t-1}``: its cumulative decay is the exclusive one
``b_t - g_t``, the intra-chunk sum runs over ``s < t`` and ``(q_t ⊙ u ⊙ k_t) v_t`` is added.

Gradients come from autograd through these tensor operations (no Python loop over time steps,
only over chunks for the state passing, with ``unbind``/``stack``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hybridzoo.ops.gla._checks import check_sequence_args, compute_dtype, resolve_scale

SUB_CHUNK = 16
"""Positions per secondary chunk (the pairwise-exact blocks on the diagonal of each chunk)."""


def chunk_gla(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor,
    *,
    scale: float | None = None,
    bonus: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Gated linear recurrence over a whole sequence, chunkwise parallel.

    ``S_t = diag(exp(log_decay_t)) S_{t-1} + k_tᵀ v_t`` and ``o_t = scale · q_t S_t`` (GLA); with
    ``bonus = u`` the RWKV-6 form ``o_t = scale · q_t (S_{t-1} + diag(u) k_tᵀ v_t)``.

    Args:
        q, k, log_decay: ``[B, T, H, K]``. ``log_decay`` is the log of the forget gate (``<= 0``
            in GLA and RWKV-6); values down to about -30 per step are safe in float32.
        v: ``[B, T, H, V]``.
        scale: output scale, default ``K ** -0.5`` (RWKV-6 passes ``1.0``).
        bonus: ``[H, K]`` or None.
        initial_state: ``[B, H, K, V]`` or None (zeros).
        output_final_state: also return ``S_T``.
        chunk_size: positions per chunk: at most 16, or a multiple of 16 (the secondary chunk).
            A sequence shorter than one chunk runs as one shorter chunk.

    Returns:
        ``(o [B, T, H, V] in q's dtype, S_T [B, H, K, V] or None)``. The maths runs in float64
        for float64 inputs and in float32 otherwise; the state is returned in that dtype.
    """
    b, t_len, h, d_k, d_v = check_sequence_args(q, k, v, log_decay, bonus, initial_state)
    scale = resolve_scale(scale, d_k)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    sub = min(chunk_size, SUB_CHUNK)
    if chunk_size % sub:
        raise ValueError(
            f"chunk_size must be <= {SUB_CHUNK} or a multiple of {SUB_CHUNK}, got {chunk_size}"
        )
    sub = min(sub, t_len)
    chunk = min(chunk_size, -(-t_len // sub) * sub)
    n_chunks = -(-t_len // chunk)
    pad = n_chunks * chunk - t_len
    dt = compute_dtype(q.dtype)

    def to_chunks(x: torch.Tensor) -> torch.Tensor:
        x = x.to(dt).transpose(1, 2)  # [B, H, T, D]
        if pad:
            x = F.pad(x, (0, 0, 0, pad))  # zero k (no input) and zero log decay (no forgetting)
        return x.reshape(b, h, n_chunks, chunk, x.shape[-1])  # [B, H, N, C, D]

    if initial_state is None:
        s0 = q.new_zeros(b, h, d_k, d_v, dtype=dt)
    else:
        s0 = initial_state.to(dt)
    u = None if bonus is None else bonus.to(dt)
    o, s_end = _chunk_forward(
        to_chunks(q), to_chunks(k), to_chunks(v), to_chunks(log_decay), u, s0, sub
    )
    o = o.reshape(b, h, n_chunks * chunk, d_v)[:, :, :t_len].transpose(1, 2)  # [B, T, H, V]
    return (o * scale).to(q.dtype), (s_end if output_final_state else None)


def _chunk_forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    u: torch.Tensor | None,
    s0: torch.Tensor,
    sub: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The unscaled output ``[B, H, N, C, V]`` and the final state, from chunked inputs."""
    b, h, n, c, d_k = q.shape
    d_v = v.shape[-1]
    ns = c // sub
    b_in = g.cumsum(-2)  # [B, H, N, C, K] inclusive cumulative log decay within the chunk
    b_ex = b_in - g  # exclusive: decay accumulated before position t
    b_q = b_in if u is None else b_ex  # what the query at t has seen decay

    # state passed between chunks (a short loop over chunks, not over time steps)
    b_last = b_in[..., -1:, :]  # [B, H, N, 1, K]
    k_to_end = k * torch.exp(b_last - b_in)
    increments = k_to_end.transpose(-1, -2) @ v  # [B, H, N, K, V]
    decays = torch.exp(b_last).transpose(-1, -2)  # [B, H, N, K, 1]
    state = s0
    starts = []
    for a_n, inc_n in zip(decays.unbind(2), increments.unbind(2), strict=True):
        starts.append(state)
        state = a_n * state + inc_n
    s_start = torch.stack(starts, 2)  # [B, H, N, K, V] state before each chunk
    o = (q * torch.exp(b_q)) @ s_start  # [B, H, N, C, V]

    # inside a chunk: pairwise-exact diagonal sub-blocks
    blocks = (b, h, n, ns, sub)
    qs, ks, vs = q.view(*blocks, d_k), k.view(*blocks, d_k), v.view(*blocks, d_v)
    bqs, bins = b_q.view(*blocks, d_k), b_in.view(*blocks, d_k)
    pos = torch.arange(sub, device=q.device)
    causal = pos[:, None] >= pos[None, :] if u is None else pos[:, None] > pos[None, :]
    diff = bqs.unsqueeze(-2) - bins.unsqueeze(-3)  # [B, H, N, ns, sub, sub, K]
    w = torch.exp(diff.masked_fill(~causal[:, :, None], 0.0))
    a_diag = (qs.unsqueeze(-2) * w * ks.unsqueeze(-3)).sum(-1)  # [B, H, N, ns, sub, sub]
    o_intra = a_diag.masked_fill(~causal, 0.0) @ vs  # [B, H, N, ns, sub, V]

    # inside a chunk: sub-chunk i >= 1 against the positions before it, around r_i
    if ns > 1:
        width = (ns - 1) * sub  # columns any later sub-chunk can see
        ref = b_ex.view(*blocks, d_k)[:, :, :, 1:, 0]  # [B, H, N, ns-1, K] decay before sub-chunk i
        q_ref = qs[:, :, :, 1:] * torch.exp(bqs[:, :, :, 1:] - ref.unsqueeze(-2))  # <= 1
        cols = torch.arange(width, device=q.device)
        before = cols[None, :] < (torch.arange(1, ns, device=q.device) * sub)[:, None]
        diff_ref = ref.unsqueeze(-2) - b_in[:, :, :, None, :width]  # [B, H, N, ns-1, width, K]
        k_ref = k[:, :, :, None, :width] * torch.exp(diff_ref.masked_fill(~before[..., None], 0.0))
        a_off = (q_ref @ k_ref.transpose(-1, -2)).masked_fill(~before[:, None, :], 0.0)
        o_off = a_off @ v[:, :, :, None, :width]  # [B, H, N, ns-1, sub, V]
        o_intra = torch.cat([o_intra[:, :, :, :1], o_intra[:, :, :, 1:] + o_off], dim=3)

    o = o + o_intra.view(b, h, n, c, d_v)
    if u is not None:
        o = o + (q * u[None, :, None, None, :] * k).sum(-1, keepdim=True) * v
    return o, state
