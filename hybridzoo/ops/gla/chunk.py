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
        x = x.to(dt).transpose(1, 2)  # [B, H, T, D]
        if pad:
            x = F.pad(x, (0, 0, 0, pad))  # zero k (no input) and zero log decay (no forgetting)
        return x.reshape(b, h, n_chunks, chunk, x.shape[-1])  # [B, H, N, C, D]

    s0 = q.new_zeros(b, h, d_k, d_v, dtype=dt) if initial_state is None else initial_state.to(dt)
    u = q.new_zeros(0, dtype=dt) if bonus is None else bonus.to(dt)
    o, s_end = _ChunkGLAFunction.apply(
        to_chunks(q), to_chunks(k), to_chunks(v), to_chunks(log_decay), u, s0, bonus is not None
    )
    o = o.reshape(b, h, n_chunks * chunk, d_v)[:, :, :t_len].transpose(1, 2)  # [B, T, H, V]
    return (o * scale).to(q.dtype), (s_end if output_final_state else None)


def _halves(x: torch.Tensor, m: int) -> torch.Tensor:
    """``[B, H, N, C, D] -> [B, H, N, C/2m, 2, m, D]``: blocks of 2m positions, in two halves."""
    b, h, n, c, d = x.shape
    return x.view(b, h, n, c // (2 * m), 2, m, d)


def _block(a: torch.Tensor, m: int) -> torch.Tensor:
    """The "second half × first half" blocks of ``a [B, H, N, C, C]`` at level m (a view).

    Returns ``[B, H, N, C/2m, m, m]``: for each block of 2m positions, rows from its second half
    and columns from its first half.
    """
    b, h, n, c, _ = a.shape
    nb = c // (2 * m)
    blocks = a.view(b, h, n, nb, 2 * m, nb, 2 * m).diagonal(dim1=3, dim2=5)  # [..., 2m, 2m, nb]
    return blocks[:, :, :, m:, :m, :].permute(0, 1, 2, 5, 3, 4)


def _levels(c: int) -> list[int]:
    """Half-block sizes C/2, C/4, ..., 1."""
    return [c >> i for i in range(1, c.bit_length())]


class _Decays:
    """Cumulative log decays of chunked ``g [B, H, N, C, K]`` and the factors built from them."""

    def __init__(self, g: torch.Tensor, bonus: bool) -> None:
        self.b = g.cumsum(-2)  # [B, H, N, C, K] inclusive, within the chunk
        self.bq = self.b - g if bonus else self.b  # the decay the query at t has seen
        self.b_last = self.b[..., -1:, :]  # [B, H, N, 1, K]

    def query_decay(self) -> torch.Tensor:
        """``exp(b_q)`` [B, H, N, C, K]: from the chunk start to each query (<= 1)."""
        return torch.exp(self.bq)

    def key_decay(self) -> torch.Tensor:
        """``exp(b_C - b_s)`` [B, H, N, C, K]: from each key to the chunk end (<= 1)."""
        return torch.exp(self.b_last - self.b)

    def chunk_decay(self) -> torch.Tensor:
        """``exp(b_C)`` [B, H, N, K, 1]: the whole chunk's decay, applied to the state rows."""
        return torch.exp(self.b_last).transpose(-1, -2)

    def level(self, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Factors around the reference point of each block of 2m positions (both <= 1).

        Returns ``(exp(b_q,t - r) for t in the second halves, exp(r - b_s) for s in the first
        halves)``, each ``[B, H, N, C/2m, m, K]``.
        """
        b2 = _halves(self.b, m)
        ref = b2[:, :, :, :, 0, m - 1 :]  # [B, H, N, C/2m, 1, K] the end of each first half
        e_q = torch.exp(_halves(self.bq, m)[:, :, :, :, 1] - ref)
        e_k = torch.exp(ref - b2[:, :, :, :, 0])
        return e_q, e_k


class _ChunkGLAFunction(torch.autograd.Function):
    """Unscaled chunked recurrence on ``[B, H, N, C, D]`` inputs, with a hand-written backward."""

    @staticmethod
    def forward(
        ctx: Any,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        g: torch.Tensor,
        u: torch.Tensor,
        s0: torch.Tensor,
        bonus: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, h, n, c, _ = q.shape
        dec = _Decays(g, bonus)

        # the state passed between chunks (a loop over chunks, not over time steps)
        increments = (k * dec.key_decay()).transpose(-1, -2) @ v  # [B, H, N, K, V]
        state, starts = s0, []
        for a_n, inc_n in zip(dec.chunk_decay().unbind(2), increments.unbind(2), strict=True):
            starts.append(state)
            state = a_n * state + inc_n
        s_start = torch.stack(starts, 2)  # [B, H, N, K, V]: the state before each chunk

        # the intra-chunk scores A, level by level (the diagonal first)
        a = q.new_zeros(b, h, n, c, c)
        k_diag = k * u[None, :, None, None, :] if bonus else k
        a.diagonal(dim1=-2, dim2=-1).copy_((q * k_diag).sum(-1))
        for m in _levels(c):
            e_q, e_k = dec.level(m)
            q2 = _halves(q, m)[:, :, :, :, 1] * e_q  # [B, H, N, C/2m, m, K]
            k1 = _halves(k, m)[:, :, :, :, 0] * e_k
            _block(a, m).copy_(q2 @ k1.transpose(-1, -2))

        o = torch.baddbmm(
            (a @ v).flatten(0, 2), (q * dec.query_decay()).flatten(0, 2), s_start.flatten(0, 2)
        ).view(b, h, n, c, -1)  # [B, H, N, C, V]
        ctx.save_for_backward(q, k, v, g, u, s_start, state, a)
        ctx.bonus = bonus
        return o, state

    @staticmethod
    def backward(ctx: Any, do: torch.Tensor, ds_end: torch.Tensor | None) -> tuple[Any, ...]:
        q, k, v, g, u, s_start, s_end, a = ctx.saved_tensors
        bonus = ctx.bonus
        c = q.shape[3]
        dec = _Decays(g, bonus)
        do = do.contiguous()
        if ds_end is None:
            ds_end = torch.zeros_like(s_end)

        # the state gradient, backwards over the chunks: D_n = q̂_nᵀ do_n + a_n D_{n+1}
        q_dec = dec.query_decay()
        from_out = (q * q_dec).transpose(-1, -2) @ do  # [B, H, N, K, V]
        grad, grads_next = ds_end, []
        for a_n, f_n in zip(
            reversed(dec.chunk_decay().unbind(2)), reversed(from_out.unbind(2)), strict=True
        ):
            grads_next.append(grad)
            grad = f_n + a_n * grad
        ds0 = grad
        d_next = torch.stack(grads_next[::-1], 2)  # [B, H, N, K, V]: ∂L/∂(state after chunk n)

        # carried-state paths
        k_dec = dec.key_decay()
        dq = (do @ s_start.transpose(-1, -2)).mul_(q_dec)  # [B, H, N, C, K]
        dk = (v @ d_next.transpose(-1, -2)).mul_(k_dec)
        dv = (k * k_dec) @ d_next  # [B, H, N, C, V]
        dv.add_(a.transpose(-1, -2) @ do)

        # intra-chunk scores, level by level
        da = do @ v.transpose(-1, -2)  # [B, H, N, C, C] (only the causal part is read)
        for m in _levels(c):
            e_q, e_k = dec.level(m)
            da_m = _block(da, m)  # [B, H, N, C/2m, m, m]
            q2 = _halves(q, m)[:, :, :, :, 1] * e_q
            k1 = _halves(k, m)[:, :, :, :, 0] * e_k
            _halves(dq, m)[:, :, :, :, 1].add_((da_m @ k1).mul_(e_q))
            _halves(dk, m)[:, :, :, :, 0].add_((da_m.transpose(-1, -2) @ q2).mul_(e_k))

        # decay gradient: ∂L/∂b_q = q ⊙ dq, ∂L/∂b_k = -k ⊙ dk over the decayed paths, and the
        # state after each chunk at the chunk's last position
        s_next = torch.cat([s_start[:, :, 1:], s_end.unsqueeze(2)], 2)  # [B, H, N, K, V]
        db_q = q * dq
        db_k = -(k * dk)
        db_k[..., -1, :] += (d_next * s_next).sum(-1)
        if bonus:
            # the query's decay is exclusive: g_t reaches the queries after t only
            dg = _reverse_cumsum(db_k).add_(_reverse_cumsum(db_q)).sub_(db_q)
        else:
            dg = _reverse_cumsum(db_q.add_(db_k))

        # the undecayed diagonal A_tt = q_t · (w ⊙ k_t), w = u (bonus) or 1
        da_diag = da.diagonal(dim1=-2, dim2=-1).unsqueeze(-1)  # [B, H, N, C, 1]
        if bonus:
            w = u[None, :, None, None, :]
            du = (da_diag * q * k).sum((0, 2, 3))  # [H, K]
            dq.add_(da_diag * w * k)
            dk.add_(da_diag * w * q)
        else:
            du = None
            dq.add_(da_diag * k)
            dk.add_(da_diag * q)
        return dq, dk, dv, dg, du, ds0, None


def _reverse_cumsum(x: torch.Tensor) -> torch.Tensor:
    """``y_t = Σ_{s>=t} x_s`` along dim -2 (within each chunk)."""
    return x.flip(-2).cumsum(-2).flip(-2)
