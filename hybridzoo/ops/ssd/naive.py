"""The time-step reference of Mamba-2's SSD scan (tests only), in Mamba-2's own notation."""

from __future__ import annotations

import torch

from hybridzoo.ops._checks import ssd_sizes
from hybridzoo.ops._common import compute_dtype, document_starts


def naive_ssd(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    *,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    seq_idx: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``h_t = exp(dt_t A) h_{t-1} + dt_t x_t ⊗ B_t``, ``y_t = h_t C_t``, a loop over t; the
    state is zeroed first at a document start. Arguments as :func:`~hybridzoo.ops.chunk_ssd`."""
    n = ssd_sizes(x, dt, A, B, C, initial_state)
    r = n["H"] // n["G"]
    ct = compute_dtype(x.dtype)
    starts = document_starts(seq_idx, n["B"], n["T"])
    h = x.new_zeros(n["B"], n["H"], n["P"], n["N"], dtype=ct)
    if initial_state is not None:
        h = initial_state.to(ct)
    a = A.to(ct)
    ys = []
    steps = (
        x.to(ct),
        dt.to(ct),
        B.to(ct).repeat_interleave(r, 2),
        C.to(ct).repeat_interleave(r, 2),
    )
    for t, (x_t, dt_t, b_t, c_t) in enumerate(zip(*(s.unbind(1) for s in steps), strict=True)):
        if starts is not None:
            h = torch.where(starts[:, t, None, None, None], 0.0, h)
        decay = torch.exp(dt_t * a)[..., None, None]  # [B, H, 1, 1]
        h = decay * h + (dt_t[..., None] * x_t)[..., :, None] * b_t[..., None, :]
        ys.append((h * c_t[..., None, :]).sum(-1))  # [B, H, P]
    return torch.stack(ys, 1).to(x.dtype), (h if output_final_state else None)
