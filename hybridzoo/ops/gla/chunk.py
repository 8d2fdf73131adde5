"""Chunkwise-parallel gated linear recurrence (GLA, and RWKV-6 with a bonus), in plain PyTorch.

The sequence is cut into chunks of ``C`` positions. Writing ``b_t`` for the cumulative log decay
inside a chunk (``b_t = Σ_{s≤t} g_s``, per key channel, non-increasing since ``g <= 0``), the
recurrence ``S_t = diag(exp(g_t)) S_{t-1} + k_tᵀ v_t`` unrolls to

- the state carried between chunks:
  ``S_end = diag(exp(b_C)) S_0 + Σ_s (k_s ⊙ exp(b_C - b_s))ᵀ v_s``;
- the output from the carried state: ``(q_t ⊙ exp(b_t)) S_0``;
- the output from inside the chunk: ``Σ_{s≤t} A_ts v_s``, with
  ``A_ts = Σ_k q_tk k_sk exp(b_tk - b_sk)``.

Every exponent above is ``<= 0`` except in ``A``, where the usual factorisation
``(q_t e^{b_t}) · (k_s e^{-b_s})`` overflows float32 once a chunk's decay passes ~88 nats (a log
decay of -30 per step gets there in 3 steps). So ``A`` is built from secondary chunks, by halving:
the chunk splits into two halves, the block "second half × first half" factorises around the
reference point ``r`` = the cumulative decay at the end of the first half,
``A_ts = (q_t e^{b_t - r}) · (k_s e^{r - b_s})`` with both factors ``<= 1`` (they can only
underflow, where the true weight is smaller still), and each half splits again, down to single
positions, whose diagonal ``A_tt = q_t · k_t`` needs no decay. That is ``log2(C)`` levels of
matmuls and ``O(C·K)`` elementwise work per level, exact for any decay strength.

With ``bonus`` (RWKV-6) the query sees ``S_{t-1}``: its cumulative decay is the exclusive one
``b_t - g_t``, and the diagonal of ``A`` is ``q_t · (u ⊙ k_t)`` instead of ``q_t · k_t``.

The backward pass is written by hand (:class:`_ChunkGLAFunction`): it runs the state gradient
backwards over the chunks, recomputes the decay factors level by level, and gets the decay
gradient from the identity ``∂L/∂b_t = q_t ⊙ ∂L/∂q_t - k_t ⊙ ∂L/∂k_t`` (over the decayed paths:
each has the form ``q_t k_s exp(b_t - b_s)``) plus, at a chunk's last position,
``rowsum(S_end ⊙ ∂L/∂S_end)``, summed backwards within the chunk.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from hybridzoo.ops.gla._checks import check_sequence_args, compute_dtype, resolve_scale


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
            in GLA and RWKV-6); any strength is safe in float32 (tested down to -30 per step).
        v: ``[B, T, H, V]``.
        scale: output scale, default ``K ** -0.5`` (RWKV-6 passes ``1.0``).
        bonus: ``[H, K]`` or None.
        initial_state: ``[B, H, K, V]`` or None (zeros).
        output_final_state: also return ``S_T``.
        chunk_size: positions per chunk, a power of two. A sequence shorter than one chunk runs
            as one chunk of the next power of two >= T; the last chunk is zero-padded.

    Returns:
        ``(o [B, T, H, V] in q's dtype, S_T [B, H, K, V] or None)``. The maths runs in float64
        for float64 inputs and in float32 otherwise; the state is returned in that dtype.
        Differentiable with respect to q, k, v, log_decay, bonus and initial_state.
    """
    b, t_len, h, d_k, d_v = check_sequence_args(q, k, v, log_decay, bonus, initial_state)
    scale = resolve_scale(scale, d_k)
    if (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, int)
        or chunk_size < 1
        or chunk_size & (chunk_size - 1)
    ):
        raise ValueError(f"chunk_size must be a power of two (1, 2, 4, ...), got {chunk_size!r}")
    chunk = min(chunk_size, 1 << (t_len - 1).bit_length())
    n_chunks = -(-t_len // chunk)
    pad = n_chunks * chunk - t_len
    dt = compute_dtype(q.dtype)

    def to_chunks(x: torch.Tensor) -> torch.Tensor:
        x = x.to(dt)
        if pad:
            x = F.pad(x, (0, 0, 0, 0, 0, pad))  # zero k (no input), zero log decay (no forgetting)
        x = x.view(b, n_chunks, chunk, h, x.shape[-1])
        return x.permute(1, 0, 3, 2, 4).contiguous()  # [N, B, H, C, D]

    s0 = q.new_zeros(b, h, d_k, d_v, dtype=dt) if initial_state is None else initial_state.to(dt)
    u = q.new_zeros(0, dtype=dt) if bonus is None else bonus.to(dt)
    o, s_end = _ChunkGLAFunction.apply(
        to_chunks(q), to_chunks(k), to_chunks(v), to_chunks(log_decay), u, s0, scale
    )
    o = o.permute(1, 0, 3, 2, 4).reshape(b, n_chunks * chunk, h, d_v)  # [B, N·C, H, V]
    return o[:, :t_len].to(q.dtype), (s_end if output_final_state else None)


def _bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batched ``a [..., M, K] @ b [..., K, N]`` through one ``torch.bmm`` (no copy of operands
    whose batch dims merge, e.g. transposed views of contiguous tensors)."""
    lead = a.shape[:-2]
    out = torch.bmm(a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:]))
    return out.view(*lead, a.shape[-2], b.shape[-1])


def _t(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(-1, -2)


def _halves(x: torch.Tensor, m: int) -> torch.Tensor:
    """``[..., C, D] -> [..., C/2m, 2, m, D]``: blocks of 2m positions, in two halves."""
    *lead, c, d = x.shape
    return x.view(*lead, c // (2 * m), 2, m, d)


def _block(a: torch.Tensor, m: int) -> torch.Tensor:
    """The "second half × first half" blocks of scores ``a [..., C, C]`` at level m (a view).

    Returns ``[..., C/2m, m, m]``: for each block of 2m positions, rows from its second half and
    columns from its first half.
    """
    *lead, c, _ = a.shape
    nb = c // (2 * m)
    blocks = a.view(*lead, nb, 2 * m, nb, 2 * m).diagonal(dim1=-4, dim2=-2)  # [..., 2m, 2m, nb]
    return blocks[..., m:, :m, :].movedim(-1, -3)


def _levels(c: int) -> list[int]:
    """Half-block sizes C/2, C/4, ..., 1."""
    return [c >> i for i in range(1, c.bit_length())]


def _level_factors(
    b: torch.Tensor, bq: torch.Tensor, m: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Factors around the reference point of each block of 2m positions (both <= 1).

    ``b``, ``bq``: inclusive and query cumulative log decays ``[..., C, K]``. Returns
    ``(exp(bq_t - r) for t in the second halves, exp(r - b_s) for s in the first halves)``, each
    ``[..., C/2m, m, K]``, where ``r`` is ``b`` at the end of the first half.
    """
    b2 = _halves(b, m)
    ref = b2[..., 0, m - 1 :, :]  # [..., C/2m, 1, K]
    e_q = torch.exp(_halves(bq, m)[..., 1, :, :] - ref)
    e_k = torch.exp(ref - b2[..., 0, :, :])
    return e_q, e_k


def _scores_and_grads(
    q: torch.Tensor,
    k: torch.Tensor,
    b: torch.Tensor,
    bq: torch.Tensor,
    m: int,
    da: torch.Tensor | None = None,
    dq: torch.Tensor | None = None,
    dk: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """Level m of the intra-chunk scores: their block ``[..., C/2m, m, m]`` (forward), or, given
    the score gradient ``da [..., C, C]``, accumulate into ``dq``, ``dk`` (backward)."""
    e_q, e_k = _level_factors(b, bq, m)
    q2 = _halves(q, m)[..., 1, :, :] * e_q  # [..., C/2m, m, K]
    k1 = _halves(k, m)[..., 0, :, :] * e_k
    if da is None:
        if m == 1:
            return (q2 * k1).sum(-1, keepdim=True)
        return _bmm(q2, _t(k1))
    da_m = _block(da, m)  # [..., C/2m, m, m]
    if m == 1:
        dq2, dk1 = da_m * k1, da_m * q2
    else:
        da_m = da_m.contiguous()
        dq2, dk1 = _bmm(da_m, k1), _bmm(_t(da_m), q2)
    _halves(dq, m)[..., 1, :, :].addcmul_(dq2, e_q)
    _halves(dk, m)[..., 0, :, :].addcmul_(dk1, e_k)
    return None


class _ChunkGLAFunction(torch.autograd.Function):
    """The chunked recurrence on ``[N, B, H, C, D]`` inputs, with a hand-written backward.

    Chunks lead so that the states between chunks, ``[N+1, B, H, K, V]``, are written in place.
    """

    @staticmethod
    def forward(
        ctx: Any,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        g: torch.Tensor,
        u: torch.Tensor,
        s0: torch.Tensor,
        scale: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n, b, h, c, d_k = q.shape
        bonus = u.numel() > 0
        cum = g.cumsum(-2)  # [N, B, H, C, K] inclusive cumulative log decay within the chunk
        cum_q = cum - g if bonus else cum  # the decay the query at t has seen
        cum_last = cum[..., -1:, :]  # [N, B, H, 1, K]

        # the states between chunks: S_{n+1} = diag(exp(b_C)) S_n + (k ⊙ exp(b_C - b))ᵀ v
        increments = _bmm(_t(k * torch.exp(cum_last - cum)), v)  # [N, B, H, K, V]
        chunk_decay = torch.exp(_t(cum_last))  # [N, B, H, K, 1]
        states = q.new_empty(n + 1, *s0.shape)  # [N+1, B, H, K, V]
        states[0] = s0
        for i in range(n):
            torch.addcmul(increments[i], chunk_decay[i], states[i], out=states[i + 1])

        # the intra-chunk scores A, level by level (the undecayed diagonal first)
        a = q.new_zeros(n, b, h, c, c)
        k_diag = k * u[:, None, :] if bonus else k
        a.diagonal(dim1=-2, dim2=-1).copy_((q * k_diag).sum(-1))
        for m in _levels(c):
            _block(a, m).copy_(_scores_and_grads(q, k, cum, cum_q, m))

        o = torch.baddbmm(
            _bmm(a, v).flatten(0, 2),
            (q * torch.exp(cum_q)).flatten(0, 2),
            states[:n].flatten(0, 2),
            beta=scale,
            alpha=scale,
        ).view(n, b, h, c, -1)  # [N, B, H, C, V]
        ctx.save_for_backward(q, k, v, cum, g if bonus else None, u, states, a)
        ctx.scale = scale
        return o, states[n]

    @staticmethod
    def backward(ctx: Any, do: torch.Tensor, ds_end: torch.Tensor | None) -> tuple[Any, ...]:
        q, k, v, cum, g, u, states, a = ctx.saved_tensors
        bonus = g is not None
        cum_q = cum - g if bonus else cum
        cum_last = cum[..., -1:, :]
        n = q.shape[0]
        do = torch.mul(do, ctx.scale, out=do.new_empty(do.shape))  # contiguous

        # the state gradients, backwards: D_n = q̂_nᵀ do_n + diag(exp(b_C)) D_{n+1}
        q_dec = torch.exp(cum_q)
        from_out = _bmm(_t(q * q_dec), do)  # [N, B, H, K, V]
        chunk_decay = torch.exp(_t(cum_last))
        grads = torch.empty_like(states)  # [N+1, B, H, K, V]: ∂L/∂(state before chunk i)
        if ds_end is None:
            grads[n] = 0
        else:
            grads[n] = ds_end
        for i in range(n - 1, -1, -1):
            torch.addcmul(from_out[i], chunk_decay[i], grads[i + 1], out=grads[i])
        d_next = grads[1:]  # ∂L/∂(state after chunk i)

        # carried-state paths
        k_dec = torch.exp(cum_last - cum)
        dq = _bmm(do, _t(states[:n])).mul_(q_dec)  # [N, B, H, C, K]
        dk = _bmm(v, _t(d_next)).mul_(k_dec)
        dv = _bmm(k * k_dec, d_next)  # [N, B, H, C, V]
        dv.add_(_bmm(_t(a), do))

        # intra-chunk scores, level by level
        da = _bmm(do, _t(v))  # [N, B, H, C, C] (only the causal part is read)
        for m in _levels(q.shape[-2]):
            _scores_and_grads(q, k, cum, cum_q, m, da, dq, dk)

        # decay gradient: ∂L/∂b_q = q ⊙ dq, ∂L/∂b_k = -k ⊙ dk over the decayed paths, and the
        # state after each chunk at the chunk's last position
        db_q = q * dq
        db_k = k * dk
        db_k[..., -1, :] -= (d_next * states[1:]).sum(-1)
        if bonus:
            # the query's decay is exclusive: g_t reaches the queries after t only
            dg = _reverse_cumsum(db_q).sub_(db_q).sub_(_reverse_cumsum(db_k))
        else:
            dg = _reverse_cumsum(db_q.sub_(db_k))

        # the undecayed diagonal A_tt = q_t · (w ⊙ k_t), w = u (bonus) or 1
        da_diag = da.diagonal(dim1=-2, dim2=-1).unsqueeze(-1)  # [N, B, H, C, 1]
        if bonus:
            w = u[:, None, :]
            du = (da_diag * q * k).sum((0, 1, 3))  # [H, K]
            dq.addcmul_(da_diag, w * k)
            dk.addcmul_(da_diag, w * q)
        else:
            du = None
            dq.addcmul_(da_diag, k)
            dk.addcmul_(da_diag, q)
        return dq, dk, dv, dg, du, grads[0], None


def _reverse_cumsum(x: torch.Tensor) -> torch.Tensor:
    """``y_t = Σ_{s>=t} x_s`` along dim -2 (within each chunk)."""
    return x.flip(-2).cumsum(-2).flip(-2)
