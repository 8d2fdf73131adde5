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
backwards over the chunks, recomputes the scores and decay factors, and gets the decay gradient
from the identity ``∂L/∂b_t = q_t ⊙ ∂L/∂q_t - k_t ⊙ ∂L/∂k_t`` (over the decayed paths: each has
the form ``q_t k_s exp(b_t - b_s)``) plus, at a chunk's last position,
``rowsum(S_end ⊙ ∂L/∂S_end)``, summed backwards within the chunk. Only the inputs and the states
between chunks are saved for it.

Both passes walk the chunks in groups of about :data:`GROUP_ELEMENTS` elements per tensor (a
bounded working set: cache-friendly, and no large temporary allocations); the grouping changes
no result.
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
    dt = compute_dtype(q.dtype)
    s0 = q.new_zeros(b, h, d_k, d_v, dtype=dt) if initial_state is None else initial_state.to(dt)
    u = q.new_zeros(0, dtype=dt) if bonus is None else bonus.to(dt)
    o, s_end = _ChunkGLAFunction.apply(q, k, v, log_decay, u, s0, scale, chunk)
    return o.to(q.dtype), (s_end if output_final_state else None)


GROUP_ELEMENTS = 1 << 19
"""Chunks are processed in groups of about this many elements per ``[chunks, B, H, C, D]``
tensor (at least one chunk): a bounded working set, so that large inputs stay in cache and reuse
freed memory instead of faulting in fresh pages. It changes no result."""


