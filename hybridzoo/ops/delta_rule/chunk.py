"""The gated delta rule, chunkwise parallel in the WY / UT-transform form, in PyTorch.

Writing ``S_t = exp(g_t) S_{t-1} + k_t u_tᵀ`` with the "new value"
``u_t = β_t (v_t - exp(g_t) S_{t-1}ᵀ k_t)``, the recurrence is a scalar-decay linear recurrence
in ``(k, u)``. Inside a chunk entering with ``S_0`` (``Γ``, ``Γ_t,start``, ``Γ_end,s``: the
chunk's :class:`~hybridzoo.ops._common.ScalarDecays`), unrolling ``u`` gives the lower
triangular system

    ``(I + A) U = diag(β) V - diag(β Γ_·,start) K S_0``, ``A_ts = β_t Γ_ts (k_t · k_s)`` (s < t),

so that, with the UT transform ``T = (I + A)⁻¹`` applied by one triangular solve per chunk,
``U = Ũ - W S_0`` where ``Ũ = T diag(β) V`` and ``W = T diag(β Γ_·,start) K`` do not depend on
the state (all chunks at once), and then, chunk after chunk,

- ``o_t = scale · (Γ_t,start q_t S_0 + Σ_{s<=t} Γ_ts (q_t · k_s) u_s)``,
- ``S_end = Γ_end,start S_0 + Σ_s Γ_end,s k_s u_sᵀ``.

The forward substitution reads rows in order and the intra-chunk product is
:func:`~hybridzoo.ops._common.causal_matmul`: no output sees a later input. Gradients: autograd,
group by group, through :func:`~hybridzoo.ops._recompute.run_groups`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hybridzoo.ops._common import ScalarDecays, causal_matmul, floor_log_decay, pad_time, prepare
from hybridzoo.ops._recompute import group_bounds, run_groups
from hybridzoo.ops.delta_rule.compiled import KERNEL
from hybridzoo.ops.gla.compiled import compiled_recurrence, resolve_backend


def chunk_gated_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor,
    beta: torch.Tensor,
    *,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    chunk_size: int = 64,
    seq_idx: torch.Tensor | None = None,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Gated delta rule over a whole sequence, chunkwise parallel (WY / UT-transform form).

    Per head, with the state ``S [K, V]`` (key dimension first, as fla and transformers):
    ``S_t = exp(g_t) (I - β_t k_t k_tᵀ) S_{t-1} + β_t k_t v_tᵀ`` and ``o_t = scale · S_tᵀ q_t``.

    Args:
        q, k: ``[B, T, G, K]`` with ``G = H`` or, grouped-value form (Qwen3-Next), G dividing H:
            value head ``h`` reads query/key head ``h // (H / G)``. Taken as given (the layer
            L2-normalises them; the recurrence is contractive for ``β ||k||² <= 2``).
        v: ``[B, T, H, V]``.
        log_decay: ``[B, T, H]``, ``g_t <= 0`` (any strength, ``-inf`` included).
        beta: ``[B, T, H]``, the writing strength ``β_t`` (in ``(0, 1)`` after a sigmoid).
        scale: output scale, default ``K ** -0.5``.
        initial_state: ``[B, H, K, V]`` or None (zeros); belongs to each row's first document.
        output_final_state: also return ``S_T``.
        chunk_size: positions per chunk, a power of two; changes speed only.
        seq_idx: ``[B, T]`` integers, non-decreasing along T: the state restarts from zero where
            it changes (packed documents).
        backend: ``"auto"`` (the compiled CPU kernel where it builds, else torch),
            ``"compiled"`` (the fused C++ recurrence, CPU; ``chunk_size`` is its checkpoint
            interval) or ``"torch"`` (this module's WY / UT-transform form, any device).

    Returns:
        ``(o [B, T, H, V] in v's dtype, S_T [B, H, K, V] or None)``, computed in float64 for
        float64 inputs and in float32 otherwise. Differentiable in every tensor argument.
    """
    tensors = (q, k, v, log_decay, beta, initial_state)
    call = prepare(
        "chunk_gated_delta_rule", tensors, v, scale, chunk_size, seq_idx, output_final_state
    )
    if resolve_backend(backend, v.device, KERNEL) == "compiled":
        g, bt = log_decay.unsqueeze(-1), beta.unsqueeze(-1)
        return compiled_recurrence(call, q, k, v, g, bt, initial_state, kernel=KERNEL)
    b, h, d_k, d_v, chunk = call.n["B"], call.n["H"], call.n["K"], call.n["V"], call.chunk
    if call.n["G"] != h:  # grouped values: each query/key head serves H / G value heads
        q, k = (x.repeat_interleave(h // call.n["G"], 2) for x in (q, k))
    log_decay = floor_log_decay(log_decay, call.starts)
    s0 = call.initial(initial_state, v)
    bounds = group_bounds(call.n["T"], chunk, b * h * chunk * max(d_k + d_v, chunk))
    run = _GroupRun(chunk, call.scale, call.dtype)
    return call.result(*run_groups(run, bounds, s0, (q, k, v, log_decay, beta)))


class _GroupRun:
    """One group of chunks: ``[B, t, ...]`` slices and the entering state -> (o, state)."""

    def __init__(self, chunk: int, scale: float, dtype: torch.dtype) -> None:
        self.chunk, self.scale, self.dtype = chunk, scale, dtype

    def __call__(
        self, inputs: Sequence[torch.Tensor], state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, h, d_v = inputs[2].shape
        c = self.chunk
        n = -(-t // c)
        # chunks first: q, k [n, B, H, C, K], v [n, B, H, C, V], g and β [n, B, H, C]
        qc, kc, vc, gc, bc = (
            pad_time(x.to(self.dtype), n * c)
            .unflatten(1, (n, c))
            .transpose(2, 3)
            .movedim(1, 0)
            .contiguous()
            for x in inputs
        )
        dec = ScalarDecays(gc)
        kb = kc * bc.unsqueeze(-1)  # β_t k_t
        a = (torch.matmul(kb, kc.transpose(-1, -2)) * dec.gamma).tril_(-1)  # a select: no 0 · x
        rhs = torch.cat((vc * bc.unsqueeze(-1), kb * dec.from_start.unsqueeze(-1)), -1)
        solved = torch.linalg.solve_triangular(a, rhs, upper=False, unitriangular=True)
        u_tilde, w = solved.split((d_v, solved.shape[-1] - d_v), -1)
        # S_end = total S_0 + k_endᵀ (Ũ - W S_0) = M S_0 + D, all chunks' M and D at once
        k_end = (kc * dec.to_end.unsqueeze(-1)).transpose(-1, -2)  # [n, B, H, K, C]
        m = torch.matmul(k_end, w).neg_()  # [n, B, H, K, K]
        m.diagonal(dim1=-2, dim2=-1).add_(dec.total)
        dd = torch.matmul(k_end, u_tilde)  # [n, B, H, K, V]
        entering = []
        s = state
        for i in range(n):
            entering.append(s)
            s = torch.baddbmm(dd[i].flatten(0, 1), m[i].flatten(0, 1), s.flatten(0, 1))
            s = s.view(b, h, s.shape[-2], d_v)
        s_all = torch.stack(entering)  # the state entering each chunk
        flat = (n * b * h, c)
        s_flat = s_all.view(n * b * h, s_all.shape[-2], d_v)
        u_all = torch.baddbmm(u_tilde.flatten(0, 2), w.flatten(0, 2), s_flat, alpha=-1)  # u_t
        qs = qc * self.scale
        scores = (torch.matmul(qs, kc.transpose(-1, -2)) * dec.gamma).flatten(0, 2)
        o = causal_matmul(scores, u_all.view(*flat, d_v))
        qd = (qs * dec.from_start.unsqueeze(-1)).flatten(0, 2)
        o = o.baddbmm_(qd, s_flat).view(n, b, h, c, d_v)
        o = o.movedim(0, 1).transpose(2, 3).reshape(b, n * c, h, d_v)[:, :t]
        return o, s
