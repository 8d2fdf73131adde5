"""Chunkwise-parallel gated linear recurrence (GLA, and RWKV-6 with a bonus), in plain PyTorch.

The sequence is cut into chunks of ``C`` positions; a path from the key at ``s`` to the query at
``t`` of one chunk carries the per-channel decay ``exp(Σ_{s<j<=t} g_j)`` (RWKV-6, whose query
reads the state before its own update: ``Σ_{s<j<t}``). With ``S_0`` the state entering a chunk:

- ``o_t = scale · (q_t ⊙ exp(Σ_{j<=t} g_j)) S_0 + scale · Σ_{s<=t} A_ts v_s`` (the sums from the
  chunk's start), ``A_ts = Σ_i q_ti k_si exp(Σ_{s<j<=t} g_ji)``, ``A_tt = q_t · k_t``
  (``q_t · (u ⊙ k_t)`` with the bonus ``u``);
- ``S_end = diag(exp(Σ_j g_j)) S_0 + Σ_s (k_s ⊙ exp(Σ_{s<j} g_j))ᵀ v_s``.

``A`` is never formed. At each level ``m`` of :mod:`hybridzoo.ops._common`'s blocks, the queries
of the odd segments carry ``q̃ = q ⊙ exp(decay from the block's midpoint)`` and the keys of the
even segments ``k̃ = k ⊙ exp(decay to the midpoint)``, both ``<= 1``, so the level's part of the
output is ``(q̃ k̃ᵀ) v`` for rows after the midpoint and columns before it. Going up one level
multiplies ``q̃`` (odd segments) and ``k̃`` (even segments) by the other half's total decay, a
factor per segment and channel: no exponential of a difference of cumulative sums (which loses
all precision once a strong decay has passed) and no overflow, for any decay (issue: log decays
of ``-exp(25)``). After the last level ``q̃`` and ``k̃`` are the decays from the chunk's start
and to its end, which the carried state needs. No output reads a later input.

The backward pass (:class:`_ChunkGLAFunction`) runs the state gradient backwards over the chunks,
recomputes the levels, and gets the decay gradient from the identity ``∂L/∂Q_t = q_t ⊙ ∂L/∂q_t``,
``∂L/∂K_s = -k_s ⊙ ∂L/∂k_s`` over the decayed paths (``Q``, ``K``: the cumulative decays seen by
queries and keys) plus ``rowsum(S_end ⊙ ∂L/∂S_end)`` at a chunk's end, summed backwards. Only
the inputs and the states between chunks are saved.

Both passes walk the chunks in groups of about ``GROUP_ELEMENTS`` elements per tensor (a bounded
working set); the grouping changes no result.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from hybridzoo.ops._checks import gla_layout
from hybridzoo.ops._common import DECAY_FLOOR, halves, levels, prepare
from hybridzoo.ops.gla.compiled import compiled_recurrence, resolve_backend
from hybridzoo.ops.gla.scalar import scalar_decay_chunks

GROUP_ELEMENTS = 1 << 19
"""Chunks are processed in groups of about this many elements per ``[chunks, B, H, C, D]``
tensor (at least one chunk). It changes no result."""


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
    seq_idx: torch.Tensor | None = None,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Gated linear recurrence over a whole sequence, chunkwise parallel.

    ``S_t = diag(exp(log_decay_t)) S_{t-1} + k_tᵀ v_t`` and ``o_t = scale · q_t S_t`` (GLA); with
    ``bonus = u`` the RWKV-6 form ``o_t = scale · q_t (S_{t-1} + diag(u) k_tᵀ v_t)``. The state
    ``S [K, V]`` has the key dimension first (``S[i, j]`` weighs ``k_i`` against ``v_j``). A
    ``[B, T, H]`` log decay is one scalar per head (simple GLA, RetNet, Mamba-2's SSD:
    ``S_t = exp(g_t) S_{t-1} + k_tᵀ v_t``), run by a cheaper chunked form.

    Args:
        q, k: ``[B, T, G, K]``; value head ``h`` reads query/key group ``h // (H / G)`` (``G``
            divides ``H``: ``G = H``, or shared groups as Mamba-2's B and C).
        v: ``[B, T, H, V]``.
        log_decay: ``[B, T, H, K]`` (a decay per key channel: GLA, RWKV-6) or ``[B, T, H]`` (one
            per head), the log of the forget gate (``<= 0``); exact for any strength, ``-inf``
            included (forget everything).
        scale: output scale, default ``K ** -0.5`` (RWKV-6 passes ``1.0``).
        bonus: ``[H, K]`` or None.
        initial_state: ``[B, H, K, V]`` or None (zeros); belongs to each row's first document.
        output_final_state: also return ``S_T``.
        chunk_size: positions per chunk, a power of two (changes speed only). A sequence shorter
            than one chunk runs as one chunk of the next power of two >= T.
        seq_idx: ``[B, T]`` integers, non-decreasing along T, numbering documents packed in a
            row: the state restarts from zero where it changes. None: one document per row.
        backend: ``"auto"`` (default: the compiled CPU kernel where it builds, else torch),
            ``"compiled"`` (the fused C++ recurrence, CPU; ``chunk_size`` is its checkpoint
            interval) or ``"torch"`` (the chunked form, any device). Same results.

    Returns:
        ``(o [B, T, H, V] in q's dtype, S_T [B, H, K, V] or None)``. The maths runs in float64
        for float64 inputs and in float32 otherwise; the state is returned in that dtype.
        Differentiable with respect to q, k, v, log_decay, bonus and initial_state.
    """
    tensors = (q, k, v, log_decay, bonus, initial_state)
    layout = gla_layout(log_decay)
    call = prepare(layout, tensors, q, scale, chunk_size, seq_idx, output_final_state)
    per_key = log_decay if layout == "chunk_gla" else log_decay.unsqueeze(-1)  # [B, T, H, 1]
    if resolve_backend(backend, q.device) == "compiled":
        return compiled_recurrence(call, q, k, v, per_key, bonus, initial_state)
    if layout != "chunk_gla" and bonus is None:
        return scalar_decay_chunks(call, q, k, v, log_decay, initial_state)
    r = call.n["H"] // call.n["G"]
    q, k = (x.repeat_interleave(r, dim=2) if r > 1 else x for x in (q, k))  # [B, T, H, K]
    s0 = call.initial(initial_state, q)
    u = q.new_zeros(0, dtype=call.dtype) if bonus is None else bonus.to(call.dtype)
    g = per_key.expand(*per_key.shape[:3], call.n["K"])
    o, s_end = _ChunkGLAFunction.apply(q, k, v, g, u, s0, call.scale, call.chunk, call.starts)
    return call.result(o, s_end)