class _Groups:
    """Cuts ``T`` positions into ``N`` chunks of ``C`` (the last zero-padded), and the chunks into
    groups; moves a group between ``[B, T, H, D]`` and ``[n, B, H, C, D]`` (chunks first)."""

    def __init__(self, shape: tuple[int, ...], d_v: int, chunk: int, dtype: torch.dtype) -> None:
        self.b, self.t, self.h, d_k = shape
        self.c, self.dtype = chunk, dtype
        self.n = -(-self.t // chunk)
        per_chunk = self.b * self.h * chunk * max(d_k, d_v, chunk)
        size = max(1, GROUP_ELEMENTS // per_chunk)
        self.bounds = [(i, min(i + size, self.n)) for i in range(0, self.n, size)]

    def load(self, x: torch.Tensor, c0: int, c1: int) -> torch.Tensor:
        """Chunks ``c0 .. c1-1`` of ``x [B, T, H, D]`` as ``[c1-c0, B, H, C, D]``, compute dtype."""
        t0, t1 = c0 * self.c, min(c1 * self.c, self.t)
        part = x[:, t0:t1].to(self.dtype)
        if t1 - t0 < (c1 - c0) * self.c:  # zero k (no input), zero log decay (no forgetting)
            part = F.pad(part, (0, 0, 0, 0, 0, (c1 - c0) * self.c - (t1 - t0)))
        part = part.reshape(self.b, c1 - c0, self.c, self.h, x.shape[-1])
        return part.permute(1, 0, 3, 2, 4).contiguous()

    def new(self, like: torch.Tensor, d: int) -> torch.Tensor:
        """An uninitialised ``[B, N·C, H, d]`` tensor (whole chunks; callers slice ``[:, :T]``)."""
        return like.new_empty(self.b, self.n * self.c, self.h, d)

    def store(self, out: torch.Tensor, part: torch.Tensor, c0: int, c1: int) -> None:
        """Write ``part [c1-c0, B, H, C, D]`` into chunks ``c0 .. c1-1`` of ``out`` (from new)."""
        out.view(self.b, self.n, self.c, self.h, -1)[:, c0:c1].copy_(part.permute(1, 0, 3, 2, 4))


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


class _Chunks:
    """One group of chunks ``[n, B, H, C, D]`` (compute dtype) and what both passes derive."""

    def __init__(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, u: torch.Tensor
    ) -> None:
        self.q, self.k, self.v, self.u = q, k, v, u
        self.bonus = u.numel() > 0
        self.cum = g.cumsum(-2)  # inclusive cumulative log decay within the chunk
        self.cum_q = self.cum - g if self.bonus else self.cum  # what the query at t has seen
        cum_last = self.cum[..., -1:, :]  # [n, B, H, 1, K]
        self.q_dec = torch.exp(self.cum_q)  # decay from the chunk start to each query (<= 1)
        self.k_dec = torch.exp(cum_last - self.cum)  # from each key to the chunk end (<= 1)
        self.chunk_dec = torch.exp(_t(cum_last))  # [n, B, H, K, 1] the whole chunk's decay

    def levels(self) -> list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per level m = C/2 .. 1, the factors around the reference point ``r`` (the end of the
        first half of each block of 2m positions): ``(m, e_q, e_k, q2, k1)`` with
        ``e_q = exp(b_q,t - r)`` for t in the second halves, ``e_k = exp(r - b_s)`` for s in the
        first halves (both <= 1), ``q2 = q ⊙ e_q`` and ``k1 = k ⊙ e_k``, each ``[..., C/2m, m, K]``.
        """
        c = self.q.shape[-2]
        out = []
        for m in (c >> i for i in range(1, c.bit_length())):
            cum2 = _halves(self.cum, m)
            ref = cum2[..., 0, m - 1 :, :]  # [..., C/2m, 1, K]
            e_q = torch.exp(_halves(self.cum_q, m)[..., 1, :, :] - ref)
            e_k = torch.exp(ref - cum2[..., 0, :, :])
            q2 = _halves(self.q, m)[..., 1, :, :] * e_q
            k1 = _halves(self.k, m)[..., 0, :, :] * e_k
            out.append((m, e_q, e_k, q2, k1))
        return out

    def scores(self, levels: list) -> torch.Tensor:
        """The intra-chunk scores ``A [n, B, H, C, C]`` (zero above the diagonal)."""
        n, b, h, c, _ = self.q.shape
        a = self.q.new_zeros(n, b, h, c, c)
        k_diag = self.k * self.u[:, None, :] if self.bonus else self.k
        a.diagonal(dim1=-2, dim2=-1).copy_((self.q * k_diag).sum(-1))  # undecayed diagonal
        for m, _, _, q2, k1 in levels:
            block = (q2 * k1).sum(-1, keepdim=True) if m == 1 else _bmm(q2, _t(k1))
            _block(a, m).copy_(block)
        return a


class _ChunkGLAFunction(torch.autograd.Function):
    """The chunked recurrence on ``[B, T, H, D]`` inputs, group of chunks by group of chunks,
    with a hand-written backward. Saves the inputs and the states between chunks only."""

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
        chunk: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        groups = _Groups(q.shape, v.shape[-1], chunk, s0.dtype)
        states = s0.new_empty(groups.n + 1, *s0.shape)  # [N+1, B, H, K, V] between chunks
        states[0] = s0
        o = groups.new(s0, v.shape[-1])  # [B, N·C, H, V]
        for c0, c1 in groups.bounds:
            x = _Chunks(*(groups.load(t, c0, c1) for t in (q, k, v, g)), u)
            # S_{i+1} = diag(exp(b_C)) S_i + (k ⊙ exp(b_C - b))ᵀ v
            increments = _bmm(_t(x.k * x.k_dec), x.v)  # [n, B, H, K, V]
            for i in range(c1 - c0):
                torch.addcmul(increments[i], x.chunk_dec[i], states[c0 + i], out=states[c0 + i + 1])
            o_g = torch.baddbmm(
                _bmm(x.scores(x.levels()), x.v).flatten(0, 2),
                (x.q * x.q_dec).flatten(0, 2),
                states[c0:c1].flatten(0, 2),
                beta=scale,
                alpha=scale,
            )  # [n·B·H, C, V]
            groups.store(o, o_g.view(*x.v.shape), c0, c1)
        ctx.save_for_backward(q, k, v, g, u, states)
        ctx.scale, ctx.chunk = scale, chunk
        return o[:, : groups.t], states[groups.n].clone()

    @staticmethod
    def backward(ctx: Any, do: torch.Tensor, ds_end: torch.Tensor | None) -> tuple[Any, ...]:
        q, k, v, g, u, states = ctx.saved_tensors
        groups = _Groups(q.shape, v.shape[-1], ctx.chunk, states.dtype)
        bonus = u.numel() > 0
        dq, dk, dg = (groups.new(states, q.shape[-1]) for _ in range(3))  # [B, N·C, H, K]
        dv = groups.new(states, v.shape[-1])
        du = torch.zeros_like(u) if bonus else None
        carry = torch.zeros_like(states[0]) if ds_end is None else ds_end.to(states.dtype)
        for c0, c1 in reversed(groups.bounds):
            x = _Chunks(*(groups.load(t, c0, c1) for t in (q, k, v, g)), u)
            do_g = groups.load(do, c0, c1).mul_(ctx.scale)  # [n, B, H, C, V]
            n = c1 - c0

            # the state gradients, backwards: D_i = q̂_iᵀ do_i + diag(exp(b_C)) D_{i+1}
            from_out = _bmm(_t(x.q * x.q_dec), do_g)  # [n, B, H, K, V]
            grads = states.new_empty(n + 1, *states.shape[1:])
            grads[n] = carry
            for i in range(n - 1, -1, -1):
                torch.addcmul(from_out[i], x.chunk_dec[i], grads[i + 1], out=grads[i])
            carry = grads[0]
            d_next = grads[1:]  # ∂L/∂(state after chunk i)

            # carried-state paths
            dq_g = _bmm(do_g, _t(states[c0:c1])).mul_(x.q_dec)  # [n, B, H, C, K]
            dk_g = _bmm(x.v, _t(d_next)).mul_(x.k_dec)
            dv_g = _bmm(x.k * x.k_dec, d_next)  # [n, B, H, C, V]

            # intra-chunk scores, level by level
            levels = x.levels()
            dv_g.add_(_bmm(_t(x.scores(levels)), do_g))
            da = _bmm(do_g, _t(x.v))  # [n, B, H, C, C] (only the causal part is read)
            for m, e_q, e_k, q2, k1 in levels:
                da_m = _block(da, m)  # [..., C/2m, m, m]
                if m == 1:
                    dq2, dk1 = da_m * k1, da_m * q2
                else:
                    da_m = da_m.contiguous()
                    dq2, dk1 = _bmm(da_m, k1), _bmm(_t(da_m), q2)
                _halves(dq_g, m)[..., 1, :, :].addcmul_(dq2, e_q)
                _halves(dk_g, m)[..., 0, :, :].addcmul_(dk1, e_k)

            # decay gradient: ∂L/∂b_q = q ⊙ dq, ∂L/∂b_k = -k ⊙ dk over the decayed paths, and
            # the state after each chunk at the chunk's last position
            db_q = x.q * dq_g
            db_k = x.k * dk_g
            db_k[..., -1, :] -= (d_next * states[c0 + 1 : c1 + 1]).sum(-1)
            if bonus:
                # the query's decay is exclusive: g_t reaches the queries after t only
                dg_g = _reverse_cumsum(db_q).sub_(db_q).sub_(_reverse_cumsum(db_k))
            else:
                dg_g = _reverse_cumsum(db_q.sub_(db_k))

            # the undecayed diagonal A_tt = q_t · (w ⊙ k_t), w = u (bonus) or 1
            da_diag = da.diagonal(dim1=-2, dim2=-1).unsqueeze(-1)  # [n, B, H, C, 1]
            if bonus:
                w = u[:, None, :]
                du.add_((da_diag * x.q * x.k).sum((0, 1, 3)))  # [H, K]
                dq_g.addcmul_(da_diag, w * x.k)
                dk_g.addcmul_(da_diag, w * x.q)
            else:
                dq_g.addcmul_(da_diag, x.k)
                dk_g.addcmul_(da_diag, x.q)
            for full, part in ((dq, dq_g), (dk, dk_g), (dv, dv_g), (dg, dg_g)):
                groups.store(full, part, c0, c1)
        grads_in = [t[:, : groups.t].to(x.dtype) for t, x in ((dq, q), (dk, k), (dv, v), (dg, g))]
        return *grads_in, du, carry, None, None


def _reverse_cumsum(x: torch.Tensor) -> torch.Tensor:
    """``y_t = Σ_{s>=t} x_s`` along dim -2 (within each chunk)."""
    return x.flip(-2).cumsum(-2).flip(-2)
