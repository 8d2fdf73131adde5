"""Chunkwise-parallel linear recurrence with a scalar decay per head (simple GLA), in PyTorch.

Per chunk of ``C`` positions, with ``Γ_ts = exp(Σ_{s<j<=t} g_j)`` (the chunk's
:class:`~hybridzoo.ops._common.ScalarDecays`) and ``S_0`` the state entering it:

- ``o_t = scale · (Γ_t,start q_t S_0 + Σ_{s<=t} Γ_ts (q_t · k_s) v_s)``;
- ``S_end = Γ_end,start S_0 + Σ_s Γ_end,s k_sᵀ v_s``.

Query and key heads come in ``G`` groups of ``R = H / G`` value heads: the scores ``q kᵀ`` are
computed once per group and decayed per head, the carried state is read with one matmul per group
(``[C, K] @ [K, R·V]``). The intra-chunk product is :func:`~hybridzoo.ops._common.causal_matmul`
(no future value is ever multiplied into an output). Gradients: autograd, group by group, through
:func:`~hybridzoo.ops._recompute.run_groups` (only the states between groups are kept).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hybridzoo.ops._common import (
    ScalarDecays,
    causal_matmul,
    floor_log_decay,
    pad_time,
    prepare,
)
from hybridzoo.ops._recompute import group_bounds, run_groups
from hybridzoo.ops.gla.compiled import compiled_recurrence, resolve_backend


def chunk_simple_gla(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor,
    *,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int = 64,
    seq_idx: torch.Tensor | None = None,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Linear recurrence with one scalar decay per head, chunkwise parallel.

    ``S_t = exp(g_t) S_{t-1} + k_tᵀ v_t`` and ``o_t = scale · q_t S_t`` per head, with the state
    ``S [K, V]`` (key dimension first: ``S[i, j]`` weighs ``k_i`` against ``v_j``).

    Args:
        q, k: ``[B, T, G, K]``; value head ``h`` reads query/key group ``h // (H / G)`` (``G``
            divides ``H``: Mamba-2's groups of B and C, or ``G = H``).
        v: ``[B, T, H, V]``.
        log_decay: ``[B, T, H]``, the log of the forget gate ``g_t`` (``<= 0``; any strength is
            exact, ``-inf`` included: it forgets everything).
        scale: output scale, default ``K ** -0.5``.
        initial_state: ``[B, H, K, V]`` or None (zeros); belongs to each row's first document.
        output_final_state: also return ``S_T``.
        chunk_size: positions per chunk, a power of two; changes speed only.
        seq_idx: ``[B, T]`` integers, non-decreasing along T, numbering documents packed in a
            row: the state restarts from zero where it changes. None: one document per row.
        backend: ``"auto"``, ``"compiled"`` (the fused C++ recurrence of :func:`chunk_gla`, CPU)
            or ``"torch"`` (this module's chunked form, any device). Same results.

    Returns:
        ``(o [B, T, H, V] in v's dtype, S_T [B, H, K, V] or None)``. The maths runs in float64
        for float64 inputs, in float32 otherwise; ``S_T`` is in that dtype. Differentiable in
        q, k, v, log_decay and initial_state.
    """
    tensors = (q, k, v, log_decay, initial_state)
    call = prepare("chunk_simple_gla", tensors, v, scale, chunk_size, seq_idx, output_final_state)
    if resolve_backend(backend, v.device) == "compiled":  # one decay per head: [B, T, H, 1]
        return compiled_recurrence(call, q, k, v, log_decay.unsqueeze(-1), None, initial_state)
    b, h, d_k, d_v, chunk = call.n["B"], call.n["H"], call.n["K"], call.n["V"], call.chunk
    log_decay = floor_log_decay(log_decay, call.starts)
    s0 = call.initial(initial_state, v)
    run = _GroupRun(chunk, call.n["G"], call.scale, call.dtype)
    bounds = group_bounds(call.n["T"], chunk, b * h * chunk * max(d_k, d_v, chunk))
    return call.result(*run_groups(run, bounds, s0, (q, k, v, log_decay)))


class _GroupRun:
    """One group of chunks: ``[B, t, ...]`` slices and the entering state -> (o, state)."""

    def __init__(self, chunk: int, groups: int, scale: float, dtype: torch.dtype) -> None:
        self.chunk, self.groups, self.scale, self.dtype = chunk, groups, scale, dtype

    def __call__(
        self, inputs: Sequence[torch.Tensor], state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        q, k, v, g = (x.to(self.dtype) for x in inputs)
        b, t, h, d_v = v.shape
        c, gr = self.chunk, self.groups
        r, d_k = h // gr, q.shape[-1]
        n = -(-t // c)
        # chunks first: q, k [n, B, G, C, K]; v [n, B, G, R, C, V]; g [n, B, G, R, C]
        qc, kc = (pad_time(x, n * c).view(b, n, c, gr, d_k).permute(1, 0, 3, 2, 4) for x in (q, k))
        vc = pad_time(v, n * c).view(b, n, c, gr, r, d_v).permute(1, 0, 3, 4, 2, 5)
        gc = pad_time(g, n * c).view(b, n, c, gr, r).permute(1, 0, 3, 4, 2)
        dec = ScalarDecays(gc)

        scores = torch.matmul(qc, kc.transpose(-1, -2))  # [n, B, G, C, C]
        intra = causal_matmul(scores.unsqueeze(3) * dec.gamma, vc)  # [n, B, G, R, C, V]

        # the states entering each chunk, in [B, G, K, R, V] (one matmul per group reads them)
        decayed_v = (vc * dec.to_end.unsqueeze(-1)).permute(0, 1, 2, 4, 3, 5)  # [n,B,G,C,R,V]
        incr = torch.matmul(kc.transpose(-1, -2), decayed_v.reshape(n, b, gr, c, r * d_v)).view(
            n, b, gr, d_k, r, d_v
        )
        total = dec.total.view(n, b, gr, 1, r, 1)
        s = state.view(b, gr, r, d_k, d_v).transpose(2, 3)  # [B, G, K, R, V]
        entering = []
        for i in range(n):
            entering.append(s)
            s = total[i] * s + incr[i]
        carried = torch.stack(entering).reshape(n, b, gr, d_k, r * d_v)
        inter = torch.matmul(qc, carried).view(n, b, gr, c, r, d_v).permute(0, 1, 2, 4, 3, 5)
        o = (intra + dec.from_start.unsqueeze(-1) * inter) * self.scale  # [n, B, G, R, C, V]
        o = o.permute(1, 0, 4, 2, 3, 5).reshape(b, n * c, h, d_v)[:, :t]
        return o, s.transpose(2, 3).reshape(b, h, d_k, d_v)