class _Groups:
    """Cuts ``T`` positions into ``N`` chunks of ``C`` (the last zero-padded), and the chunks into
    groups; moves a group between ``[B, T, H, D]`` and ``[n, B, H, C, D]`` (chunks first)."""

    def __init__(self, shape: tuple[int, ...], d_v: int, chunk: int, dtype: torch.dtype) -> None:
        self.b, self.t, self.h, d_k = shape
        self.c, self.dtype = chunk, dtype
        self.n = -(-self.t // chunk)
        per_chunk = max(1, self.b * self.h * chunk * max(d_k, d_v, chunk))
        size = max(1, GROUP_ELEMENTS // per_chunk)
        self.bounds = [(i, min(i + size, self.n)) for i in range(0, self.n, size)]

    def load(self, x: torch.Tensor, c0: int, c1: int) -> torch.Tensor:
        """Chunks ``c0 .. c1-1`` of ``x [B, T, H, D]`` as ``[c1-c0, B, H, C, D]`` (compute dtype;
        zero padding: zero keys add nothing, zero log decays forget nothing). Always a fresh
        tensor (the caller may modify it in place)."""
        t0, t1 = c0 * self.c, min(c1 * self.c, self.t)
        part = x[:, t0:t1].to(self.dtype)
        if t1 - t0 < (c1 - c0) * self.c:
            part = F.pad(part, (0, 0, 0, 0, 0, (c1 - c0) * self.c - (t1 - t0)))
        part = part.reshape(self.b, c1 - c0, self.c, self.h, x.shape[-1])
        return part.permute(1, 0, 3, 2, 4).clone(memory_format=torch.contiguous_format)

    def load_starts(self, starts: torch.Tensor | None, c0: int, c1: int) -> torch.Tensor | None:
        """Document starts of chunks ``c0 .. c1-1`` as ``[n, B, 1, C, 1]`` bool (or None)."""
        if starts is None:
            return None
        part = starts[:, c0 * self.c : c1 * self.c]
        part = F.pad(part, (0, (c1 - c0) * self.c - part.shape[1]))
        return part.view(self.b, c1 - c0, 1, self.c, 1).transpose(0, 1)

    def new(self, like: torch.Tensor, d: int) -> torch.Tensor:
        """An uninitialised ``[B, N·C, H, d]`` tensor (whole chunks; callers slice ``[:, :T]``)."""
        return like.new_empty(self.b, self.n * self.c, self.h, d)

    def store(self, out: torch.Tensor, part: torch.Tensor, c0: int, c1: int) -> None:
        """Write ``part [c1-c0, B, H, C, D]`` into chunks ``c0 .. c1-1`` of ``out`` (from new)."""
        out.view(self.b, self.n, self.c, self.h, out.shape[-1])[:, c0:c1].copy_(
            part.permute(1, 0, 3, 2, 4)
        )


def _bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batched ``a [..., M, K] @ b [..., K, N]`` through one ``torch.bmm``."""
    lead = a.shape[:-2]
    batch = a.shape[:-2].numel()
    out = torch.bmm(a.reshape(batch, *a.shape[-2:]), b.reshape(batch, *b.shape[-2:]))
    return out.view(*lead, a.shape[-2], b.shape[-1])


def _t(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(-1, -2)


def _odd(x: torch.Tensor, m: int) -> torch.Tensor:
    """The second halves (odd m-segments) of x's blocks of 2m positions: ``[..., C/2m, m, D]``."""
    return halves(x, m)[..., 1, :, :]


def _even(x: torch.Tensor, m: int) -> torch.Tensor:
    """The first halves (even m-segments) of x's blocks of 2m positions."""
    return halves(x, m)[..., 0, :, :]


class _Chunks:
    """One group of chunks ``[n, B, H, C, D]`` (compute dtype) and its decay chain.

    ``floored`` marks the log decays raised to the floor or reset at a document start (their
    gradient is zero). ``q1`` is the query before the first level: ``q ⊙ exp(g)`` (the query
    sees its own position's decay) or, with the bonus, ``q`` with zeros at document starts.
    """

    def __init__(
        self,
        groups: _Groups,
        inputs: tuple[torch.Tensor, ...],
        c0: int,
        c1: int,
        u: torch.Tensor,
        starts: torch.Tensor | None,
    ) -> None:
        self.q, self.k, self.v, g = (groups.load(t, c0, c1) for t in inputs)
        self.u, self.bonus = u, u.numel() > 0
        self.floored = g < DECAY_FLOOR
        self.start = groups.load_starts(starts, c0, c1)
        if self.start is not None:
            self.floored |= self.start
        self.w = torch.exp(g.masked_fill_(self.floored, DECAY_FLOOR))  # exp(-inf) -> 0
        if not self.bonus:
            self.q1 = self.q * self.w
        else:  # the bonus query reads the state before its position: only a reset hides it
            self.q1 = self.q if self.start is None else self.q.masked_fill(self.start, 0.0)

    def chain(self, record: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list]:
        """Walk the levels, bottom up, returning ``(q̃, k̃, total, per_level)``: the queries and
        keys decayed from the chunk's start and to its end, the chunk's total decay
        ``[..., 1, K]``, and per level ``(m, q̃_odd, k̃_even, factor_q, factor_k)`` (copies when
        ``record``, else views that the next level overwrites)."""
        qt, kt, tot = self.q1.clone(), self.k.clone(), self.w
        out = []
        for m in levels(self.q.shape[-2]):
            qh, kh = _odd(qt, m), _even(kt, m)
            pair = halves(tot, 1)  # per-segment totals of level m: [..., C/2m, 2, 1, K]
            fq, fk = pair[..., 0, :, :], pair[..., 1, :, :]
            out.append((m, qh.clone() if record else qh, kh.clone() if record else kh, fq, fk))
            if not record:
                self._level(m, qh, kh)
            qh.mul_(fq)
            kh.mul_(fk)
            tot = (fq * fk).squeeze(-2)
        return qt, kt, tot, out

    def _level(self, m: int, qh: torch.Tensor, kh: torch.Tensor) -> None:
        """Add level m's part to ``self.o``: odd-segment rows, even-segment columns."""
        oh, vh = _odd(self.o, m), _even(self.v, m)
        if m == 1:
            oh.addcmul_((qh * kh).sum(-1, keepdim=True), vh)
        else:
            oh.add_(_bmm(_bmm(qh, _t(kh)), vh))

    def diagonal_keys(self) -> torch.Tensor:
        return self.k * self.u[:, None, :] if self.bonus else self.k


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
        starts: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        groups = _Groups(q.shape, v.shape[-1], chunk, s0.dtype)
        states = s0.new_empty(groups.n + 1, *s0.shape)  # [N+1, B, H, K, V] between chunks
        states[0] = s0
        o = groups.new(s0, v.shape[-1])  # [B, N·C, H, V]
        for c0, c1 in groups.bounds:
            x = _Chunks(groups, (q, k, v, g), c0, c1, u, starts)
            x.o = (x.q * x.diagonal_keys()).sum(-1, keepdim=True) * x.v
            qt, kt, tot, _ = x.chain(record=False)  # adds the levels to x.o
            increments = _bmm(_t(kt), x.v)  # [n, B, H, K, V]
            chunk_dec = _t(tot)  # [n, B, H, K, 1]
            for i in range(c1 - c0):
                torch.addcmul(increments[i], chunk_dec[i], states[c0 + i], out=states[c0 + i + 1])
            o_g = x.o.add_(_bmm(qt, states[c0:c1])).mul_(scale)
            groups.store(o, o_g, c0, c1)
        ctx.save_for_backward(q, k, v, g, u, states, starts)
        ctx.scale, ctx.chunk = scale, chunk
        return o[:, : groups.t], states[groups.n].clone()

    @staticmethod
    def backward(ctx: Any, do: torch.Tensor, ds_end: torch.Tensor | None) -> tuple[Any, ...]:
        q, k, v, g, u, states, starts = ctx.saved_tensors
        groups = _Groups(q.shape, v.shape[-1], ctx.chunk, states.dtype)
        dq, dk, dg = (groups.new(states, q.shape[-1]) for _ in range(3))  # [B, N·C, H, K]
        dv = groups.new(states, v.shape[-1])
        du = torch.zeros_like(u) if u.numel() else None
        carry = torch.zeros_like(states[0]) if ds_end is None else ds_end.to(states.dtype)
        for c0, c1 in reversed(groups.bounds):
            x = _Chunks(groups, (q, k, v, g), c0, c1, u, starts)
            do_g = groups.load(do, c0, c1).mul_(ctx.scale)  # [n, B, H, C, V]
            qt, kt, tot, per_level = x.chain(record=True)
            n = c1 - c0

            # the state gradients, backwards: D_i = q̃_iᵀ do_i + diag(total_i) D_{i+1}
            from_out = _bmm(_t(qt), do_g)  # [n, B, H, K, V]
            grads = states.new_empty(n + 1, *states.shape[1:])
            grads[n] = carry
            chunk_dec = _t(tot)
            for i in range(n - 1, -1, -1):
                torch.addcmul(from_out[i], chunk_dec[i], grads[i + 1], out=grads[i])
            carry = grads[0]
            d_next = grads[1:]  # ∂L/∂(state after chunk i)

            # carried-state paths: gradients of q̃ and k̃ after the last level
            hq = _bmm(do_g, _t(states[c0:c1]))  # [n, B, H, C, K]
            hk = _bmm(x.v, _t(d_next))
            dv_g = _bmm(kt, d_next)  # [n, B, H, C, V]

            # the levels, top down (Horner: each level's factor, then its own gradient)
            for m, qh, kh, fq, fk in reversed(per_level):
                do_h, v_h = _odd(do_g, m), _even(x.v, m)
                if m == 1:
                    da = (do_h * v_h).sum(-1, keepdim=True)  # [..., C/2, 1, 1]
                    _even(dv_g, m).addcmul_((qh * kh).sum(-1, keepdim=True), do_h)
                    dqh, dkh = da * kh, da * qh
                else:
                    da = _bmm(do_h, _t(v_h))  # [..., C/2m, m, m]
                    _even(dv_g, m).add_(_bmm(_t(_bmm(qh, _t(kh))), do_h))
                    dqh, dkh = _bmm(da, kh), _bmm(_t(da), qh)
                _odd(hq, m).mul_(fq).add_(dqh)
                _even(hk, m).mul_(fk).add_(dkh)
            if not x.bonus:  # the gradient of q̃ before the first level, back to q
                dq_dec = hq.mul_(x.w)
            else:
                dq_dec = hq if x.start is None else hq.masked_fill_(x.start, 0.0)

            # decay gradient: ∂L/∂Q = q ⊙ dq, ∂L/∂K = -k ⊙ dk over the decayed paths, and the
            # state after each chunk at the chunk's last position
            db_q = x.q * dq_dec
            db_k = x.k * hk
            db_k[..., -1, :] -= (d_next * states[c0 + 1 : c1 + 1]).sum(-1)
            if x.bonus:  # the query's decay is exclusive: g_t reaches the queries after t only
                dg_g = _reverse_cumsum(db_q).sub_(db_q).sub_(_reverse_cumsum(db_k))
            else:
                dg_g = _reverse_cumsum(db_q.sub_(db_k))
            dg_g.masked_fill_(x.floored, 0.0)

            # the undecayed diagonal A_tt = q_t · (w ⊙ k_t), w = u (bonus) or 1
            da_diag = (do_g * x.v).sum(-1, keepdim=True)  # [n, B, H, C, 1]
            dv_g.addcmul_((x.q * x.diagonal_keys()).sum(-1, keepdim=True), do_g)
            if x.bonus:
                du.add_((da_diag * x.q * x.k).sum((0, 1, 3)))  # [H, K]
                dq_dec.addcmul_(da_diag, x.diagonal_keys())
                hk.addcmul_(da_diag, x.q * u[:, None, :])
            else:
                dq_dec.addcmul_(da_diag, x.k)
                hk.addcmul_(da_diag, x.q)
            for full, part in ((dq, dq_dec), (dk, hk), (dv, dv_g), (dg, dg_g)):
                groups.store(full, part, c0, c1)
        grads_in = [t[:, : groups.t].to(x.dtype) for t, x in ((dq, q), (dk, k), (dv, v), (dg, g))]
        return *grads_in, du, carry, None, None, None


def _reverse_cumsum(x: torch.Tensor) -> torch.Tensor:
    """``y_t = Σ_{s>=t} x_s`` along dim -2 (within each chunk)."""
    return x.flip(-2).cumsum(-2).flip(-2)
