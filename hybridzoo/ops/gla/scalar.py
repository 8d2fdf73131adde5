"""The chunked torch form of :func:`~hybridzoo.ops.chunk_gla` under a scalar decay per head (simple
GLA, RetNet, Mamba-2's SSD): cheaper than the per-channel form, the decays being one per position.

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
from torch import Tensor

from hybridzoo.ops._common import Call, ScalarDecays, causal_matmul, floor_log_decay, pad_time
from hybridzoo.ops._recompute import group_bounds, run_groups


def scalar_decay_chunks(
    call: Call, q: Tensor, k: Tensor, v: Tensor, log_decay: Tensor, state: Tensor | None
) -> tuple[Tensor, Tensor | None]:
    """:func:`~hybridzoo.ops.chunk_gla`'s torch path for a ``[B, T, H]`` log decay without a
    bonus; arguments checked by :func:`~hybridzoo.ops._common.prepare`."""
    b, h, d_k, d_v, chunk = call.n["B"], call.n["H"], call.n["K"], call.n["V"], call.chunk
    log_decay = floor_log_decay(log_decay, call.starts)
    s0 = call.initial(state, v)
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
